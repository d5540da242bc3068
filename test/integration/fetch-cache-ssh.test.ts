/**
 * Incremental fetches over SSH (DESIGN §2): each v2 `command=fetch` is a
 * whole request, answered from the same cache as HTTP's; v0/v1 negotiation
 * keeps its state in one upload-pack and passes through.
 */
import { cpSync } from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { gitOk } from '../helpers/git.js'
import { gitRequestLines } from '../helpers/log-sink.js'
import { addCommitDirect, createBareRepo } from '../helpers/repo.js'
import { startSshBed } from '../helpers/sshd.js'

const BURST = 8

void t.test(`SSH v2: ${BURST} workspaces at A fetch B at once: one upstream pack; v0 passes through`, async (t) => {
  const bed = await startSshBed(t)
  const bare = await createBareRepo(bed.home, bed.upstream.root, 'app.git', { commits: 10, fileSize: 4000, tags: ['v1'] })
  const first = path.join(bed.dir, 'w-0')
  await bed.gitOk(['clone', '-q', '--no-checkout', bed.sshUrl('app.git'), first])
  const ws = [first]
  for (let i = 1; i <= BURST; i++) {
    const w = path.join(bed.dir, `w-${i}`)
    cpSync(first, w, { recursive: true })
    ws.push(w)
  }
  const v0 = ws.pop() ?? ''
  const tip = await addCommitDirect(bed.home, bare, 'main', 'b.txt', 1)

  const before = await bed.upstream.packObjects()
  const logFrom = gitRequestLines(bed.proxy.logs).length
  const results = await Promise.all(ws.map((w) => bed.git(['-c', 'protocol.version=2', 'fetch', '-q', 'origin'], { cwd: w })))
  for (const r of results) t.equal(r.code, 0, r.stderr)
  t.equal((await bed.upstream.packObjects()) - before, 1, `one pack-objects for ${ws.length} SSH fetches`)
  await bed.proxy.settled()
  const fetches = gitRequestLines(bed.proxy.logs).slice(logFrom).filter((l) => l['proto'] === 'ssh' && l['cmd'] === 'fetch')
  t.notOk(fetches.some((l) => l['cache'] === 'bypass'), 'no v2 fetch went around the cache')
  for (const w of ws) t.equal((await gitOk(bed.home, ['-C', w, 'rev-parse', 'refs/remotes/origin/main'])).trim(), tip)
  for (const w of ws.slice(0, 2)) await gitOk(bed.home, ['-C', w, 'fsck', '--strict'])

  const v0Before = await bed.upstream.packObjects()
  await bed.gitOk(['-c', 'protocol.version=0', 'fetch', '-q', 'origin'], { cwd: v0 })
  t.equal((await bed.upstream.packObjects()) - v0Before, 1, 'the v0 fetch negotiated with the upstream')
  await bed.proxy.settled()
  t.equal(gitRequestLines(bed.proxy.logs).filter((l) => l['proto'] === 'ssh').at(-1)?.['cache'], 'bypass')
  t.equal((await gitOk(bed.home, ['-C', v0, 'rev-parse', 'refs/remotes/origin/main'])).trim(), tip)
  await gitOk(bed.home, ['-C', v0, 'fsck', '--strict'])
})
