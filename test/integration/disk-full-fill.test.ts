/**
 * Issue 16: the cache's disk fills up during a fill (DESIGN §3.5). The
 * fill relays the rest from memory to every reader, is not committed, and
 * caching pauses until space is back. Real file system (a tmpfs mounted by
 * the test, which needs root, as on CI), real git clients.
 */
import { randomBytes } from 'node:crypto'
import { rmSync, statfsSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { cacheFiles } from '../helpers/cache-files.js'
import { git, gitHome, gitOk } from '../helpers/git.js'
import { startTestProxy } from '../helpers/proxy.js'
import { createBareRepo } from '../helpers/repo.js'
import { startSshBed } from '../helpers/sshd.js'
import { canMountTmpfs, mountTmpfs } from '../helpers/tmpfs.js'
import { startTestUpstream } from '../helpers/upstream.js'
import { until } from '../helpers/wait.js'

const MiB = 1024 * 1024
const needsTmpfs = { skip: canMountTmpfs() ? false : 'mounting tmpfs needs root' }

/** Adds `mib` files of 1 MiB random bytes (incompressible: the pack is about `mib` MiB) to `<root>/<name>`. */
async function randomRepo(home: string, root: string, name: string, mib: number): Promise<string> {
  const bare = await createBareRepo(home, root, name, { commits: 1 })
  const work = path.join(root, `.${name}-work`)
  await gitOk(home, ['clone', '-q', bare, work])
  for (let i = 0; i < mib; i++) writeFileSync(path.join(work, `blob-${i}.bin`), randomBytes(MiB))
  await gitOk(home, ['-C', work, 'add', '.'])
  await gitOk(home, ['-C', work, 'commit', '-q', '-m', `${mib} random blobs`])
  await gitOk(home, ['-C', work, 'push', '-q', 'origin', 'main'])
  rmSync(work, { recursive: true, force: true })
  return bare
}

/** Fills `fs` with a ballast file until about `leave` bytes are free. */
function ballast(fs: string, leave: number): string {
  const st = statfsSync(fs)
  const file = path.join(fs, 'ballast')
  writeFileSync(file, Buffer.alloc(Math.max(0, st.bavail * st.bsize - leave), 1))
  return file
}

const headOf = async (home: string, repo: string, ref = 'main'): Promise<string> =>
  (await gitOk(home, ['-C', repo, 'rev-parse', ref])).trim()

void t.test('8 MiB free, a 12 MiB pack: 4 concurrent clones succeed, nothing is committed, caching pauses, then resumes', needsTmpfs, async (t) => {
  const dir = t.testdir()
  const fs = mountTmpfs(t, 64 * MiB)
  if (fs === null) throw new Error('tmpfs mount failed')
  const home = gitHome(dir)
  const upstream = await startTestUpstream(t, dir)
  const bare = await randomRepo(home, upstream.root, 'big.git', 12)
  const want = await headOf(home, bare)
  const cacheDir = path.join(fs, 'cache')
  const proxy = await startTestProxy(t, dir, upstream.url, {
    'cache.dir': cacheDir,
    'scm-cache.minimum.free.space': String(MiB),
    'scm-cache.disk.check.interval': '1',
  })
  const weight = ballast(fs, 8 * MiB)
  await proxy.proxy.disk.check()
  t.equal(proxy.proxy.disk.status().admitting, true, 'admitting at the start: 8 MiB free > 1 MiB')
  const url = `${proxy.url}/big.git`

  const started = performance.now()
  const burst = await Promise.all(Array.from({ length: 4 }, (_, i) => git(home, ['clone', '-q', url, path.join(dir, `b${i}`)])))
  t.comment(`4 clones in ${((performance.now() - started) / 1000).toFixed(1)} s`)
  for (const [i, r] of burst.entries()) {
    t.equal(r.code, 0, `clone ${i} succeeded ${r.stderr}`)
    await gitOk(home, ['-C', path.join(dir, `b${i}`), 'fsck', '--strict'])
    t.equal(await headOf(home, path.join(dir, `b${i}`), 'origin/main'), want, `clone ${i} has the upstream's main`)
  }
  await proxy.settled()
  await proxy.proxy.store.idle()
  t.ok(
    proxy.logs.some((l) => l.msg === 'cache write failed mid-fill: relaying the rest from memory, not cached'),
    'the fill hit the full disk and relayed',
  )
  t.same(cacheFiles(cacheDir, 'entries'), [], 'no entry committed')
  t.same(cacheFiles(cacheDir, 'tmp'), [], 'no temp file left')

  const caches = await fetch(`${proxy.url}/rest/scm-cache/latest/caches`)
  const figures = (await caches.json()) as { enabled: boolean; disabledReason: string | null; uploadPack: { entries: number } }
  t.equal(figures.enabled, false, 'REST: caching paused')
  t.match(figures.disabledReason, /disk is full|free disk space/, 'with the reason')
  const metrics = await (await fetch(`${proxy.url}/metrics`)).text()
  t.match(metrics, /^scm_cache_caching_enabled 0$/m, 'metrics: caching paused')

  const paused = path.join(dir, 'paused')
  await gitOk(home, ['clone', '-q', url, paused])
  await gitOk(home, ['-C', paused, 'fsck', '--strict'])
  t.same(cacheFiles(cacheDir, 'entries'), [], 'still nothing stored while paused')

  rmSync(weight)
  await until(() => proxy.proxy.disk.status().admitting, 'caching resumes once the ballast is gone')
  const resumed = path.join(dir, 'resumed')
  await gitOk(home, ['clone', '-q', url, resumed])
  await gitOk(home, ['-C', resumed, 'fsck', '--strict'])
  await proxy.settled()
  await proxy.proxy.store.idle()
  t.equal(cacheFiles(cacheDir, 'entries').length, 1, 'the next clone is stored')
  t.match(await (await fetch(`${proxy.url}/metrics`)).text(), /^scm_cache_caching_enabled 1$/m)
})

void t.test('over SSH: a clone during a write failure succeeds', needsTmpfs, async (t) => {
  const fs = mountTmpfs(t, 64 * MiB)
  if (fs === null) throw new Error('tmpfs mount failed')
  const cacheDir = path.join(fs, 'cache')
  const bed = await startSshBed(t, {
    settings: { 'cache.dir': cacheDir, 'scm-cache.minimum.free.space': String(MiB), 'scm-cache.disk.check.interval': '1' },
  })
  const bare = await randomRepo(bed.home, bed.upstream.root, 'big.git', 10)
  const want = await headOf(bed.home, bare)
  ballast(fs, 4 * MiB)
  await bed.proxy.proxy.disk.check()
  t.equal(bed.proxy.proxy.disk.status().admitting, true)
  const target = path.join(bed.dir, 'ssh-clone')
  await bed.gitOk(['clone', '-q', bed.sshUrl('big.git'), target])
  await gitOk(bed.home, ['-C', target, 'fsck', '--strict'])
  t.equal(await headOf(bed.home, target, 'origin/main'), want)
  await bed.proxy.settled()
  await bed.proxy.proxy.store.idle()
  t.ok(bed.proxy.logs.some((l) => l.msg === 'cache write failed mid-fill: relaying the rest from memory, not cached'))
  t.same(cacheFiles(cacheDir, 'entries'), [], 'no entry committed')
  t.same(cacheFiles(cacheDir, 'tmp'), [], 'no temp file left')
  t.equal(bed.proxy.proxy.disk.status().admitting, false, 'caching paused')
})
