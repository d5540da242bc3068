/** SIGTERM: stop accepting connections, let transfers in flight finish, exit 0. */
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
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
  const proxy = await startProxyProcess(t, { SCM_CACHE_UPSTREAM_HTTP_URL: slow.url, SCM_CACHE_CACHE_DIR: cacheDir })

  const target = path.join(dir, 'clone')
  const clone = spawnGit(home, ['clone', '-q', `${proxy.url}/app.git`, target])
  for (let i = 0; i < 300 && cacheFiles(cacheDir, 'tmp').length === 0; i++) await sleep(20)
  t.equal(cacheFiles(cacheDir, 'tmp').length, 1, 'a transfer is in flight')
  proxy.child.kill('SIGTERM')
  await sleep(300)
  const refused = await fetch(`${proxy.url}/healthz`).then(
    () => false,
    () => true,
  )
  t.ok(refused, 'no new connections after SIGTERM')
  const r = await clone.done
  t.equal(r.code, 0, r.stderr)
  await gitOk(home, ['-C', target, 'fsck', '--strict'])
  t.equal(await proxy.exited, 0, 'exit status 0')
  t.match(proxy.output(), /shutting down/)
})
