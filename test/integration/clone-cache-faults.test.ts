/**
 * The clone cache under failure: the upstream dying mid-fill, the first
 * client hanging up mid-fill. Real git clients; faults injected by a
 * forwarder between the proxy and the real upstream.
 */
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { until } from '../helpers/wait.js'
import { cacheFiles } from '../helpers/cache-files.js'
import { git, gitHome, gitOk, spawnGit } from '../helpers/git.js'
import { gitRequestLines } from '../helpers/log-sink.js'
import { startFaultProxy } from '../helpers/fault-proxy.js'
import { startTestProxy } from '../helpers/proxy.js'
import { createBareRepo } from '../helpers/repo.js'
import { startTestUpstream } from '../helpers/upstream.js'

void t.test('upstream dies mid-fill: every waiting clone fails cleanly, nothing is committed, the next clone works', async (t) => {
  const dir = t.testdir()
  const home = gitHome(dir)
  const upstream = await startTestUpstream(t, dir)
  await createBareRepo(home, upstream.root, 'app.git', { commits: 12, fileSize: 30_000 })
  // ~20 KB/s, cut after 30 KB: the fill dies 1.5 s in, after every client joined.
  const fault = await startFaultProxy(t, upstream.url, { bytesPerTick: 1000, cutAfter: 30_000, times: 1 })
  const proxy = await startTestProxy(t, dir, fault.url)
  const url = `${proxy.url}/app.git`

  const results = await Promise.all(
    Array.from({ length: 5 }, (_, i) => git(home, ['clone', '-q', url, path.join(dir, `c${i}`)])),
  )
  for (const r of results) {
    t.not(r.code, 0, 'the clone failed')
    t.match(r.stderr, /early EOF|RPC failed|unexpected disconnect|transfer closed|fetch-pack|index-pack/, 'with a git error')
  }
  t.equal(fault.uploadPacks, 1, 'one upstream fill for the five clients')
  t.same(cacheFiles(proxy.cacheDir, 'entries'), [], 'nothing committed')
  t.same(cacheFiles(proxy.cacheDir, 'tmp'), [], 'no temp file left')

  const ok = path.join(dir, 'after')
  const r = await git(home, ['clone', '-q', url, ok])
  t.equal(r.code, 0, r.stderr)
  await gitOk(home, ['-C', ok, 'fsck', '--strict'])
  t.equal(cacheFiles(proxy.cacheDir, 'entries').length, 1)
  t.equal((await fetch(`${proxy.url}/healthz`)).status, 200)
})

void t.test('the first client hangs up mid-fill: the others get whole clones and the entry is committed', async (t) => {
  const dir = t.testdir()
  const home = gitHome(dir)
  const upstream = await startTestUpstream(t, dir)
  await createBareRepo(home, upstream.root, 'app.git', { commits: 12, fileSize: 30_000 })
  // ~100 KB/s: the fill takes a couple of seconds.
  const fault = await startFaultProxy(t, upstream.url, { bytesPerTick: 5000, cutAfter: null, times: 1 })
  const proxy = await startTestProxy(t, dir, fault.url)
  const url = `${proxy.url}/app.git`

  const first = spawnGit(home, ['clone', '-q', url, path.join(dir, 'first')])
  // Wait until the fill is running (its temp file exists), then bring in the others.
  for (let i = 0; i < 200 && cacheFiles(proxy.cacheDir, 'tmp').length === 0; i++) await sleep(20)
  t.equal(cacheFiles(proxy.cacheDir, 'tmp').length, 1, 'fill in flight')
  const others = Array.from({ length: 3 }, (_, i) => git(home, ['clone', '-q', url, path.join(dir, `o${i}`)]))
  await until(() => proxy.proxy.store.stats().totals.uploadPack.joins >= 3, 'the three others to join the fill')
  first.kill()
  const firstResult = await first.done
  t.not(firstResult.code, 0, 'the first client is gone')
  for (const [i, r] of (await Promise.all(others)).entries()) {
    t.equal(r.code, 0, r.stderr)
    await gitOk(home, ['-C', path.join(dir, `o${i}`), 'fsck', '--strict'])
  }
  t.equal(fault.uploadPacks, 1, 'one upstream fill')
  t.equal(cacheFiles(proxy.cacheDir, 'entries').length, 1, 'entry committed')
  const before = fault.uploadPacks
  await gitOk(home, ['clone', '-q', url, path.join(dir, 'warm')])
  t.equal(fault.uploadPacks, before, 'next clone is a hit')
  await proxy.settled()
  t.equal(gitRequestLines(proxy.logs).at(-1)?.['cache'], 'hit')
})
