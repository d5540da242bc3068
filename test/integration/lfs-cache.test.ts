/**
 * Git LFS downloads through the proxy's cache, driven by the real git-lfs
 * client against the embedded upstream's LFS server (DESIGN §2, §3.1):
 * batch answers rewritten to the proxy, objects stored once and served
 * from the cache, one upstream download per burst, the grant rule (oid,
 * repository, credential), corrupted objects never stored, pushes passed
 * through.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import t, { type Test } from 'tap'
import type { LfsFault } from '../../src/upstream/embedded-lfs.js'
import { git, gitHome, gitOk } from '../helpers/git.js'
import { basicAuth, createLfsRepo, LFS_JSON, lfsContent, lfsGitHome, lfsPost, sha256, type LfsFile } from '../helpers/lfs.js'
import { startTestProxy, type TestProxy } from '../helpers/proxy.js'
import { startTestUpstream } from '../helpers/upstream.js'

const REST = '/rest/scm-cache/latest'
const NO_RETRY = ['-c', 'lfs.transfer.maxretries=1', '-c', 'lfs.transfer.maxretrydelay=0']

function files(seed: string, n: number, size = 150_000): LfsFile[] {
  return Array.from({ length: n }, (_, i) => ({ name: `data/${seed}-${i}.bin`, content: lfsContent(`${seed} ${i}`, size + i * 1000) }))
}

interface KindFigures {
  entries: number
  size: number
  hits: number
  misses: number
  joins: number
  bytesServed: number
}

async function lfsFigures(proxy: TestProxy): Promise<KindFigures> {
  const res = await fetch(`${proxy.url}${REST}/caches`)
  const body = (await res.json()) as { totals: { lfs: KindFigures } }
  return body.totals.lfs
}

function checkFiles(t: Test, dir: string, list: LfsFile[]): void {
  for (const f of list) t.ok(readFileSync(path.join(dir, f.name)).equals(f.content), `${f.name} smudged`)
}

void t.test('clone through the proxy twice: the second clone gets its LFS objects from the cache', async (t) => {
  const dir = t.testdir()
  const plain = gitHome(dir)
  const home = lfsGitHome(dir)
  const upstream = await startTestUpstream(t, dir)
  const list = files('art', 3)
  await createLfsRepo(plain, upstream.root, 'art.git', list)
  const proxy = await startTestProxy(t, dir, upstream.url)
  const url = `${proxy.url}/art.git`

  const first = path.join(dir, 'first')
  const r1 = await git(home, ['clone', '-q', url, first])
  t.equal(r1.code, 0, r1.stderr)
  checkFiles(t, first, list)
  await gitOk(home, ['-C', first, 'lfs', 'fsck'])
  t.equal(upstream.lfsRequests('download').length, 3, 'first clone: each object downloaded from the upstream once')
  t.match(await lfsFigures(proxy), { entries: 3, misses: 3, hits: 0 })

  const second = path.join(dir, 'second')
  const batchesBefore = upstream.lfsRequests('batch').length
  const r2 = await git(home, ['clone', '-q', url, second])
  t.equal(r2.code, 0, r2.stderr)
  checkFiles(t, second, list)
  await gitOk(home, ['-C', second, 'lfs', 'fsck'])
  t.equal(upstream.lfsRequests('download').length, 3, 'second clone: no object download upstream')
  t.equal(upstream.lfsRequests('batch').length, batchesBefore + 1, 'the batch call (the authorization) still goes upstream')
  const figures = await lfsFigures(proxy)
  t.match(figures, { entries: 3, hits: 3 })
  t.equal(figures.bytesServed, list.reduce((n, f) => n + f.content.length, 0))

  await t.test('the batch answer names the proxy, without the upstream header', async (t) => {
    const f = list[0]!
    const r = await lfsPost(`${url}/info/lfs/objects/batch`, { operation: 'download', transfers: ['basic'], objects: [{ oid: sha256(f.content), size: f.content.length }, { oid: 'f'.repeat(64), size: 1 }] })
    t.equal(r.status, 200)
    t.equal(r.headers.get('content-type'), LFS_JSON)
    const objects = (r.json as { objects: Record<string, unknown>[] }).objects
    t.same(objects[0], { oid: sha256(f.content), size: f.content.length, actions: { download: { href: `${url}/info/lfs/objects/cache/${sha256(f.content)}`, expires_in: 300 } } })
    t.match(objects[1], { oid: 'f'.repeat(64), error: { code: 404 } }, 'an error object is relayed as sent')
    const upload = await lfsPost(`${url}/info/lfs/objects/batch`, { operation: 'upload', objects: [{ oid: 'e'.repeat(64), size: 3 }] })
    t.match(upload.json, { objects: [{ actions: { upload: { href: `${upstream.url}/art.git/info/lfs/objects/${'e'.repeat(64)}`, header: { Authorization: /^RemoteAuth / } } } }] }, 'upload batches pass through untouched')
  })

  await t.test('metrics carry the lfs kind', async (t) => {
    const text = await (await fetch(`${proxy.url}/metrics`)).text()
    t.match(text, /scm_cache_entries\{kind="lfs"\} 3/)
    t.match(text, /scm_cache_hits_total\{kind="lfs"\} \d+/)
    t.match(text, /scm_cache_entries\{kind="upload-pack"\} \d/)
  })
})

void t.test('16 concurrent clones: each object leaves the upstream once', async (t) => {
  const dir = t.testdir()
  const plain = gitHome(dir)
  const home = lfsGitHome(dir)
  const upstream = await startTestUpstream(t, dir)
  const list = files('burst', 4, 400_000)
  await createLfsRepo(plain, upstream.root, 'burst.git', list)
  const proxy = await startTestProxy(t, dir, upstream.url)
  const results = await Promise.all(Array.from({ length: 16 }, (_, i) => git(home, ['clone', '-q', `${proxy.url}/burst.git`, path.join(dir, `c${i}`)])))
  for (const [i, r] of results.entries()) t.equal(r.code, 0, `clone ${i}: ${r.stderr}`)
  for (let i = 0; i < 16; i++) checkFiles(t, path.join(dir, `c${i}`), list)
  const downloads = upstream.lfsRequests('download')
  t.equal(downloads.length, 4, 'one upstream download per object')
  t.same(new Set(downloads.map((q) => q.lfs?.oid)), new Set(list.map((f) => sha256(f.content))))
  const figures = await lfsFigures(proxy)
  t.equal(figures.entries, 4)
  t.equal(figures.hits + figures.misses + figures.joins, 64, 'every object GET went through the store')
  t.equal(figures.misses, 4)
})

void t.test('who may read: the grant is per (oid, repository, credential)', async (t) => {
  const dir = t.testdir()
  const plain = gitHome(dir)
  const home = lfsGitHome(dir)
  const cred = { username: 'alice', password: 's3cret' }
  const upstream = await startTestUpstream(t, dir, { basicAuth: (repo) => (repo.startsWith('private') ? cred : null) })
  const shared = files('shared', 1)
  const oid = sha256(shared[0]!.content)
  const size = shared[0]!.content.length
  await createLfsRepo(plain, upstream.root, 'private.git', shared)
  await createLfsRepo(plain, upstream.root, 'private-b.git', shared)
  await createLfsRepo(plain, upstream.root, 'public-a.git', shared)
  await createLfsRepo(plain, upstream.root, 'public-b.git', shared)
  const proxy = await startTestProxy(t, dir, upstream.url)
  const good = { authorization: basicAuth(cred.username, cred.password) }
  const wrong = { authorization: basicAuth(cred.username, 'nope') }
  const request = { operation: 'download', objects: [{ oid, size }] }
  const href = (repo: string): string => `${proxy.url}/${repo}/info/lfs/objects/cache/${oid}`

  // Fill the cache through the private repository with the right credential.
  const url = `${proxy.url.replace('//', `//${cred.username}:${cred.password}@`)}/private.git`
  const clone = path.join(dir, 'clone')
  const r = await git(home, ['clone', '-q', url, clone])
  t.equal(r.code, 0, r.stderr)
  checkFiles(t, clone, shared)
  t.equal(upstream.lfsRequests('download').length, 1)
  t.equal((await lfsFigures(proxy)).entries, 1)

  for (const [name, headers] of [['anonymous', {}], ['wrong password', wrong]] as const) {
    const b = await lfsPost(`${proxy.url}/private.git/info/lfs/objects/batch`, request, headers)
    t.equal(b.status, 401, `${name}: the upstream's 401 on the batch`)
    t.match(b.headers.get('www-authenticate'), /^Basic realm=/)
    t.match(b.json, { message: /\S/ })
    const get = await fetch(href('private.git'), { headers })
    t.equal(get.status, 401, `${name}: no bytes of the cached object`)
    t.match(get.headers.get('www-authenticate'), /^Basic /)
    t.notOk(Buffer.from(await get.arrayBuffer()).includes(shared[0]!.content.subarray(0, 64)))
  }

  const granted = await fetch(href('private.git'), { headers: good })
  t.equal(granted.status, 200, 'the granted credential reads it')
  t.equal(granted.headers.get('content-type'), 'application/octet-stream')
  t.equal(granted.headers.get('content-length'), String(size))
  t.ok(Buffer.from(await granted.arrayBuffer()).equals(shared[0]!.content))

  const otherRepo = await fetch(href('private-b.git'), { headers: good })
  t.equal(otherRepo.status, 401, 'a grant for private.git does not open the oid in private-b.git')
  await otherRepo.arrayBuffer()

  const anonA = await lfsPost(`${proxy.url}/public-a.git/info/lfs/objects/batch`, request)
  t.equal(anonA.status, 200)
  const anonGet = await fetch(href('public-b.git'))
  t.equal(anonGet.status, 401, 'an anonymous grant in public-a.git does not open public-b.git')
  await anonGet.arrayBuffer()
  const anonPrivate = await fetch(href('private.git'))
  t.equal(anonPrivate.status, 401, 'nor private.git')
  await anonPrivate.arrayBuffer()
  const inA = await fetch(href('public-a.git'))
  t.equal(inA.status, 200, 'but public-a.git itself')
  t.ok(Buffer.from(await inA.arrayBuffer()).equals(shared[0]!.content))

  const batchB = await lfsPost(`${proxy.url}/private-b.git/info/lfs/objects/batch`, request, good)
  t.equal(batchB.status, 200)
  const inB = await fetch(href('private-b.git'), { headers: good })
  t.equal(inB.status, 200, 'once private-b.git granted it, the one stored copy answers there too')
  t.ok(Buffer.from(await inB.arrayBuffer()).equals(shared[0]!.content))
  t.equal(upstream.lfsRequests('download').length, 1, 'stored once for all repositories')

  const never = await fetch(`${proxy.url}/public-a.git/info/lfs/objects/cache/${'0'.repeat(64)}`)
  t.equal(never.status, 401, 'an oid no batch granted')
  await never.arrayBuffer()
})

void t.test('an upstream serving a corrupted or cut object: the client fails, nothing is stored, the next try succeeds', async (t) => {
  const dir = t.testdir()
  const plain = gitHome(dir)
  const home = lfsGitHome(dir)
  let fault: LfsFault | null = null
  const upstream = await startTestUpstream(t, dir, { lfsFault: () => fault })
  // One object larger than a read chunk, one smaller: both must fail, whatever the chunking.
  const list = [
    { name: 'big.bin', content: lfsContent('big', 300_000) },
    { name: 'small.bin', content: lfsContent('small', 3000) },
  ]
  await createLfsRepo(plain, upstream.root, 'bad.git', list)
  const proxy = await startTestProxy(t, dir, upstream.url)
  for (const kind of ['corrupt', 'truncate'] as const) {
    const clone = path.join(dir, `clone-${kind}`)
    const r = await git(home, ['clone', '-q', `${proxy.url}/bad.git`, clone], { env: { GIT_LFS_SKIP_SMUDGE: '1' } })
    t.equal(r.code, 0, r.stderr)
    fault = kind
    const before = upstream.lfsRequests('download').length
    const pull = await git(home, [...NO_RETRY, '-C', clone, 'lfs', 'pull'])
    t.not(pull.code, 0, `${kind}: git lfs pull fails`)
    t.ok(upstream.lfsRequests('download').length > before, `${kind}: the proxy did download`)
    t.equal((await lfsFigures(proxy)).entries, 0, `${kind}: nothing stored`)
    t.same(readdirSync(path.join(proxy.cacheDir, 'tmp')), [], `${kind}: no temporary file left`)
    for (const f of list) t.not(readFileSync(path.join(clone, f.name)).length, f.content.length, `${kind}: ${f.name} not smudged`)
    fault = null
    const again = await git(home, [...NO_RETRY, '-C', clone, 'lfs', 'pull'])
    t.equal(again.code, 0, again.stderr)
    checkFiles(t, clone, list)
    await gitOk(home, ['-C', clone, 'lfs', 'fsck'])
    t.equal((await lfsFigures(proxy)).entries, 2, `${kind}: fixed upstream, the objects are stored`)
    const res = await fetch(`${proxy.url}${REST}/caches`, { method: 'DELETE' })
    t.equal(res.status, 204)
  }
})

void t.test('an LFS push through the proxy passes through', async (t) => {
  const dir = t.testdir()
  const plain = gitHome(dir)
  const home = lfsGitHome(dir)
  const upstream = await startTestUpstream(t, dir)
  const bare = await createLfsRepo(plain, upstream.root, 'push.git', files('old', 1))
  const proxy = await startTestProxy(t, dir, upstream.url)
  const work = path.join(dir, 'work')
  await gitOk(home, ['clone', '-q', `${proxy.url}/push.git`, work])
  const added = lfsContent('pushed', 120_000)
  writeFileSync(path.join(work, 'data', 'new.bin'), added)
  await gitOk(home, ['-C', work, 'add', '.'])
  await gitOk(home, ['-C', work, 'commit', '-q', '-m', 'one more'])
  const push = await git(home, ['-C', work, 'push', 'origin', 'main'])
  t.equal(push.code, 0, push.stderr)
  const oid = sha256(added)
  t.ok(existsSync(path.join(bare, 'lfs', 'objects', oid.slice(0, 2), oid.slice(2, 4), oid)), 'the object reached the upstream')
  t.ok(upstream.lfsRequests('upload').some((q) => q.status === 200 && q.lfs?.oid === oid))
  t.ok(upstream.lfsRequests('verify').some((q) => q.status === 200))
  const clone = path.join(dir, 'clone')
  const r = await git(home, ['clone', '-q', `${proxy.url}/push.git`, clone])
  t.equal(r.code, 0, r.stderr)
  t.ok(readFileSync(path.join(clone, 'data', 'new.bin')).equals(added))
})

void t.test('with scm-cache.lfs.enabled=false the LFS API passes through untouched', async (t) => {
  const dir = t.testdir()
  const plain = gitHome(dir)
  const upstream = await startTestUpstream(t, dir)
  const list = files('off', 1)
  await createLfsRepo(plain, upstream.root, 'off.git', list)
  const proxy = await startTestProxy(t, dir, upstream.url, { 'scm-cache.lfs.enabled': 'false' })
  const f = list[0]!
  const r = await lfsPost(`${proxy.url}/off.git/info/lfs/objects/batch`, { operation: 'download', objects: [{ oid: sha256(f.content), size: f.content.length }] })
  t.match(r.json, { objects: [{ actions: { download: { href: `${upstream.url}/off.git/info/lfs/objects/${sha256(f.content)}`, header: { Authorization: /^RemoteAuth / } } } }] })
})

void t.test('objects over scm-cache.lfs.max.object.size keep the upstream href', async (t) => {
  const dir = t.testdir()
  const plain = gitHome(dir)
  const home = lfsGitHome(dir)
  const upstream = await startTestUpstream(t, dir)
  const list = [
    { name: 'small.bin', content: lfsContent('s', 1000) },
    { name: 'large.bin', content: lfsContent('l', 5000) },
  ]
  await createLfsRepo(plain, upstream.root, 'max.git', list)
  const proxy = await startTestProxy(t, dir, upstream.url, { 'scm-cache.lfs.max.object.size': '4096' })
  const r = await lfsPost(`${proxy.url}/max.git/info/lfs/objects/batch`, { operation: 'download', objects: list.map((f) => ({ oid: sha256(f.content), size: f.content.length })) })
  const objects = (r.json as { objects: { actions: { download: { href: string; header?: unknown } } }[] }).objects
  t.match(objects[0]!.actions.download, { href: `${proxy.url}/max.git/info/lfs/objects/cache/${sha256(list[0]!.content)}` })
  t.notOk(objects[0]!.actions.download.header)
  t.match(objects[1]!.actions.download, { href: `${upstream.url}/max.git/info/lfs/objects/${sha256(list[1]!.content)}`, header: { Authorization: /^RemoteAuth / } })
  const clone = path.join(dir, 'clone')
  const c = await git(home, ['clone', '-q', `${proxy.url}/max.git`, clone])
  t.equal(c.code, 0, c.stderr)
  checkFiles(t, clone, list)
  t.equal((await lfsFigures(proxy)).entries, 1, 'only the small one is stored')
})

void t.test('batch bodies the proxy does not understand pass through as sent', async (t) => {
  const dir = t.testdir()
  let answer: { status: number; type: string; body: string } = { status: 200, type: LFS_JSON, body: '' }
  const seen: string[] = []
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      seen.push(Buffer.concat(chunks).toString('utf8'))
      res.writeHead(answer.status, { 'content-type': answer.type }).end(answer.body)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => {
    server.close(() => { resolve() })
    server.closeAllConnections() // the proxy's upstream agent keeps connections alive
  }))
  const { port } = server.address() as AddressInfo
  const proxy = await startTestProxy(t, dir, `http://127.0.0.1:${port}`)
  const batch = `${proxy.url}/odd.git/info/lfs/objects/batch`
  const oid = 'a'.repeat(64)
  const download = { operation: 'download', objects: [{ oid, size: 10 }] }
  const href = `http://elsewhere.example/${oid}`
  const answers: { name: string; status: number; type: string; body: string }[] = [
    { name: 'not JSON', status: 200, type: LFS_JSON, body: '{"objects": [' },
    { name: 'objects not a list', status: 200, type: LFS_JSON, body: '{"objects": 3}' },
    { name: 'a bad oid', status: 200, type: LFS_JSON, body: JSON.stringify({ objects: [{ oid: 'xyz', size: 1, actions: { download: { href } } }] }) },
    { name: 'another transfer', status: 200, type: LFS_JSON, body: JSON.stringify({ transfer: 'tus', objects: [{ oid, size: 10, actions: { download: { href } } }] }) },
    { name: 'an HTML page', status: 200, type: 'text/html', body: `<html>${href}</html>` },
    { name: 'a 500', status: 500, type: LFS_JSON, body: JSON.stringify({ objects: [{ oid, size: 10, actions: { download: { href } } }] }) },
  ]
  for (const a of answers) {
    answer = a
    const res = await fetch(batch, { method: 'POST', headers: { 'content-type': LFS_JSON }, body: JSON.stringify(download) })
    t.equal(res.status, a.status, `${a.name}: status`)
    t.equal(await res.text(), a.body, `${a.name}: the body as sent`)
  }
  t.notOk(await fetch(`${proxy.url}/odd.git/info/lfs/objects/cache/${oid}`).then(async (r) => (await r.arrayBuffer(), r.status === 200)), 'no grant came of them')

  answer = { status: 422, type: LFS_JSON, body: '{"message":"no"}' }
  for (const body of ['{"operation":', JSON.stringify({ operation: 'download', objects: [{ oid: 'A'.repeat(64), size: 1 }] }), JSON.stringify({ operation: 'upload', objects: [] })]) {
    const before = seen.length
    const res = await fetch(batch, { method: 'POST', headers: { 'content-type': LFS_JSON }, body })
    t.equal(res.status, 422, 'a request the proxy does not take is the upstream\'s to answer')
    await res.arrayBuffer()
    t.same(seen.slice(before), [body], 'and reaches it as sent')
  }
  const huge = JSON.stringify({ operation: 'download', objects: [], pad: 'x'.repeat(5 * 1024 * 1024) })
  const big = await fetch(batch, { method: 'POST', headers: { 'content-type': LFS_JSON }, body: huge })
  t.equal(big.status, 422, 'a request over the batch limit is streamed through')
  await big.arrayBuffer()
  t.equal(seen.at(-1)?.length, huge.length)
})

void t.test('a grant lasts auth.ttl', async (t) => {
  const dir = t.testdir()
  const plain = gitHome(dir)
  const upstream = await startTestUpstream(t, dir)
  const list = files('ttl', 1)
  await createLfsRepo(plain, upstream.root, 'ttl.git', list)
  let now = Date.now()
  const proxy = await startTestProxy(t, dir, upstream.url, { 'auth.ttl': '60' }, { now: () => now })
  const f = list[0]!
  const r = await lfsPost(`${proxy.url}/ttl.git/info/lfs/objects/batch`, { operation: 'download', objects: [{ oid: sha256(f.content), size: f.content.length }] })
  t.match(r.json, { objects: [{ actions: { download: { expires_in: 60 } } }] }, 'the client is told the shorter of auth.ttl and the upstream expiry')
  const href = `${proxy.url}/ttl.git/info/lfs/objects/cache/${sha256(f.content)}`
  const first = await fetch(href)
  t.equal(first.status, 200)
  t.ok(Buffer.from(await first.arrayBuffer()).equals(f.content))
  now += 61_000
  const late = await fetch(href)
  t.equal(late.status, 401, 'past auth.ttl the cached object needs a new batch')
  await late.arrayBuffer()
  await lfsPost(`${proxy.url}/ttl.git/info/lfs/objects/batch`, { operation: 'download', objects: [{ oid: sha256(f.content), size: f.content.length }] })
  const again = await fetch(href)
  t.equal(again.status, 200)
  await again.arrayBuffer()
  t.equal(upstream.lfsRequests('download').length, 1)
})

void t.test('granted objects while HTTP caching is switched off come straight from the upstream, checked, not stored', async (t) => {
  const dir = t.testdir()
  const plain = gitHome(dir)
  const home = lfsGitHome(dir)
  const upstream = await startTestUpstream(t, dir)
  const list = files('direct', 2)
  await createLfsRepo(plain, upstream.root, 'direct.git', list)
  const proxy = await startTestProxy(t, dir, upstream.url)
  const f = list[0]!
  const r = await lfsPost(`${proxy.url}/direct.git/info/lfs/objects/batch`, { operation: 'download', objects: [{ oid: sha256(f.content), size: f.content.length }] })
  t.match(r.json, { objects: [{ actions: { download: { href: `${proxy.url}/direct.git/info/lfs/objects/cache/${sha256(f.content)}` } } }] })
  const off = await fetch(`${proxy.url}${REST}/config/protocols/HTTP`, { method: 'DELETE' })
  t.equal(off.status, 204)
  const get = await fetch(`${proxy.url}/direct.git/info/lfs/objects/cache/${sha256(f.content)}`)
  t.equal(get.status, 200)
  t.equal(get.headers.get('content-length'), String(f.content.length))
  t.ok(Buffer.from(await get.arrayBuffer()).equals(f.content))
  t.equal((await lfsFigures(proxy)).entries, 0, 'nothing stored')
  const clone = path.join(dir, 'clone')
  const c = await git(home, ['clone', '-q', `${proxy.url}/direct.git`, clone])
  t.equal(c.code, 0, c.stderr)
  checkFiles(t, clone, list)
  t.equal(upstream.lfsRequests('download').length, 3, 'each GET went upstream (the clone\'s batch passed through: hrefs on the upstream)')
})

void t.test('object hrefs get exactly the headers the upstream asked for; the client credential never leaves the upstream origin', async (t) => {
  const dir = t.testdir()
  const content = lfsContent('elsewhere', 70_000)
  const oid = sha256(content)
  const seen: { server: string; url: string; authorization: string | undefined; token: string | undefined }[] = []
  let objectStatus = 200
  const listen = async (name: string, handle: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> => {
    const server = createServer((req, res) => {
      seen.push({ server: name, url: req.url ?? '', authorization: req.headers.authorization, token: req.headers['x-token'] as string | undefined })
      handle(req, res)
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    t.teardown(() => new Promise<void>((resolve) => {
      server.close(() => { resolve() })
      server.closeAllConnections() // the proxy's upstream agent keeps connections alive
    }))
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  }
  const serveObject = (res: ServerResponse): void => {
    if (objectStatus !== 200) res.writeHead(objectStatus).end('expired')
    else res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(content)
  }
  const storage = await listen('storage', (_req, res) => { serveObject(res) })
  let upstreamUrl = ''
  upstreamUrl = await listen('upstream', (req, res) => {
    if (req.url?.startsWith('/own/') === true) {
      serveObject(res)
      return
    }
    req.resume()
    req.on('end', () => {
      const repo = /^\/([^/]+)\//.exec(req.url ?? '')?.[1] ?? ''
      const download =
        repo === 'headers.git'
          ? { href: `${storage}/o/${oid}`, header: { 'X-Token': 'upstream-object-token' } }
          : repo === 'storage.git'
            ? { href: `${storage}/o/${oid}` }
            : { href: `${upstreamUrl}/own/${oid}` }
      res.writeHead(200, { 'content-type': LFS_JSON }).end(JSON.stringify({ objects: [{ oid, size: content.length, actions: { download } }] }))
    })
  })
  const proxy = await startTestProxy(t, dir, upstreamUrl)
  const auth = { authorization: basicAuth('carol', 'pw') }
  for (const repo of ['headers.git', 'storage.git', 'own.git']) {
    const b = await lfsPost(`${proxy.url}/${repo}/info/lfs/objects/batch`, { operation: 'download', objects: [{ oid, size: content.length }] }, auth)
    t.equal(b.status, 200)
    t.notMatch(JSON.stringify(b.json), /upstream-object-token|127\.0\.0\.1:\d+\/(o|own)\//, `${repo}: neither the upstream header nor its href reach the client`)
  }
  const get = async (repo: string): Promise<number> => {
    const res = await fetch(`${proxy.url}/${repo}/info/lfs/objects/cache/${oid}`, { headers: auth })
    const body = Buffer.from(await res.arrayBuffer())
    if (res.status === 200) t.ok(body.equals(content), `${repo}: the object`)
    return res.status
  }
  objectStatus = 403
  t.equal(await get('headers.git'), 403, "the upstream href's refusal, not the bytes")
  t.equal((await lfsFigures(proxy)).entries, 0)
  objectStatus = 200
  t.equal(await get('headers.git'), 200)
  t.same(seen.filter((s) => s.server === 'storage').map((s) => [s.authorization, s.token]), [[undefined, 'upstream-object-token'], [undefined, 'upstream-object-token']], 'the action header, and only it')
  await fetch(`${proxy.url}${REST}/caches`, { method: 'DELETE' })
  t.equal(await get('storage.git'), 200)
  t.same(seen.filter((s) => s.server === 'storage').at(-1), { server: 'storage', url: `/o/${oid}`, authorization: undefined, token: undefined }, 'no header asked for: nothing sent to another origin')
  await fetch(`${proxy.url}${REST}/caches`, { method: 'DELETE' })
  t.equal(await get('own.git'), 200)
  t.match(seen.filter((s) => s.server === 'upstream' && s.url.startsWith('/own/')).at(-1), { authorization: auth.authorization }, "the upstream's own origin gets the client's credential, as git-lfs would send it")
})

void t.test('a batch the upstream refuses ends the grants it names at once', async (t) => {
  const dir = t.testdir()
  const plain = gitHome(dir)
  let password = 'first'
  const upstream = await startTestUpstream(t, dir, { basicAuth: () => ({ username: 'dave', password }) })
  const list = files('revoked', 1)
  await createLfsRepo(plain, upstream.root, 'locked.git', list)
  const proxy = await startTestProxy(t, dir, upstream.url)
  const f = list[0]!
  const request = { operation: 'download', objects: [{ oid: sha256(f.content), size: f.content.length }] }
  const auth = { authorization: basicAuth('dave', 'first') }
  const href = `${proxy.url}/locked.git/info/lfs/objects/cache/${sha256(f.content)}`
  t.equal((await lfsPost(`${proxy.url}/locked.git/info/lfs/objects/batch`, request, auth)).status, 200)
  const ok = await fetch(href, { headers: auth })
  t.equal(ok.status, 200)
  await ok.arrayBuffer()
  password = 'second'
  t.equal((await lfsPost(`${proxy.url}/locked.git/info/lfs/objects/batch`, request, auth)).status, 401, "the upstream's refusal")
  const after = await fetch(href, { headers: auth })
  t.equal(after.status, 401, 'the cached object is closed to that credential, within auth.ttl')
  await after.arrayBuffer()
})
