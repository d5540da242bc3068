/**
 * Every configuration key, in one table: the source of truth for validation,
 * defaults, the shipped `config/scm-cache.properties`, the docs, the type of
 * the loaded `Config` (`config.ts`), the start-up log line and which keys the
 * REST API may change. The key names, their environment names and their
 * meaning are a contract (DESIGN.md §4): never rename one.
 *
 * Defaults are written as raw text and go through the same validator as a
 * value from the file, so a default is always a valid value.
 *
 * Adding a key is one entry in `KEY_SPECS` (then regenerate the shipped file,
 * see test/unit/config/defaults-file.test.ts, and use the value): its `at`
 * makes it a member of `Config`, the loader, `describeConfig` and the REST
 * checks read the table, and `mutable: true` makes it a run-time setting.
 */
import * as v from './validators.js'
import type { Validator } from './validators.js'

export interface KeySpec<
  T = unknown,
  K extends string = string,
  P extends string = string,
  M extends boolean = boolean,
> {
  /** Canonical name, e.g. `scm-cache.refs.ttl`. */
  readonly key: K
  /** Where the value lives in the `Config` object, dot-separated: `cache.refsTtl`. */
  readonly at: P
  readonly validator: Validator<T>
  /** Raw default text; `null` means unset. */
  readonly default: string | null
  readonly description: string
  /** Whether the REST API may change it at run time (DESIGN §6). */
  readonly mutable: M
  /** The value of an optional key that is not set (`null`, or an empty list); `null` for required keys. */
  readonly whenUnset: T | null
}

export interface RequiredKeySpec<T, K extends string, P extends string, M extends boolean>
  extends KeySpec<T, K, P, M> {
  readonly default: string
  readonly whenUnset: null
}

export interface OptionalKeySpec<T, K extends string, P extends string, M extends boolean, U extends T | null>
  extends KeySpec<T, K, P, M> {
  readonly default: null
  readonly whenUnset: U
}

/** The type of a key's value in `Config`: an optional key is `null` when not set, unless its `whenUnset` is a value. */
export type ValueOf<S> =
  S extends RequiredKeySpec<infer T, string, string, boolean>
    ? Readonly<T>
    : S extends OptionalKeySpec<infer T, string, string, boolean, infer U>
      ? null extends U
        ? Readonly<T> | null
        : Readonly<T>
      : never

interface EntryOptions<T, P extends string> {
  readonly at: P
  readonly validator: Validator<T>
  readonly description: string
}

function required<T, const K extends string, const P extends string, const M extends boolean = false>(
  key: K,
  opts: EntryOptions<T, P> & { readonly default: string; readonly mutable?: M },
): RequiredKeySpec<T, K, P, M> {
  const { at, validator, description } = opts
  // Without `mutable`, M is its default, false.
  const mutable = (opts.mutable ?? false) as M
  return Object.freeze({ key, at, validator, default: opts.default, description, mutable, whenUnset: null })
}

/** An optional key; never mutable (a run-time setting always has a value). */
function optional<T, const K extends string, const P extends string, U extends T | null = null>(
  key: K,
  opts: EntryOptions<T, P> & { readonly whenUnset?: U },
): OptionalKeySpec<T, K, P, false, U> {
  const { at, validator, description } = opts
  // Without `whenUnset`, U is its default, null.
  const whenUnset = (opts.whenUnset ?? null) as U
  return Object.freeze({ key, at, validator, default: null, description, mutable: false, whenUnset })
}

/** The value of an optional list key that is not set. */
const NONE: readonly never[] = Object.freeze([])

/**
 * The table, in the order of the shipped properties file. What the validators
 * normalise (URL paths end with `/`, the SSH port is always set, the path
 * prefix has no slashes at either end, header names are lower case, ...) is
 * said in `validators.ts`.
 */
export const KEY_SPECS = Object.freeze([
  optional('upstream.http.url', {
    at: 'upstream.httpUrl',
    validator: v.httpUrl,
    description: "Base URL of the upstream Git server's smart-HTTP root; unset: use the embedded upstream.",
  }),
  required('upstream.http.path-prefix', {
    at: 'upstream.pathPrefix',
    validator: v.pathPrefix,
    default: '',
    description: 'Upstream path prefix (e.g. scm/) stripped from repository paths to get the REST projectKey/repoSlug.',
  }),
  optional('upstream.ssh.url', {
    at: 'upstream.sshUrl',
    validator: v.sshUrl,
    description: "ssh://user@host[:port][/prefix] of the upstream's SSH service; unset: no SSH front.",
  }),
  optional('upstream.ssh.key', {
    at: 'upstream.sshKey',
    validator: v.file,
    description: 'Private key file the proxy uses towards the upstream over SSH.',
  }),
  optional('upstream.ssh.known-hosts', {
    at: 'upstream.sshKnownHosts',
    validator: v.file,
    description: "OpenSSH known_hosts file holding the upstream's SSH host key; unset: refuse to connect.",
  }),
  required('proxy.http.host', {
    at: 'proxy.httpHost',
    validator: v.host,
    default: '0.0.0.0',
    description: 'Address the HTTP front listens on.',
  }),
  required('proxy.http.port', {
    at: 'proxy.httpPort',
    validator: v.port,
    default: '7990',
    description: 'Port the HTTP front listens on.',
  }),
  required('proxy.ssh.host', {
    at: 'proxy.sshHost',
    validator: v.host,
    default: '0.0.0.0',
    description: 'Address the SSH front listens on.',
  }),
  required('proxy.ssh.port', {
    at: 'proxy.sshPort',
    validator: v.port,
    default: '7999',
    description: 'Port the SSH front listens on.',
  }),
  optional('proxy.ssh.host-key', {
    at: 'proxy.sshHostKey',
    validator: v.file,
    description: 'Host key file of the SSH front; unset: generated under cache.dir on first start.',
  }),
  optional('proxy.ssh.authorized-keys', {
    at: 'proxy.sshAuthorizedKeys',
    validator: v.file,
    description: 'OpenSSH authorized_keys file listing the keys allowed into the SSH front.',
  }),
  required('proxy.ssh.allow-push', {
    at: 'proxy.sshAllowPush',
    validator: v.boolean,
    default: 'false',
    description: "Let pushes through the SSH front (made with the proxy's upstream key).",
  }),
  required('proxy.http.idle-timeout', {
    at: 'proxy.httpIdleTimeout',
    validator: v.seconds,
    default: '120',
    description: 'Seconds an HTTP connection may stay idle (no request, or no bytes of a request) before it is closed.',
  }),
  required('proxy.http.max-connections', {
    at: 'proxy.httpMaxConnections',
    validator: v.count,
    default: '10000',
    description: 'Connections open on the HTTP front at most; new ones beyond it are refused at once.',
  }),
  required('proxy.http.body-memory', {
    at: 'proxy.httpBodyMemory',
    validator: v.bytes,
    default: '268435456',
    description: 'Bytes of request bodies held in memory at once, all requests together; past it requests wait, then get 503.',
  }),
  required('cache.dir', {
    at: 'cacheDir',
    validator: v.directory,
    default: './data/cache',
    description: 'Where everything on disk lives.',
  }),
  required('scm-cache.protocols', {
    at: 'cache.protocols',
    validator: v.protocols,
    default: 'HTTP,SSH',
    description: 'Fronts whose requests may be served from cache: a comma-separated list of HTTP and SSH, empty for none.',
    mutable: true,
  }),
  required('scm-cache.refs.enabled', {
    at: 'cache.refsEnabled',
    validator: v.boolean,
    default: 'false',
    description: 'Cache ref advertisements.',
    mutable: true,
  }),
  required('scm-cache.refs.ttl', {
    at: 'cache.refsTtl',
    validator: v.seconds,
    default: '60',
    description: 'Seconds a cached ref advertisement may be served.',
    mutable: true,
  }),
  required('scm-cache.upload-pack.enabled', {
    at: 'cache.uploadPackEnabled',
    validator: v.boolean,
    default: 'true',
    description: 'Cache clones (upload-pack responses).',
    mutable: true,
  }),
  required('scm-cache.upload-pack.fetch.enabled', {
    at: 'cache.uploadPackFetchEnabled',
    validator: v.boolean,
    default: 'true',
    description: 'Cache incremental fetches too (haves, already-shallow clients), when clones are cached.',
    mutable: true,
  }),
  required('scm-cache.upload-pack.ttl', {
    at: 'cache.uploadPackTtl',
    validator: v.seconds,
    default: '3600',
    description: 'Seconds a cached clone may be served.',
    mutable: true,
  }),
  required('scm-cache.lfs.enabled', {
    at: 'cache.lfsEnabled',
    validator: v.boolean,
    default: 'true',
    description: "Cache Git LFS downloads, served to the (object, repository, credential) the upstream's batch answer granted.",
  }),
  required('scm-cache.lfs.max.object.size', {
    at: 'cache.lfsMaxObjectSize',
    validator: v.bytes,
    default: '4294967296',
    description: 'Bytes; larger Git LFS objects pass through (their batch hrefs are left as the upstream gave them).',
  }),
  required('scm-cache.minimum.free.space', {
    at: 'cache.minimumFreeSpace',
    validator: v.bytes,
    default: '1073741824',
    description: 'Bytes free under cache.dir below which caching pauses.',
  }),
  required('scm-cache.expiry.check.interval', {
    at: 'cache.expiryCheckInterval',
    validator: v.seconds,
    default: '300',
    description: 'Seconds between sweeps that reclaim the disk of expired entries.',
  }),
  required('scm-cache.max.size', {
    at: 'cache.maxSize',
    validator: v.bytes,
    default: '0',
    description: 'Bytes the cache may use, least recently used entries evicted above it; 0: no cap.',
  }),
  required('scm-cache.disk.check.interval', {
    at: 'cache.diskCheckInterval',
    validator: v.seconds,
    default: '30',
    description: 'Seconds between free-space checks (free space is also checked before each new fill).',
  }),
  required('auth.ttl', {
    at: 'authTtl',
    validator: v.seconds,
    default: '300',
    description: 'Seconds an upstream-accepted credential stays accepted for a repository.',
  }),
  required('auth.credential-headers', {
    at: 'credentialHeaders',
    validator: v.headerNames,
    default: 'private-token,job-token,x-auth-token',
    description: 'Request headers besides Authorization and Cookie that carry credentials: part of the credential a cached answer is checked for.',
  }),
  optional('webhook.secret', {
    at: 'webhookSecret',
    validator: v.secret,
    description: 'Shared secret for push webhooks; unset: the webhook endpoint answers 404.',
  }),
  optional('rest.auth.username', {
    at: 'restAuth.username',
    validator: v.username,
    description: 'Admin user name for /rest/scm-cache/...; set both or neither; unset: REST answers only on loopback.',
  }),
  optional('rest.auth.password', {
    at: 'restAuth.password',
    validator: v.secret,
    description: 'Admin password for /rest/scm-cache/...; set both or neither.',
  }),
  optional('proxy.http.tls.cert', {
    at: 'proxy.httpTls.cert',
    validator: v.file,
    description: 'PEM certificate (chain allowed) of the HTTP front; set with proxy.http.tls.key; reloaded on SIGHUP; unset: plain HTTP.',
  }),
  optional('proxy.http.tls.key', {
    at: 'proxy.httpTls.key',
    validator: v.file,
    description: 'PEM private key of the HTTP front; set both or neither; reloaded on SIGHUP.',
  }),
  optional('upstream.http.ca', {
    at: 'upstream.httpCa',
    validator: v.file,
    description: "PEM file of the CA(s) that sign the upstream's HTTPS certificate; unset: the system's CAs.",
  }),
  optional('proxy.http.trusted-proxies', {
    at: 'proxy.trustedProxies',
    validator: v.cidrs,
    description: 'Comma-separated CIDRs of load balancers whose X-Forwarded-For/-Proto are logged; unset: none.',
    whenUnset: NONE,
  }),
  required('proxy.shutdown.drain', {
    at: 'proxy.shutdownDrain',
    validator: v.drainSeconds,
    default: '10',
    description: 'Seconds a node keeps serving after SIGTERM with /readyz failing, before it stops accepting.',
  }),
  required('upstream.connect-timeout', {
    at: 'upstream.connectTimeout',
    validator: v.seconds,
    default: '10',
    description: 'Seconds to connect to the upstream and receive its response headers (over SSH: its first answer) before it counts as unreachable.',
  }),
  required('scm-cache.outage.enabled', {
    at: 'cache.outageEnabled',
    validator: v.boolean,
    default: 'false',
    description: 'Answer from the cache while the upstream is unreachable: credentials accepted within auth.outage-ttl get the last good advertisement and cached packs.',
  }),
  required('auth.outage-ttl', {
    at: 'authOutageTtl',
    validator: v.seconds,
    default: '3600',
    description: 'Seconds an accepted credential still counts for a repository while the upstream is unreachable (outage mode).',
  }),
])

/** A key of the table, as its type: `Spec['key']` is the union of the key names. */
export type Spec = (typeof KEY_SPECS)[number]

/**
 * Cross-key rules: the two keys stored under each of these `Config` members
 * are set both or neither, and the member is `null` when neither is set.
 */
export const PAIRS = Object.freeze(['restAuth', 'proxy.httpTls'] as const)

export type MutableSpec = Extract<Spec, { readonly mutable: true }>

/** A key the REST API may change at run time. */
export type MutableKey = MutableSpec['key']

/** The keys the REST API may change at run time, in table order. */
export const MUTABLE_SPECS: readonly MutableSpec[] = Object.freeze(
  KEY_SPECS.filter((spec): spec is MutableSpec => spec.mutable),
)

/** Keys the REST API may change at run time. */
export const MUTABLE_KEYS: readonly MutableKey[] = Object.freeze(MUTABLE_SPECS.map((spec) => spec.key))


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
