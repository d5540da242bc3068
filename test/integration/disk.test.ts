/**
 * Issue 6: the cache can never fill the disk or break a clone. The disk
 * tests run on real small file systems (tmpfs mounted by the test, which
 * needs root, as on CI); without root they cannot run and say so.
 */
import { randomBytes } from 'node:crypto'
import { rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { cacheFiles } from '../helpers/cache-files.js'
import { manualClock } from '../helpers/clock.js'
import { git, gitHome, gitOk } from '../helpers/git.js'
import { gitRequestLines } from '../helpers/log-sink.js'
import { startTestProxy } from '../helpers/proxy.js'
import { commitFile, createBareRepo } from '../helpers/repo.js'
import { canMountTmpfs, mountTmpfs } from '../helpers/tmpfs.js'
import { startTestUpstream } from '../helpers/upstream.js'

const MiB = 1024 * 1024
/** The disk tests need a real small file system: tmpfs, which only root may mount (CI runs as root). */
const needsTmpfs = { skip: canMountTmpfs() ? false : 'mounting tmpfs needs root' }
const lastCache = (logs: Record<string, unknown>[]): unknown =>
  gitRequestLines(logs).filter((l) => l['cmd'] === 'fetch' || l['cmd'] === 'upload-pack').at(-1)?.['cache']

/** A repository whose pack is about `mib` MiB: random (incompressible) file contents. */
async function bigRepo(home: string, root: string, name: string, mib: number): Promise<void> {
  await createBareRepo(home, root, name, { commits: 1 })
  const work = path.join(root, `.${name}-work`)
  await gitOk(home, ['clone', '-q', path.join(root, name), work])
  for (let i = 0; i < mib; i++) {
    await commitFile(home, work, `blob-${i}.bin`, randomBytes(MiB).toString('base64').slice(0, MiB), `blob ${i}`, 10 + i)
  }
  await gitOk(home, ['-C', work, 'push', '-q', 'origin', 'main'])
  rmSync(work, { recursive: true, force: true })
}

void t.test('free-space floor: pauses on real free space, resumes by itself', needsTmpfs, async (t) => {
  const dir = t.testdir()
  const fs = mountTmpfs(t, 24 * MiB)
  if (fs === null) throw new Error('tmpfs mount failed')
  const home = gitHome(dir)
  const upstream = await startTestUpstream(t, dir)
  await createBareRepo(home, upstream.root, 'app.git', { commits: 3 })
  const ballast = path.join(fs, 'ballast')
  writeFileSync(ballast, Buffer.alloc(16 * MiB, 1))
  const proxy = await startTestProxy(t, dir, upstream.url, {
    'cache.dir': path.join(fs, 'cache'),
    'scm-cache.minimum.free.space': String(12 * MiB),
    'scm-cache.disk.check.interval': '1',
  })
  const url = `${proxy.url}/app.git`

  t.equal(proxy.proxy.disk.status().admitting, false, 'paused at start: 8 MiB free < 12 MiB')
  t.match(proxy.proxy.disk.status().reason ?? '', /free disk space .* is below the minimum/)
  t.ok(proxy.logs.some((l) => l.msg === 'caching paused: low disk space'), 'logged once')
  for (const n of [1, 2]) {
    await gitOk(home, ['clone', '-q', url, path.join(dir, `paused-${n}`)])
    await gitOk(home, ['-C', path.join(dir, `paused-${n}`), 'fsck', '--strict'])
  }
  t.same(cacheFiles(path.join(fs, 'cache'), 'entries'), [], 'nothing written while paused')
  await proxy.settled()
  t.equal(lastCache(proxy.logs), 'bypass')

  rmSync(ballast)
  for (let i = 0; i < 40 && !proxy.proxy.disk.status().admitting; i++) await sleep(100)
  t.equal(proxy.proxy.disk.status().admitting, true, 'resumed without a restart')
  t.ok(proxy.logs.some((l) => l.msg === 'caching resumed: disk space is back'))
  await gitOk(home, ['clone', '-q', url, path.join(dir, 'resumed')])
  t.equal(cacheFiles(path.join(fs, 'cache'), 'entries').length, 1, 'caching again')
})

void t.test('a real full disk during a burst: clones succeed or fail cleanly, nothing partial, still serving', needsTmpfs, async (t) => {
  const dir = t.testdir()
  const fs = mountTmpfs(t, 2 * MiB)
  if (fs === null) throw new Error('tmpfs mount failed')
  const home = gitHome(dir)
  const upstream = await startTestUpstream(t, dir)
  await bigRepo(home, upstream.root, 'big.git', 5)
  const cacheDir = path.join(fs, 'cache')
  const proxy = await startTestProxy(t, dir, upstream.url, { 'cache.dir': cacheDir })
  const url = `${proxy.url}/big.git`

  const burst = await Promise.all(Array.from({ length: 4 }, (_, i) => git(home, ['clone', '-q', url, path.join(dir, `b${i}`)])))
  for (const [i, r] of burst.entries()) {
    if (r.code === 0) await gitOk(home, ['-C', path.join(dir, `b${i}`), 'fsck', '--strict'])
    else t.match(r.stderr, /early EOF|RPC failed|unexpected disconnect|transfer closed|index-pack|fetch-pack/, 'a clean git error')
  }
  t.same(cacheFiles(cacheDir, 'entries'), [], 'no entry committed')
  t.same(cacheFiles(cacheDir, 'tmp'), [], 'no partial file left')
  t.equal(proxy.proxy.disk.status().admitting, false, 'caching paused after ENOSPC')
  t.match(proxy.proxy.disk.status().reason ?? '', /disk is full/)

  const after = path.join(dir, 'after')
  const r = await git(home, ['clone', '-q', url, after])
  t.equal(r.code, 0, r.stderr)
  await gitOk(home, ['-C', after, 'fsck', '--strict'])
  await proxy.settled()
  t.equal(lastCache(proxy.logs), 'bypass', 'served through while the disk is full')
})

void t.test('an unwritable cache directory: clones pass through (mid-run and from start-up)', async (t) => {
  const dir = t.testdir()
  const home = gitHome(dir)
  const upstream = await startTestUpstream(t, dir)
  await createBareRepo(home, upstream.root, 'app.git', { commits: 3 })

  await t.test('temp folder replaced by a file while running', async (t) => {
    const proxy = await startTestProxy(t, path.join(dir, 'p1'), upstream.url)
    rmSync(path.join(proxy.cacheDir, 'tmp'), { recursive: true, force: true })
    writeFileSync(path.join(proxy.cacheDir, 'tmp'), 'not a folder')
    const target = path.join(dir, 'mid')
    const r = await git(home, ['clone', '-q', `${proxy.url}/app.git`, target])
    t.equal(r.code, 0, r.stderr)
    await gitOk(home, ['-C', target, 'fsck', '--strict'])
    t.ok(proxy.logs.some((l) => l.msg === 'cache failed before the first byte: passing the request through'))
  })

  await t.test('cache.dir under a regular file at start-up', async (t) => {
    writeFileSync(path.join(dir, 'afile'), 'x')
    const proxy = await startTestProxy(t, path.join(dir, 'p2'), upstream.url, { 'cache.dir': path.join(dir, 'afile', 'cache') })
    const target = path.join(dir, 'start')
    const r = await git(home, ['clone', '-q', `${proxy.url}/app.git`, target])
    t.equal(r.code, 0, r.stderr)
    t.match(proxy.proxy.disk.status().reason ?? '', /unusable/)
  })
})

void t.test('size cap: least recently used entries go first', async (t) => {
  const dir = t.testdir()
  const home = gitHome(dir)
  const upstream = await startTestUpstream(t, dir)
  for (const name of ['a', 'b', 'c']) await createBareRepo(home, upstream.root, `${name}.git`, { commits: 6, fileSize: 4000 })
  // Measure one entry, then cap the cache at two and a half of them.
  const probe = await startTestProxy(t, path.join(dir, 'probe'), upstream.url)
  await gitOk(home, ['clone', '-q', `${probe.url}/a.git`, path.join(dir, 'probe-a')])
  const size = probe.proxy.store.stats().totals.uploadPack.size
  await probe.close()

  const proxy = await startTestProxy(t, dir, upstream.url, { 'scm-cache.max.size': String(Math.floor(size * 2.5)) })
  const clone = async (name: string, n: number): Promise<unknown> => {
    await gitOk(home, ['clone', '-q', `${proxy.url}/${name}.git`, path.join(dir, `${name}-${n}`)])
    await proxy.settled()
    return lastCache(proxy.logs)
  }
  await clone('a', 1)
  await clone('b', 1)
  t.equal(await clone('a', 2), 'hit', 'a is now the most recently used')
  await clone('c', 1)
  const repos = proxy.proxy.store.stats().repos
  t.equal(repos.get('b.git')?.uploadPack.entries ?? 0, 0, 'b, the least recently used, was evicted')
  t.equal(repos.get('a.git')?.uploadPack.entries, 1)
  t.equal(repos.get('c.git')?.uploadPack.entries, 1)
  t.equal(proxy.proxy.store.stats().evictions, 1)
  t.equal(await clone('b', 2), 'miss')
})

void t.test('restart: entries survive and are hits; expired ones are swept', async (t) => {
  const dir = t.testdir()
  const home = gitHome(dir)
  const upstream = await startTestUpstream(t, dir)
  await createBareRepo(home, upstream.root, 'app.git', { commits: 3 })

  const clock = manualClock()
  const first = await startTestProxy(t, dir, upstream.url, {}, { now: clock.now })
  await gitOk(home, ['clone', '-q', `${first.url}/app.git`, path.join(dir, 'one')])
  await first.close()
  const second = await startTestProxy(t, dir, upstream.url, {}, { now: clock.now })
  const before = await upstream.packObjects()
  await gitOk(home, ['clone', '-q', `${second.url}/app.git`, path.join(dir, 'two')])
  t.equal(await upstream.packObjects(), before, 'a hit after the restart')
  await second.settled()
  t.equal(lastCache(second.logs), 'hit')
  await second.close()

  clock.advance(1000)
  const third = await startTestProxy(
    t,
    dir,
    upstream.url,
    { 'scm-cache.upload-pack.ttl': '1', 'scm-cache.expiry.check.interval': '1' },
    { now: clock.now },
  )
  t.equal(cacheFiles(third.cacheDir, 'entries').length, 1, 'the old entry is still on disk at start-up')
  for (let i = 0; i < 30 && cacheFiles(third.cacheDir, 'entries').length > 0; i++) await sleep(100)
  t.same(cacheFiles(third.cacheDir, 'entries'), [], 'the sweeper reclaimed the expired entry')
  await gitOk(home, ['clone', '-q', `${third.url}/app.git`, path.join(dir, 'three')])
  await third.settled()
  t.equal(lastCache(third.logs), 'miss', 'an expired entry is never served')
})
