/**
 * Issue 16: outage mode (DESIGN §3.10). With `scm-cache.outage.enabled`,
 * an unreachable upstream does not stop clones whose answers the cache
 * holds, for credentials accepted within auth.outage-ttl; everything else
 * gets an error naming the outage. Real git clients, a real upstream
 * stopped and started again on the same port.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net'
import path from 'node:path'
import type { Test } from 'tap'
import t from 'tap'
import { startEmbeddedUpstream, type EmbeddedUpstream } from '../../src/upstream/embedded.js'
import { git, gitHome, gitOk } from '../helpers/git.js'
import { gitRequestLines } from '../helpers/log-sink.js'
import { startTestProxy } from '../helpers/proxy.js'
import { addCommitDirect, createBareRepo } from '../helpers/repo.js'
import { gitSshCommand, sshKeygen, startTestSshd } from '../helpers/sshd.js'
import { startTestUpstream } from '../helpers/upstream.js'
import { until } from '../helpers/wait.js'

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

  // A credential in the URL (or a helper's) is sent only after a 401: an anonymous first request is challenged, not refused.
  const inUrl = new URL(privateUrl)
  inUrl.username = CREDENTIALS.username
  inUrl.password = CREDENTIALS.password
  const viaUrl = await git(home, ['clone', '-q', inUrl.toString(), path.join(dir, 'outage-private-url')])
  t.equal(viaUrl.code, 0, `the accepted credential in the URL clones too (after the proxy's 401) ${viaUrl.stderr}`)
  inUrl.password = 'wrong'
  const wrongUrl = await git(home, ['clone', '-q', inUrl.toString(), path.join(dir, 'refused-url')])
  t.not(wrongUrl.code, 0, 'a wrong password in the URL is refused')
  t.match(wrongUrl.stderr, /503|unreachable/, `with the outage named: ${wrongUrl.stderr.trim()}`)

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

/** A TCP relay to `target` that can be cut (every connection destroyed, the port closed) and reopened on the same port. */
async function relay(t: Test, target: number): Promise<{ port: number; stop(): Promise<void>; start(): Promise<void> }> {
  const sockets = new Set<Socket>()
  let server: Server | null = null
  let port = 0
  const start = async (): Promise<void> => {
    const s = createServer((client) => {
      const up = connect(target, '127.0.0.1')
      for (const sock of [client, up]) {
        sockets.add(sock)
        sock.on('error', () => undefined)
        sock.on('close', () => sockets.delete(sock))
      }
      client.pipe(up).pipe(client)
    })
    await new Promise<void>((resolve) => s.listen(port, '127.0.0.1', resolve))
    port = (s.address() as AddressInfo).port // listening on TCP: an AddressInfo
    server = s
  }
  const stop = async (): Promise<void> => {
    for (const sock of sockets) sock.destroy()
    const s = server
    server = null
    if (s !== null) await new Promise((resolve) => s.close(resolve))
  }
  await start()
  t.teardown(stop)
  return {
    get port() {
      return port
    },
    stop,
    start,
  }
}

void t.test('outage mode over SSH: v2 and v0 clones from the cache while the SSH upstream is cut, normal again once it is back', async (t) => {
  const dir = t.testdir()
  const home = gitHome(dir)
  const upstream = await startTestUpstream(t, dir)
  const sshd = await startTestSshd(t, dir, { root: upstream.root, trace2Dir: path.join(dir, 'trace2') })
  const cut = await relay(t, sshd.port)
  const knownHosts = path.join(dir, 'relay_known_hosts')
  writeFileSync(knownHosts, readFileSync(sshd.knownHosts, 'utf8').replace(`[127.0.0.1]:${sshd.port}`, `[127.0.0.1]:${cut.port}`))
  const clientKey = path.join(dir, 'keys', 'client')
  const authorizedKeys = path.join(dir, 'keys', 'authorized_keys')
  writeFileSync(authorizedKeys, `${await sshKeygen(clientKey)}\n`)
  const sshUrl = new URL(sshd.url)
  sshUrl.port = String(cut.port)
  const proxy = await startTestProxy(t, dir, upstream.url, {
    'upstream.ssh.url': sshUrl.href,
    'upstream.ssh.key': sshd.proxyKey,
    'upstream.ssh.known-hosts': knownHosts,
    'proxy.ssh.host': '127.0.0.1',
    'proxy.ssh.port': '0',
    'proxy.ssh.authorized-keys': authorizedKeys,
    'scm-cache.outage.enabled': 'true',
    'upstream.connect-timeout': '2',
  })
  const bare = await createBareRepo(home, upstream.root, 'app.git', { commits: 4 })
  const want = (await gitOk(home, ['-C', bare, 'rev-parse', 'main'])).trim()
  const front = new URL(proxy.proxy.sshUrl ?? 'ssh://missing')
  const url = `ssh://git@127.0.0.1:${front.port}/app.git`
  const ssh = { env: { GIT_SSH_COMMAND: gitSshCommand(clientKey) } }
  const versions = [
    ['v2', []],
    ['v0', ['-c', 'protocol.version=0']],
  ] as const
  for (const [name, args] of versions) await gitOk(home, [...args, 'clone', '-q', url, path.join(dir, `warm-${name}`)], ssh)
  await proxy.settled()
  await proxy.proxy.store.idle()

  await cut.stop()
  for (const [name, args] of versions) {
    const target = path.join(dir, `outage-${name}`)
    const started = performance.now()
    const r = await git(home, [...args, 'clone', '--progress', url, target], ssh)
    t.equal(r.code, 0, `${name} clone over SSH during the outage succeeds ${r.stderr}`)
    t.ok(performance.now() - started < 5000, `${name}: quickly`)
    await gitOk(home, ['-C', target, 'fsck', '--strict'])
    t.equal((await gitOk(home, ['-C', target, 'rev-parse', 'HEAD'])).trim(), want, `${name}: the cached commit`)
    t.match(r.stderr, /answered from the cache during an upstream outage/, `${name}: the progress line says so`)
  }
  const uncached = await git(home, ['clone', '-q', `ssh://git@127.0.0.1:${front.port}/other.git`, path.join(dir, 'other')], ssh)
  t.not(uncached.code, 0, 'a repository the cache does not hold fails')
  t.match(uncached.stderr, /unreachable/, `naming the outage: ${uncached.stderr.trim()}`)
  await proxy.settled()
  t.ok(proxy.logs.some((l) => l.msg === 'git request' && l['proto'] === 'ssh' && l['cache'] === 'stale'), 'log lines say cache: "stale"')

  await cut.start()
  await addCommitDirect(home, bare, 'main', 'after.txt', 1)
  await proxy.proxy.store.clear()
  const after = path.join(dir, 'after')
  await until(async () => (await git(home, ['clone', '-q', url, after], ssh)).code === 0, 'a clone once the upstream is back')
  t.equal((await gitOk(home, ['-C', after, 'rev-parse', 'HEAD'])).trim(), (await gitOk(home, ['-C', bare, 'rev-parse', 'main'])).trim(), 'the new commit')
})

void t.test('the upstream killed mid-burst and brought back: every clone succeeds or fails naming the cause', async (t) => {
  const dir = t.testdir()
  const home = gitHome(dir)
  const root = path.join(dir, 'upstream')
  const trace2 = path.join(dir, 'trace2')
  const upstream = await upstreamOn(t, root, trace2)
  const port = Number(new URL(upstream.url).port)
  const bare = await createBareRepo(home, root, 'app.git', { commits: 6, fileSize: 20_000 })
  const want = (await gitOk(home, ['-C', bare, 'rev-parse', 'main'])).trim()
  const proxy = await startTestProxy(t, dir, upstream.url, { 'scm-cache.outage.enabled': 'true', 'upstream.connect-timeout': '2' })
  const url = `${proxy.url}/app.git`
  // Advertisements are kept per protocol version: warm both.
  await gitOk(home, ['clone', '-q', url, path.join(dir, 'warm')])
  await gitOk(home, ['-c', 'protocol.version=0', 'clone', '-q', url, path.join(dir, 'warm-v0')])
  await proxy.proxy.store.idle()

  const burst = Array.from({ length: 8 }, (_, i) => git(home, [...(i % 2 === 0 ? [] : ['-c', 'protocol.version=0']), 'clone', '-q', url, path.join(dir, `b${i}`)]))
  await upstream.close()
  const results = await Promise.all(burst)
  let ok = 0
  for (const [i, r] of results.entries()) {
    if (r.code === 0) {
      ok++
      await gitOk(home, ['-C', path.join(dir, `b${i}`), 'fsck', '--strict'])
      t.equal((await gitOk(home, ['-C', path.join(dir, `b${i}`), 'rev-parse', 'HEAD'])).trim(), want)
    } else {
      t.match(r.stderr, /unreachable|early EOF|RPC failed|unexpected disconnect/, `clone ${i} names the cause: ${r.stderr.trim()}`)
    }
  }
  t.comment(`${ok} of 8 clones succeeded across the upstream's death`)
  t.equal(ok, 8, 'every clone (all cached) goes on')

  await upstreamOn(t, root, trace2, port)
  const after = path.join(dir, 'after')
  await addCommitDirect(home, bare, 'main', 'back.txt', 2)
  await proxy.proxy.store.clear()
  const tip = (await gitOk(home, ['-C', bare, 'rev-parse', 'main'])).trim()
  // Within the few seconds the outage is remembered, a clone may still get the last good advertisement (the old tip): poll for the new one.
  await until(async () => {
    rmSync(after, { recursive: true, force: true })
    if ((await git(home, ['clone', '-q', url, after])).code !== 0) return false
    return (await gitOk(home, ['-C', after, 'rev-parse', 'HEAD'])).trim() === tip
  }, 'a clone of the new tip once the upstream is back', 15_000)
  t.pass('a clone once the upstream is back has the commit pushed meanwhile')
})

void t.test('outage mode with refs caching on: the last good copies are kept by the ref fills too', async (t) => {
  const dir = t.testdir()
  const home = gitHome(dir)
  const root = path.join(dir, 'upstream')
  const upstream = await upstreamOn(t, root, path.join(dir, 'trace2'))
  const bare = await createBareRepo(home, root, 'app.git', { commits: 3 })
  const want = (await gitOk(home, ['-C', bare, 'rev-parse', 'main'])).trim()
  const proxy = await startTestProxy(t, dir, upstream.url, {
    'scm-cache.outage.enabled': 'true',
    'scm-cache.refs.enabled': 'true',
    'scm-cache.refs.ttl': '1',
    'upstream.connect-timeout': '2',
  })
  const url = `${proxy.url}/app.git`
  for (const n of [1, 2]) await gitOk(home, ['clone', '-q', url, path.join(dir, `warm-${n}`)]) // the second from the ref cache
  await proxy.proxy.store.idle()
  await proxy.proxy.store.invalidateRepo('app.git', 'refs') // the ref entries are gone: only the last good copies remain
  await upstream.close()
  const target = path.join(dir, 'outage')
  const r = await git(home, ['clone', '-q', url, target])
  t.equal(r.code, 0, r.stderr)
  await gitOk(home, ['-C', target, 'fsck', '--strict'])
  t.equal((await gitOk(home, ['-C', target, 'rev-parse', 'HEAD'])).trim(), want)
  await proxy.settled()
  const during = gitRequestLines(proxy.logs).slice(-3)
  t.same(during.map((l) => [l['cmd'], l['cache']]), [['advertisement', 'stale'], ['ls-refs', 'stale'], ['fetch', 'stale']], 'each step from the kept copies and the pack cache')
})
