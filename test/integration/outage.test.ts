/**
 * Issue 16: outage mode (DESIGN §3.10). With `scm-cache.outage.enabled`,
 * an unreachable upstream does not stop clones whose answers the cache
 * holds, for credentials accepted within auth.outage-ttl; everything else
 * gets an error naming the outage. Real git clients, a real upstream
 * stopped and started again on the same port.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import type { Test } from 'tap'
import t from 'tap'
import { startEmbeddedUpstream, type EmbeddedUpstream } from '../../src/upstream/embedded.js'
import { git, gitHome, gitOk } from '../helpers/git.js'
import { gitRequestLines } from '../helpers/log-sink.js'
import { startTestProxy } from '../helpers/proxy.js'
import { createBareRepo } from '../helpers/repo.js'

const CREDENTIALS = { username: 'alice', password: 's3cret' }

async function upstreamOn(t: Test, root: string, trace2Dir: string, port = 0): Promise<EmbeddedUpstream> {
  mkdirSync(root, { recursive: true })
  mkdirSync(trace2Dir, { recursive: true })
  const server = await startEmbeddedUpstream({
    root,
    trace2Dir,
    port,
    basicAuth: (repo) => (repo.startsWith('private') ? CREDENTIALS : null),
  })
  t.teardown(() => server.close().catch(() => undefined))
  return server
}

const head = async (home: string, repo: string): Promise<string> => (await gitOk(home, ['-C', repo, 'rev-parse', 'HEAD'])).trim()

void t.test('outage mode: cached clones go on, others are refused, pushes get the outage error, recovery is immediate', async (t) => {
  const dir = t.testdir()
  const home = gitHome(dir)
  const root = path.join(dir, 'upstream')
  const trace2 = path.join(dir, 'trace2')
  let upstream = await upstreamOn(t, root, trace2)
  const port = Number(new URL(upstream.url).port)
  const bare = await createBareRepo(home, root, 'app.git', { commits: 4 })
  await createBareRepo(home, root, 'private.git', { commits: 2 })
  const want = (await gitOk(home, ['-C', bare, 'rev-parse', 'main'])).trim()
  const proxy = await startTestProxy(t, dir, upstream.url, { 'scm-cache.outage.enabled': 'true', 'upstream.connect-timeout': '2' })
  const url = `${proxy.url}/app.git`
  // The credential goes with every request (as CI runners send it: http.extraHeader), not only after a 401.
  const basic = (password: string): string[] => ['-c', `http.extraHeader=Authorization: Basic ${Buffer.from(`${CREDENTIALS.username}:${password}`).toString('base64')}`]
  const privateUrl = `${proxy.url}/private.git`

  // Warm: v2 and v0 clones through the proxy, and the private repository with its credential.
  await gitOk(home, ['clone', '-q', url, path.join(dir, 'warm-v2')])
  await gitOk(home, ['-c', 'protocol.version=0', 'clone', '-q', url, path.join(dir, 'warm-v0')])
  await gitOk(home, [...basic(CREDENTIALS.password), 'clone', '-q', privateUrl, path.join(dir, 'warm-private')])
  await proxy.settled()
  await proxy.proxy.store.idle()

  await upstream.close()
  for (const [name, args] of [
    ['v2', []],
    ['v0', ['-c', 'protocol.version=0']],
  ] as const) {
    const target = path.join(dir, `outage-${name}`)
    const r = await git(home, [...args, 'clone', '--progress', url, target])
    t.equal(r.code, 0, `${name} clone during the outage succeeds ${r.stderr}`)
    t.equal(r.stderr.split('answered from the cache during an upstream outage').length - 1, 1, `${name}: one progress line says so`)
    await gitOk(home, ['-C', target, 'fsck', '--strict'])
    t.equal(await head(home, target), want, `${name}: the cached commit`)
  }
  const priv = await git(home, [...basic(CREDENTIALS.password), 'clone', '-q', privateUrl, path.join(dir, 'outage-private')])
  t.equal(priv.code, 0, `the accepted credential clones the private repository ${priv.stderr}`)

  const refused = await git(home, [...basic('wrong'), 'clone', '-q', privateUrl, path.join(dir, 'refused')])
  t.not(refused.code, 0, 'an unknown credential is refused')
  t.match(refused.stderr, /503|unreachable/, `with the outage named: ${refused.stderr.trim()}`)
  const anonymous = await git(home, ['clone', '-q', `${proxy.url}/private.git`, path.join(dir, 'anonymous')])
  t.not(anonymous.code, 0, 'anonymous (refused before) gets nothing')

  const work = path.join(dir, 'outage-v2')
  writeFileSync(path.join(work, 'new.txt'), 'pushed during the outage\n')
  await gitOk(home, ['-C', work, 'add', 'new.txt'])
  await gitOk(home, ['-C', work, 'commit', '-q', '-m', 'during the outage'])
  const push = await git(home, ['-C', work, 'push', 'origin', 'main'])
  t.not(push.code, 0, 'a push fails')
  t.match(push.stderr, /unreachable/, `with the outage error: ${push.stderr.trim()}`)

  await proxy.settled()
  t.ok(gitRequestLines(proxy.logs).some((l) => l['cache'] === 'stale'), 'log lines say cache: "stale"')
  const ready = await fetch(`${proxy.url}/readyz`)
  t.equal(ready.status, 200, '/readyz stays ready')
  const readyBody = (await ready.json()) as { outage: { upstreamReachable: boolean; answers: number } }
  t.equal(readyBody.outage.upstreamReachable, false, '/readyz names the outage')
  const caches = (await (await fetch(`${proxy.url}/rest/scm-cache/latest/caches`)).json()) as {
    outage?: { enabled: boolean; upstreamReachable: boolean; since: string | null; answers: number }
  }
  t.match(caches.outage, { enabled: true, upstreamReachable: false, since: /^\d{4}-/ }, '/caches shows the outage')
  t.ok((caches.outage?.answers ?? 0) > 0, '/caches counts the stale answers')
  const metrics = await (await fetch(`${proxy.url}/metrics`)).text()
  const answers = /^scm_cache_outage_answers_total (\d+)/m.exec(metrics)
  t.ok(Number(answers?.[1] ?? 0) > 0, `scm_cache_outage_answers_total ${answers?.[1] ?? 'missing'}`)
  t.match(metrics, /^scm_cache_upstream_reachable 0$/m)

  // The upstream comes back on the same port: normal rules at once.
  upstream = await upstreamOn(t, root, trace2, port)
  await gitOk(home, ['-C', work, 'push', '-q', 'origin', 'main'])
  const pushed = await head(home, work)
  const after = path.join(dir, 'after')
  await gitOk(home, ['clone', '-q', url, after])
  t.equal(await head(home, after), pushed, 'the next clone has the pushed commit')
  t.equal(proxy.proxy.upstreamUrl, upstream.url)
})

void t.test('outage mode off: the same clones fail with a clear error in under 5 s', async (t) => {
  const dir = t.testdir()
  const home = gitHome(dir)
  const root = path.join(dir, 'upstream')
  const upstream = await upstreamOn(t, root, path.join(dir, 'trace2'))
  await createBareRepo(home, root, 'app.git', { commits: 2 })
  const proxy = await startTestProxy(t, dir, upstream.url, { 'upstream.connect-timeout': '2' })
  const url = `${proxy.url}/app.git`
  await gitOk(home, ['clone', '-q', url, path.join(dir, 'warm')])
  await upstream.close()
  for (const [name, args] of [
    ['v2', []],
    ['v0', ['-c', 'protocol.version=0']],
  ] as const) {
    const started = performance.now()
    const r = await git(home, [...args, 'clone', '-q', url, path.join(dir, `off-${name}`)])
    const seconds = (performance.now() - started) / 1000
    t.not(r.code, 0, `${name}: the clone fails`)
    t.ok(seconds < 5, `${name}: in ${seconds.toFixed(1)} s`)
    t.match(r.stderr, /unreachable/, `${name}: a clear error: ${r.stderr.trim()}`)
  }
})
