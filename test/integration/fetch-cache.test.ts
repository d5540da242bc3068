/**
 * Incremental fetches from the cache (DESIGN §2, docs/protocol.md), end to
 * end: real git clients in kept workspaces, a real git http-backend
 * upstream, and the upstream's trace2 log counting its pack generations.
 * A burst of CI agents at the same previous commit costs one pack.
 */
import { cpSync } from 'node:fs'
import path from 'node:path'
import t, { type Test } from 'tap'
import { repoOf, startAuthGate } from '../helpers/auth-gate.js'
import { cacheFiles } from '../helpers/cache-files.js'
import { git, gitHome, gitOk } from '../helpers/git.js'
import { gitRequestLines } from '../helpers/log-sink.js'
import { startTestProxy, type TestProxy } from '../helpers/proxy.js'
import { addCommitDirect, createBareRepo } from '../helpers/repo.js'
import { decodedBody, startTestUpstream, type TestUpstream } from '../helpers/upstream.js'

const BURST = 16
const entryFiles = (cacheDir: string): string[] => cacheFiles(cacheDir, 'entries')

interface Bed {
  dir: string
  home: string
  bare: string
  upstream: TestUpstream
  proxy: TestProxy
  url: string
}

async function bed(t: Test, settings: Record<string, string> = {}): Promise<Bed> {
  const dir = t.testdir()
  const home = gitHome(dir)
  const upstream = await startTestUpstream(t, dir)
  const bare = await createBareRepo(home, upstream.root, 'app.git', { commits: 30, fileSize: 4_000, tags: ['v1'] })
  const proxy = await startTestProxy(t, dir, upstream.url, settings)
  return { dir, home, bare, upstream, proxy, url: `${proxy.url}/app.git` }
}

/** `n` identical workspaces: one clone through the proxy, copied (CI agents that all sit at the same commit). */
async function workspaces(b: Bed, name: string, n: number, cloneArgs: string[]): Promise<string[]> {
  const first = path.join(b.dir, `${name}-0`)
  await gitOk(b.home, ['clone', '-q', '--no-checkout', ...cloneArgs, b.url, first])
  const all = [first]
  for (let i = 1; i < n; i++) {
    const w = path.join(b.dir, `${name}-${i}`)
    cpSync(first, w, { recursive: true })
    all.push(w)
  }
  return all
}

const rev = async (b: Bed, w: string, ref: string): Promise<string> => (await gitOk(b.home, ['-C', w, 'rev-parse', ref])).trim()
const refs = (b: Bed, w: string): Promise<string> => gitOk(b.home, ['-C', w, 'for-each-ref', '--format=%(objectname) %(refname)', 'refs/remotes/', 'refs/tags/'])

/** The fetch POSTs (v2 `fetch`, v0 `upload-pack`) the proxy logged since `from`, by cache outcome. */
function outcomes(proxy: TestProxy, from: number): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const l of gitRequestLines(proxy.logs).slice(from)) {
    if (l['cmd'] !== 'fetch' && l['cmd'] !== 'upload-pack') continue
    const c = String(l['cache'])
    counts[c] = (counts[c] ?? 0) + 1
  }
  return counts
}

/**
 * The burst: every workspace runs `fetchArgs` at once through the proxy.
 * Checks one upstream pack generation, the new tip everywhere, fsck clean,
 * refs equal to the upstream's.
 */
async function burst(t: Test, b: Bed, ws: string[], version: 0 | 2, fetchArgs: string[], tip: string): Promise<void> {
  const packsBefore = await b.upstream.packObjects()
  const logFrom = gitRequestLines(b.proxy.logs).length
  const results = await Promise.all(ws.map((w) => git(b.home, ['-C', w, '-c', `protocol.version=${version}`, 'fetch', '-q', ...fetchArgs])))
  for (const r of results) t.equal(r.code, 0, r.stderr)
  t.equal((await b.upstream.packObjects()) - packsBefore, 1, `v${version}: one pack-objects upstream for ${ws.length} fetches`)
  await b.proxy.settled()
  const seen = outcomes(b.proxy, logFrom)
  t.notOk(seen['bypass'], `v${version}: no fetch request went around the cache (${JSON.stringify(seen)})`)
  const upstreamRefs = await gitOk(b.home, ['-C', b.bare, 'for-each-ref', '--format=%(objectname) %(refname)', 'refs/heads/', 'refs/tags/'])
  const want = upstreamRefs.replace(/ refs\/heads\//g, ' refs/remotes/origin/')
  for (const w of ws) t.equal(await rev(b, w, 'refs/remotes/origin/main'), tip, `${path.basename(w)} has the new commit`)
  const all = await Promise.all(ws.map((w) => refs(b, w)))
  t.equal(new Set(all).size, 1, 'all workspaces have the same refs')
  t.same(sortLines(all[0] ?? ''), sortLines(want), 'and they are the upstream\'s')
  for (const w of ws.slice(0, 4)) await gitOk(b.home, ['-C', w, 'fsck', '--strict'])
}

/** Sorted ref lines, without the local `origin/HEAD` (not a ref of the upstream's). */
const sortLines = (s: string): string[] => s.split('\n').filter((l) => l !== '' && !l.endsWith('/HEAD')).sort()

for (const version of [2, 0] as const) {
  void t.test(`v${version}: ${BURST} workspaces at A fetch B at once: one upstream pack`, async (t) => {
    const b = await bed(t)
    const all = await workspaces(b, 'full', BURST + 1, [])
    const late = all.pop()
    const ws = all
    const tip = await addCommitDirect(b.home, b.bare, 'main', 'b.txt', 1)
    await burst(t, b, ws, version, ['origin'], tip)

    await t.test('a late agent at A, after the burst: a hit, no upstream pack', async (t) => {
      if (late === undefined) throw new Error('no workspace')
      const before = await b.upstream.packObjects()
      const logFrom = gitRequestLines(b.proxy.logs).length
      await gitOk(b.home, ['-C', late, '-c', `protocol.version=${version}`, 'fetch', '-q', 'origin'])
      t.equal(await b.upstream.packObjects(), before, 'no pack-objects upstream')
      await b.proxy.settled()
      const seen = outcomes(b.proxy, logFrom)
      t.ok((seen['hit'] ?? 0) >= 1 && seen['miss'] === undefined && seen['bypass'] === undefined, `hits only (${JSON.stringify(seen)})`)
      t.equal(await rev(b, late, 'refs/remotes/origin/main'), tip)
      await gitOk(b.home, ['-C', late, 'fsck', '--strict'])
    })
  })

  void t.test(`v${version}: ${BURST} --depth 20 workspaces fetch --depth 20 at once; then --unshallow`, async (t) => {
    const b = await bed(t)
    const ws = await workspaces(b, 'shallow', BURST, ['--depth', '20'])
    t.equal((await gitOk(b.home, ['-C', ws[0] ?? '', 'rev-list', '--count', 'refs/remotes/origin/main'])).trim(), '20', 'shallow workspaces')
    const tip = await addCommitDirect(b.home, b.bare, 'main', 'b.txt', 1)
    await burst(t, b, ws, version, ['--depth', '20', 'origin'], tip)
    for (const w of ws.slice(0, 2)) {
      t.equal((await gitOk(b.home, ['-C', w, 'rev-list', '--count', 'refs/remotes/origin/main'])).trim(), '20', 'still 20 deep')
    }

    await t.test('--unshallow from two of them: one upstream pack, full history', async (t) => {
      const pair = ws.slice(0, 2)
      const before = await b.upstream.packObjects()
      const results = await Promise.all(pair.map((w) => git(b.home, ['-C', w, '-c', `protocol.version=${version}`, 'fetch', '-q', '--unshallow', 'origin'])))
      for (const r of results) t.equal(r.code, 0, r.stderr)
      t.equal((await b.upstream.packObjects()) - before, 1, 'one pack-objects for both')
      for (const w of pair) {
        t.equal((await gitOk(b.home, ['-C', w, 'rev-list', '--count', 'refs/remotes/origin/main'])).trim(), '31', 'the whole history')
        t.equal((await git(b.home, ['-C', w, 'rev-parse', '--is-shallow-repository'])).stdout.trim(), 'false')
        await gitOk(b.home, ['-C', w, 'fsck', '--strict'])
      }
    })
  })
}

void t.test('different haves, different entries; a have unknown upstream still fetches right', async (t) => {
  const b = await bed(t)
  const [x, y, l1, l2] = await workspaces(b, 'w', 4, [])
  if (x === undefined || y === undefined || l1 === undefined || l2 === undefined) throw new Error('no workspaces')
  // y sits one commit behind x (and lacks the tag on A).
  const aParent = await rev(b, x, 'refs/remotes/origin/main~1')
  for (const ref of ['refs/remotes/origin/main', 'refs/heads/main']) await gitOk(b.home, ['-C', y, 'update-ref', ref, aParent])
  await gitOk(b.home, ['-C', y, 'tag', '-d', 'v1'])
  await gitOk(b.home, ['-C', y, 'reflog', 'expire', '--expire=now', '--all'])
  await gitOk(b.home, ['-C', y, 'gc', '-q', '--prune=now'])
  // l1 and l2: the same local commit the upstream does not have (yet).
  await gitOk(b.home, ['-C', l1, 'checkout', '-q', 'main'])
  await gitOk(b.home, ['-C', l1, 'commit', '-q', '--allow-empty', '-m', 'local only'])
  const local = await rev(b, l1, 'HEAD')
  cpSync(l1, l2, { recursive: true, force: true })

  const tip = await addCommitDirect(b.home, b.bare, 'main', 'b.txt', 1)
  const entries = entryFiles(b.proxy.cacheDir).length
  for (const w of [x, y]) {
    await gitOk(b.home, ['-C', w, '-c', 'protocol.version=2', 'fetch', '-q', 'origin', 'main'])
    t.equal(await rev(b, w, 'FETCH_HEAD'), tip)
    await gitOk(b.home, ['-C', w, 'fsck', '--strict'])
  }
  t.ok(entryFiles(b.proxy.cacheDir).length >= entries + 2, 'x and y (different haves) made entries of their own')

  // l1 fetches: its haves include `local`, unknown upstream.
  await gitOk(b.home, ['-C', l1, '-c', 'protocol.version=2', 'fetch', '-q', 'origin', 'main'])
  t.equal(await rev(b, l1, 'FETCH_HEAD'), tip)
  // Now the upstream learns `local` (a push that bypasses the proxy, to another branch).
  await gitOk(b.home, ['-C', l1, 'push', '-q', b.bare, `${local}:refs/heads/other`])
  const before = await b.upstream.packObjects()
  const logFrom = gitRequestLines(b.proxy.logs).length
  await gitOk(b.home, ['-C', l2, '-c', 'protocol.version=2', 'fetch', '-q', 'origin', 'main'])
  t.equal(await b.upstream.packObjects(), before, 'l2 was answered from the entry made while `local` was unknown')
  await b.proxy.settled()
  t.ok((outcomes(b.proxy, logFrom)['hit'] ?? 0) >= 1, 'a hit')
  t.equal(await rev(b, l2, 'FETCH_HEAD'), tip, 'and it has the new commit')
  await gitOk(b.home, ['-C', l2, 'fsck', '--strict'])
  await gitOk(b.home, ['-C', l2, 'merge', '-q', '--no-edit', 'FETCH_HEAD'])
  await gitOk(b.home, ['-C', l2, 'fsck', '--strict'])
})

void t.test('scm-cache.upload-pack.fetch.enabled=false: fetches pass through, clones still cached', async (t) => {
  const b = await bed(t, { 'scm-cache.upload-pack.fetch.enabled': 'false' })
  const [w] = await workspaces(b, 'off', 1, [])
  if (w === undefined) throw new Error('no workspace')
  const tip = await addCommitDirect(b.home, b.bare, 'main', 'b.txt', 1)
  const entries = entryFiles(b.proxy.cacheDir).length
  const logFrom = gitRequestLines(b.proxy.logs).length
  await gitOk(b.home, ['-C', w, '-c', 'protocol.version=2', 'fetch', '-q', 'origin'])
  t.equal(await rev(b, w, 'refs/remotes/origin/main'), tip)
  await b.proxy.settled()
  t.same(outcomes(b.proxy, logFrom), { bypass: 1 }, 'the fetch went around the cache')
  t.equal(entryFiles(b.proxy.cacheDir).length, entries, 'and stored nothing')

  // Switched on at run time through REST, beside upload-pack/enabled.
  const rest = `${b.proxy.url}/rest/scm-cache/latest/config/upload-pack/fetch/enabled`
  t.equal(await (await fetch(rest)).json(), false, 'GET shows the configured value')
  t.equal((await fetch(`${rest}/true`, { method: 'PUT' })).status, 204)
  t.equal(await (await fetch(rest)).json(), true)
  const [w2] = await workspaces(b, 'on', 1, [])
  if (w2 === undefined) throw new Error('no workspace')
  await addCommitDirect(b.home, b.bare, 'main', 'c.txt', 2)
  const from2 = gitRequestLines(b.proxy.logs).length
  await gitOk(b.home, ['-C', w2, '-c', 'protocol.version=2', 'fetch', '-q', 'origin'])
  await b.proxy.settled()
  t.notOk(outcomes(b.proxy, from2)['bypass'], 'the next fetch is answered by the cache')
  const figures = (await (await fetch(`${b.proxy.url}/rest/scm-cache/latest/caches`)).json()) as { totals: { uploadPack: Record<string, number> } }
  t.match(figures.totals.uploadPack, { cloneHits: Number, fetchMisses: 1 }, 'GET /caches splits clone and fetch answers')
  t.equal((await fetch(rest, { method: 'DELETE' })).status, 204, 'the override dropped')
  t.equal(await (await fetch(rest)).json(), false)
})

void t.test('a private repository: a replayed cached fetch without the credential gets the upstream\'s 401', async (t) => {
  const dir = t.testdir()
  const home = gitHome(dir)
  const upstream = await startTestUpstream(t, dir)
  const bare = await createBareRepo(home, upstream.root, 'private.git', { commits: 5 })
  const good = `Basic ${Buffer.from('bob:pw').toString('base64')}`
  const gate = await startAuthGate(t, upstream.url, (req) =>
    repoOf(req.url) !== 'private.git' || req.headers.authorization === good ? { kind: 'pass' } : { kind: 'refuse', status: 401 },
  )
  const proxy = await startTestProxy(t, dir, gate.url)
  const authed = `${proxy.url.replace('http://', 'http://bob:pw@')}/private.git`
  const w = path.join(dir, 'w')
  await gitOk(home, ['clone', '-q', '--no-checkout', authed, w])
  await addCommitDirect(home, bare, 'main', 'b.txt', 1)
  await gitOk(home, ['-C', w, '-c', 'protocol.version=2', 'fetch', '-q', 'origin'])
  const cached = upstream.requests.filter((r) => r.method === 'POST' && decodedBody(r).includes('command=fetch') && decodedBody(r).includes('have '))
  t.ok(cached.length >= 1, 'the fetch with haves reached the upstream once (and filled the cache)')
  const first = cached[0]
  if (first === undefined) throw new Error('no fetch with haves reached the upstream')
  const body = Buffer.from(decodedBody(first), 'latin1')
  const post = (headers: Record<string, string>): Promise<Response> =>
    fetch(`${proxy.url}/private.git/git-upload-pack`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-git-upload-pack-request', 'git-protocol': 'version=2', ...headers },
      body,
    })
  const anon = await post({})
  const anonBody = Buffer.from(await anon.arrayBuffer())
  t.equal(anon.status, 401, 'anonymous: the upstream\'s 401')
  t.match(anon.headers.get('www-authenticate') ?? '', /Basic realm="Gate"/, 'with its WWW-Authenticate')
  t.notOk(anonBody.includes('PACK'), 'never the pack')
  const wrong = await post({ authorization: `Basic ${Buffer.from('bob:nope').toString('base64')}` })
  t.equal(wrong.status, 401, 'a wrong password: 401')
  await wrong.arrayBuffer()
  const before = await upstream.packObjects()
  const right = await post({ authorization: good })
  const rightBody = Buffer.from(await right.arrayBuffer())
  t.equal(right.status, 200, 'the right credential: 200')
  t.ok(rightBody.includes('acknowledgments'), 'the cached answer')
  t.equal(await upstream.packObjects(), before, 'from the cache')
  t.equal(entryFiles(proxy.cacheDir).length >= 2, true, 'clone and fetch entries')
})
