/**
 * The admin REST API over real HTTP against the real proxy (DESIGN §6):
 * every endpoint, every refused value, credentials, openapi.json, and
 * settings that outlive a restart. Behaviour seen by git clients is in
 * rest-caches.test.ts.
 */
import { request } from 'node:http'
import { networkInterfaces } from 'node:os'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import t, { type Test } from 'tap'
import { startTestProxy, type TestProxy } from '../helpers/proxy.js'
import { startTestUpstream } from '../helpers/upstream.js'

const PREFIX = '/rest/scm-cache/latest'

interface Answer {
  status: number
  headers: Record<string, string | string[] | undefined>
  text: string
  json: unknown
}

/** One request with the path sent exactly as written (no client-side `..` resolution). */
function call(
  base: string,
  method: string,
  pathAndQuery: string,
  opts: { auth?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<Answer> {
  const url = new URL(base)
  const headers: Record<string, string> = { ...opts.headers }
  if (opts.auth !== undefined) headers['authorization'] = `Basic ${Buffer.from(opts.auth).toString('base64')}`
  return new Promise((resolve, reject) => {
    const req = request(
      { host: url.hostname, port: url.port, method, path: `${PREFIX}${pathAndQuery}`, headers },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8')
          let json: unknown
          try {
            json = text === '' ? undefined : JSON.parse(text)
          } catch {
            json = undefined
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json })
        })
        res.on('error', reject)
      },
    )
    req.on('error', reject)
    req.end(opts.body)
  })
}

function isErrorShape(json: unknown): boolean {
  if (typeof json !== 'object' || json === null || !('errors' in json) || !Array.isArray(json.errors)) return false
  const [first] = json.errors as unknown[]
  return typeof first === 'object' && first !== null && 'message' in first && typeof first.message === 'string'
}

async function startWithUpstream(
  t: Test,
  settings: Record<string, string> = {},
  dir = t.testdir(),
): Promise<TestProxy> {
  const upstream = await startTestUpstream(t, dir)
  return startTestProxy(t, dir, upstream.url, settings)
}

void t.test('config endpoints: effective values, overrides, and DELETE back to the configured value', async (t) => {
  const proxy = await startWithUpstream(t, {
    'scm-cache.protocols': 'HTTP',
    'scm-cache.refs.ttl': '120',
    'scm-cache.upload-pack.enabled': 'true',
    'scm-cache.upload-pack.ttl': '7200',
  })
  const get = async (p: string): Promise<unknown> => {
    const r = await call(proxy.url, 'GET', p)
    t.equal(r.status, 200, `GET ${p}`)
    t.match(r.headers['content-type'], /^application\/json/)
    return r.json
  }
  const change = async (method: string, p: string): Promise<void> => {
    const r = await call(proxy.url, method, p)
    t.equal(r.status, 204, `${method} ${p}`)
    t.equal(r.text, '', 'no body')
  }

  t.same(await get('/config/protocols'), ['HTTP'], 'from the environment')
  await change('PUT', '/config/protocols/ssh')
  t.same(await get('/config/protocols'), ['HTTP', 'SSH'], 'SSH added, canonical order')
  await change('PUT', '/config/protocols/SSH')
  t.same(await get('/config/protocols'), ['HTTP', 'SSH'], 'adding twice changes nothing')
  await change('DELETE', '/config/protocols/Http')
  t.same(await get('/config/protocols'), ['SSH'])
  await change('DELETE', '/config/protocols/SSH')
  t.same(await get('/config/protocols'), [], 'none left')
  t.same(proxy.proxy.settings.get('protocols'), [], 'the proxy reads the same value')
  await change('DELETE', '/config/protocols')
  t.same(await get('/config/protocols'), ['HTTP'], 'the configured value again')

  for (const [kind, ttl, enabled, key] of [
    ['refs', 120, false, 'refs'],
    ['upload-pack', 7200, true, 'uploadPack'],
  ] as const) {
    t.equal(await get(`/config/${kind}/enabled`), enabled, `${kind} enabled as configured`)
    await change('PUT', `/config/${kind}/enabled/${String(!enabled)}`)
    t.equal(await get(`/config/${kind}/enabled`), !enabled)
    t.equal(proxy.proxy.settings.get(`${key}Enabled`), !enabled)
    await change('PUT', `/config/${kind}/enabled/${String(enabled).toUpperCase()}`)
    t.equal(await get(`/config/${kind}/enabled`), enabled, 'any case')
    await change('PUT', `/config/${kind}/enabled/${String(!enabled)}`)
    await change('DELETE', `/config/${kind}/enabled`)
    t.equal(await get(`/config/${kind}/enabled`), enabled, 'DELETE: the configured value again')

    t.equal(await get(`/config/${kind}/ttl`), ttl, `${kind} ttl as configured`)
    await change('PUT', `/config/${kind}/ttl/30`)
    t.equal(await get(`/config/${kind}/ttl`), 30)
    t.equal(proxy.proxy.settings.get(`${key}Ttl`), 30)
    await change('PUT', '/config/' + kind + '/ttl/31536000')
    t.equal(await get(`/config/${kind}/ttl`), 31536000, 'the longest TTL')
    await change('PUT', `/config/${kind}/ttl/1`)
    t.equal(await get(`/config/${kind}/ttl`), 1, 'the shortest TTL')
    await change('DELETE', `/config/${kind}/ttl`)
    t.equal(await get(`/config/${kind}/ttl`), ttl, 'DELETE: the configured value again')
    await change('DELETE', `/config/${kind}/ttl`)
    t.equal(await get(`/config/${kind}/ttl`), ttl, 'DELETE without an override is harmless')
  }
  t.same(proxy.proxy.settings.overrides(), {}, 'no override left')

  const changes = proxy.logs.filter((r) => r.msg === 'setting changed through REST')
  t.ok(
    changes.some((r) => r['setting'] === 'scm-cache.refs.ttl' && r['value'] === 30 && r['by'] === 'loopback'),
    'one info line per change: setting, value, by',
  )
  t.ok(changes.some((r) => r['setting'] === 'scm-cache.protocols' && r['value'] === 'HTTP,SSH'))
  t.equal(
    proxy.logs.filter((r) => typeof r.msg === 'string' && r.msg.includes('only loopback clients are answered')).length,
    1,
    'the loopback-only warning is logged once at start-up',
  )
})

void t.test('bad values: 400 in the error shape, and nothing changed', async (t) => {
  const proxy = await startWithUpstream(t)
  const refused: [string, string][] = [
    ['PUT', '/config/refs/enabled/maybe'],
    ['PUT', '/config/refs/enabled/yes'],
    ['PUT', '/config/refs/enabled/1'],
    ['PUT', '/config/refs/enabled/true%20'],
    ['PUT', '/config/upload-pack/enabled/no'],
    ['PUT', '/config/upload-pack/enabled/0'],
    ['PUT', '/config/refs/ttl/0'],
    ['PUT', '/config/refs/ttl/-1'],
    ['PUT', '/config/refs/ttl/1.5'],
    ['PUT', '/config/refs/ttl/abc'],
    ['PUT', '/config/refs/ttl/1e3'],
    ['PUT', '/config/refs/ttl/0x10'],
    ['PUT', '/config/refs/ttl/%205'],
    ['PUT', '/config/refs/ttl/31536001'],
    ['PUT', '/config/upload-pack/ttl/99999999999999999999'],
    ['PUT', '/config/upload-pack/ttl/0'],
    ['PUT', '/config/upload-pack/ttl/sixty'],
    ['PUT', '/config/protocols/ftp'],
    ['PUT', '/config/protocols/HTTPS'],
    ['DELETE', '/config/protocols/git'],
    ['GET', '/caches/PROJ/../app'],
    ['GET', '/caches/PROJ/%2e%2e/app'],
    ['DELETE', '/caches/PROJ/../app'],
    ['DELETE', '/caches/PROJ/./app'],
    ['DELETE', '/caches/PROJ//app'],
    ['DELETE', '/caches/PROJ/app%00'],
    ['DELETE', '/caches/PROJ/%252e%252e/app'],
    ['DELETE', '/caches/PROJ/a%5Cb'],
    ['DELETE', '/caches/'],
    ['GET', `/caches/PROJ/${'x'.repeat(300)}`],
  ]
  for (const [method, p] of refused) {
    const r = await call(proxy.url, method, p)
    t.equal(r.status, 400, `${method} ${p.slice(0, 60)}`)
    t.ok(isErrorShape(r.json), `error shape: ${r.text.slice(0, 160)}`)
    t.notMatch(r.text, /\n\s+at /, 'no stack trace')
  }
  const msg = (await call(proxy.url, 'PUT', '/config/refs/ttl/0')).json
  t.same(msg, { errors: [{ message: 'expiryInSec: "0" is not allowed: whole seconds from 1 to 31536000' }] })
  t.same((await call(proxy.url, 'PUT', '/config/refs/enabled/maybe')).json, {
    errors: [{ message: 'status: "maybe" is not allowed: true or false (any case)' }],
  })
  t.same((await call(proxy.url, 'PUT', '/config/protocols/ftp')).json, {
    errors: [{ message: 'protocol: "ftp" is not allowed: HTTP or SSH (any case)' }],
  })

  t.same(proxy.proxy.settings.overrides(), {}, 'no setting changed')
  t.notOk(existsSync(path.join(proxy.cacheDir, 'settings.json')), 'nothing saved')
  t.equal((await call(proxy.url, 'GET', '/config/refs/ttl')).json, 60)
  t.equal((await call(proxy.url, 'GET', '/config/upload-pack/enabled')).json, true)
  t.same((await call(proxy.url, 'GET', '/config/protocols')).json, ['HTTP', 'SSH'])
  t.notOk(proxy.logs.some((r) => r.msg === 'setting changed through REST'), 'no change logged')
})

void t.test('unknown paths under the prefix: 404 in the error shape', async (t) => {
  const proxy = await startWithUpstream(t)
  for (const [method, p] of [
    ['GET', '/nope'],
    ['GET', ''],
    ['GET', '/'],
    ['PUT', '/config/refs/enabled'],
    ['PUT', '/config/refs/ttl'],
    ['POST', '/config/refs/ttl'],
    ['GET', '/config/refs'],
    ['PATCH', '/config/protocols'],
    ['PUT', '/config/protocols'],
    ['GET', '/config/refs/ttl/extra/segments'],
    ['GET', '/caches/PROJ/app'],
    ['GET', '/caches/group/sub/app'],
    ['GET', '/caches/app'],
  ] as const) {
    const r = await call(proxy.url, method, p)
    t.equal(r.status, 404, `${method} ${p}`)
    t.ok(isErrorShape(r.json), r.text.slice(0, 160))
  }
  const r = await call(proxy.url, 'POST', '/webhook', { body: '{}', headers: { 'content-type': 'application/json' } })
  t.not(r.text, '', 'the webhook path is not claimed by the REST plugin')
  t.notMatch(r.text, /no such REST resource/)
})

void t.test('caches: figures, enabled and disabledReason', async (t) => {
  const proxy = await startWithUpstream(t)
  const caches = async (): Promise<Record<string, unknown>> => {
    const r = await call(proxy.url, 'GET', '/caches')
    t.equal(r.status, 200)
    return r.json as Record<string, unknown> // asserted to be the contract shape below
  }
  const empty = { entries: 0, size: 0, hits: 0, misses: 0, joins: 0, bypasses: 0, bytesServed: 0, lastHit: null }
  const first = await caches()
  t.match(first, {
    enabled: true,
    disabledReason: null,
    freeSpace: Number,
    minimumFreeSpace: 0,
    maxSize: 0,
    totals: { refs: empty, uploadPack: empty },
    repositories: [],
  })
  t.same(Object.keys(first), ['enabled', 'disabledReason', 'freeSpace', 'minimumFreeSpace', 'maxSize', 'totals', 'repositories', 'outage'])

  await call(proxy.url, 'PUT', '/config/upload-pack/enabled/false')
  t.match(await caches(), { enabled: false, disabledReason: 'caching disabled by an administrator' }, 'both kinds off (refs off by default)')
  await call(proxy.url, 'PUT', '/config/refs/enabled/true')
  t.match(await caches(), { enabled: true, disabledReason: null }, 'refs alone is caching')
  await call(proxy.url, 'DELETE', '/config/protocols/HTTP')
  await call(proxy.url, 'DELETE', '/config/protocols/SSH')
  t.match(await caches(), { enabled: false, disabledReason: 'caching disabled by an administrator' }, 'no protocol')
  await call(proxy.url, 'DELETE', '/config/protocols')
  t.match(await caches(), { enabled: true })

  t.equal((await call(proxy.url, 'DELETE', '/caches')).status, 204, 'clearing an empty cache')
  t.equal((await call(proxy.url, 'DELETE', '/caches/PROJ/app')).status, 204, 'clearing an unknown repository is harmless')
  t.equal((await call(proxy.url, 'DELETE', '/caches/group/sub/app')).status, 204)
})

void t.test('caches: the disk guard\'s reason when it refuses new entries', async (t) => {
  const proxy = await startWithUpstream(t, { 'scm-cache.minimum.free.space': '8000t' })
  const r = await call(proxy.url, 'GET', '/caches')
  t.match(r.json, {
    enabled: false,
    disabledReason: /^free disk space .* is below the minimum 8192000\.0 GiB$/,
    minimumFreeSpace: 8000 * 1024 ** 4,
  })
})

void t.test('credentials: HTTP Basic, 401 without or with wrong ones, openapi.json behind them', async (t) => {
  const password = 'pa:ss w0rd'
  const proxy = await startWithUpstream(t, { 'rest.auth.username': 'admin', 'rest.auth.password': password })
  for (const [what, auth, header] of [
    ['no credentials', undefined, undefined],
    ['wrong password', 'admin:nope', undefined],
    ['wrong user', `root:${password}`, undefined],
    ['empty password', 'admin:', undefined],
    ['password prefix', 'admin:pa', undefined],
    ['not Basic', undefined, 'Bearer abc'],
    ['garbage', undefined, 'Basic !!!'],
  ] as const) {
    for (const [method, p] of [
      ['GET', '/config/protocols'],
      ['PUT', '/config/refs/enabled/true'],
      ['DELETE', '/caches'],
      ['GET', '/openapi.json'],
      ['GET', '/nope'],
    ] as const) {
      const r = await call(proxy.url, method, p, {
        ...(auth === undefined ? {} : { auth }),
        ...(header === undefined ? {} : { headers: { authorization: header } }),
      })
      t.equal(r.status, 401, `${what}: ${method} ${p}`)
      t.equal(r.headers['www-authenticate'], 'Basic realm="scm-cache"')
      t.ok(isErrorShape(r.json))
    }
  }
  t.same(proxy.proxy.settings.overrides(), {}, 'refused requests changed nothing')

  const auth = `admin:${password}`
  t.same((await call(proxy.url, 'GET', '/config/protocols', { auth })).json, ['HTTP', 'SSH'])
  t.equal((await call(proxy.url, 'PUT', '/config/refs/enabled/true', { auth })).status, 204)
  t.ok(
    proxy.logs.some((r) => r.msg === 'setting changed through REST' && r['by'] === 'admin'),
    'the change is logged with the admin user',
  )
  t.notOk(proxy.logs.some((r) => JSON.stringify(r).includes(password)), 'the password is never logged')
  t.notOk(
    proxy.logs.some((r) => typeof r.msg === 'string' && r.msg.includes('only loopback clients')),
    'no loopback warning with credentials configured',
  )

  const doc = await call(proxy.url, 'GET', '/openapi.json', { auth })
  t.equal(doc.status, 200)
  t.match(doc.json, {
    openapi: /^3\./,
    servers: [{ url: PREFIX }],
    components: { securitySchemes: { basic: { type: 'http', scheme: 'basic' } } },
  })
  const paths = Object.keys((doc.json as { paths: Record<string, unknown> }).paths).sort() // asserted by the match above
  t.same(paths, [
    '/caches',
    '/caches/{projectKey}/{repoSlug}',
    '/config/protocols',
    '/config/protocols/{protocol}',
    '/config/refs/enabled',
    '/config/refs/enabled/{status}',
    '/config/refs/ttl',
    '/config/refs/ttl/{expiryInSec}',
    '/config/upload-pack/enabled',
    '/config/upload-pack/enabled/{status}',
    '/config/upload-pack/fetch/enabled',
    '/config/upload-pack/fetch/enabled/{status}',
    '/config/upload-pack/ttl',
    '/config/upload-pack/ttl/{expiryInSec}',
  ])
  t.match(doc.json, {
    paths: {
      '/caches': { get: { responses: { 200: { content: { 'application/json': { schema: { properties: { totals: {}, repositories: {} } } } } } } }, delete: {} },
      '/config/refs/ttl/{expiryInSec}': { put: { parameters: [{ name: 'expiryInSec', in: 'path' }] } },
    },
  })
})

void t.test('without credentials configured only loopback clients are answered', async (t) => {
  const lan = Object.values(networkInterfaces())
    .flat()
    .find((i) => i !== undefined && i.family === 'IPv4' && !i.internal)
  if (lan === undefined) {
    t.pass('no non-loopback IPv4 address on this machine: loopback-only is covered by the unit tests')
    return
  }
  const proxy = await startWithUpstream(t, { 'proxy.http.host': '0.0.0.0' })
  const port = new URL(proxy.url).port
  const far = await call(`http://${lan.address}:${port}`, 'GET', '/config/protocols')
  t.equal(far.status, 403, `a client at ${lan.address} is refused`)
  t.ok(isErrorShape(far.json))
  const near = await call(`http://127.0.0.1:${port}`, 'GET', '/config/protocols')
  t.equal(near.status, 200, 'a loopback client is answered')
})

void t.test('REST settings survive a restart; DELETE returns to the configured value', async (t) => {
  const dir = t.testdir()
  const upstream = await startTestUpstream(t, dir)
  const env = { 'scm-cache.refs.ttl': '90' }
  const first = await startTestProxy(t, dir, upstream.url, env)
  for (const p of ['/config/refs/enabled/true', '/config/refs/ttl/15', '/config/upload-pack/ttl/600', '/config/protocols/HTTP']) {
    t.equal((await call(first.url, 'PUT', p)).status, 204, p)
  }
  t.equal((await call(first.url, 'DELETE', '/config/protocols/SSH')).status, 204)
  const file = path.join(first.cacheDir, 'settings.json')
  t.same(JSON.parse(readFileSync(file, 'utf8')), {
    version: 1,
    overrides: {
      'scm-cache.protocols': ['HTTP'],
      'scm-cache.refs.enabled': true,
      'scm-cache.refs.ttl': 15,
      'scm-cache.upload-pack.ttl': 600,
    },
  })
  await first.close()

  const second = await startTestProxy(t, dir, upstream.url, env)
  t.equal((await call(second.url, 'GET', '/config/refs/enabled')).json, true)
  t.equal((await call(second.url, 'GET', '/config/refs/ttl')).json, 15, 'REST wins over the environment')
  t.equal((await call(second.url, 'GET', '/config/upload-pack/ttl')).json, 600)
  t.same((await call(second.url, 'GET', '/config/protocols')).json, ['HTTP'])
  t.equal(second.proxy.settings.get('refsTtl'), 15, 'the proxy uses it')
  t.equal((await call(second.url, 'DELETE', '/config/refs/ttl')).status, 204)
  t.equal((await call(second.url, 'GET', '/config/refs/ttl')).json, 90, 'the environment value again')
  await second.close()

  const third = await startTestProxy(t, dir, upstream.url, env)
  t.equal((await call(third.url, 'GET', '/config/refs/ttl')).json, 90, 'the dropped override stays dropped')
  t.equal((await call(third.url, 'GET', '/config/refs/enabled')).json, true, 'the others stay')
  await third.close()

  writeFileSync(file, '{"version":1,"overrides":{"scm-cache.refs.enabled":tr')
  const fourth = await startTestProxy(t, dir, upstream.url, env)
  t.ok(
    fourth.logs.some((r) => r.level === 40 && typeof r.msg === 'string' && r.msg.includes('corrupt')),
    'a corrupt file is logged as a warning',
  )
  t.equal((await call(fourth.url, 'GET', '/config/refs/enabled')).json, false, 'and ignored: the configured value')
  t.equal((await call(fourth.url, 'PUT', '/config/refs/ttl/33')).status, 204, 'a change still works')
  t.same(JSON.parse(readFileSync(file, 'utf8')), { version: 1, overrides: { 'scm-cache.refs.ttl': 33 } }, 'and replaces the file')
  await fourth.close()

  writeFileSync(file, JSON.stringify({ version: 1, overrides: { 'scm-cache.refs.ttl': 0, 'scm-cache.refs.enabled': true, 'bogus': 1 } }))
  const fifth = await startTestProxy(t, dir, upstream.url, env)
  t.equal((await call(fifth.url, 'GET', '/config/refs/ttl')).json, 90, 'an invalid saved value is ignored')
  t.equal((await call(fifth.url, 'GET', '/config/refs/enabled')).json, true, 'the valid ones apply')
  t.equal(fifth.logs.filter((r) => r.msg === 'a saved REST setting is invalid: ignored').length, 2)
})
