/**
 * Every configuration key, in one table: the source of truth for validation,
 * defaults, the shipped `config/scm-cache.properties` and the docs. The key
 * names, their environment names and their meaning are a contract (DESIGN.md
 * §4): never rename one.
 *
 * Defaults are written as raw text and go through the same validator as a
 * value from the file, so a default is always a valid value.
 */
import * as v from './validators.js'
import type { Validator } from './validators.js'

export interface KeySpec<T> {
  /** Canonical name, e.g. `scm-cache.refs.ttl`. */
  readonly key: string
  readonly validator: Validator<T>
  /** Raw default text; `null` means unset. */
  readonly default: string | null
  readonly description: string
}

export interface RequiredKeySpec<T> extends KeySpec<T> {
  readonly default: string
}

export interface OptionalKeySpec<T> extends KeySpec<T> {
  readonly default: null
}

function required<T>(
  key: string,
  validator: Validator<T>,
  defaultValue: string,
  description: string,
): RequiredKeySpec<T> {
  return Object.freeze({ key, validator, default: defaultValue, description })
}

function optional<T>(
  key: string,
  validator: Validator<T>,
  description: string,
): OptionalKeySpec<T> {
  return Object.freeze({ key, validator, default: null, description })
}

/** The table, in the order of the shipped properties file. */
export const KEYS = Object.freeze({
  upstreamHttpUrl: optional(
    'upstream.http.url',
    v.httpUrl,
    "Base URL of the upstream Git server's smart-HTTP root; unset: use the embedded upstream.",
  ),
  upstreamHttpPathPrefix: required(
    'upstream.http.path-prefix',
    v.pathPrefix,
    '',
    'Upstream path prefix (e.g. scm/) stripped from repository paths to get the REST projectKey/repoSlug.',
  ),
  upstreamSshUrl: optional(
    'upstream.ssh.url',
    v.sshUrl,
    "ssh://user@host[:port][/prefix] of the upstream's SSH service; unset: no SSH front.",
  ),
  upstreamSshKey: optional(
    'upstream.ssh.key',
    v.file,
    'Private key file the proxy uses towards the upstream over SSH.',
  ),
  upstreamSshKnownHosts: optional(
    'upstream.ssh.known-hosts',
    v.file,
    "OpenSSH known_hosts file holding the upstream's SSH host key; unset: refuse to connect.",
  ),
  proxyHttpHost: required(
    'proxy.http.host',
    v.host,
    '0.0.0.0',
    'Address the HTTP front listens on.',
  ),
  proxyHttpPort: required('proxy.http.port', v.port, '7990', 'Port the HTTP front listens on.'),
  proxySshHost: required('proxy.ssh.host', v.host, '0.0.0.0', 'Address the SSH front listens on.'),
  proxySshPort: required('proxy.ssh.port', v.port, '7999', 'Port the SSH front listens on.'),
  proxySshHostKey: optional(
    'proxy.ssh.host-key',
    v.file,
    'Host key file of the SSH front; unset: generated under cache.dir on first start.',
  ),
  proxySshAuthorizedKeys: optional(
    'proxy.ssh.authorized-keys',
    v.file,
    'OpenSSH authorized_keys file listing the keys allowed into the SSH front.',
  ),
  proxySshAllowPush: required(
    'proxy.ssh.allow-push',
    v.boolean,
    'false',
    "Let pushes through the SSH front (made with the proxy's upstream key).",
  ),
  proxyHttpIdleTimeout: required(
    'proxy.http.idle-timeout',
    v.seconds,
    '120',
    'Seconds an HTTP connection may stay idle (no request, or no bytes of a request) before it is closed.',
  ),
  proxyHttpMaxConnections: required(
    'proxy.http.max-connections',
    v.count,
    '10000',
    'Connections open on the HTTP front at most; new ones beyond it are refused at once.',
  ),
  proxyHttpBodyMemory: required(
    'proxy.http.body-memory',
    v.bytes,
    '268435456',
    'Bytes of request bodies held in memory at once, all requests together; past it requests wait, then get 503.',
  ),
  cacheDir: required('cache.dir', v.directory, './data/cache', 'Where everything on disk lives.'),
  protocols: required(
    'scm-cache.protocols',
    v.protocols,
    'HTTP,SSH',
    'Fronts whose requests may be served from cache: a comma-separated list of HTTP and SSH, empty for none.',
  ),
  refsEnabled: required('scm-cache.refs.enabled', v.boolean, 'false', 'Cache ref advertisements.'),
  refsTtl: required(
    'scm-cache.refs.ttl',
    v.seconds,
    '60',
    'Seconds a cached ref advertisement may be served.',
  ),
  uploadPackEnabled: required(
    'scm-cache.upload-pack.enabled',
    v.boolean,
    'true',
    'Cache clones (upload-pack responses).',
  ),
  uploadPackTtl: required(
    'scm-cache.upload-pack.ttl',
    v.seconds,
    '3600',
    'Seconds a cached clone may be served.',
  ),
  minimumFreeSpace: required(
    'scm-cache.minimum.free.space',
    v.bytes,
    '1073741824',
    'Bytes free under cache.dir below which caching pauses.',
  ),
  expiryCheckInterval: required(
    'scm-cache.expiry.check.interval',
    v.seconds,
    '300',
    'Seconds between sweeps that reclaim the disk of expired entries.',
  ),
  maxSize: required(
    'scm-cache.max.size',
    v.bytes,
    '0',
    'Bytes the cache may use, least recently used entries evicted above it; 0: no cap.',
  ),
  diskCheckInterval: required(
    'scm-cache.disk.check.interval',
    v.seconds,
    '30',
    'Seconds between free-space checks (free space is also checked before each new fill).',
  ),
  authTtl: required(
    'auth.ttl',
    v.seconds,
    '300',
    'Seconds an upstream-accepted credential stays accepted for a repository.',
  ),
  authCredentialHeaders: required(
    'auth.credential-headers',
    v.headerNames,
    'private-token,job-token,x-auth-token',
    'Request headers besides Authorization and Cookie that carry credentials: part of the credential a cached answer is checked for.',
  ),
  webhookSecret: optional(
    'webhook.secret',
    v.secret,
    'Shared secret for push webhooks; unset: the webhook endpoint answers 404.',
  ),
  restAuthUsername: optional(
    'rest.auth.username',
    v.username,
    'Admin user name for /rest/scm-cache/...; set both or neither; unset: REST answers only on loopback.',
  ),
  restAuthPassword: optional(
    'rest.auth.password',
    v.secret,
    'Admin password for /rest/scm-cache/...; set both or neither.',
  ),
  proxyHttpTlsCert: optional(
    'proxy.http.tls.cert',
    v.file,
    'PEM certificate (chain allowed) of the HTTP front; set with proxy.http.tls.key; reloaded on SIGHUP; unset: plain HTTP.',
  ),
  proxyHttpTlsKey: optional(
    'proxy.http.tls.key',
    v.file,
    'PEM private key of the HTTP front; set both or neither; reloaded on SIGHUP.',
  ),
  upstreamHttpCa: optional(
    'upstream.http.ca',
    v.file,
    "PEM file of the CA(s) that sign the upstream's HTTPS certificate; unset: the system's CAs.",
  ),
  proxyHttpTrustedProxies: optional(
    'proxy.http.trusted-proxies',
    v.cidrs,
    'Comma-separated CIDRs of load balancers whose X-Forwarded-For/-Proto are logged; unset: none.',
  ),
  proxyShutdownDrain: required(
    'proxy.shutdown.drain',
    v.drainSeconds,
    '10',
    'Seconds a node keeps serving after SIGTERM with /readyz failing, before it stops accepting.',
  ),
})

/** Every key of the table, in table order. */
export const KEY_SPECS: readonly KeySpec<unknown>[] = Object.freeze(Object.values(KEYS))

/** Keys under this prefix are also accepted under `BITBUCKET_PREFIX`. */
export const CANONICAL_PREFIX = 'scm-cache.'

/** Bitbucket's names: `plugin.bitbucket-scm-cache.refs.ttl` is `scm-cache.refs.ttl`. */
export const BITBUCKET_PREFIX = 'plugin.bitbucket-scm-cache.'

/** Prefix of every environment override. */
export const ENV_PREFIX = 'SCM_CACHE_'

/** The environment variable naming the config file; not a key. */
export const CONFIG_FILE_ENV = 'SCM_CACHE_CONFIG'

/** The alias of a key (its Bitbucket name), or null if it has none. */
export function aliasOf(key: string): string | null {
  return key.startsWith(CANONICAL_PREFIX)
    ? BITBUCKET_PREFIX + key.slice(CANONICAL_PREFIX.length)
    : null
}

/** The names a key is accepted under in the file: canonical first, then its alias. */
export function fileNamesOf(key: string): readonly string[] {
  const alias = aliasOf(key)
  return alias === null ? [key] : [key, alias]
}

/** `upstream.http.url` -> `SCM_CACHE_UPSTREAM_HTTP_URL`. */
export function envNameOf(name: string): string {
  return ENV_PREFIX + name.toUpperCase().replace(/[.-]/g, '_')
}

/**
 * The environment names a key is accepted under, each with the key name it
 * stands for: the canonical name's, the alias's, and for `scm-cache.*` keys
 * the short convenience form without the repeated `SCM_CACHE_`
 * (`SCM_CACHE_REFS_TTL`, standing for the canonical name).
 */
export function envBindingsOf(key: string): readonly (readonly [env: string, name: string])[] {
  const bindings = fileNamesOf(key).map((name) => [envNameOf(name), name] as const)
  if (key.startsWith(CANONICAL_PREFIX)) {
    bindings.push([envNameOf(key.slice(CANONICAL_PREFIX.length)), key])
  }
  return bindings
}

/** The environment names a key is accepted under (see `envBindingsOf`). */
export function envNamesOf(key: string): readonly string[] {
  return envBindingsOf(key).map(([env]) => env)
}
