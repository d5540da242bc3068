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
import { setAt, valueAt } from './config.js'
import type { Config } from './config.js'
import {
  CONFIG_FILE_ENV,
  ENV_PREFIX,
  KEY_SPECS,
  MUTABLE_KEYS,
  PAIRS,
  aliasOf,
  envBindingsOf,
  fileNamesOf,
} from './keys.js'
import type { KeySpec } from './keys.js'
import type { ParseContext, ParseResult } from './validators.js'

export type { Config } from './config.js'
export { MUTABLE_KEYS } from './keys.js'
export type { MutableKey } from './keys.js'
export type { Protocol } from './validators.js'

/** The config file used when neither `--config` nor `SCM_CACHE_CONFIG` names one. */
export const DEFAULT_CONFIG_FILE = 'config/scm-cache.properties'

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

const SPEC_BY_FILE_NAME = new Map<string, KeySpec>(
  KEY_SPECS.flatMap((spec) => fileNamesOf(spec.key).map((name) => [name, spec] as const)),
)

/** Environment name -> [spec, the key name it stands for]. */
const SPEC_BY_ENV_NAME = new Map<string, readonly [KeySpec, string]>(
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

  const settings = new Map<KeySpec, Setting>()
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
 * validator as start-up. Only mutable keys (canonical names) are accepted.
 */
export function validateValue(
  key: string,
  raw: string,
): { ok: true; value: unknown } | { ok: false; message: string } {
  const spec: KeySpec | undefined = KEY_SPECS.find((s) => s.key === key)
  if (spec === undefined || !spec.mutable) {
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
  const described: Record<string, unknown> = { configFile: cfg.source.file }
  for (const spec of KEY_SPECS) described[spec.key] = describeValue(spec, valueAt(cfg, spec.at))
  return described
}

function describeValue(spec: KeySpec, value: unknown): unknown {
  // An optional list that is not set is empty (`whenUnset`): shown as unset.
  if (value === null || (spec.default === null && Array.isArray(value) && value.length === 0)) return null
  if (spec.validator.secret) return '(set)'
  if (value instanceof URL) return redactUrl(value)
  if (Array.isArray(value)) return value.join(',')
  return value
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
  settings: Map<KeySpec, Setting>,
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
  settings: Map<KeySpec, Setting>,
  errors: string[],
): void {
  const fromEnv = new Map<KeySpec, Setting>()
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
function invalidMessage(name: string, spec: KeySpec, raw: string): string {
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
  settings: ReadonlyMap<KeySpec, Setting>,
  ctx: ParseContext,
  errors: string[],
  file: string | null,
): Config {
  /**
   * The setting's value, or the default when it is not set. An empty value
   * unsets an optional key. An invalid value is recorded in `errors` and the
   * default stands in for it (the result is then thrown away).
   */
  function resolve(spec: KeySpec): unknown {
    const setting = settings.get(spec)
    if (setting !== undefined) {
      if (spec.default === null && setting.value.trim() === '') return spec.whenUnset
      const result = parseValue(spec, setting.value, ctx)
      if (result.ok) return result.value
      errors.push(`${invalidMessage(setting.name, spec, setting.value)} (${setting.origin})`)
    }
    if (spec.default === null) return spec.whenUnset
    const fallback = parseValue(spec, spec.default, ctx)
    // Every default is valid (tested); this only guards against a bad edit of the table.
    if (!fallback.ok) throw new Error(`invalid default for ${spec.key}: ${spec.default}`)
    return fallback.value
  }

  // Resolved in table order, so problems are listed in that order.
  const tree: Record<string, unknown> = {}
  for (const spec of KEY_SPECS) setAt(tree, spec.at, resolve(spec))
  for (const at of PAIRS) checkPair(tree, at, errors)
  setAt(tree, 'source.file', file)
  // The tree holds a value at every key's `at`, which is what Config is derived from.
  return tree as Config
}

/** A pair (`PAIRS`) is set both or neither; the member is null when neither is set. */
function checkPair(tree: Record<string, unknown>, at: string, errors: string[]): void {
  const members = KEY_SPECS.filter((spec) => spec.at.startsWith(`${at}.`))
  const isSet = (spec: KeySpec): boolean => valueAt(tree, spec.at) !== null
  const set = members.find(isSet)
  const unset = members.find((spec) => !isSet(spec))
  if (set === undefined) setAt(tree, at, null)
  else if (unset !== undefined) errors.push(`${set.key} is set but ${unset.key} is not: set both or neither`)
}

/** Freezes an object graph (plain objects, arrays and URLs) in place. */
function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const child of Object.values(value)) deepFreeze(child)
  }
  return value
}
