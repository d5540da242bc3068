/**
 * The ref cache (issue 4), end to end: real git polling through the proxy,
 * the upstream's own request log counting what reached it.
 */
import { createHmac } from 'node:crypto'
import path from 'node:path'
import { gunzipSync } from 'node:zlib'
import { request } from 'undici'
import t from 'tap'
import { manualClock } from '../helpers/clock.js'
import { git, gitHome, gitOk, parseRefList } from '../helpers/git.js'
import { startTestProxy } from '../helpers/proxy.js'
import { addCommitDirect, commitFile, createBareRepo } from '../helpers/repo.js'
import { decodedBody, startTestUpstream, type TestUpstream } from '../helpers/upstream.js'

const advertisements = (u: TestUpstream): number =>
  u.requests.filter((r) => r.method === 'GET' && r.url.includes('/info/refs?service=git-upload-pack')).length
const lsRefs = (u: TestUpstream): number =>
  u.requests.filter((r) => r.method === 'POST' && decodedBody(r).includes('command=ls-refs')).length

async function inBatches<T>(n: number, width: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = []
  for (let i = 0; i < n; i += width) {
    out.push(...(await Promise.all(Array.from({ length: Math.min(width, n - i) }, (_, j) => fn(i + j)))))
  }
  return out
}

void t.test('polling with refs caching on: one upstream request per TTL', async (t) => {
  const dir = t.testdir()
  const home = gitHome(dir)
  const upstream = await startTestUpstream(t, dir)
  const bare = await createBareRepo(home, upstream.root, 'app.git', { commits: 3, branches: ['feature'], tags: ['v1'] })
  // The proxy's clock stands still unless the test moves it: every poll
  // below falls inside the TTL however slow the machine is.
  const ttl = 10
  const clock = manualClock()
  const proxy = await startTestProxy(t, dir, upstream.url, { 'scm-cache.refs.enabled': 'true', 'scm-cache.refs.ttl': String(ttl) }, { now: clock.now })
  const url = `${proxy.url}/app.git`
  const expected = parseRefList(await gitOk(home, ['-C', bare, 'for-each-ref', '--format=%(objectname) %(refname)']))

  for (const version of [2, 0]) {
    await t.test(`protocol v${version}: 50 ls-remote within the TTL, then one more after it`, async (t) => {
      const adsBefore = advertisements(upstream)
      const lsBefore = lsRefs(upstream)
      const outs = await inBatches(50, 10, () => gitOk(home, ['-c', `protocol.version=${version}`, 'ls-remote', url]))
      for (const out of outs) {
        const got = parseRefList(out)
        for (const [ref, oid] of expected) t.equal(got.get(ref), oid, ref)
      }
      t.equal(advertisements(upstream) - adsBefore, 1, 'one upstream advertisement for 50 polls')
      if (version === 2) t.equal(lsRefs(upstream) - lsBefore, 1, 'one upstream ls-refs for 50 polls')
      clock.advance(ttl * 1000)
      await gitOk(home, ['-c', `protocol.version=${version}`, 'ls-remote', url])
      t.equal(advertisements(upstream) - adsBefore, 2, 'one more after the TTL')
    })
  }

  await t.test('v0, v1, v2 clients get correct answers (prefixes, --heads, --tags, clone)', async (t) => {
    for (const version of [0, 1, 2]) {
      const pv = ['-c', `protocol.version=${version}`]
      const heads = parseRefList(await gitOk(home, [...pv, 'ls-remote', '--heads', url]))
      t.same([...heads.keys()].sort(), ['refs/heads/feature', 'refs/heads/main'], `v${version} --heads`)
      const tags = parseRefList(await gitOk(home, [...pv, 'ls-remote', '--tags', url]))
      t.equal(tags.get('refs/tags/v1'), expected.get('refs/tags/v1'), `v${version} --tags`)
      const target = path.join(dir, `clone-v${version}`)
      await gitOk(home, [...pv, 'clone', '-q', url, target])
      await gitOk(home, ['-C', target, 'fsck', '--strict'])
      const got = parseRefList(await gitOk(home, ['-C', target, 'for-each-ref', '--format=%(objectname) %(refname)']))
      t.equal(got.get('refs/remotes/origin/feature'), expected.get('refs/heads/feature'))
      t.equal(got.get('refs/tags/v1'), expected.get('refs/tags/v1'))
    }
  })

  await t.test('200 concurrent pollers on an expired entry: one upstream request', async (t) => {
    clock.advance(ttl * 1000)
    const before = advertisements(upstream)
    const statuses = await Promise.all(
      Array.from({ length: 200 }, async () => {
        const res = await fetch(`${url}/info/refs?service=git-upload-pack`, { headers: { 'git-protocol': 'version=2' } })
        await res.arrayBuffer()
        return res.status
      }),
    )
    t.ok(statuses.every((s) => s === 200))
    t.equal(advertisements(upstream) - before, 1)
  })
})

void t.test('a large cached advertisement goes gzip-compressed to clients that accept it', async (t) => {
  const dir = t.testdir()
  const home = gitHome(dir)
  const upstream = await startTestUpstream(t, dir)
  const bare = await createBareRepo(home, upstream.root, 'many.git', { commits: 3 })
  const commits = (await gitOk(home, ['-C', bare, 'rev-list', 'main'])).trim().split('\n')
  // 1,500 tags: an advertisement of ~90 KB, above the gzip threshold.
  const input = Array.from({ length: 1500 }, (_, i) => `create refs/tags/build-${String(i).padStart(5, '0')} ${commits[i % commits.length]!}\n`).join('')
  await gitOk(home, ['-C', bare, 'update-ref', '--stdin'], { input })
  const proxy = await startTestProxy(t, dir, upstream.url, { 'scm-cache.refs.enabled': 'true', 'scm-cache.refs.ttl': '600' })
  const url = `${proxy.url}/many.git`
  const expected = parseRefList(await gitOk(home, ['-C', bare, 'for-each-ref', '--format=%(objectname) %(refname)']))
  t.equal(expected.size, 1501)

  for (const version of [0, 2]) {
    await t.test(`protocol v${version}: git ls-remote`, async (t) => {
      // A miss, a hit from disk (the entry goes to memory), a hit from memory
      // (the gzip copy is made), then gzip: poll until it shows.
      let gzipped = false
      for (let i = 0; i < 8 && !gzipped; i++) {
        const r = await git(home, ['-c', `protocol.version=${version}`, 'ls-remote', url], {
          env: { GIT_TRACE_CURL: '1', GIT_TRACE_CURL_NO_DATA: '1' },
        })
        if (r.code !== 0) t.fail(`ls-remote failed: ${r.stderr.slice(-2000)}`)
        const got = parseRefList(r.stdout)
        got.delete('HEAD')
        t.equal(got.size, expected.size, `poll ${i}: every ref`)
        t.ok([...expected].every(([ref, oid]) => got.get(ref) === oid), `poll ${i}: refs equal to the upstream's`)
        gzipped = /<= Recv header: content-encoding: gzip/i.test(r.stderr)
      }
      t.ok(gzipped, 'a cached answer came gzip-compressed')
    })
  }

  await t.test('a client that does not accept gzip gets the advertisement as is', async (t) => {
    const res = await request(`${url}/info/refs?service=git-upload-pack`)
    const body = Buffer.from(await res.body.arrayBuffer())
    t.equal(res.statusCode, 200)
    t.equal(res.headers['content-encoding'], undefined)
    t.ok(body.toString('latin1').includes('refs/tags/build-01499'))
    const gz = await request(`${url}/info/refs?service=git-upload-pack`, { headers: { 'accept-encoding': 'deflate, gzip' } })
    const packed = Buffer.from(await gz.body.arrayBuffer())
    t.equal(gz.headers['content-encoding'], 'gzip')
    t.ok(packed.length < body.length / 2, `${packed.length} bytes instead of ${body.length}`)
    t.same(gunzipSync(packed), body, 'the same bytes once inflated')
  })
})

void t.test('with refs caching off every poll reaches the upstream', async (t) => {
  const dir = t.testdir()
  const home = gitHome(dir)
  const upstream = await startTestUpstream(t, dir)
  await createBareRepo(home, upstream.root, 'app.git')
  const proxy = await startTestProxy(t, dir, upstream.url)
  for (let i = 0; i < 5; i++) await gitOk(home, ['ls-remote', `${proxy.url}/app.git`])
  t.equal(advertisements(upstream), 5)
  t.equal(lsRefs(upstream), 5)
})

void t.test('invalidation: push through the proxy, a direct push, webhooks', async (t) => {
  const dir = t.testdir()
  const home = gitHome(dir)
  const upstream = await startTestUpstream(t, dir)
  const bare = await createBareRepo(home, upstream.root, 'team/app.git', { commits: 2 })
  const secret = 'hook-secret'
  const clock = manualClock()
  const proxy = await startTestProxy(
    t,
    dir,
    upstream.url,
    { 'scm-cache.refs.enabled': 'true', 'scm-cache.refs.ttl': '6', 'webhook.secret': secret },
    { now: clock.now },
  )
  const url = `${proxy.url}/team/app.git`
  const tip = async (): Promise<string | undefined> => parseRefList(await gitOk(home, ['ls-remote', url])).get('refs/heads/main')

  await t.test('a push through the proxy shows at once', async (t) => {
    const work = path.join(dir, 'work')
    await gitOk(home, ['clone', '-q', url, work])
    await tip()
    await commitFile(home, work, 'a.txt', 'a\n', 'via proxy', 20)
    await gitOk(home, ['-C', work, 'push', '-q', 'origin', 'main'])
    t.equal(await tip(), (await gitOk(home, ['-C', work, 'rev-parse', 'HEAD'])).trim())
  })

  await t.test('a direct push shows within the TTL', async (t) => {
    const old = await tip()
    const direct = await addCommitDirect(home, bare, 'main', 'direct.txt', 1)
    t.equal(await tip(), old, 'still the cached answer')
    clock.advance(5999)
    t.equal(await tip(), old, 'still the cached answer 1 ms before the TTL')
    clock.advance(1)
    t.equal(await tip(), direct, 'the new tip after the TTL')
  })

  const hook = (body: string, headers: Record<string, string>): Promise<Response> =>
    fetch(`${proxy.url}/rest/scm-cache/latest/webhook`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body })
  const sign = (body: string): string => createHmac('sha256', secret).update(body).digest('hex')

  const payloads: [string, (body: string) => Record<string, string>, object][] = [
    ['GitHub', (b) => ({ 'x-github-event': 'push', 'x-hub-signature-256': `sha256=${sign(b)}` }), { repository: { full_name: 'team/app', clone_url: `${upstream.url}/team/app.git` } }],
    ['Bitbucket Server', (b) => ({ 'x-event-key': 'repo:refs_changed', 'x-hub-signature': `sha256=${sign(b)}` }), { repository: { slug: 'app', project: { key: 'team' } } }],
    ['GitLab', () => ({ 'x-gitlab-event': 'Push Hook', 'x-gitlab-token': secret }), { project: { path_with_namespace: 'team/app', git_http_url: `${upstream.url}/team/app.git` } }],
    ['Gitea', (b) => ({ 'x-gitea-event': 'push', 'x-gitea-signature': sign(b) }), { repository: { full_name: 'team/app' } }],
  ]
  for (const [name, headers, payload] of payloads) {
    await t.test(`a signed ${name} webhook shows a direct push at once`, async (t) => {
      await tip()
      const direct = await addCommitDirect(home, bare, 'main', `${name}.txt`, name.length)
      const body = JSON.stringify(payload)
      const res = await hook(body, headers(body))
      t.equal(res.status, 204)
      t.equal(await tip(), direct)
    })
  }

  await t.test('unsigned or wrongly signed webhooks: 401, nothing dropped', async (t) => {
    await tip()
    const direct = await addCommitDirect(home, bare, 'main', 'unsigned.txt', 99)
    const body = JSON.stringify({ repository: { full_name: 'team/app' } })
    t.equal((await hook(body, {})).status, 401)
    t.equal((await hook(body, { 'x-hub-signature-256': 'sha256=deadbeef' })).status, 401)
    t.equal((await hook(body, { 'x-gitlab-token': 'wrong' })).status, 401)
    t.not(await tip(), direct, 'the cached answer stands')
    t.equal((await hook('{"nothing":1}', { 'x-gitlab-token': secret })).status, 400, 'no repository named: 400')
  })
})

void t.test('private repository: the cached advertisement only for accepted credentials', async (t) => {
  const dir = t.testdir()
  const home = gitHome(dir)
  const secret = { username: 'bob', password: 'pw-bob' }
  const upstream = await startTestUpstream(t, dir, { basicAuth: (repo) => (repo === 'private.git' ? secret : null) })
  await createBareRepo(home, upstream.root, 'private.git')
  const proxy = await startTestProxy(t, dir, upstream.url, { 'scm-cache.refs.enabled': 'true' })
  const host = new URL(proxy.url).host
  for (let i = 0; i < 3; i++) await gitOk(home, ['ls-remote', `http://bob:${secret.password}@${host}/private.git`])
  const anon = await fetch(`${proxy.url}/private.git/info/refs?service=git-upload-pack`, { headers: { 'git-protocol': 'version=2' } })
  t.equal(anon.status, 401)
  t.match(anon.headers.get('www-authenticate') ?? '', /Basic/)
  t.notMatch(await anon.text(), /ls-refs|refs\/heads/)
  const wrong = await git(home, ['ls-remote', `http://bob:nope@${host}/private.git`])
  t.not(wrong.code, 0)
  t.match(wrong.stderr, /Authentication failed/)
})
