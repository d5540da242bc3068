/**
 * What the HTTP front does with what a balancer or a moved upstream tells
 * it: redirects from the upstream are rewritten to the proxy (git never
 * leaves it), X-Forwarded-For/-Proto from a trusted balancer go into the log
 * line and from anyone else are ignored, and none of it ever reaches the
 * REST API's loopback rule.
 */
import path from 'node:path'
import t from 'tap'
import { startForwarder } from '../helpers/forwarder.js'
import { git, gitHome, gitOk } from '../helpers/git.js'
import { gitRequestLines } from '../helpers/log-sink.js'
import { startTestProxy } from '../helpers/proxy.js'
import { createBareRepo } from '../helpers/repo.js'
import { startTestUpstream } from '../helpers/upstream.js'

void t.test('a redirect to the upstream itself is followed through the proxy', async (t) => {
  const dir = t.testdir()
  const home = gitHome(dir)
  const upstream = await startTestUpstream(t, dir)
  await createBareRepo(home, upstream.root, 'app.git')
  // The upstream moved /old/app.git to /app.git and says so with an absolute URL to itself.
  const moved = await startForwarder(t, upstream.url, {
    redirect: (p, origin) => (p.startsWith('/old/') ? `${origin}${p.slice('/old'.length)}` : null),
  })
  const { url, logs } = await startTestProxy(t, dir, moved.url)
  for (const version of ['0', '2']) {
    const target = path.join(dir, `clone-v${version}`)
    const r = await git(home, ['-c', `protocol.version=${version}`, 'clone', `${url}/old/app.git`, target])
    t.equal(r.code, 0, r.stderr)
    t.match(r.stderr, new RegExp(`redirecting to ${url.replace(/[.]/g, '\\.')}/app\\.git/`), `v${version}: git was sent to the proxy`)
    await gitOk(home, ['-C', target, 'fsck', '--strict'])
  }
  t.same(moved.redirected.map((p) => p.replace(/\?.*/, '')), ['/old/app.git/info/refs', '/old/app.git/info/refs'])
  const lines = gitRequestLines(logs)
  t.ok(lines.some((l) => l['repo'] === 'app.git' && l['cmd'] === 'upload-pack'), 'the pack came through the proxy')
  const res = await fetch(`${url}/old/app.git/info/refs?service=git-upload-pack`, { redirect: 'manual' })
  t.equal(res.status, 301)
  t.equal(res.headers.get('location'), '/app.git/info/refs?service=git-upload-pack', 'a path on the proxy')

  // A redirect elsewhere (a sign-in page) is relayed as it is.
  const away = await startForwarder(t, upstream.url, { redirect: (p) => (p.includes('private') ? 'https://sso.example.com/login' : null) })
  const other = await startTestProxy(t, path.join(dir, 'b'), away.url)
  const relayed = await fetch(`${other.url}/private.git/info/refs?service=git-upload-pack`, { redirect: 'manual' })
  t.equal(relayed.status, 301)
  t.equal(relayed.headers.get('location'), 'https://sso.example.com/login')
})

void t.test('X-Forwarded-For/-Proto are logged from trusted balancers only, and never open the REST API', async (t) => {
  const dir = t.testdir()
  const home = gitHome(dir)
  const upstream = await startTestUpstream(t, dir)
  await createBareRepo(home, upstream.root, 'app.git')
  const forwarded = { 'x-forwarded-for': '203.0.113.9', 'x-forwarded-proto': 'https' }
  const lastLine = (logs: Parameters<typeof gitRequestLines>[0]): Record<string, unknown> | undefined => gitRequestLines(logs).at(-1)

  const trusting = await startTestProxy(t, path.join(dir, 'a'), upstream.url, { 'proxy.http.trusted-proxies': '127.0.0.0/8' })
  await (await fetch(`${trusting.url}/app.git/info/refs?service=git-upload-pack`, { headers: forwarded })).arrayBuffer()
  t.match(lastLine(trusting.logs), { client: '203.0.113.9', clientProto: 'https' }, 'from a trusted balancer: the forwarded client')
  await (await fetch(`${trusting.url}/app.git/info/refs?service=git-upload-pack`)).arrayBuffer()
  t.match(lastLine(trusting.logs), { client: '127.0.0.1', clientProto: 'http' }, 'no headers: the socket peer')

  const plain = await startTestProxy(t, path.join(dir, 'b'), upstream.url)
  await (await fetch(`${plain.url}/app.git/info/refs?service=git-upload-pack`, { headers: forwarded })).arrayBuffer()
  t.match(lastLine(plain.logs), { client: '127.0.0.1', clientProto: 'http' }, 'from anyone else: ignored')

  // The REST API's loopback rule is the socket's: a trusted balancer saying
  // the client is elsewhere changes nothing (nor could a forged 127.0.0.1).
  for (const proxy of [trusting, plain]) {
    const res = await fetch(`${proxy.url}/rest/scm-cache/latest/config/protocols`, { headers: forwarded })
    t.equal(res.status, 200, 'REST still sees a loopback client')
  }
})
