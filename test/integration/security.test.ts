/**
 * Issue 14: every way found to get a private repository from the cache, or
 * to make the proxy hold memory, without credentials. Real git and raw
 * requests through the proxy, against the real upstream (git http-backend)
 * behind small loopback gates that authenticate the way real front ends do.
 */
import path from 'node:path'
import { gzipSync } from 'node:zlib'
import t from 'tap'
import type { Test } from 'tap'
import { encodeDelim, encodeFlush, encodePacket } from '../../src/protocol/pkt-line.js'
import { repoOf, SIGN_IN_PAGE, startAuthGate, type GateDecision, type GateRequest } from '../helpers/auth-gate.js'
import { manualClock } from '../helpers/clock.js'
import { git, gitHome, gitOk } from '../helpers/git.js'
import { gitRequestLines } from '../helpers/log-sink.js'
import { startTestProxy, type TestProxy } from '../helpers/proxy.js'
import { createBareRepo } from '../helpers/repo.js'
import { startTestUpstream } from '../helpers/upstream.js'

const basic = (user: string, pass: string): string => `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`

/** A v2 clone's fetch request, as git 2.39 sends it. */
function fetchBody(oid: string): Buffer {
  return Buffer.concat([
    encodePacket('command=fetch\n'),
    encodePacket('agent=git/2.39.5\n'),
    encodePacket('object-format=sha1\n'),
    encodeDelim(),
    encodePacket('thin-pack\n'),
    encodePacket('no-progress\n'),
    encodePacket('ofs-delta\n'),
    encodePacket(`want ${oid}\n`),
    encodePacket('done\n'),
    encodeFlush(),
  ])
}

/** The cached v2 fetch POSTed as a hostile client would: no advertisement first. */
async function postFetch(proxy: TestProxy, repo: string, oid: string, headers: Record<string, string> = {}, query = ''): Promise<{ status: number; body: Buffer; headers: Headers }> {
  const res = await fetch(`${proxy.url}/${repo}/git-upload-pack${query}`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-git-upload-pack-request',
      accept: 'application/x-git-upload-pack-result',
      'git-protocol': 'version=2',
      ...headers,
    },
    body: fetchBody(oid),
  })
  return { status: res.status, body: Buffer.from(await res.arrayBuffer()), headers: res.headers }
}

const hasPack = (body: Buffer): boolean => body.includes('PACK')

interface Bed {
  dir: string
  home: string
  oid: string
  proxy: TestProxy
  /** Requests the gate let through to the upstream, of private.git, POSTs only. */
  upstreamPosts(): number
}

/** The upstream behind a gate deciding by `rule`, with `private.git` and `public.git`; the proxy in front. */
async function bed(t: Test, rule: (req: GateRequest) => GateDecision, settings: Record<string, string> = {}): Promise<Bed> {
  const dir = t.testdir()
  const home = gitHome(dir)
  const upstream = await startTestUpstream(t, dir)
  const bare = await createBareRepo(home, upstream.root, 'private.git', { commits: 3 })
  await createBareRepo(home, upstream.root, 'public.git', { commits: 2 })
  const oid = (await gitOk(home, ['-C', bare, 'rev-parse', 'main'])).trim()
  const gate = await startAuthGate(t, upstream.url, (req) => (repoOf(req.url) === 'private.git' ? rule(req) : { kind: 'pass' }))
  const proxy = await startTestProxy(t, dir, gate.url, settings)
  return {
    dir,
    home,
    oid,
    proxy,
    upstreamPosts: () => gate.seen.filter((s) => s.method === 'POST' && repoOf(s.url) === 'private.git' && s.decision === 'pass').length,
  }
}

void t.test('credentials outside Authorization: cookie, query parameter, custom header', async (t) => {
  const carriers: { name: string; rule: (req: GateRequest) => boolean; good: { headers: Record<string, string>; query: string }; bad: { headers: Record<string, string>; query: string }; gitArgs: string[] | null }[] = [
    {
      name: 'a session cookie (an SSO front end)',
      rule: (req) => (req.headers.cookie ?? '').includes('session=good'),
      good: { headers: { cookie: 'session=good' }, query: '' },
      bad: { headers: { cookie: 'session=stolen' }, query: '' },
      gitArgs: ['-c', 'http.extraHeader=Cookie: session=good'],
    },
    {
      name: 'a custom token header',
      rule: (req) => req.headers['private-token'] === 'good',
      good: { headers: { 'private-token': 'good' }, query: '' },
      bad: { headers: { 'private-token': 'nope' }, query: '' },
      gitArgs: ['-c', 'http.extraHeader=Private-Token: good'],
    },
    {
      name: 'a query parameter',
      rule: (req) => new URL(req.url, 'http://x').searchParams.get('token') === 'good',
      good: { headers: {}, query: '?token=good' },
      bad: { headers: {}, query: '?token=nope' },
      gitArgs: null,
    },
  ]
  for (const c of carriers) {
    await t.test(c.name, async (t) => {
      const b = await bed(t, (req) => (c.rule(req) ? { kind: 'pass' } : { kind: 'refuse', status: 401 }))
      const url = `${b.proxy.url}/private.git`
      if (c.gitArgs !== null) {
        // The authorized client warms the cache with real git.
        await gitOk(b.home, [...c.gitArgs, '-c', 'protocol.version=2', 'clone', '-q', url, path.join(b.dir, 'warm')])
        await gitOk(b.home, ['-C', path.join(b.dir, 'warm'), 'fsck', '--strict'])
      }
      const warm = await postFetch(b.proxy, 'private.git', b.oid, c.good.headers, c.good.query)
      t.equal(warm.status, 200, 'the credential the upstream accepts gets the pack')
      t.ok(hasPack(warm.body))
      t.equal(gitRequestLines(b.proxy.logs).filter((l) => l['cache'] === 'hit' || l['cache'] === 'miss').length > 0, true, 'answered by the cache')

      const anon = await postFetch(b.proxy, 'private.git', b.oid)
      t.equal(anon.status, 401, 'no credential at all: the upstream\'s 401')
      t.notOk(hasPack(anon.body), 'and never the pack')
      t.match(anon.headers.get('www-authenticate') ?? '', /Basic realm="Gate"/, 'with its WWW-Authenticate')
      const wrong = await postFetch(b.proxy, 'private.git', b.oid, c.bad.headers, c.bad.query)
      t.equal(wrong.status, 401, 'another value of the same carrier: 401')
      t.notOk(hasPack(wrong.body))
      if (c.gitArgs !== null) {
        const r = await git(b.home, ['-c', 'protocol.version=2', 'clone', '-q', url, path.join(b.dir, 'anon')])
        t.not(r.code, 0, 'an anonymous git clone fails')
      }
    })
  }
})

void t.test('a 200 HTML sign-in page proves nothing', async (t) => {
  const alice = basic('alice', 'pw')
  for (const refs of ['false', 'true']) {
    await t.test(`refs caching ${refs === 'true' ? 'on' : 'off'}`, async (t) => {
      const b = await bed(
        t,
        (req) => {
          if (req.headers.authorization === alice) return { kind: 'pass' }
          // The SSO front: a sign-in page for browsers' GETs, 401 for POSTs.
          return req.method === 'GET' ? { kind: 'sign-in-page' } : { kind: 'refuse', status: 401 }
        },
        { 'scm-cache.refs.enabled': refs },
      )
      const warm = await postFetch(b.proxy, 'private.git', b.oid, { authorization: alice })
      t.equal(warm.status, 200)
      t.ok(hasPack(warm.body), 'alice fills the cache')
      const page = await fetch(`${b.proxy.url}/private.git/info/refs?service=git-upload-pack`, { headers: { 'git-protocol': 'version=2' } })
      t.equal(page.status, 200)
      t.equal(await page.text(), SIGN_IN_PAGE, 'the anonymous GET gets the sign-in page, relayed as it is')
      const anon = await postFetch(b.proxy, 'private.git', b.oid)
      t.equal(anon.status, 401, 'the anonymous POST is not accepted on the strength of that page')
      t.notOk(hasPack(anon.body), 'no pack')
      const again = await fetch(`${b.proxy.url}/private.git/info/refs?service=git-upload-pack`, { headers: { 'git-protocol': 'version=2' } })
      t.equal(await again.text(), SIGN_IN_PAGE, 'nor does the page open the ref cache')
    })
  }
})

void t.test('Git-Protocol is read as git reads it; an answer is stored only under the version spoken', async (t) => {
  let stripProtocol = false
  const b = await bed(t, () => ({ kind: 'pass', ...(stripProtocol ? { dropHeaders: ['git-protocol'] } : {}) }), { 'scm-cache.refs.enabled': 'true', 'scm-cache.refs.ttl': '600' })
  const adv = async (gitProtocol: string | null): Promise<string> => {
    const res = await fetch(`${b.proxy.url}/private.git/info/refs?service=git-upload-pack`, {
      headers: gitProtocol === null ? {} : { 'git-protocol': gitProtocol },
    })
    return res.text()
  }
  t.match(await adv('x: version=2'), /^001e# service=git-upload-pack\n0000/, '"x: version=2" is v0, as git http-backend reads it')
  t.match(await adv('version= 2'), /^001e# service=git-upload-pack/, 'so is "version= 2"')
  t.match(await adv('version=2'), /^000eversion 2\n/, 'a real v2 request still gets v2')
  t.match(await adv('version=3:version=1'), /^001e# service=git-upload-pack\n0000000eversion 1\n/, 'the highest known version wins')
  const out = await gitOk(b.home, ['-c', 'protocol.version=2', 'ls-remote', `${b.proxy.url}/private.git`])
  t.match(out, /refs\/heads\/main/, 'git v2 ls-remote works after all that')

  // An upstream that ignores Git-Protocol answers v0 to a v2 request: relayed, not stored under v2.
  await b.proxy.proxy.store.clear()
  stripProtocol = true
  t.match(await adv('version=2'), /^001e# service=git-upload-pack/, 'the v0 answer is relayed')
  stripProtocol = false
  t.match(await adv('version=2'), /^000eversion 2\n/, 'the next v2 client gets v2: the v0 answer was not stored under the v2 key')
})

void t.test('nothing is read or decompressed before the credential is accepted', async (t) => {
  const b = await bed(t, (req) => (req.headers.authorization === basic('bob', 'pw') ? { kind: 'pass' } : { kind: 'refuse', status: 401 }))
  // A body that never ends: the proxy must answer without waiting for it.
  let sent = 0
  const endless = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent >= 64 * 1024) return new Promise(() => undefined) // then it stalls, forever
      sent += 16 * 1024
      controller.enqueue(new Uint8Array(16 * 1024))
      return undefined
    },
  })
  const ac = new AbortController()
  const res = await fetch(`${b.proxy.url}/private.git/git-upload-pack`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-git-upload-pack-request', 'content-encoding': 'gzip', 'git-protocol': 'version=2' },
    body: endless,
    duplex: 'half',
    signal: ac.signal,
  })
  t.equal(res.status, 401, 'refused while its body is still being sent')
  t.equal(res.headers.get('connection'), 'close', 'and the connection is closed rather than read')
  ac.abort()
  t.equal(b.upstreamPosts(), 0, 'only the access check reached the upstream')

  // 16 gzip bombs at once, anonymous, to the private repository: none is decoded.
  const bomb = gzipSync(Buffer.alloc(32 * 1024 * 1024, 0x30))
  const before = process.memoryUsage().rss
  const statuses = await Promise.all(
    Array.from({ length: 16 }, async () => {
      const r = await fetch(`${b.proxy.url}/private.git/git-upload-pack`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-git-upload-pack-request', 'content-encoding': 'gzip', 'git-protocol': 'version=2' },
        body: bomb,
      })
      await r.arrayBuffer()
      return r.status
    }),
  )
  t.same(new Set(statuses), new Set([401]), 'every bomb refused')
  t.ok(process.memoryUsage().rss - before < 64 * 1024 * 1024, 'and the process did not grow by their expanded size')
})

void t.test('a 401 during a fill reaches git with its WWW-Authenticate', async (t) => {
  const dir = t.testdir()
  const home = gitHome(dir)
  const secret = { username: 'alice', password: 'first' }
  const upstream = await startTestUpstream(t, dir, { basicAuth: (repo) => (repo === 'private.git' ? secret : null) })
  const bare = await createBareRepo(home, upstream.root, 'private.git', { commits: 3, branches: ['other'] })
  const [main, other] = (await gitOk(home, ['-C', bare, 'rev-parse', 'main', 'other'])).trim().split('\n')
  const proxy = await startTestProxy(t, dir, upstream.url, {}, { now: manualClock().now })
  const first = await postFetch(proxy, 'private.git', main ?? '', { authorization: basic('alice', 'first') })
  t.equal(first.status, 200, 'accepted (and remembered for auth.ttl)')
  secret.password = 'rotated'
  const refused = await postFetch(proxy, 'private.git', other ?? '', { authorization: basic('alice', 'first') })
  t.equal(refused.status, 401, 'an uncached request with the old password: the fill is refused')
  t.match(refused.headers.get('www-authenticate') ?? '', /^Basic realm="Git Access"/, 'the upstream\'s WWW-Authenticate reaches the client')
  t.match(refused.body.toString(), /authentication required/, 'and its body')
  const again = await postFetch(proxy, 'private.git', main ?? '', { authorization: basic('alice', 'first') })
  t.equal(again.status, 401, 'and the old password is no longer accepted, even for what is cached')
})

void t.test('a repeated service parameter is refused', async (t) => {
  const dir = t.testdir()
  const home = gitHome(dir)
  const upstream = await startTestUpstream(t, dir)
  await createBareRepo(home, upstream.root, 'app.git')
  const proxy = await startTestProxy(t, dir, upstream.url)
  const before = upstream.requests.length
  const res = await fetch(`${proxy.url}/app.git/info/refs?service=git-upload-pack&service=git-receive-pack`)
  t.equal(res.status, 400)
  t.match(await res.text(), /service parameter is given more than once/)
  t.equal(upstream.requests.length, before, 'nothing reached the upstream')
})

void t.test('per-repository figures only for repositories an accepted credential asked for', async (t) => {
  const b = await bed(t, (req) => (req.headers.authorization === basic('bob', 'pw') ? { kind: 'pass' } : { kind: 'refuse', status: 401 }))
  for (let i = 0; i < 20; i++) {
    await postFetch(b.proxy, `made-up-${i}.git`, b.oid)
    await postFetch(b.proxy, 'private.git', b.oid)
    await fetch(`${b.proxy.url}/other-${i}/x.git/info/refs?service=git-upload-pack`).then((r) => r.arrayBuffer())
  }
  const known = [...b.proxy.proxy.store.stats().repos.keys()]
  t.same(known, [], `no rows for what anonymous clients named (${known.join(', ')})`)
  await postFetch(b.proxy, 'private.git', b.oid, { authorization: basic('bob', 'pw') })
  t.same([...b.proxy.proxy.store.stats().repos.keys()], ['private.git'], 'a row once an accepted credential asked')
})
