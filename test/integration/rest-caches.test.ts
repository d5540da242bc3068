/**
 * The REST API seen through git clients: cache figures per repository
 * (nested project keys and a path prefix included), clearing one repository
 * or everything, and switches that take effect on the next clone.
 */
import { request } from 'node:http'
import path from 'node:path'
import t from 'tap'
import { gitHome, gitOk } from '../helpers/git.js'
import { gitRequestLines, type LogRecord } from '../helpers/log-sink.js'
import { startTestProxy } from '../helpers/proxy.js'
import { createBareRepo } from '../helpers/repo.js'
import { startTestUpstream } from '../helpers/upstream.js'

const PREFIX = '/rest/scm-cache/latest'

function call(base: string, method: string, p: string): Promise<{ status: number; json: unknown }> {
  const url = new URL(base)
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, method, path: `${PREFIX}${p}` }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8')
        resolve({ status: res.statusCode ?? 0, json: text === '' ? undefined : (JSON.parse(text) as unknown) })
      })
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
}

/** The cache outcome of the last pack request (`upload-pack` for v0/v1, `fetch` for v2) in the proxy's log. */
function lastPackOutcome(logs: LogRecord[]): unknown {
  return gitRequestLines(logs)
    .filter((l) => l['cmd'] === 'upload-pack' || l['cmd'] === 'fetch')
    .at(-1)?.['cache']
}

const ISO_SECOND = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/

void t.test('per-repository figures, clearing one repository, clearing all', async (t) => {
  const dir = t.testdir()
  const home = gitHome(dir)
  const upstream = await startTestUpstream(t, dir)
  await createBareRepo(home, upstream.root, 'PROJ/app.git')
  await createBareRepo(home, upstream.root, 'group/sub/lib.git')
  const proxy = await startTestProxy(t, dir, upstream.url)
  let n = 0
  const clone = async (repo: string): Promise<unknown> => {
    await gitOk(home, ['-c', 'protocol.version=0', 'clone', '-q', `${proxy.url}/${repo}`, path.join(dir, `c${n++}`)])
    await proxy.settled()
    return lastPackOutcome(proxy.logs)
  }

  t.equal(await clone('PROJ/app.git'), 'miss')
  t.equal(await clone('PROJ/app.git'), 'hit')
  t.equal(await clone('group/sub/lib.git'), 'miss')

  const all = await call(proxy.url, 'GET', '/caches')
  t.equal(all.status, 200)
  t.match(all.json, {
    enabled: true,
    totals: { uploadPack: { entries: 2, hits: 1, misses: 2, size: Number, bytesServed: Number, lastHit: ISO_SECOND } },
    repositories: [
      { projectKey: 'PROJ', repoSlug: 'app', uploadPack: { entries: 1, hits: 1, misses: 1, lastHit: ISO_SECOND } },
      { projectKey: 'group/sub', repoSlug: 'lib', uploadPack: { entries: 1, hits: 0, misses: 1, lastHit: null } },
    ],
  })
  const totals = (all.json as { totals: { uploadPack: { size: number; bytesServed: number } } }).totals.uploadPack // matched above
  t.ok(totals.size > 0, 'bytes on disk')
  t.ok(totals.bytesServed > 0, 'bytes served from the cache')

  const app = await call(proxy.url, 'GET', '/caches/PROJ/app')
  t.equal(app.status, 200)
  t.match(app.json, { projectKey: 'PROJ', repoSlug: 'app', refs: { entries: 0 }, uploadPack: { entries: 1, hits: 1 } })
  t.same(Object.keys(app.json as object), ['projectKey', 'repoSlug', 'refs', 'uploadPack', 'lfs'])
  t.match((await call(proxy.url, 'GET', '/caches/proj/app')).json, { projectKey: 'PROJ', repoSlug: 'app' }, 'project key in another case')
  t.match((await call(proxy.url, 'GET', '/caches/group/sub/lib')).json, { projectKey: 'group/sub', repoSlug: 'lib', uploadPack: { entries: 1 } }, 'nested project key')
  t.equal((await call(proxy.url, 'GET', '/caches/group/lib')).status, 404)
  t.equal((await call(proxy.url, 'GET', '/caches/PROJ/other')).status, 404)

  t.equal((await call(proxy.url, 'DELETE', '/caches/PROJ/app')).status, 204)
  t.match((await call(proxy.url, 'GET', '/caches/PROJ/app')).json, { uploadPack: { entries: 0 } })
  t.match((await call(proxy.url, 'GET', '/caches/group/sub/lib')).json, { uploadPack: { entries: 1 } }, 'other repositories keep theirs')
  t.equal(await clone('PROJ/app.git'), 'miss', 'the next clone of the cleared repository is a miss')
  t.equal(await clone('group/sub/lib.git'), 'hit', 'the other one still hits')

  t.equal((await call(proxy.url, 'DELETE', '/caches/group/sub/lib')).status, 204, 'clearing a nested repository')
  t.equal(await clone('group/sub/lib.git'), 'miss')

  t.equal((await call(proxy.url, 'DELETE', '/caches')).status, 204)
  t.match((await call(proxy.url, 'GET', '/caches')).json, { totals: { refs: { entries: 0 }, uploadPack: { entries: 0, size: 0 } } })
  t.equal(await clone('PROJ/app.git'), 'miss', 'after clearing everything, a miss')
  t.ok(proxy.logs.some((r) => r.msg === 'all caches cleared through REST' && r['by'] === 'loopback'))
})

void t.test('switches take effect on the next clone', async (t) => {
  const dir = t.testdir()
  const home = gitHome(dir)
  const upstream = await startTestUpstream(t, dir)
  await createBareRepo(home, upstream.root, 'PROJ/app.git')
  const proxy = await startTestProxy(t, dir, upstream.url)
  let n = 0
  const clone = async (): Promise<unknown> => {
    await gitOk(home, ['-c', 'protocol.version=0', 'clone', '-q', `${proxy.url}/PROJ/app.git`, path.join(dir, `c${n++}`)])
    await proxy.settled()
    return lastPackOutcome(proxy.logs)
  }
  const put = async (method: string, p: string): Promise<void> => {
    t.equal((await call(proxy.url, method, p)).status, 204, `${method} ${p}`)
  }

  t.equal(await clone(), 'miss')
  await put('PUT', '/config/upload-pack/enabled/false')
  t.equal(await clone(), 'bypass', 'upload-pack caching off: the clone bypasses the cache')
  await put('PUT', '/config/upload-pack/enabled/true')
  t.equal(await clone(), 'hit')

  await put('DELETE', '/config/protocols/HTTP')
  t.equal(await clone(), 'bypass', 'HTTP not cached any more')
  await put('PUT', '/config/protocols/http')
  t.equal(await clone(), 'hit')
  await put('PUT', '/config/protocols/SSH')
  await put('DELETE', '/config/protocols/SSH')
  t.equal(await clone(), 'hit', 'SSH off does not touch HTTP')

  await put('PUT', '/config/upload-pack/enabled/false')
  await put('DELETE', '/config/upload-pack/enabled')
  t.equal(await clone(), 'hit', 'the dropped override: the configured value (on) applies')

  const packs = await upstream.packObjects()
  t.equal(packs, 3, 'one pack for the miss, one per bypass')

  await put('PUT', '/config/upload-pack/ttl/1')
  await new Promise((r) => setTimeout(r, 1100))
  t.equal(await clone(), 'miss', 'a shorter TTL applies to the entry already cached')
  await put('DELETE', '/config/upload-pack/ttl')
  t.equal(await clone(), 'hit')

  const advertisement = async (): Promise<unknown> => {
    await gitOk(home, ['-c', 'protocol.version=0', 'ls-remote', `${proxy.url}/PROJ/app.git`])
    await proxy.settled()
    return gitRequestLines(proxy.logs).filter((l) => l['cmd'] === 'advertisement').at(-1)?.['cache']
  }
  await advertisement()
  t.equal(await advertisement(), 'bypass', 'refs caching off by default')
  await put('PUT', '/config/refs/enabled/true')
  await advertisement()
  t.equal(await advertisement(), 'hit', 'refs caching switched on: the second poll is a hit')
})

void t.test('an upstream path prefix is not part of the project key', async (t) => {
  const dir = t.testdir()
  const home = gitHome(dir)
  const upstream = await startTestUpstream(t, dir)
  await createBareRepo(home, upstream.root, 'scm/PROJ/app.git')
  const proxy = await startTestProxy(t, dir, upstream.url, { 'upstream.http.path-prefix': 'scm' })
  await gitOk(home, ['clone', '-q', `${proxy.url}/scm/PROJ/app.git`, path.join(dir, 'c')])
  t.match((await call(proxy.url, 'GET', '/caches')).json, { repositories: [{ projectKey: 'PROJ', repoSlug: 'app' }] })
  t.match((await call(proxy.url, 'GET', '/caches/PROJ/app')).json, { uploadPack: { entries: 1 } })
  t.equal((await call(proxy.url, 'DELETE', '/caches/PROJ/app')).status, 204)
  t.match((await call(proxy.url, 'GET', '/caches/PROJ/app')).json, { uploadPack: { entries: 0 } })
})
