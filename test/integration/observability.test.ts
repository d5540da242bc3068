/** DESIGN §9: /metrics, /readyz and the per-request log line. */
import path from 'node:path'
import t from 'tap'
import { gitHome, gitOk } from '../helpers/git.js'
import { gitRequestLines } from '../helpers/log-sink.js'
import { startTestProxy } from '../helpers/proxy.js'
import { createBareRepo } from '../helpers/repo.js'
import { startTestUpstream } from '../helpers/upstream.js'

void t.test('metrics, readiness and request logs', async (t) => {
  const dir = t.testdir()
  const home = gitHome(dir)
  const upstream = await startTestUpstream(t, dir)
  await createBareRepo(home, upstream.root, 'app.git')
  const proxy = await startTestProxy(t, dir, upstream.url)
  for (const n of [1, 2]) await gitOk(home, ['clone', '-q', `${proxy.url}/app.git`, path.join(dir, `c${n}`)])

  const metrics = await (await fetch(`${proxy.url}/metrics`)).text()
  t.match(metrics, /scm_cache_git_requests_total\{proto="http",cmd="fetch",cache="miss"\} 1/)
  t.match(metrics, /scm_cache_git_requests_total\{proto="http",cmd="fetch",cache="hit"\} 1/)
  t.match(metrics, /scm_cache_entries\{kind="upload-pack"\} 1/)
  t.match(metrics, /scm_cache_hits_total\{kind="upload-pack"\} 1/)
  t.match(metrics, /scm_cache_bytes_served_total\{source="cache"\} [1-9]/)
  t.match(metrics, /scm_cache_caching_enabled 1/)
  t.match(metrics, /scm_cache_upstream_response_seconds_count\{method="POST",status="200"\} [1-9]/)
  t.match(metrics, /scm_cache_free_disk_bytes [1-9]/)

  await proxy.settled()

  const line = gitRequestLines(proxy.logs).at(-1)
  t.match(line, { repo: 'app.git', proto: 'http', service: 'git-upload-pack', cmd: 'fetch', cache: 'hit', status: 200 })
  t.type(line?.['bytes'], 'number')
  t.type(line?.['ms'], 'number')

  t.equal((await fetch(`${proxy.url}/readyz`)).status, 200)
  await upstream.close()
  const notReady = await fetch(`${proxy.url}/readyz`)
  t.equal(notReady.status, 503)
  t.match(await notReady.json(), { reason: /upstream .* is not reachable/ })
})
