/**
 * The SSH front and the clone cache: entries shared with HTTP clients, one
 * upstream pack generation per burst, and the per-front caching switch.
 * Pack generations are counted at the upstreams (sshd and http-backend
 * write their git trace2 events into one folder).
 */
import path from 'node:path'
import t from 'tap'
import { cacheFiles } from '../helpers/cache-files.js'
import { git, gitOk, parseRefList } from '../helpers/git.js'
import { gitRequestLines } from '../helpers/log-sink.js'
import { createBareRepo } from '../helpers/repo.js'
import { bareRefs, startSshBed } from '../helpers/sshd.js'

void t.test('a clone over SSH after one over HTTP of the same commit is a hit', async (t) => {
  const bed = await startSshBed(t)
  const bare = await createBareRepo(bed.home, bed.upstream.root, 'app.git', { commits: 5, tags: ['v1'], fileSize: 4000 })
  for (const version of [0, 2]) {
    await t.test(`v${version}`, async (t) => {
      const viaHttp = path.join(bed.dir, `http-v${version}`)
      const viaSsh = path.join(bed.dir, `ssh-v${version}`)
      await gitOk(bed.home, ['-c', `protocol.version=${version}`, 'clone', '-q', `${bed.proxy.url}/app.git`, viaHttp])
      const before = await bed.upstream.packObjects()
      await bed.gitOk(['-c', `protocol.version=${version}`, 'clone', '-q', bed.sshUrl('app.git'), viaSsh])
      t.equal(await bed.upstream.packObjects(), before, 'no pack generation for the SSH clone')
      await bed.proxy.settled()
      const last = gitRequestLines(bed.proxy.logs).filter((l) => l['proto'] === 'ssh').at(-1)
      t.equal(last?.['cache'], 'hit')
      await gitOk(bed.home, ['-C', viaSsh, 'fsck', '--strict'])
      t.equal(
        (await gitOk(bed.home, ['-C', viaSsh, 'rev-parse', 'HEAD'])).trim(),
        (await gitOk(bed.home, ['-C', bare, 'rev-parse', 'main'])).trim(),
      )
    })
  }
  t.equal(cacheFiles(bed.proxy.cacheDir, 'entries').length, 2, 'one v0 and one v2 entry, shared by both fronts')
})

void t.test('16 concurrent SSH clones: one upstream pack generation', async (t) => {
  const bed = await startSshBed(t)
  const bare = await createBareRepo(bed.home, bed.upstream.root, 'app.git', { commits: 20, fileSize: 50_000, tags: ['v1'] })
  const clones = Array.from({ length: 16 }, (_, i) => path.join(bed.dir, `c${i}`))
  const results = await Promise.all(
    clones.map((c) => bed.git(['-c', 'protocol.version=2', 'clone', '-q', bed.sshUrl('app.git'), c])),
  )
  for (const r of results) t.equal(r.code, 0, r.stderr)
  t.equal(await bed.upstream.packObjects(), 1, 'one pack-objects run upstream')
  const upstreamRefs = parseRefList(await bareRefs(bed.home, bare))
  const refs = await Promise.all(clones.map((c) => gitOk(bed.home, ['-C', c, 'for-each-ref', '--format=%(objectname) %(refname)'])))
  t.equal(new Set(refs).size, 1, 'all 16 clones have identical refs')
  t.equal(parseRefList(refs[0] ?? '').get('refs/remotes/origin/main'), upstreamRefs.get('refs/heads/main'))
  for (const c of clones.slice(0, 4)) await gitOk(bed.home, ['-C', c, 'fsck', '--strict'])
  const fetches = gitRequestLines(bed.proxy.logs).filter((l) => l['proto'] === 'ssh' && l['cmd'] === 'fetch')
  t.equal(fetches.filter((l) => l['cache'] === 'miss').length, 1, 'one miss')
  t.equal(fetches.filter((l) => ['miss', 'join', 'hit'].includes(String(l['cache']))).length, 16, 'every clone answered by the cache')
  const metrics = await (await fetch(`${bed.proxy.url}/metrics`)).text()
  t.match(metrics, /scm_cache_git_requests_total\{proto="ssh",cmd="fetch",cache="miss"\} 1/, 'SSH requests are in the metrics')
})

void t.test('caching switched off for SSH: SSH clones bypass, HTTP clones still hit', async (t) => {
  const bed = await startSshBed(t)
  await createBareRepo(bed.home, bed.upstream.root, 'app.git', { commits: 4 })
  const sshClone = (name: string): Promise<string> =>
    bed.gitOk(['-c', 'protocol.version=2', 'clone', '-q', bed.sshUrl('app.git'), path.join(bed.dir, name)])
  const httpClone = async (name: string): Promise<void> => {
    const r = await git(bed.home, ['-c', 'protocol.version=2', 'clone', '-q', `${bed.proxy.url}/app.git`, path.join(bed.dir, name)])
    t.equal(r.code, 0, r.stderr)
  }
  await sshClone('warm')
  t.equal(await bed.upstream.packObjects(), 1)

  bed.proxy.proxy.settings.setOverride('protocols', ['HTTP'])
  for (const n of [1, 2]) {
    const before = await bed.upstream.packObjects()
    await sshClone(`ssh-off-${n}`)
    t.equal(await bed.upstream.packObjects(), before + 1, `SSH clone ${n} went to the upstream`)
    await bed.proxy.settled()
    const last = gitRequestLines(bed.proxy.logs).filter((l) => l['proto'] === 'ssh' && l['cmd'] === 'fetch').at(-1)
    t.equal(last?.['cache'], 'bypass')
    await gitOk(bed.home, ['-C', path.join(bed.dir, `ssh-off-${n}`), 'fsck', '--strict'])
  }
  const before = await bed.upstream.packObjects()
  await httpClone('http-1')
  t.equal(await bed.upstream.packObjects(), before, 'the HTTP clone hit the entry the SSH clone made')

  bed.proxy.proxy.settings.dropOverride('protocols')
  const again = await bed.upstream.packObjects()
  await sshClone('ssh-on')
  t.equal(await bed.upstream.packObjects(), again, 'SSH hits again once switched back on')
})
