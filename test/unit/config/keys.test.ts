import t from 'tap'
import {
  CONFIG_FILE_ENV,
  KEY_SPECS,
  PAIRS,
  aliasOf,
  envNameOf,
  envNamesOf,
  fileNamesOf,
} from '../../../src/config/keys.js'
import type { KeySpec } from '../../../src/config/keys.js'
import { MUTABLE_KEYS } from '../../../src/config/load.js'

void t.test('the table covers exactly the documented keys', (t) => {
  t.same(
    KEY_SPECS.map((s) => s.key),
    [
      'upstream.http.url',
      'upstream.http.path-prefix',
      'upstream.ssh.url',
      'upstream.ssh.key',
      'upstream.ssh.known-hosts',
      'proxy.http.host',
      'proxy.http.port',
      'proxy.ssh.host',
      'proxy.ssh.port',
      'proxy.ssh.host-key',
      'proxy.ssh.authorized-keys',
      'proxy.ssh.allow-push',
      'proxy.http.idle-timeout',
      'proxy.http.max-connections',
      'proxy.http.body-memory',
      'cache.dir',
      'scm-cache.protocols',
      'scm-cache.refs.enabled',
      'scm-cache.refs.ttl',
      'scm-cache.upload-pack.enabled',
      'scm-cache.upload-pack.fetch.enabled',
      'scm-cache.upload-pack.ttl',
      'scm-cache.lfs.enabled',
      'scm-cache.lfs.max.object.size',
      'scm-cache.minimum.free.space',
      'scm-cache.expiry.check.interval',
      'scm-cache.max.size',
      'scm-cache.disk.check.interval',
      'auth.ttl',
      'auth.credential-headers',
      'webhook.secret',
      'rest.auth.username',
      'rest.auth.password',
      'proxy.http.tls.cert',
      'proxy.http.tls.key',
      'upstream.http.ca',
      'proxy.http.trusted-proxies',
      'proxy.shutdown.drain',
      'upstream.connect-timeout',
      'scm-cache.outage.enabled',
      'auth.outage-ttl',
    ],
  )
  t.end()
})

void t.test('every default is a valid value and every key has a one-line description', (t) => {
  for (const spec of KEY_SPECS) {
    if (spec.default !== null) {
      t.ok(spec.validator.parse(spec.default, { cwd: '/' }).ok, `default of ${spec.key}`)
    }
    t.match(spec.description, /^[^\n]+\.$/, `description of ${spec.key}`)
  }
  t.end()
})

void t.test('documented defaults', (t) => {
  const defaults = Object.fromEntries(KEY_SPECS.map((s) => [s.key, s.default]))
  t.match(defaults, {
    'upstream.http.url': null,
    'upstream.http.path-prefix': '',
    'proxy.http.host': '0.0.0.0',
    'proxy.http.port': '7990',
    'proxy.ssh.port': '7999',
    'proxy.ssh.allow-push': 'false',
    'cache.dir': './data/cache',
    'scm-cache.protocols': 'HTTP,SSH',
    'scm-cache.refs.enabled': 'false',
    'scm-cache.refs.ttl': '60',
    'scm-cache.upload-pack.enabled': 'true',
    'scm-cache.upload-pack.ttl': '3600',
    'scm-cache.minimum.free.space': '1073741824',
    'scm-cache.expiry.check.interval': '300',
    'scm-cache.max.size': '0',
    'scm-cache.disk.check.interval': '30',
    'auth.ttl': '300',
    'webhook.secret': null,
    'rest.auth.username': null,
    'rest.auth.password': null,
    'proxy.http.tls.cert': null,
    'proxy.http.tls.key': null,
    'upstream.http.ca': null,
    'proxy.http.trusted-proxies': null,
    'proxy.shutdown.drain': '10',
  })
  t.end()
})

void t.test('aliases and environment names', (t) => {
  t.equal(aliasOf('scm-cache.refs.enabled'), 'plugin.bitbucket-scm-cache.refs.enabled')
  t.equal(aliasOf('upstream.http.url'), null)
  t.same(fileNamesOf('auth.ttl'), ['auth.ttl'])
  t.equal(envNameOf('upstream.http.url'), 'SCM_CACHE_UPSTREAM_HTTP_URL')
  t.equal(envNameOf('proxy.ssh.host-key'), 'SCM_CACHE_PROXY_SSH_HOST_KEY')
  t.same(envNamesOf('scm-cache.refs.enabled'), [
    'SCM_CACHE_SCM_CACHE_REFS_ENABLED',
    'SCM_CACHE_PLUGIN_BITBUCKET_SCM_CACHE_REFS_ENABLED',
    'SCM_CACHE_REFS_ENABLED',
  ])
  t.same(envNamesOf('cache.dir'), ['SCM_CACHE_CACHE_DIR'])
  t.end()
})

void t.test('names never collide', (t) => {
  const fileNames = KEY_SPECS.flatMap((s) => fileNamesOf(s.key))
  t.equal(new Set(fileNames).size, fileNames.length, 'file names are unique')
  const envNames = KEY_SPECS.flatMap((s) => envNamesOf(s.key))
  t.equal(new Set(envNames).size, envNames.length, 'environment names are unique')
  t.notOk(envNames.includes(CONFIG_FILE_ENV), `${CONFIG_FILE_ENV} is not a key`)
  t.end()
})

void t.test('mutable keys are keys', (t) => {
  const keys = new Set(KEY_SPECS.map((s) => s.key))
  for (const key of MUTABLE_KEYS) t.ok(keys.has(key), key)
  t.end()
})

void t.test('every key has its own place in Config', (t) => {
  const places: readonly string[] = KEY_SPECS.map((s) => s.at)
  t.equal(new Set(places).size, places.length, 'no two keys share a place')
  for (const spec of KEY_SPECS as readonly KeySpec[]) {
    t.match(spec.at, /^[a-z][A-Za-z]*(\.[a-z][A-Za-z]*)*$/, `${spec.key} is at a dotted path of member names`)
    const inside = places.filter((at) => at.startsWith(`${spec.at}.`))
    t.same(inside, [], `nothing is stored inside the value of ${spec.key}`)
    t.notOk(spec.at === 'source' || spec.at.startsWith('source.'), `${spec.key} is not under source (the loader's own)`)
  }
  t.end()
})

void t.test('each pair is two optional keys, and nothing else is stored there', (t) => {
  const places: readonly string[] = KEY_SPECS.map((s) => s.at)
  for (const at of PAIRS) {
    const members = KEY_SPECS.filter((s) => s.at.startsWith(`${at}.`))
    t.equal(members.length, 2, `${at} has two members`)
    for (const m of members) t.equal(m.default, null, `${m.key} is optional`)
    t.notOk(places.includes(at), `${at} is not itself a key`)
  }
  t.end()
})

void t.test('the mutable keys are the run-time settings of DESIGN §6 (and the fetch switch of §2)', (t) => {
  t.same(MUTABLE_KEYS, [
    'scm-cache.protocols',
    'scm-cache.refs.enabled',
    'scm-cache.refs.ttl',
    'scm-cache.upload-pack.enabled',
    'scm-cache.upload-pack.fetch.enabled',
    'scm-cache.upload-pack.ttl',
  ])
  t.end()
})

void t.test('the table is frozen', (t) => {
  t.ok(Object.isFrozen(KEY_SPECS))
  for (const spec of KEY_SPECS) t.ok(Object.isFrozen(spec), spec.key)
  t.end()
})
