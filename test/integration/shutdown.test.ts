/**
 * SIGTERM: fail /readyz and keep serving for proxy.shutdown.drain seconds,
 * then stop accepting connections, let transfers in flight finish, exit 0.
 */
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { until } from '../helpers/wait.js'
import { cacheFiles } from '../helpers/cache-files.js'
import { gitHome, gitOk, spawnGit } from '../helpers/git.js'
import { startFaultProxy } from '../helpers/fault-proxy.js'
import { startProxyProcess } from '../helpers/proxy-process.js'
import { createBareRepo } from '../helpers/repo.js'
import { startTestUpstream } from '../helpers/upstream.js'

void t.test('SIGTERM mid-clone: the clone completes, new connections are refused, the process exits 0', async (t) => {
  const dir = t.testdir()
  const home = gitHome(dir)
  const upstream = await startTestUpstream(t, dir)
  await createBareRepo(home, upstream.root, 'app.git', { commits: 12, fileSize: 30_000 })
  // ~100 KB/s: the clone takes a couple of seconds.
  const slow = await startFaultProxy(t, upstream.url, { bytesPerTick: 5000, cutAfter: null, times: 1 })
  const cacheDir = path.join(dir, 'cache')
  const proxy = await startProxyProcess(t, {
    SCM_CACHE_UPSTREAM_HTTP_URL: slow.url,
    SCM_CACHE_CACHE_DIR: cacheDir,
    SCM_CACHE_PROXY_SHUTDOWN_DRAIN: '0',
  })

  const target = path.join(dir, 'clone')
  const clone = spawnGit(home, ['clone', '-q', `${proxy.url}/app.git`, target])
  for (let i = 0; i < 300 && cacheFiles(cacheDir, 'tmp').length === 0; i++) await sleep(20)
  t.equal(cacheFiles(cacheDir, 'tmp').length, 1, 'a transfer is in flight')
  proxy.child.kill('SIGTERM')
  const refused = async (): Promise<boolean> =>
    fetch(`${proxy.url}/healthz`).then(
      () => false,
      () => true,
    )
  await until(refused, 'the proxy to stop accepting connections', 5000)
  t.pass('no new connections after SIGTERM')
  const r = await clone.done
  t.equal(r.code, 0, r.stderr)
  await gitOk(home, ['-C', target, 'fsck', '--strict'])
  t.equal(await proxy.exited, 0, 'exit status 0')
  t.match(proxy.output(), /shutting down/)
})

void t.test('SIGTERM drains first: /readyz fails at once, Git is served for the drain, then the process stops', async (t) => {
  const dir = t.testdir()
  const home = gitHome(dir)
  const upstream = await startTestUpstream(t, dir)
  await createBareRepo(home, upstream.root, 'app.git')
  const drainSeconds = 3
  const proxy = await startProxyProcess(t, {
    SCM_CACHE_UPSTREAM_HTTP_URL: upstream.url,
    SCM_CACHE_CACHE_DIR: path.join(dir, 'cache'),
    SCM_CACHE_PROXY_SHUTDOWN_DRAIN: String(drainSeconds),
  })
  t.equal((await fetch(`${proxy.url}/readyz`)).status, 200, 'ready before')
  proxy.child.kill('SIGTERM')
  const termAt = Date.now()
  let ready = await fetch(`${proxy.url}/readyz`)
  for (let i = 0; i < 100 && ready.status !== 503; i++) {
    await sleep(10)
    ready = await fetch(`${proxy.url}/readyz`)
  }
  t.equal(ready.status, 503, `/readyz fails ${Date.now() - termAt} ms after SIGTERM`)
  t.match(await ready.json(), { status: 'not ready', reason: /draining/ })
  t.equal((await fetch(`${proxy.url}/healthz`)).status, 200, '/healthz still answers')
  await gitOk(home, ['clone', '-q', `${proxy.url}/app.git`, path.join(dir, 'during-drain')])
  t.ok(Date.now() - termAt < drainSeconds * 1000, 'a clone made during the drain succeeded')
  t.equal(await proxy.exited, 0, 'exit status 0 after the drain')
  t.ok(Date.now() - termAt >= drainSeconds * 1000, `stopped ${Date.now() - termAt} ms after SIGTERM, not before the drain ended`)
  t.match(proxy.output(), /draining: \/readyz fails/)
})

void t.test('a second SIGTERM cuts the drain short', async (t) => {
  const dir = t.testdir()
  const upstream = await startTestUpstream(t, dir)
  const proxy = await startProxyProcess(t, {
    SCM_CACHE_UPSTREAM_HTTP_URL: upstream.url,
    SCM_CACHE_CACHE_DIR: path.join(dir, 'cache'),
    SCM_CACHE_PROXY_SHUTDOWN_DRAIN: '600',
  })
  proxy.child.kill('SIGTERM')
  for (let i = 0; i < 200 && !proxy.output().includes('draining'); i++) await sleep(10)
  proxy.child.kill('SIGTERM')
  t.equal(await proxy.exited, 0)
  t.match(proxy.output(), /drain cut short/)
})
