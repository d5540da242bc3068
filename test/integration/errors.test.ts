/** Authentication pass-through, upstream failures and bad input, with the real git client. */
import http from 'node:http'
import path from 'node:path'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { git, gitHome, gitOk } from '../helpers/git.js'
import { gitRequestLines } from '../helpers/log-sink.js'
import { freePort } from '../helpers/proxy-process.js'
import { startTestProxy } from '../helpers/proxy.js'
import { createBareRepo } from '../helpers/repo.js'
import { startTestUpstream } from '../helpers/upstream.js'

const SECRET = { username: 'alice', password: 's3cret-pw' }

void t.test('private repository behind upstream Basic auth', async (t) => {
  const dir = t.testdir()
  const home = gitHome(dir)
  const upstream = await startTestUpstream(t, dir, {
    basicAuth: (repo) => (repo === 'private.git' ? SECRET : null),
  })
  await createBareRepo(home, upstream.root, 'private.git')
  const proxy = await startTestProxy(t, dir, upstream.url)
  const host = new URL(proxy.url).host

  const anon = await git(home, ['clone', `http://${host}/private.git`, path.join(dir, 'anon')])
  t.not(anon.code, 0, 'anonymous clone fails')
  t.match(anon.stderr, /could not read Username|Authentication failed/)

  const wrong = await git(home, ['clone', `http://alice:wrong@${host}/private.git`, path.join(dir, 'wrong')])
  t.not(wrong.code, 0, 'wrong password fails')
  t.match(wrong.stderr, /Authentication failed/)

  const ok = await git(home, ['clone', `http://alice:${SECRET.password}@${host}/private.git`, path.join(dir, 'ok')])
  t.equal(ok.code, 0, ok.stderr)
  await gitOk(home, ['-C', path.join(dir, 'ok'), 'fsck'])

  const text = JSON.stringify(proxy.logs)
  t.notMatch(text, SECRET.password, 'the password never reaches the log')
  t.notMatch(text, Buffer.from(`alice:${SECRET.password}`).toString('base64'), 'nor the Authorization header')
})

void t.test('upstream down: git prints a clear error, the proxy keeps serving', async (t) => {
  const dir = t.testdir()
  const home = gitHome(dir)
  // A port that was free a moment ago: nothing listens there.
  const port = await freePort()
  const proxy = await startTestProxy(t, dir, `http://127.0.0.1:${port}`)
  const r = await git(home, ['clone', `${proxy.url}/app.git`, path.join(dir, 'x')])
  t.not(r.code, 0)
  t.match(r.stderr, /502/)
  const again = await fetch(`${proxy.url}/healthz`)
  t.equal(again.status, 200, 'still serving')
  const line = gitRequestLines(proxy.logs)[0]
  t.equal(line?.['status'], 502)
})

void t.test('upstream dies mid-response: the client sees a cut, never a whole-looking answer', async (t) => {
  const dir = t.testdir()
  const home = gitHome(dir)
  // An upstream that sends headers and half an advertisement, then resets.
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'application/x-git-upload-pack-advertisement' })
    const v2 = String(req.headers['git-protocol'] ?? '').includes('version=2')
    res.write(v2 ? '000eversion 2\n0015agent=git/2.39.5\n' : '001e# service=git-upload-pack\n0000')
    setTimeout(() => res.socket?.destroy(), 50)
  })
  server.listen(0, '127.0.0.1')
  await new Promise((resolve) => server.once('listening', resolve))
  t.teardown(() => new Promise<void>((resolve) => server.close(() => { resolve() })))
  const port = (server.address() as AddressInfo).port
  const proxy = await startTestProxy(t, dir, `http://127.0.0.1:${port}`)
  // v2: the proxy reads the small capability advertisement whole, so it
  // notices before answering and says so with an HTTP error.
  const v2 = await git(home, ['-c', 'protocol.version=2', 'ls-remote', `${proxy.url}/app.git`])
  t.not(v2.code, 0)
  t.match(v2.stderr, /upstream closed the connection in the middle of its answer/)
  // v0: the advertisement streams through; the client sees the cut.
  const v0 = await git(home, ['-c', 'protocol.version=0', 'ls-remote', `${proxy.url}/app.git`])
  t.not(v0.code, 0)
  t.match(v0.stderr, /transfer closed|early EOF|RPC failed|unexpected disconnect|expected flush|outstanding read data/i)
  t.equal((await fetch(`${proxy.url}/healthz`)).status, 200)
})

void t.test('bad repository paths get 400 and never reach the upstream', async (t) => {
  const dir = t.testdir()
  const upstream = await startTestUpstream(t, dir)
  const proxy = await startTestProxy(t, dir, upstream.url)
  const paths = [
    '/a/../b.git/info/refs?service=git-upload-pack',
    '/a/%2e%2e/b.git/info/refs?service=git-upload-pack',
    '/a/%2E%2E%2Fb.git/info/refs?service=git-upload-pack',
    '/a%00b.git/info/refs?service=git-upload-pack',
    '/a/%252e%252e/b.git/info/refs?service=git-upload-pack',
    '/a//b.git/info/refs?service=git-upload-pack',
    `/${'x'.repeat(2000)}.git/info/refs?service=git-upload-pack`,
    '/a/%zz.git/info/refs?service=git-upload-pack',
    '/app.git/info/refs?service=git-evil',
  ]
  for (const p of paths) {
    const status = await rawGet(proxy.url, p)
    t.equal(status, 400, p.slice(0, 80))
  }
  t.equal(await rawGet(proxy.url, '/not-git-at-all'), 404)
  const restBad = await fetch(`${proxy.url}/rest/scm-cache/latest/caches/a/%ZZ`)
  t.equal(restBad.status, 400, 'a malformed REST URL: 400')
  t.match(await restBad.json(), { errors: [{ message: /./ }] }, 'in the REST error shape')
  t.equal(upstream.requests.length, 0, 'nothing reached the upstream')
})

/** GET with the path sent exactly as written (fetch() would normalise `..`). */
function rawGet(base: string, p: string): Promise<number> {
  const { hostname, port } = new URL(base)
  return new Promise((resolve, reject) => {
    const req = http.request({ host: hostname, port, path: p, method: 'GET' }, (res) => {
      res.resume()
      resolve(res.statusCode ?? 0)
    })
    req.on('error', reject)
    req.end()
  })
}
