/**
 * Loads the configuration: the properties file, then environment overrides,
 * each value checked by the validator of its key (`keys.ts`). Every problem
 * is collected and reported in one `ConfigError`; the result is deep-frozen.
 *
 * Pure apart from reading the config file: argv, the environment and the
 * working directory are passed in by the composition root.
 */
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { Pair, parseLines } from 'dot-properties'
import { distance } from 'fastest-levenshtein'
import { ConfigError, toError } from '../errors.js'
import {
  CONFIG_FILE_ENV,
  ENV_PREFIX,
  KEY_SPECS,
  KEYS,
  aliasOf,
  envBindingsOf,
  fileNamesOf,
} from './keys.js'
import type { KeySpec, OptionalKeySpec, RequiredKeySpec } from './keys.js'
import type { ParseContext, ParseResult, Protocol } from './validators.js'

export type { Protocol } from './validators.js'

/** The config file used when neither `--config` nor `SCM_CACHE_CONFIG` names one. */
export const DEFAULT_CONFIG_FILE = 'config/scm-cache.properties'

/**
 * The loaded configuration, deep-frozen. Paths are absolute; durations are
 * seconds; sizes are bytes; `null` means unset.
 *
 * The URLs are frozen objects typed read-only, but a `URL`'s setters still work
 * at run time: never assign to them (derive a new URL with `new URL(x, base)`).
 */
export interface Config {
  readonly upstream: {
    /** Path always ends with `/`. Null: use the embedded upstream. */
    readonly httpUrl: Readonly<URL> | null
    /** E.g. `scm` or `''`: no leading or trailing slash. */
    readonly pathPrefix: string
    /** `ssh://user@host:port[/prefix]`: the port is always set, no trailing slash. */
    readonly sshUrl: Readonly<URL> | null
    readonly sshKey: string | null
    readonly sshKnownHosts: string | null
    /** PEM file of the CAs the upstream's HTTPS certificate is checked against; null: the system's. */
    readonly httpCa: string | null
  }
  readonly proxy: {
    readonly httpHost: string
    readonly httpPort: number
    readonly sshHost: string
    readonly sshPort: number
    readonly sshHostKey: string | null
    readonly sshAuthorizedKeys: string | null
    readonly sshAllowPush: boolean
    /** Seconds. */
    readonly httpIdleTimeout: number
    readonly httpMaxConnections: number
    /** Bytes. */
    readonly httpBodyMemory: number
    /** PEM files of the HTTP front's certificate (chain) and key; null: plain HTTP. */
    readonly httpTls: { readonly cert: string; readonly key: string } | null
    /** `address/prefix` blocks whose X-Forwarded-* headers are believed (logs only); empty: none. */
    readonly trustedProxies: readonly string[]
    /** Seconds to keep serving after SIGTERM, failing /readyz, before closing. */
    readonly shutdownDrain: number
  }
  /** Absolute. */
  readonly cacheDir: string
  readonly cache: {
    /** Canonical order, no duplicates; empty: nothing is served from cache. */
    readonly protocols: readonly Protocol[]
    readonly refsEnabled: boolean
    readonly refsTtl: number
    readonly uploadPackEnabled: boolean
    readonly uploadPackTtl: number
    readonly minimumFreeSpace: number
    readonly expiryCheckInterval: number
    /** 0: no cap. */
    readonly maxSize: number
    readonly diskCheckInterval: number
  }
  readonly authTtl: number
  /** Lower-case header names (DESIGN §3.1). */
  readonly credentialHeaders: readonly string[]
  readonly webhookSecret: string | null
  readonly restAuth: { readonly username: string; readonly password: string } | null
  readonly source: {
    /** Absolute path of the file read, or null when the default file does not exist. */
    readonly file: string | null
  }
}

export interface LoadOptions {
  /** Command-line arguments after the script (`process.argv.slice(2)`). */
  readonly argv: readonly string[]
  readonly env: Readonly<Record<string, string | undefined>>
  /** Absolute working directory: relative paths are resolved against it. */
  readonly cwd: string
}

export interface Args {
  readonly configFile: string | null
  readonly help: boolean
}

/** Keys the REST API may change at run time. */
export const MUTABLE_KEYS = [
  'scm-cache.protocols',
  'scm-cache.refs.enabled',
  'scm-cache.refs.ttl',
  'scm-cache.upload-pack.enabled',
  'scm-cache.upload-pack.ttl',
] as const

export type MutableKey = (typeof MUTABLE_KEYS)[number]

const KNOWN_OPTIONS = '--config FILE, --config=FILE, --help (-h)'

/**
 * Parses the command line. Throws a `ConfigError` on anything else than
 * `--config FILE`, `--config=FILE`, `--help` or `-h`.
 */
export function parseArgs(argv: readonly string[]): Args {
  let configFile: string | null = null
  let help = false
  const setConfig = (value: string | undefined): void => {
    if (value === undefined || value === '') {
      throw new ConfigError(`--config needs a file name (known options: ${KNOWN_OPTIONS})`)
    }
    if (configFile !== null) throw new ConfigError('--config given more than once')
    configFile = value
  }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? ''
    if (arg === '--help' || arg === '-h') {
      help = true
    } else if (arg === '--config') {
      i++
      setConfig(argv[i])
    } else if (arg.startsWith('--config=')) {
      setConfig(arg.slice('--config='.length))
    } else {
      throw new ConfigError(
        `unknown ${arg.startsWith('-') ? 'option' : 'argument'} ${JSON.stringify(arg)} (known options: ${KNOWN_OPTIONS})`,
      )
    }
  }
  return { configFile, help }
}

/** A value as written by the user, and where. */
interface Setting {
  /** The name used: canonical key or alias. */
  readonly name: string
  readonly value: string
  /** `config/scm-cache.properties:12` or `environment SCM_CACHE_REFS_TTL`. */
  readonly origin: string
}

const SPEC_BY_FILE_NAME = new Map<string, KeySpec<unknown>>(
  KEY_SPECS.flatMap((spec) => fileNamesOf(spec.key).map((name) => [name, spec] as const)),
)

/** Environment name -> [spec, the key name it stands for]. */
const SPEC_BY_ENV_NAME = new Map<string, readonly [KeySpec<unknown>, string]>(
  KEY_SPECS.flatMap((spec) =>
    envBindingsOf(spec.key).map(([env, name]) => [env, [spec, name] as const] as const),
  ),
)

const ALL_FILE_NAMES = [...SPEC_BY_FILE_NAME.keys()]
const ALL_ENV_NAMES = [...SPEC_BY_ENV_NAME.keys()]

/** Loads, validates and freezes the configuration, or throws one `ConfigError` listing every problem. */
export function loadConfig(opts: LoadOptions): Config {
  const { cwd, env } = opts
  const args = parseArgs(opts.argv)
  const errors: string[] = []

  const named = args.configFile ?? nonEmpty(env[CONFIG_FILE_ENV])
  const shownName = named ?? DEFAULT_CONFIG_FILE
  const file = path.resolve(cwd, shownName)
  const text = readConfigFile(file, shownName, named !== null, errors)

  const settings = new Map<KeySpec<unknown>, Setting>()
  if (text !== null) collectFile(text, shownName, settings, errors)
  collectEnv(env, settings, errors)

  const cfg = buildConfig(settings, { cwd }, errors, text === null ? null : file)
  if (errors.length > 0) {
    const count = errors.length === 1 ? '1 problem' : `${errors.length} problems`
    throw new ConfigError(
      `invalid configuration (${count}):\n${errors.map((e) => `  - ${e}`).join('\n')}`,
    )
  }
  return deepFreeze(cfg)
}

/**
 * Checks a value for a key the REST API may change at run time, with the same
 * validator as start-up. Only `MUTABLE_KEYS` (canonical names) are accepted.
 */
export function validateValue(
  key: string,
  raw: string,
): { ok: true; value: unknown } | { ok: false; message: string } {
  const spec = KEY_SPECS.find((s) => s.key === key)
  if (!isMutableKey(key) || spec === undefined) {
    if (spec !== undefined) {
      return { ok: false, message: `${key} cannot be changed at run time (${mutableList()})` }
    }
    const alias = MUTABLE_KEYS.find((k) => aliasOf(k) === key)
    const hint = alias ?? suggest(key, MUTABLE_KEYS)
    return {
      ok: false,
      message: `unknown key ${JSON.stringify(key)}${hint === null ? '' : `: did you mean ${hint}?`} (${mutableList()})`,
    }
  }
  // Mutable keys hold no paths, so the working directory is never used.
  const result = parseValue(spec, raw, { cwd: '/' })
  if (result.ok) return { ok: true, value: result.value }
  return { ok: false, message: invalidMessage(key, spec, raw) }
}

/**
 * The configuration as a flat object keyed by the documented key names, for
 * the start-up log line. Secrets show as `(set)`, URL passwords as `(hidden)`.
 */
export function describeConfig(cfg: Config): Record<string, unknown> {
  const u = cfg.upstream
  const p = cfg.proxy
  const c = cfg.cache
  return {
    configFile: cfg.source.file,
    [KEYS.upstreamHttpUrl.key]: u.httpUrl === null ? null : redactUrl(u.httpUrl),
    [KEYS.upstreamHttpPathPrefix.key]: u.pathPrefix,
    [KEYS.upstreamSshUrl.key]: u.sshUrl === null ? null : redactUrl(u.sshUrl),
    [KEYS.upstreamSshKey.key]: u.sshKey,
    [KEYS.upstreamSshKnownHosts.key]: u.sshKnownHosts,
    [KEYS.proxyHttpHost.key]: p.httpHost,
    [KEYS.proxyHttpPort.key]: p.httpPort,
    [KEYS.proxySshHost.key]: p.sshHost,
    [KEYS.proxySshPort.key]: p.sshPort,
    [KEYS.proxySshHostKey.key]: p.sshHostKey,
    [KEYS.proxySshAuthorizedKeys.key]: p.sshAuthorizedKeys,
    [KEYS.proxySshAllowPush.key]: p.sshAllowPush,
    [KEYS.cacheDir.key]: cfg.cacheDir,
    [KEYS.protocols.key]: c.protocols.join(','),
    [KEYS.refsEnabled.key]: c.refsEnabled,
    [KEYS.refsTtl.key]: c.refsTtl,
    [KEYS.uploadPackEnabled.key]: c.uploadPackEnabled,
    [KEYS.uploadPackTtl.key]: c.uploadPackTtl,
    [KEYS.minimumFreeSpace.key]: c.minimumFreeSpace,
    [KEYS.expiryCheckInterval.key]: c.expiryCheckInterval,
    [KEYS.maxSize.key]: c.maxSize,
    [KEYS.diskCheckInterval.key]: c.diskCheckInterval,
    [KEYS.authTtl.key]: cfg.authTtl,
    [KEYS.authCredentialHeaders.key]: cfg.credentialHeaders.join(','),
    [KEYS.proxyHttpIdleTimeout.key]: p.httpIdleTimeout,
    [KEYS.proxyHttpMaxConnections.key]: p.httpMaxConnections,
    [KEYS.proxyHttpBodyMemory.key]: p.httpBodyMemory,
    [KEYS.webhookSecret.key]: cfg.webhookSecret === null ? null : '(set)',
    [KEYS.restAuthUsername.key]: cfg.restAuth?.username ?? null,
    [KEYS.restAuthPassword.key]: cfg.restAuth === null ? null : '(set)',
    [KEYS.proxyHttpTlsCert.key]: p.httpTls?.cert ?? null,
    [KEYS.proxyHttpTlsKey.key]: p.httpTls?.key ?? null,
    [KEYS.upstreamHttpCa.key]: u.httpCa,
    [KEYS.proxyHttpTrustedProxies.key]: p.trustedProxies.length === 0 ? null : p.trustedProxies.join(','),
    [KEYS.proxyShutdownDrain.key]: p.shutdownDrain,
  }
}

function isMutableKey(key: string): key is MutableKey {
  return MUTABLE_KEYS.some((k) => k === key)
}

function mutableList(): string {
  return `keys that can change at run time: ${MUTABLE_KEYS.join(', ')}`
}

function nonEmpty(value: string | undefined): string | null {
  return value === undefined || value === '' ? null : value
}

function readConfigFile(
  file: string,
  shownName: string,
  explicit: boolean,
  errors: string[],
): string | null {
  try {
    return readFileSync(file, 'utf8').replace(/^\uFEFF/, '')
  } catch (err) {
    const e = toError(err)
    const code = 'code' in e ? e.code : undefined
    if (code === 'ENOENT') {
      if (explicit) errors.push(`config file ${shownName} not found (${file})`)
    } else {
      errors.push(`config file ${shownName} cannot be read: ${e.message}`)
    }
    return null
  }
}

function collectFile(
  text: string,
  shownName: string,
  settings: Map<KeySpec<unknown>, Setting>,
  errors: string[],
): void {
  for (const node of parseLines(text, true)) {
    if (!(node instanceof Pair)) continue
    const origin = `${shownName}:${lineAt(text, node.range[0])}`
    const spec = SPEC_BY_FILE_NAME.get(node.key)
    if (spec === undefined) {
      errors.push(
        `unknown key ${JSON.stringify(node.key)}${didYouMean(node.key, ALL_FILE_NAMES)} (${origin})`,
      )
      continue
    }
    const earlier = settings.get(spec)
    if (earlier !== undefined) {
      errors.push(
        earlier.name === node.key
          ? `${node.key} is set twice (${earlier.origin} and ${origin})`
          : `${earlier.name} (${earlier.origin}) and ${node.key} (${origin}) are the same setting: keep one`,
      )
      continue
    }
    settings.set(spec, { name: node.key, value: node.value, origin })
  }
}

function collectEnv(
  env: Readonly<Record<string, string | undefined>>,
  settings: Map<KeySpec<unknown>, Setting>,
  errors: string[],
): void {
  const fromEnv = new Map<KeySpec<unknown>, Setting>()
  const names = Object.keys(env)
    .filter((name) => name.startsWith(ENV_PREFIX) && name !== CONFIG_FILE_ENV)
    .sort()
  for (const envName of names) {
    const value = env[envName]
    if (value === undefined) continue
    const origin = `environment ${envName}`
    const found = SPEC_BY_ENV_NAME.get(envName)
    if (found === undefined) {
      errors.push(
        `unknown environment variable ${envName}${didYouMean(envName, [...ALL_ENV_NAMES, CONFIG_FILE_ENV])}`,
      )
      continue
    }
    const [spec, name] = found
    const earlier = fromEnv.get(spec)
    if (earlier !== undefined) {
      errors.push(`${earlier.origin} and ${origin} are the same setting (${spec.key}): keep one`)
      continue
    }
    fromEnv.set(spec, { name, value, origin })
  }
  for (const [spec, setting] of fromEnv) settings.set(spec, setting)
}

/** 1-based line number of a character offset (`\r\n`, `\n` and `\r` all end a line in .properties). */
function lineAt(text: string, offset: number): number {
  return text.slice(0, offset).split(/\r\n|\r|\n/).length
}

/** The known name closest to `name` (ignoring case), if it is close enough to be a likely typo. */
function suggest(name: string, known: readonly string[]): string | null {
  const lower = name.toLowerCase()
  let best: string | null = null
  let bestDistance = Infinity
  for (const candidate of known) {
    const d = distance(lower, candidate.toLowerCase())
    if (d < bestDistance) {
      best = candidate
      bestDistance = d
    }
  }
  return bestDistance <= Math.max(3, Math.floor(name.length / 2)) ? best : null
}

function didYouMean(name: string, known: readonly string[]): string {
  const best = suggest(name, known)
  return best === null ? '' : `: did you mean ${best}?`
}

function parseValue<T>(spec: KeySpec<T>, raw: string, ctx: ParseContext): ParseResult<T> {
  return spec.validator.parse(spec.validator.secret ? raw : raw.trim(), ctx)
}

/** `scm-cache.refs.ttl: "abc" is not allowed: whole seconds from 1 to 31536000` */
function invalidMessage(name: string, spec: KeySpec<unknown>, raw: string): string {
  const shown = spec.validator.secret ? '(hidden)' : quote(raw)
  return `${name}: ${shown} is not allowed: ${spec.validator.allowed}`
}

/** The value in quotes, cut if long, with any URL password hidden. */
function quote(raw: string): string {
  const redacted = raw.replace(/^([a-z][a-z0-9+.-]*:\/\/[^/@:]*):[^/@]*@/i, '$1:(hidden)@')
  const cut = redacted.length > 200 ? `${redacted.slice(0, 200)}...` : redacted
  return JSON.stringify(cut)
}

function redactUrl(url: Readonly<URL>): string {
  if (url.password === '') return url.href
  const copy = new URL(url.href)
  copy.password = '(hidden)'
  return copy.href
}

function buildConfig(
  settings: ReadonlyMap<KeySpec<unknown>, Setting>,
  ctx: ParseContext,
  errors: string[],
  file: string | null,
): Config {
  /**
   * The setting's value, or the default when it is not set. An empty value
   * unsets an optional key. An invalid value is recorded in `errors` and the
   * default stands in for it (the result is then thrown away).
   */
  function resolve<T>(spec: KeySpec<T>): T | null {
    const setting = settings.get(spec)
    if (setting !== undefined) {
      if (spec.default === null && setting.value.trim() === '') return null
      const result = parseValue(spec, setting.value, ctx)
      if (result.ok) return result.value
      errors.push(`${invalidMessage(setting.name, spec, setting.value)} (${setting.origin})`)
    }
    if (spec.default === null) return null
    const fallback = parseValue(spec, spec.default, ctx)
    // Every default is valid (tested); this only guards against a bad edit of the table.
    if (!fallback.ok) throw new Error(`invalid default for ${spec.key}: ${spec.default}`)
    return fallback.value
  }
  function get<T>(spec: RequiredKeySpec<T>): T {
    const value = resolve(spec)
    // A required key always has a valid default (checked just above), so resolve never gives null.
    if (value === null) throw new Error(`no value for ${spec.key}`)
    return value
  }
  function opt<T>(spec: OptionalKeySpec<T>): T | null {
    return resolve(spec)
  }

  /** Two keys that go together: both values, or null when neither is set (one alone is an error). */
  function pair<A, B>(a: OptionalKeySpec<A>, b: OptionalKeySpec<B>): [A, B] | null {
    const [va, vb] = [opt(a), opt(b)]
    if (va !== null && vb !== null) return [va, vb]
    if (va !== null || vb !== null) {
      const [isSet, notSet] = va === null ? [b.key, a.key] : [a.key, b.key]
      errors.push(`${isSet} is set but ${notSet} is not: set both or neither`)
    }
    return null
  }
  function restAuth(): Config['restAuth'] {
    const both = pair(KEYS.restAuthUsername, KEYS.restAuthPassword)
    return both === null ? null : { username: both[0], password: both[1] }
  }
  function httpTls(): Config['proxy']['httpTls'] {
    const both = pair(KEYS.proxyHttpTlsCert, KEYS.proxyHttpTlsKey)
    return both === null ? null : { cert: both[0], key: both[1] }
  }

  // Resolved in table order, so problems are listed in that order.
  return {
    upstream: {
      httpUrl: opt(KEYS.upstreamHttpUrl),
      pathPrefix: get(KEYS.upstreamHttpPathPrefix),
      sshUrl: opt(KEYS.upstreamSshUrl),
      sshKey: opt(KEYS.upstreamSshKey),
      sshKnownHosts: opt(KEYS.upstreamSshKnownHosts),
      httpCa: opt(KEYS.upstreamHttpCa),
    },
    proxy: {
      httpHost: get(KEYS.proxyHttpHost),
      httpPort: get(KEYS.proxyHttpPort),
      sshHost: get(KEYS.proxySshHost),
      sshPort: get(KEYS.proxySshPort),
      sshHostKey: opt(KEYS.proxySshHostKey),
      sshAuthorizedKeys: opt(KEYS.proxySshAuthorizedKeys),
      sshAllowPush: get(KEYS.proxySshAllowPush),
      httpIdleTimeout: get(KEYS.proxyHttpIdleTimeout),
      httpMaxConnections: get(KEYS.proxyHttpMaxConnections),
      httpBodyMemory: get(KEYS.proxyHttpBodyMemory),
      httpTls: httpTls(),
      trustedProxies: opt(KEYS.proxyHttpTrustedProxies) ?? [],
      shutdownDrain: get(KEYS.proxyShutdownDrain),
    },
    cacheDir: get(KEYS.cacheDir),
    cache: {
      protocols: get(KEYS.protocols),
      refsEnabled: get(KEYS.refsEnabled),
      refsTtl: get(KEYS.refsTtl),
      uploadPackEnabled: get(KEYS.uploadPackEnabled),
      uploadPackTtl: get(KEYS.uploadPackTtl),
      minimumFreeSpace: get(KEYS.minimumFreeSpace),
      expiryCheckInterval: get(KEYS.expiryCheckInterval),
      maxSize: get(KEYS.maxSize),
      diskCheckInterval: get(KEYS.diskCheckInterval),
    },
    authTtl: get(KEYS.authTtl),
    credentialHeaders: get(KEYS.authCredentialHeaders),
    webhookSecret: opt(KEYS.webhookSecret),
    restAuth: restAuth(),
    source: { file },
  }
}

/** Freezes an object graph (plain objects, arrays and URLs) in place. */
function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const child of Object.values(value)) deepFreeze(child)
  }
  return value
}
