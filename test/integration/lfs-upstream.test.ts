/**
 * The embedded upstream's Git LFS server, driven by the real git-lfs client
 * (Debian's git-lfs 3.3): push, clone, fsck, the private-repository rules,
 * bad batch requests, object hrefs that need their action's header, locks,
 * the fault hook, and the demo repository's LFS file.
 */
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import path from 'node:path'
import t from 'tap'
import { demoLfsContent, ensureDemoRepository } from '../../src/upstream/embedded.js'
import type { LfsFault } from '../../src/upstream/embedded-lfs.js'
import { git, gitHome, gitOk } from '../helpers/git.js'
import { basicAuth, LFS_JSON, lfsContent, lfsGitHome, lfsPost, sha256 } from '../helpers/lfs.js'
import { createBareRepo } from '../helpers/repo.js'
import { startTestUpstream } from '../helpers/upstream.js'

const FILES = ['a.bin', 'b.bin', 'c.bin'].map((name, i) => ({ name, content: lfsContent(`file ${name}`, 200_000 + i * 50_000) }))

function storedObject(bare: string, oid: string): string {
  return path.join(bare, 'lfs', 'objects', oid.slice(0, 2), oid.slice(2, 4), oid)
}

function pointer(content: Buffer): string {
  return `version https://git-lfs.github.com/spec/v1\noid sha256:${sha256(content)}\nsize ${content.length}\n`
}

/** A download action from the upstream for `oid` in `repo`, as the batch API gives it. */
async function downloadAction(batchUrl: string, oid: string, size: number, headers: Record<string, string> = {}): Promise<{ href: string; header: Record<string, string> }> {
  const r = await lfsPost(batchUrl, { operation: 'download', objects: [{ oid, size }] }, headers)
  // The embedded upstream answers this shape for a stored object (checked by the tests below).
  const objects = (r.json as { objects: { actions: { download: { href: string; header: Record<string, string> } } }[] }).objects
  return objects[0]!.actions.download
}

void t.test('git-lfs push and clone against the embedded upstream', async (t) => {
  const dir = t.testdir()
  const home = lfsGitHome(dir)
  let fault: LfsFault | null = null
  const upstream = await startTestUpstream(t, dir, { lfsFault: () => fault })
  const bare = await createBareRepo(home, upstream.root, 'art.git', { commits: 1 })
  const url = `${upstream.url}/art.git`
  const work = path.join(dir, 'work')
  await gitOk(home, ['clone', '-q', url, work])
  await gitOk(home, ['-C', work, 'lfs', 'install', '--local'])
  await gitOk(home, ['-C', work, 'lfs', 'track', '*.bin'])
  for (const f of FILES) writeFileSync(path.join(work, f.name), f.content)
  await gitOk(home, ['-C', work, 'add', '.gitattributes', ...FILES.map((f) => f.name)])
  await gitOk(home, ['-C', work, 'commit', '-q', '-m', 'three LFS files'])

  await t.test('push uploads the objects through the batch API and the basic transfer', async (t) => {
    const before = upstream.requests.length
    const r = await git(home, ['-C', work, 'push', 'origin', 'main'])
    t.equal(r.code, 0, r.stderr)
    for (const f of FILES) {
      const oid = sha256(f.content)
      t.ok(readFileSync(storedObject(bare, oid)).equals(f.content), `${f.name} stored under its oid`)
    }
    t.same(readdirSync(path.join(bare, 'lfs', 'incomplete')), [], 'no temporary upload left behind')
    const log = upstream.requests.slice(before).filter((q) => q.lfs !== null)
    t.same(
      log.filter((q) => q.lfs?.endpoint === 'batch').map((q) => [q.status, q.lfs?.operation, q.lfs?.objects]),
      [[200, 'upload', 3]],
    )
    t.same(log.filter((q) => q.lfs?.endpoint === 'locks').map((q) => [q.method, q.url, q.status]), [['POST', '/art.git/info/lfs/locks/verify', 200]])
    t.equal(log.filter((q) => q.lfs?.endpoint === 'upload' && q.method === 'PUT' && q.status === 200).length, 3)
    t.equal(log.filter((q) => q.lfs?.endpoint === 'verify' && q.status === 200).length, 3)
    t.equal(log.filter((q) => q.lfs?.endpoint === 'upload').reduce((n, q) => n + q.requestBytes, 0), FILES.reduce((n, f) => n + f.content.length, 0))
    const batch = JSON.parse(log.find((q) => q.lfs?.endpoint === 'batch')!.bodyHead.toString('utf8')) as Record<string, unknown>
    t.match(batch, { operation: 'upload', ref: { name: 'refs/heads/main' }, hash_algo: 'sha256' })
    // git-lfs lists its adapters from a Go map: the order changes from run to run.
    t.same(new Set(batch['transfers'] as string[]), new Set(['lfs-standalone-file', 'basic', 'ssh']))
  })

  await t.test('a second push of the same objects uploads nothing', async (t) => {
    await gitOk(home, ['-C', work, 'commit', '-q', '--allow-empty', '-m', 'empty'])
    const before = upstream.lfsRequests('upload').length
    await gitOk(home, ['-C', work, 'push', '-q', 'origin', 'main'])
    t.equal(upstream.lfsRequests('upload').length, before)
  })

  await t.test('clone downloads and smudges them, and git lfs fsck passes', async (t) => {
    const before = upstream.requests.length
    const clone = path.join(dir, 'clone')
    const r = await git(home, ['clone', '-q', url, clone])
    t.equal(r.code, 0, r.stderr)
    for (const f of FILES) t.ok(readFileSync(path.join(clone, f.name)).equals(f.content), `${f.name} smudged`)
    await gitOk(home, ['-C', clone, 'lfs', 'fsck'])
    const log = upstream.requests.slice(before).filter((q) => q.lfs !== null)
    t.same(log.filter((q) => q.lfs?.endpoint === 'batch').map((q) => [q.status, q.lfs?.operation, q.lfs?.objects]), [[200, 'download', 3]])
    const gets = log.filter((q) => q.lfs?.endpoint === 'download')
    t.same(gets.map((q) => [q.method, q.status, q.authorization]), FILES.map(() => ['GET', 200, true]))
    t.same(new Set(gets.map((q) => q.lfs?.oid)), new Set(FILES.map((f) => sha256(f.content))))
  })

  await t.test('the batch answer carries hrefs of the request Host and their own header', async (t) => {
    const f = FILES[0]!
    const r = await lfsPost(`${url}/info/lfs/objects/batch`, { operation: 'download', transfers: ['basic'], objects: [{ oid: sha256(f.content), size: f.content.length }] })
    t.equal(r.status, 200)
    t.equal(r.headers.get('content-type'), LFS_JSON)
    t.match(r.json, {
      transfer: 'basic',
      hash_algo: 'sha256',
      objects: [{ oid: sha256(f.content), size: f.content.length, authenticated: true, actions: { download: { href: `${url}/info/lfs/objects/${sha256(f.content)}`, header: { Authorization: /^RemoteAuth \S+$/ }, expires_in: 3600 } } }],
    })
    const unknown = await lfsPost(`${url}/info/lfs/objects/batch`, { operation: 'download', objects: [{ oid: 'f'.repeat(64), size: 1 }] })
    t.match(unknown.json, { objects: [{ oid: 'f'.repeat(64), error: { code: 404 } }] })
    t.notOk((unknown.json as { objects: Record<string, unknown>[] }).objects[0]!['actions'])
    const wrongSize = await lfsPost(`${url}/info/lfs/objects/batch`, { operation: 'download', objects: [{ oid: sha256(f.content), size: 5 }] })
    t.match(wrongSize.json, { objects: [{ error: { code: 422 } }] })
  })

  await t.test('an object href needs the header of its own action', async (t) => {
    const [f, g] = [FILES[0]!, FILES[1]!]
    const action = await downloadAction(`${url}/info/lfs/objects/batch`, sha256(f.content), f.content.length)
    const other = await downloadAction(`${url}/info/lfs/objects/batch`, sha256(g.content), g.content.length)
    const ok = await fetch(action.href, { headers: action.header })
    t.equal(ok.status, 200)
    t.equal(ok.headers.get('content-type'), 'application/octet-stream')
    t.ok(Buffer.from(await ok.arrayBuffer()).equals(f.content))
    const none = await fetch(action.href)
    t.equal(none.status, 401)
    t.match(none.headers.get('www-authenticate'), /^RemoteAuth /)
    await none.arrayBuffer()
    const swapped = await fetch(action.href, { headers: other.header })
    t.equal(swapped.status, 401, "another object's header does not open this one")
    await swapped.arrayBuffer()
    const put = await fetch(action.href, { method: 'PUT', headers: action.header, body: f.content })
    t.equal(put.status, 401, 'a download header does not allow an upload')
    await put.arrayBuffer()
    const elsewhere = await fetch(action.href.replace('/art.git/', '/other.git/'), { headers: action.header })
    t.equal(elsewhere.status, 401, 'nor the same oid in another repository')
    await elsewhere.arrayBuffer()
  })

  await t.test('an upload whose bytes do not match its oid is refused and not stored', async (t) => {
    const content = lfsContent('never stored', 1000)
    const oid = sha256(content)
    const r = await lfsPost(`${url}/info/lfs/objects/batch`, { operation: 'upload', objects: [{ oid, size: content.length }] })
    const upload = (r.json as { objects: { actions: { upload: { href: string; header: Record<string, string> } } }[] }).objects[0]!.actions.upload
    const bad = Buffer.from(content)
    bad[10] = (bad[10] ?? 0) ^ 1
    const put = await fetch(upload.href, { method: 'PUT', headers: { ...upload.header, 'content-type': 'application/octet-stream' }, body: bad })
    t.equal(put.status, 422)
    t.match(await put.json(), { message: /SHA-256/ })
    t.notOk(existsSync(storedObject(bare, oid)))
    const long = await fetch(upload.href, { method: 'PUT', headers: upload.header, body: Buffer.concat([content, Buffer.from('x')]) })
    t.equal(long.status, 422, 'a longer body too')
    await long.arrayBuffer()
    t.notOk(existsSync(storedObject(bare, oid)))
    t.same(readdirSync(path.join(bare, 'lfs', 'incomplete')), [])
  })

  await t.test('the fault hook serves a corrupted or cut object, and git-lfs refuses it', async (t) => {
    for (const kind of ['corrupt', 'truncate'] as const) {
      fault = kind
      const clone = path.join(dir, `clone-${kind}`)
      const r = await git(home, ['clone', '-q', url, clone], { env: { GIT_LFS_SKIP_SMUDGE: '1' } })
      t.equal(r.code, 0, r.stderr)
      const before = upstream.lfsRequests('download').length
      // git-lfs retries a failed download 8 times with up to 10 s between tries by default.
      const pull = await git(home, ['-c', 'lfs.transfer.maxretries=1', '-c', 'lfs.transfer.maxretrydelay=0', '-C', clone, 'lfs', 'pull'])
      t.not(pull.code, 0, `${kind}: git lfs pull fails`)
      t.ok(upstream.lfsRequests('download').length > before, `${kind}: it did download`)
      t.match(pull.stderr, kind === 'corrupt' ? /expected OID/ : /unexpected EOF/)
      t.equal(readFileSync(path.join(clone, 'a.bin'), 'utf8'), pointer(FILES[0]!.content), `${kind}: the pointer stays`)
      fault = null
      const again = await git(home, ['-C', clone, 'lfs', 'pull'])
      t.equal(again.code, 0, again.stderr)
      t.ok(readFileSync(path.join(clone, 'a.bin')).equals(FILES[0]!.content), `${kind}: fixed upstream, the next pull succeeds`)
    }
  })

  await t.test('locks: git lfs lock, locks and unlock', async (t) => {
    const lock = await git(home, ['-C', work, 'lfs', 'lock', 'a.bin'])
    t.equal(lock.code, 0, lock.stderr)
    const list = await gitOk(home, ['-C', work, 'lfs', 'locks'])
    t.match(list, /^a\.bin\s+anonymous\s+ID:\S+/m)
    const again = await git(home, ['-C', work, 'lfs', 'lock', 'a.bin'])
    t.not(again.code, 0, 'a second lock of the same path is refused')
    const verify = await lfsPost(`${url}/info/lfs/locks/verify`, { ref: { name: 'refs/heads/main' } })
    t.match(verify.json, { ours: [{ path: 'a.bin', owner: { name: 'anonymous' } }], theirs: [] })
    const unlock = await git(home, ['-C', work, 'lfs', 'unlock', 'a.bin'])
    t.equal(unlock.code, 0, unlock.stderr)
    t.equal((await gitOk(home, ['-C', work, 'lfs', 'locks'])).trim(), '')
  })
})

void t.test('bad batch requests get 4xx answers with a message', async (t) => {
  const dir = t.testdir()
  const home = gitHome(dir)
  const upstream = await startTestUpstream(t, dir)
  await createBareRepo(home, upstream.root, 'app.git', { commits: 1 })
  const batch = `${upstream.url}/app.git/info/lfs/objects/batch`
  const oid = 'a'.repeat(64)
  const cases: { name: string; body: unknown; status: number }[] = [
    { name: 'short oid', body: { operation: 'download', objects: [{ oid: 'abc', size: 1 }] }, status: 422 },
    { name: 'upper-case oid', body: { operation: 'download', objects: [{ oid: 'A'.repeat(64), size: 1 }] }, status: 422 },
    { name: 'oid with a path', body: { operation: 'upload', objects: [{ oid: `../../${'a'.repeat(58)}`, size: 1 }] }, status: 422 },
    { name: 'negative size', body: { operation: 'download', objects: [{ oid, size: -1 }] }, status: 422 },
    { name: 'unknown operation', body: { operation: 'delete', objects: [{ oid, size: 1 }] }, status: 422 },
    { name: 'no basic transfer', body: { operation: 'download', transfers: ['tus'], objects: [{ oid, size: 1 }] }, status: 422 },
    { name: 'sha1 hash_algo', body: { operation: 'download', objects: [{ oid, size: 1 }], hash_algo: 'sha1' }, status: 422 },
    { name: 'not JSON', body: '{"operation":', status: 400 },
  ]
  for (const c of cases) {
    const r = await lfsPost(batch, c.body)
    t.equal(r.status, c.status, c.name)
    t.equal(r.headers.get('content-type'), LFS_JSON, `${c.name}: JSON error`)
    t.match(r.json, { message: /\S/ }, `${c.name}: has a message`)
  }
  const wrongType = await fetch(batch, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: '{}' })
  t.equal(wrongType.status, 415)
  await wrongType.arrayBuffer()
  const get = await fetch(batch)
  t.equal(get.status, 405)
  await get.arrayBuffer()
  const missing = await lfsPost(`${upstream.url}/nothing.git/info/lfs/objects/batch`, { operation: 'download', objects: [] })
  t.equal(missing.status, 404, 'unknown repository')
  const huge = await lfsPost(batch, { operation: 'download', objects: [], pad: 'x'.repeat(1024 * 1024) })
  t.equal(huge.status, 413)
})

void t.test('a private repository: Basic auth on the batch and locks API', async (t) => {
  const dir = t.testdir()
  const home = lfsGitHome(dir)
  const cred = { username: 'alice', password: 's3cret' }
  const upstream = await startTestUpstream(t, dir, { basicAuth: (repo) => (repo === 'private.git' ? cred : null) })
  await createBareRepo(home, upstream.root, 'private.git', { commits: 1 })
  const base = `${upstream.url}/private.git/info/lfs`
  const content = lfsContent('private', 100_000)
  const request = { operation: 'download', objects: [{ oid: sha256(content), size: content.length }] }

  for (const [name, headers] of [['anonymous', {}], ['wrong password', { authorization: basicAuth('alice', 'nope') }]] as const) {
    const r = await lfsPost(`${base}/objects/batch`, request, headers)
    t.equal(r.status, 401, `${name}: batch`)
    t.match(r.headers.get('www-authenticate'), /^Basic realm=/)
    t.match(r.headers.get('lfs-authenticate'), /^Basic realm=/)
    t.match(r.json, { message: /\S/ })
    const locks = await fetch(`${base}/locks`, { headers })
    t.equal(locks.status, 401, `${name}: locks`)
    await locks.arrayBuffer()
  }

  await t.test('git-lfs with the credential in the URL pushes and clones', async (t) => {
    const url = `${upstream.url.replace('//', `//${cred.username}:${cred.password}@`)}/private.git`
    const work = path.join(dir, 'work')
    await gitOk(home, ['clone', '-q', url, work])
    await gitOk(home, ['-C', work, 'lfs', 'install', '--local'])
    await gitOk(home, ['-C', work, 'lfs', 'track', '*.bin'])
    await mkdir(path.join(work, 'data'))
    writeFileSync(path.join(work, 'data', 'p.bin'), content)
    await gitOk(home, ['-C', work, 'add', '.'])
    await gitOk(home, ['-C', work, 'commit', '-q', '-m', 'private LFS file'])
    const push = await git(home, ['-C', work, 'push', 'origin', 'main'])
    t.equal(push.code, 0, push.stderr)
    const clone = path.join(dir, 'clone')
    const r = await git(home, ['clone', '-q', url, clone])
    t.equal(r.code, 0, r.stderr)
    t.ok(readFileSync(path.join(clone, 'data', 'p.bin')).equals(content))
    const batches = upstream.lfsRequests('batch')
    t.ok(batches.some((q) => q.status === 200 && q.lfs?.operation === 'upload'))
    t.ok(batches.some((q) => q.status === 200 && q.lfs?.operation === 'download'))
    t.ok(batches.every((q) => q.status === 200 || q.status === 401), 'only 200, or 401 before git-lfs sends the credential')
  })

  await t.test('the object href takes its action header, not the Basic credential', async (t) => {
    const auth = { authorization: basicAuth(cred.username, cred.password) }
    const action = await downloadAction(`${base}/objects/batch`, sha256(content), content.length, auth)
    const basicOnly = await fetch(action.href, { headers: auth })
    t.equal(basicOnly.status, 401)
    await basicOnly.arrayBuffer()
    const ok = await fetch(action.href, { headers: action.header })
    t.equal(ok.status, 200)
    t.ok(Buffer.from(await ok.arrayBuffer()).equals(content))
  })
})

void t.test('the demo repository has one LFS file, readable with and without git-lfs', async (t) => {
  const dir = t.testdir()
  const upstream = await startTestUpstream(t, dir)
  t.equal(await ensureDemoRepository(upstream.root), 'demo.git')
  const url = `${upstream.url}/demo.git`
  const logo = demoLfsContent()
  t.equal(logo.length, 4096)
  t.ok(readFileSync(storedObject(path.join(upstream.root, 'demo.git'), sha256(logo))).equals(logo))

  const plainHome = gitHome(dir)
  const plain = path.join(dir, 'plain')
  await gitOk(plainHome, ['clone', '-q', url, plain])
  t.equal(readFileSync(path.join(plain, 'assets', 'logo.bin'), 'utf8'), pointer(logo), 'without git-lfs: the pointer file')
  t.match(readFileSync(path.join(plain, '.gitattributes'), 'utf8'), /filter=lfs/)
  t.equal(upstream.lfsRequests().length, 0)

  const lfsHome = lfsGitHome(dir)
  const smudged = path.join(dir, 'smudged')
  await gitOk(lfsHome, ['clone', '-q', url, smudged])
  t.ok(readFileSync(path.join(smudged, 'assets', 'logo.bin')).equals(logo), 'with git-lfs: the content')
  await gitOk(lfsHome, ['-C', smudged, 'lfs', 'fsck'])
  t.same(upstream.lfsRequests().map((q) => [q.lfs?.endpoint, q.status]), [['batch', 200], ['download', 200]])
  t.equal(await ensureDemoRepository(upstream.root), 'demo.git', 'a second call keeps the repository')
})
