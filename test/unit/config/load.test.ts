import path from 'node:path'
import t from 'tap'
import { ConfigError } from '../../../src/errors.js'
import { KEY_SPECS } from '../../../src/config/keys.js'
import {
  MUTABLE_KEYS,
  describeConfig,
  loadConfig,
  parseArgs,
  validateValue,
} from '../../../src/config/load.js'
import type { Config } from '../../../src/config/load.js'

type Env = Record<string, string | undefined>

function load(cwd: string, opts: { argv?: string[]; env?: Env } = {}): Config {
  return loadConfig({ argv: opts.argv ?? [], env: opts.env ?? {}, cwd })
}

/** The message of the ConfigError `fn` throws. */
function errorOf(fn: () => unknown): string {
  try {
    fn()
  } catch (err) {
    if (err instanceof ConfigError) return err.message
    throw err
  }
  throw new Error('expected a ConfigError, nothing was thrown')
}

/** The problems listed in a ConfigError message, one per line. */
function problemsOf(message: string): string[] {
  return message
    .split('\n')
    .slice(1)
    .map((line) => line.replace(/^ {2}- /, ''))
}

const DEFAULT_FILE = 'config/scm-cache.properties'

/** A test directory holding `contents` as the default config file. */
function withFile(
  t: { testdir(content: { config: Record<string, string> }): string },
  contents: string,
): string {
  return t.testdir({ config: { 'scm-cache.properties': contents } })
}

void t.test('defaults, with no config file at all', (t) => {
  const dir = t.testdir({})
  const cfg = load(dir)
  t.same(JSON.parse(JSON.stringify(cfg)), {
    upstream: { httpUrl: null, pathPrefix: '', sshUrl: null, sshKey: null, sshKnownHosts: null, httpCa: null, connectTimeout: 10 },
    proxy: {
      httpHost: '0.0.0.0',
      httpPort: 7990,
      sshHost: '0.0.0.0',
      sshPort: 7999,
      sshHostKey: null,
      sshAuthorizedKeys: null,
      sshAllowPush: false,
      httpIdleTimeout: 120,
      httpMaxConnections: 10000,
      httpBodyMemory: 268435456,
      httpTls: null,
      trustedProxies: [],
      shutdownDrain: 10,
    },
    cacheDir: path.join(dir, 'data/cache'),
    cache: {
      protocols: ['HTTP', 'SSH'],
      refsEnabled: false,
      refsTtl: 60,
      uploadPackEnabled: true,
      uploadPackFetchEnabled: true,
      uploadPackTtl: 3600,
      lfsEnabled: true,
      lfsMaxObjectSize: 4_294_967_296,
      minimumFreeSpace: 1_073_741_824,
      expiryCheckInterval: 300,
      maxSize: 0,
      diskCheckInterval: 30,
      outageEnabled: false,
    },
    authTtl: 300,
    credentialHeaders: ['private-token', 'job-token', 'x-auth-token'],
    webhookSecret: null,
    restAuth: null,
    authOutageTtl: 3600,
    source: { file: null },
  })
  t.end()
})

const FULL_FILE = `# every key set
upstream.http.url = https://git.example.com/bitbucket
upstream.http.path-prefix = /scm/
upstream.ssh.url = ssh://git@git.example.com:7999/
upstream.ssh.key = keys/upstream_ed25519
upstream.ssh.known-hosts = /etc/ssh/known_hosts
proxy.http.host = 127.0.0.1
proxy.http.port = 8080
proxy.ssh.host = ::
proxy.ssh.port = 2222
proxy.ssh.host-key = keys/host_ed25519
proxy.ssh.authorized-keys = keys/authorized_keys
proxy.ssh.allow-push = TRUE
cache.dir = /var/cache/scm
scm-cache.protocols = ssh
scm-cache.refs.enabled = true
scm-cache.refs.ttl = 30
scm-cache.upload-pack.enabled = false
scm-cache.upload-pack.ttl = 7200
scm-cache.minimum.free.space = 2g
scm-cache.expiry.check.interval = 600
scm-cache.max.size = 100GiB
scm-cache.disk.check.interval = 10
auth.ttl = 120
webhook.secret = hook-secret
rest.auth.username = admin
rest.auth.password = admin-password
proxy.http.tls.cert = tls/chain.pem
proxy.http.tls.key = tls/key.pem
upstream.http.ca = /etc/ssl/private-ca.pem
proxy.http.trusted-proxies = 10.0.0.0/8, 192.0.2.7
proxy.shutdown.drain = 0
`

void t.test('values from the file', (t) => {
  const dir = withFile(t, FULL_FILE)
  const cfg = load(dir)
  t.equal(cfg.source.file, path.join(dir, DEFAULT_FILE))
  t.equal(cfg.upstream.httpUrl?.href, 'https://git.example.com/bitbucket/')
  t.equal(cfg.upstream.pathPrefix, 'scm')
  t.equal(cfg.upstream.sshUrl?.href, 'ssh://git@git.example.com:7999')
  t.equal(cfg.upstream.sshKey, path.join(dir, 'keys/upstream_ed25519'))
  t.equal(cfg.upstream.sshKnownHosts, '/etc/ssh/known_hosts')
  t.same(cfg.proxy, {
    httpHost: '127.0.0.1',
    httpPort: 8080,
    sshHost: '::',
    sshPort: 2222,
    sshHostKey: path.join(dir, 'keys/host_ed25519'),
    sshAuthorizedKeys: path.join(dir, 'keys/authorized_keys'),
    sshAllowPush: true,
    httpIdleTimeout: 120,
    httpMaxConnections: 10000,
    httpBodyMemory: 268435456,
    httpTls: { cert: path.join(dir, 'tls/chain.pem'), key: path.join(dir, 'tls/key.pem') },
    trustedProxies: ['10.0.0.0/8', '192.0.2.7/32'],
    shutdownDrain: 0,
  })
  t.equal(cfg.upstream.httpCa, '/etc/ssl/private-ca.pem')
  t.equal(cfg.cacheDir, '/var/cache/scm')
  t.same(cfg.cache, {
    protocols: ['SSH'],
    refsEnabled: true,
    refsTtl: 30,
    uploadPackEnabled: false,
    uploadPackFetchEnabled: true,
    uploadPackTtl: 7200,
    lfsEnabled: true,
    lfsMaxObjectSize: 4_294_967_296,
    minimumFreeSpace: 2 * 1024 ** 3,
    expiryCheckInterval: 600,
    maxSize: 100 * 1024 ** 3,
    diskCheckInterval: 10,
    outageEnabled: false,
  })
  t.equal(cfg.authTtl, 120)
  t.equal(cfg.webhookSecret, 'hook-secret')
  t.same(cfg.restAuth, { username: 'admin', password: 'admin-password' })
  t.end()
})

void t.test('values are trimmed, except secrets', (t) => {
  const dir = withFile(
    t,
    'scm-cache.refs.ttl = 45   \nwebhook.secret = s3cret  \nproxy.http.host=  localhost \t\n',
  )
  const cfg = load(dir)
  t.equal(cfg.cache.refsTtl, 45)
  t.equal(cfg.proxy.httpHost, 'localhost')
  t.equal(cfg.webhookSecret, 's3cret  ')
  t.end()
})

void t.test('the environment wins over the file', (t) => {
  const dir = withFile(
    t,
    'scm-cache.refs.ttl = 30\nproxy.http.port = 8080\nupstream.http.url = http://a/\n',
  )
  const cfg = load(dir, {
    env: {
      SCM_CACHE_SCM_CACHE_REFS_TTL: '90',
      SCM_CACHE_PROXY_HTTP_PORT: '9090',
      SCM_CACHE_AUTH_TTL: '10',
      SCM_CACHE_UPSTREAM_HTTP_URL: 'http://b:8080',
      PATH: '/usr/bin',
    },
  })
  t.equal(cfg.cache.refsTtl, 90)
  t.equal(cfg.proxy.httpPort, 9090)
  t.equal(cfg.authTtl, 10)
  t.equal(cfg.upstream.httpUrl?.href, 'http://b:8080/')
  t.end()
})

void t.test('every environment form of a scm-cache key', (t) => {
  const dir = t.testdir({})
  const forms = {
    SCM_CACHE_SCM_CACHE_REFS_ENABLED: 'true',
    SCM_CACHE_PLUGIN_BITBUCKET_SCM_CACHE_REFS_ENABLED: 'true',
    SCM_CACHE_REFS_ENABLED: 'true',
  }
  for (const [name, value] of Object.entries(forms)) {
    t.equal(load(dir, { env: { [name]: value } }).cache.refsEnabled, true, name)
  }
  t.end()
})

void t.test('an empty environment value unsets an optional key', (t) => {
  const dir = withFile(t, 'upstream.http.url = http://a/\nwebhook.secret = x\n')
  const cfg = load(dir, { env: { SCM_CACHE_UPSTREAM_HTTP_URL: '', SCM_CACHE_WEBHOOK_SECRET: '' } })
  t.equal(cfg.upstream.httpUrl, null)
  t.equal(cfg.webhookSecret, null)
  t.equal(
    load(dir, { env: { SCM_CACHE_WEBHOOK_SECRET: undefined } }).webhookSecret,
    'x',
    'undefined is ignored',
  )
  t.end()
})

void t.test('an empty value for a key with a default is an error, not the default', (t) => {
  const dir = t.testdir({})
  const message = errorOf(() => load(dir, { env: { SCM_CACHE_PROXY_HTTP_PORT: '' } }))
  t.match(
    message,
    'proxy.http.port: "" is not allowed: a whole number from 0 to 65535 (environment SCM_CACHE_PROXY_HTTP_PORT)',
  )
  t.end()
})

void t.test('Bitbucket alias keys in the file', (t) => {
  const dir = withFile(
    t,
    'plugin.bitbucket-scm-cache.refs.enabled = true\nplugin.bitbucket-scm-cache.upload-pack.ttl = 60\nplugin.bitbucket-scm-cache.protocols = HTTP\n',
  )
  const cfg = load(dir)
  t.equal(cfg.cache.refsEnabled, true)
  t.equal(cfg.cache.uploadPackTtl, 60)
  t.same(cfg.cache.protocols, ['HTTP'])
  t.end()
})

void t.test(
  'an alias in one source and the canonical key in another: the environment wins',
  (t) => {
    const dir = withFile(t, 'plugin.bitbucket-scm-cache.refs.ttl = 10\n')
    t.equal(load(dir, { env: { SCM_CACHE_SCM_CACHE_REFS_TTL: '20' } }).cache.refsTtl, 20)
    t.end()
  },
)

void t.test('both the alias and the canonical key in the file is an error', (t) => {
  const dir = withFile(t, 'scm-cache.refs.ttl = 10\n\nplugin.bitbucket-scm-cache.refs.ttl = 10\n')
  const message = errorOf(() => load(dir))
  t.match(
    message,
    `scm-cache.refs.ttl (${DEFAULT_FILE}:1) and plugin.bitbucket-scm-cache.refs.ttl (${DEFAULT_FILE}:3) are the same setting`,
  )
  t.end()
})

void t.test('two environment names for the same key is an error', (t) => {
  const dir = t.testdir({})
  const message = errorOf(() =>
    load(dir, {
      env: { SCM_CACHE_REFS_TTL: '10', SCM_CACHE_PLUGIN_BITBUCKET_SCM_CACHE_REFS_TTL: '10' },
    }),
  )
  t.match(
    message,
    'environment SCM_CACHE_PLUGIN_BITBUCKET_SCM_CACHE_REFS_TTL and environment SCM_CACHE_REFS_TTL are the same setting (scm-cache.refs.ttl)',
  )
  t.end()
})

void t.test('a key set twice in the file is an error', (t) => {
  const dir = withFile(t, 'auth.ttl = 10\nauth.ttl = 20\n')
  t.match(
    errorOf(() => load(dir)),
    `auth.ttl is set twice (${DEFAULT_FILE}:1 and ${DEFAULT_FILE}:2)`,
  )
  t.end()
})

/** [key, bad value, what is allowed], at least one per validator. */
const BAD_VALUES: readonly (readonly [string, string, string])[] = [
  ['upstream.http.url', 'ftp://git.example.com/', 'an http:// or https:// URL'],
  ['upstream.http.url', 'git.example.com', 'an http:// or https:// URL'],
  ['upstream.http.path-prefix', 'scm/../x', 'a path prefix such as scm/'],
  ['upstream.ssh.url', 'git@git.example.com:scm', 'ssh://user@host[:port][/prefix]'],
  ['upstream.ssh.url', 'ssh://git.example.com', 'ssh://user@host[:port][/prefix]'],
  ['upstream.ssh.key', 'a\u0000b', 'a file path'],
  ['proxy.http.host', 'local host', 'a host name or IP address'],
  ['proxy.http.port', '70000', 'a whole number from 0 to 65535'],
  ['proxy.ssh.port', 'ssh', 'a whole number from 0 to 65535'],
  ['proxy.ssh.allow-push', 'yes', 'true or false'],
  ['cache.dir', '', 'a directory path'],
  ['scm-cache.protocols', 'HTTP,GIT', 'a comma-separated list of HTTP and SSH'],
  ['scm-cache.refs.enabled', '1', 'true or false'],
  ['scm-cache.refs.ttl', 'abc', 'whole seconds from 1 to 31536000'],
  ['scm-cache.refs.ttl', '0', 'whole seconds from 1 to 31536000'],
  ['scm-cache.upload-pack.ttl', '1.5', 'whole seconds from 1 to 31536000'],
  ['scm-cache.expiry.check.interval', '31536001', 'whole seconds from 1 to 31536000'],
  ['scm-cache.disk.check.interval', '-5', 'whole seconds from 1 to 31536000'],
  ['auth.ttl', '5m', 'whole seconds from 1 to 31536000'],
  ['scm-cache.minimum.free.space', '-1', 'a whole number of bytes'],
  ['scm-cache.max.size', '1.5g', 'a whole number of bytes'],
  ['scm-cache.max.size', '10 petabytes', 'a whole number of bytes'],
  ['rest.auth.username', 'ad:min', 'a user name without ":"'],
]

void t.test('a bad value names the key, the value and what is allowed', (t) => {
  for (const [key, value, allowed] of BAD_VALUES) {
    const dir = t.testdir({})
    const env = { [`SCM_CACHE_${key.toUpperCase().replace(/[.-]/g, '_')}`]: value }
    if (key === 'rest.auth.username') env['SCM_CACHE_REST_AUTH_PASSWORD'] = 'pw'
    const message = errorOf(() => load(dir, { env }))
    t.match(
      message,
      `${key}: ${JSON.stringify(value)} is not allowed: ${allowed}`,
      `${key}=${value}`,
    )
  }
  t.end()
})

void t.test('a bad value in the file gives the file and line', (t) => {
  const dir = withFile(t, '# comment\n\nscm-cache.refs.ttl = abc\n')
  t.equal(
    errorOf(() => load(dir)),
    `invalid configuration (1 problem):\n  - scm-cache.refs.ttl: "abc" is not allowed: whole seconds from 1 to 31536000 (${DEFAULT_FILE}:3)`,
  )
  t.end()
})

void t.test('a bad value under an alias names the alias', (t) => {
  const dir = withFile(t, 'plugin.bitbucket-scm-cache.refs.enabled = maybe\n')
  t.match(
    errorOf(() => load(dir)),
    'plugin.bitbucket-scm-cache.refs.enabled: "maybe" is not allowed: true or false',
  )
  t.end()
})

void t.test('all problems are reported at once, one per line', (t) => {
  const dir = withFile(
    t,
    'scm-cache.refs.ttl = abc\nscm-cache.ref.ttl = 5\nproxy.http.port = -1\nrest.auth.username = admin\n',
  )
  const message = errorOf(() => load(dir, { env: { SCM_CACHE_AUTH_TTL: '0', SCM_CACHE_FOO: '1' } }))
  const problems = problemsOf(message)
  t.match(message, /^invalid configuration \(6 problems\):\n/)
  t.equal(problems.length, 6)
  for (const part of [
    'unknown key "scm-cache.ref.ttl": did you mean scm-cache.refs.ttl?',
    'unknown environment variable SCM_CACHE_FOO',
    'scm-cache.refs.ttl: "abc"',
    'proxy.http.port: "-1"',
    'auth.ttl: "0"',
    'rest.auth.username is set but rest.auth.password is not: set both or neither',
  ]) {
    t.ok(
      problems.some((p) => p.startsWith(part)),
      part,
    )
  }
  t.end()
})

void t.test('an unknown key in the file is an error with the closest key suggested', (t) => {
  const dir = withFile(t, 'scm-cache.refs.ttl = 5\nscm-cache.refs.tll = 10\n')
  t.match(
    errorOf(() => load(dir)),
    `unknown key "scm-cache.refs.tll": did you mean scm-cache.refs.ttl? (${DEFAULT_FILE}:2)`,
  )
  const aliasTypo = withFile(t, 'plugin.bitbucket-scm-cache.upload-pack.enable = true\n')
  t.match(
    errorOf(() => load(aliasTypo)),
    'did you mean plugin.bitbucket-scm-cache.upload-pack.enabled?',
  )
  const caseTypo = withFile(t, 'Cache.Dir = /x\n')
  t.match(
    errorOf(() => load(caseTypo)),
    'unknown key "Cache.Dir": did you mean cache.dir?',
  )
  const nothingClose = withFile(t, 'completely.unrelated.setting.name.here = 1\n')
  const message = errorOf(() => load(nothingClose))
  t.match(message, 'unknown key "completely.unrelated.setting.name.here"')
  t.notMatch(message, 'did you mean')
  t.end()
})

void t.test('an unknown SCM_CACHE_ variable is an error with the closest name suggested', (t) => {
  const dir = t.testdir({})
  t.match(
    errorOf(() => load(dir, { env: { SCM_CACHE_REFS_TTLS: '5' } })),
    'unknown environment variable SCM_CACHE_REFS_TTLS: did you mean SCM_CACHE_REFS_TTL?',
  )
  t.match(
    errorOf(() => load(dir, { env: { SCM_CACHE_PROXY_HTTP_PROT: '80' } })),
    'did you mean SCM_CACHE_PROXY_HTTP_PORT?',
  )
  t.match(
    errorOf(() => load(dir, { env: { SCM_CACHE_CONFG: 'x' } })),
    'did you mean SCM_CACHE_CONFIG?',
  )
  t.match(
    errorOf(() => load(dir, { env: { SCM_CACHE_plugin_bitbucket_scm_cache_refs_ttl: '5' } })),
    'did you mean SCM_CACHE_PLUGIN_BITBUCKET_SCM_CACHE_REFS_TTL?',
  )
  t.doesNotThrow(() =>
    load(dir, { env: { SCM_CACHEX: '1', HOME: '/root', scm_cache_refs_ttl: 'x' } }),
  )
  t.end()
})

void t.test('secrets never appear in error messages', (t) => {
  const dir = withFile(
    t,
    'rest.auth.password = hunter2-password\nwebhook.secrte = hunter2-webhook\nupstream.ssh.url = ssh://git:hunter2-ssh@host/\nupstream.http.url = https://u:hunter2-http@host/?x\n',
  )
  const message = errorOf(() => load(dir, { env: { SCM_CACHE_WEBHOOK_SECRETS: 'hunter2-env' } }))
  t.notMatch(message, 'hunter2')
  t.match(message, 'rest.auth.password is set but rest.auth.username is not')
  t.match(message, 'unknown key "webhook.secrte": did you mean webhook.secret?')
  t.match(message, 'upstream.ssh.url: "ssh://git:(hidden)@host/" is not allowed')
  t.match(message, 'upstream.http.url: "https://u:(hidden)@host/?x" is not allowed')
  t.end()
})

void t.test('size suffixes', (t) => {
  const dir = t.testdir({})
  const cases: Record<string, number> = {
    '0': 0,
    '500': 500,
    '1k': 1024,
    '1KB': 1024,
    '1KiB': 1024,
    '64m': 64 * 1024 ** 2,
    '64 MiB': 64 * 1024 ** 2,
    '2G': 2 * 1024 ** 3,
    '2gb': 2 * 1024 ** 3,
    '1t': 1024 ** 4,
    '1TiB': 1024 ** 4,
  }
  for (const [raw, value] of Object.entries(cases)) {
    const cfg = load(dir, { env: { SCM_CACHE_MAX_SIZE: raw, SCM_CACHE_MINIMUM_FREE_SPACE: raw } })
    t.equal(cfg.cache.maxSize, value, raw)
    t.equal(cfg.cache.minimumFreeSpace, value, raw)
  }
  t.end()
})

void t.test('protocols list', (t) => {
  const dir = t.testdir({})
  const cases: Record<string, string[]> = {
    'HTTP,SSH': ['HTTP', 'SSH'],
    'ssh,http': ['HTTP', 'SSH'],
    ' Ssh ': ['SSH'],
    'http, HTTP': ['HTTP'],
    '': [],
  }
  for (const [raw, value] of Object.entries(cases)) {
    t.same(
      load(dir, { env: { SCM_CACHE_PROTOCOLS: raw } }).cache.protocols,
      value,
      JSON.stringify(raw),
    )
  }
  const empty = withFile(t, 'scm-cache.protocols =\n')
  t.same(load(empty).cache.protocols, [], 'empty in the file means none')
  t.end()
})

void t.test('config file selection', (t) => {
  const dir = t.testdir({
    config: { 'scm-cache.properties': 'auth.ttl = 1\n' },
    'a.properties': 'auth.ttl = 2\n',
    etc: { 'b.properties': 'auth.ttl = 3\n' },
  })
  t.equal(load(dir).authTtl, 1, 'the default file')
  t.equal(load(dir, { argv: ['--config', 'a.properties'] }).authTtl, 2, '--config FILE')
  t.equal(load(dir, { argv: ['--config=etc/b.properties'] }).authTtl, 3, '--config=FILE')
  const absolute = path.join(dir, 'etc/b.properties')
  const cfg = load(dir, { argv: [`--config=${absolute}`] })
  t.equal(cfg.source.file, absolute)
  t.equal(load(dir, { env: { SCM_CACHE_CONFIG: 'a.properties' } }).authTtl, 2, 'SCM_CACHE_CONFIG')
  t.equal(
    load(dir, { argv: ['--config', 'etc/b.properties'], env: { SCM_CACHE_CONFIG: 'a.properties' } })
      .authTtl,
    3,
    '--config wins over SCM_CACHE_CONFIG',
  )
  t.equal(
    load(dir, { env: { SCM_CACHE_CONFIG: '' } }).authTtl,
    1,
    'an empty SCM_CACHE_CONFIG is unset',
  )
  t.equal(
    load(dir, { env: { SCM_CACHE_CONFIG: 'a.properties', SCM_CACHE_AUTH_TTL: '9' } }).authTtl,
    9,
  )
  t.end()
})

void t.test('a missing explicitly named file is an error; a missing default file is not', (t) => {
  const dir = t.testdir({})
  t.equal(load(dir).source.file, null)
  t.match(
    errorOf(() => load(dir, { argv: ['--config', 'nope.properties'] })),
    'config file nope.properties not found',
  )
  t.match(
    errorOf(() => load(dir, { env: { SCM_CACHE_CONFIG: 'nope.properties' } })),
    'config file nope.properties not found',
  )
  const message = errorOf(() =>
    load(dir, { argv: ['--config=nope.properties'], env: { SCM_CACHE_REFS_TTL: 'x' } }),
  )
  t.match(message, /2 problems/, 'other problems are still reported')
  t.end()
})

void t.test('a config file that cannot be read is an error', (t) => {
  const dir = t.testdir({ config: { 'scm-cache.properties': {} } })
  t.match(
    errorOf(() => load(dir)),
    `config file ${DEFAULT_FILE} cannot be read`,
  )
  t.end()
})

void t.test('line numbers and odd syntax', (t) => {
  const dir = withFile(
    t,
    '\uFEFF! bang comment\r\n# hash comment\r\nauth.ttl : 7\r\nscm-cache.refs.ttl \\\r\n    = 8\r\nwebhook.secret=a\\\n  b\nbad.key\n',
  )
  const message = errorOf(() => load(dir))
  t.match(message, `unknown key "bad.key" (${DEFAULT_FILE}:8)`)
  const ok = withFile(t, '\uFEFFauth.ttl : 7\nscm-cache.refs.ttl   8\nwebhook.secret=a\\\n  b\n')
  const cfg = load(ok)
  t.equal(cfg.authTtl, 7)
  t.equal(cfg.cache.refsTtl, 8)
  t.equal(cfg.webhookSecret, 'ab')
  t.end()
})

void t.test('the returned object is deep-frozen', (t) => {
  const dir = withFile(t, FULL_FILE)
  const cfg = load(dir)
  const visit = (value: unknown, where: string): void => {
    if (typeof value !== 'object' || value === null) return
    t.ok(Object.isFrozen(value), `${where} is frozen`)
    for (const [k, child] of Object.entries(value)) visit(child, `${where}.${k}`)
  }
  visit(cfg, 'cfg')
  t.ok(Object.isFrozen(cfg.upstream.httpUrl))
  t.equal(Reflect.defineProperty(cfg.cache, 'refsTtl', { value: 1 }), false)
  t.equal(Reflect.set(cfg.cache, 'refsTtl', 1), false)
  t.equal(Reflect.set(cfg, 'cacheDir', '/tmp'), false)
  t.equal(Reflect.set(cfg.cache.protocols, 0, 'GIT'), false)
  t.throws(() => {
    'use strict'
    Object.assign(cfg.proxy, { httpPort: 1 })
  }, TypeError)
  t.equal(cfg.cache.refsTtl, 30)
  t.equal(cfg.proxy.httpPort, 8080)
  t.same(cfg.cache.protocols, ['SSH'])
  t.end()
})

void t.test('rest.auth needs both or neither', (t) => {
  const dir = t.testdir({})
  t.equal(load(dir).restAuth, null)
  t.same(
    load(dir, { env: { SCM_CACHE_REST_AUTH_USERNAME: 'a', SCM_CACHE_REST_AUTH_PASSWORD: 'b' } })
      .restAuth,
    {
      username: 'a',
      password: 'b',
    },
  )
  t.match(
    errorOf(() => load(dir, { env: { SCM_CACHE_REST_AUTH_USERNAME: 'a' } })),
    'rest.auth.username is set but rest.auth.password is not: set both or neither',
  )
  t.match(
    errorOf(() => load(dir, { env: { SCM_CACHE_REST_AUTH_PASSWORD: 'b' } })),
    'rest.auth.password is set but rest.auth.username is not: set both or neither',
  )
  t.end()
})

void t.test('proxy.http.tls needs both or neither', (t) => {
  const dir = t.testdir({})
  t.same(
    load(dir, { env: { SCM_CACHE_PROXY_HTTP_TLS_CERT: 'c.pem', SCM_CACHE_PROXY_HTTP_TLS_KEY: 'k.pem' } }).proxy
      .httpTls,
    { cert: path.join(dir, 'c.pem'), key: path.join(dir, 'k.pem') },
  )
  t.match(
    errorOf(() => load(dir, { env: { SCM_CACHE_PROXY_HTTP_TLS_CERT: 'c.pem' } })),
    'proxy.http.tls.cert is set but proxy.http.tls.key is not: set both or neither',
  )
  t.match(
    errorOf(() => load(dir, { env: { SCM_CACHE_PROXY_HTTP_TLS_KEY: 'k.pem' } })),
    'proxy.http.tls.key is set but proxy.http.tls.cert is not: set both or neither',
  )
  t.end()
})

void t.test('parseArgs', (t) => {
  t.same(parseArgs([]), { configFile: null, help: false })
  t.same(parseArgs(['--help']), { configFile: null, help: true })
  t.same(parseArgs(['-h']), { configFile: null, help: true })
  t.same(parseArgs(['--config', 'x.properties']), { configFile: 'x.properties', help: false })
  t.same(parseArgs(['--config=x.properties', '--help']), { configFile: 'x.properties', help: true })
  const known = '(known options: --config FILE, --config=FILE, --help (-h))'
  t.equal(
    errorOf(() => parseArgs(['--verbose'])),
    `unknown option "--verbose" ${known}`,
  )
  t.equal(
    errorOf(() => parseArgs(['serve'])),
    `unknown argument "serve" ${known}`,
  )
  t.match(
    errorOf(() => parseArgs(['--config'])),
    '--config needs a file name',
  )
  t.match(
    errorOf(() => parseArgs(['--config='])),
    '--config needs a file name',
  )
  t.match(
    errorOf(() => parseArgs(['--config=a', '--config=b'])),
    '--config given more than once',
  )
  t.match(
    errorOf(() => loadConfig({ argv: ['--port=1'], env: {}, cwd: '/' })),
    'unknown option "--port=1"',
  )
  t.end()
})

void t.test('validateValue', (t) => {
  t.same(validateValue('scm-cache.refs.ttl', '120'), { ok: true, value: 120 })
  t.same(validateValue('scm-cache.refs.enabled', 'TRUE'), { ok: true, value: true })
  t.same(validateValue('scm-cache.upload-pack.enabled', ' false '), { ok: true, value: false })
  t.same(validateValue('scm-cache.protocols', 'ssh,http'), { ok: true, value: ['HTTP', 'SSH'] })
  t.same(validateValue('scm-cache.upload-pack.ttl', '0'), {
    ok: false,
    message: 'scm-cache.upload-pack.ttl: "0" is not allowed: whole seconds from 1 to 31536000',
  })
  const notMutable = validateValue('cache.dir', '/tmp')
  t.match(notMutable, { ok: false, message: /^cache\.dir cannot be changed at run time/ })
  t.match(validateValue('scm-cache.refs.tll', '1'), {
    ok: false,
    message: /did you mean scm-cache\.refs\.ttl\?/,
  })
  t.match(validateValue('plugin.bitbucket-scm-cache.refs.ttl', '1'), {
    ok: false,
    message: /did you mean scm-cache\.refs\.ttl\?/,
  })
  t.match(validateValue('rest.auth.password', 'hunter2'), {
    ok: false,
    message: /^rest\.auth\.password cannot/,
  })
  t.notMatch(JSON.stringify(validateValue('rest.auth.password', 'hunter2')), 'hunter2')
  for (const key of MUTABLE_KEYS) {
    const spec = KEY_SPECS.find((s) => s.key === key)
    t.ok(
      spec?.default !== null && spec?.default !== undefined && validateValue(key, spec.default).ok,
      key,
    )
  }
  t.end()
})

void t.test('describeConfig shows lists joined, an unset list or pair as null', (t) => {
  const dir = withFile(t, FULL_FILE)
  t.match(describeConfig(load(dir)), {
    'proxy.http.trusted-proxies': '10.0.0.0/8,192.0.2.7/32',
    'auth.credential-headers': 'private-token,job-token,x-auth-token',
    'proxy.http.tls.cert': path.join(dir, 'tls/chain.pem'),
    'proxy.http.tls.key': path.join(dir, 'tls/key.pem'),
    'upstream.ssh.url': 'ssh://git@git.example.com:7999',
    'proxy.ssh.allow-push': true,
    'proxy.http.port': 8080,
  })
  const defaults = describeConfig(load(t.testdir({})))
  t.equal(defaults['proxy.http.trusted-proxies'], null)
  t.equal(defaults['proxy.http.tls.cert'], null)
  t.equal(defaults['rest.auth.username'], null)
  t.equal(defaults['auth.credential-headers'], 'private-token,job-token,x-auth-token')
  const none = describeConfig(load(t.testdir({}), { env: { SCM_CACHE_AUTH_CREDENTIAL_HEADERS: '', SCM_CACHE_REFS_TTL: '5' } }))
  t.equal(none['auth.credential-headers'], '', 'a required list set empty is empty, not unset')
  t.equal(none['scm-cache.refs.ttl'], 5)
  t.end()
})

void t.test('credentials in upstream.http.url are refused, and not echoed', (t) => {
  const dir = withFile(
    t,
    FULL_FILE.replace('https://git.example.com', 'https://bot:token123@git.example.com'),
  )
  t.throws(() => load(dir), /upstream\.http\.url: "https:\/\/bot:\(hidden\)@git\.example\.com\/bitbucket" is not allowed: .*without user:password@/)
  try {
    load(dir)
  } catch (err) {
    t.notMatch(String(err), 'token123', 'the password is not in the message')
  }
  t.end()
})

void t.test('describeConfig', (t) => {
  const dir = withFile(t, FULL_FILE)
  const cfg = load(dir)
  const described = describeConfig(cfg)
  const text = JSON.stringify(described)
  t.notMatch(text, 'admin-password')
  t.notMatch(text, 'hook-secret')
  t.match(described, {
    configFile: path.join(dir, DEFAULT_FILE),
    'upstream.http.url': 'https://git.example.com/bitbucket/',
    'webhook.secret': '(set)',
    'rest.auth.username': 'admin',
    'rest.auth.password': '(set)',
    'scm-cache.protocols': 'SSH',
    'scm-cache.max.size': 100 * 1024 ** 3,
  })
  t.same(
    Object.keys(described).sort(),
    ['configFile', ...KEY_SPECS.map((s) => s.key)].sort(),
    'every key',
  )
  const defaults = describeConfig(load(t.testdir({})))
  t.equal(defaults['webhook.secret'], null)
  t.equal(defaults['rest.auth.password'], null)
  t.equal(defaults['upstream.http.url'], null)
  t.end()
})
