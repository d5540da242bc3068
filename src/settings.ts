/**
 * The settings that may change at run time (DESIGN §6): which fronts may be
 * served from cache, refs/upload-pack enabled and TTL. Each request reads
 * them afresh, so a change takes effect on the next request. REST overrides
 * win over the configured value and can be dropped to return to it.
 *
 * The overrides outlive a restart (DESIGN §4): `SettingsFile` keeps them as
 * JSON in `<cache.dir>/settings.json`, replaced atomically (temp file,
 * fsync, rename, fsync of the directory), so a crash leaves the old file or
 * the new one, never half of one. A file that cannot be read or parsed is
 * logged and ignored at start-up: the configured values apply.
 */
import { mkdir, open, readFile, rename } from 'node:fs/promises'
import path from 'node:path'
import { memberName, valueAt } from './config/config.js'
import type { LastName } from './config/config.js'
import { MUTABLE_KEYS, MUTABLE_SPECS } from './config/keys.js'
import type { MutableKey, MutableSpec, ValueOf } from './config/keys.js'
import { validateValue } from './config/load.js'
import type { Config, Protocol } from './config/load.js'
import type { Log } from './logger.js'

/**
 * The run-time settings: the keys marked `mutable` in the key table, each
 * named by its member name in `Config` (`cache.refsTtl` is `refsTtl`).
 */
export type MutableValues = { [S in MutableSpec as LastName<S['at']>]: ValueOf<S> }

export type SettingName = keyof MutableValues

export class Settings {
  readonly #base: MutableValues
  #overrides: Partial<MutableValues> = {}

  constructor(config: Config) {
    // One entry per mutable key, read from its place in Config: what MutableValues is derived from.
    this.#base = Object.fromEntries(MUTABLE_SPECS.map((s) => [memberName(s.at), valueAt(config, s.at)])) as MutableValues
  }

  get<K extends SettingName>(name: K): MutableValues[K] {
    return this.#overrides[name] ?? this.#base[name]
  }

  /** Whether requests arriving over `front` may be served from cache at all. */
  cachingFor(front: Protocol): boolean {
    return this.get('protocols').includes(front)
  }

  setOverride<K extends SettingName>(name: K, value: MutableValues[K]): void {
    this.#overrides = { ...this.#overrides, [name]: value }
  }

  dropOverride(name: SettingName): void {
    this.#overrides = Object.fromEntries(Object.entries(this.#overrides).filter(([k]) => k !== name))
  }

  overrides(): Partial<MutableValues> {
    return { ...this.#overrides }
  }

  replaceOverrides(values: Partial<MutableValues>): void {
    this.#overrides = { ...values }
  }
}

/** The config key of each run-time setting: the names used in the settings file and in logs. */
export const SETTING_KEYS = Object.freeze(
  Object.fromEntries(MUTABLE_SPECS.map((s) => [memberName(s.at), s.key])),
) as Readonly<Record<SettingName, MutableKey>> // one entry per mutable key, named as in MutableValues

const SETTING_NAMES = Object.keys(SETTING_KEYS) as SettingName[] // the keys of a Record<SettingName, ...>

/** Where the REST overrides are kept, for a given `cache.dir`. */
export const SETTINGS_FILE_NAME = 'settings.json'

/** Loads and saves the REST overrides. */
export interface SettingsPersistence {
  /** The saved overrides; `{}` when there are none or they cannot be read. Never rejects. */
  load(): Promise<Partial<MutableValues>>
  /** Replaces the saved overrides. Resolves once they are durable on disk. */
  save(values: Partial<MutableValues>): Promise<void>
}

/** The file's JSON: config key names and typed values, versioned for later changes. */
interface SettingsFileContent {
  version: 1
  overrides: Partial<Record<MutableKey, unknown>>
}

export class SettingsFile implements SettingsPersistence {
  readonly #file: string
  readonly #log: Log
  /** Saves run one after another, so the last one called is the one on disk. */
  #queue: Promise<void> = Promise.resolve()

  constructor(opts: { file: string; log: Log }) {
    this.#file = opts.file
    this.#log = opts.log
  }

  get file(): string {
    return this.#file
  }

  async load(): Promise<Partial<MutableValues>> {
    let text: string
    try {
      text = await readFile(this.#file, 'utf8')
    } catch (err) {
      if (isErrnoCode(err, 'ENOENT')) return {}
      this.#log.warn({ err, file: this.#file }, 'cannot read the saved REST settings: ignored, the configured values apply')
      return {}
    }
    const parsed = parseSettingsFile(text)
    if (!parsed.ok) {
      this.#log.warn({ file: this.#file, problem: parsed.problem }, 'the saved REST settings are corrupt: ignored, the configured values apply')
      return {}
    }
    for (const problem of parsed.skipped) {
      this.#log.warn({ file: this.#file, problem }, 'a saved REST setting is invalid: ignored')
    }
    return parsed.values
  }

  save(values: Partial<MutableValues>): Promise<void> {
    const next = this.#queue.then(() => this.#write(values))
    this.#queue = next.catch(() => undefined) // the caller gets the rejection; the queue goes on
    return next
  }

  async #write(values: Partial<MutableValues>): Promise<void> {
    const dir = path.dirname(this.#file)
    const tmp = `${this.#file}.tmp`
    await mkdir(dir, { recursive: true })
    const fh = await open(tmp, 'w', 0o600)
    try {
      await fh.writeFile(`${JSON.stringify(toFileContent(values), null, 2)}\n`, 'utf8')
      await fh.sync()
    } finally {
      await fh.close()
    }
    await rename(tmp, this.#file)
    await syncDir(dir)
  }
}

/** The JSON written for `values`: only the overrides that are set, under their config key names. */
export function toFileContent(values: Partial<MutableValues>): SettingsFileContent {
  const overrides: Partial<Record<MutableKey, unknown>> = {}
  for (const name of SETTING_NAMES) {
    const value = values[name]
    if (value !== undefined) overrides[SETTING_KEYS[name]] = typeof value === 'object' ? [...value] : value
  }
  return { version: 1, overrides }
}

export type ParsedSettingsFile =
  | { ok: true; values: Partial<MutableValues>; skipped: string[] }
  | { ok: false; problem: string }

/**
 * Reads the file's text back into overrides. Each value goes through the
 * same validator as the config file (`validateValue`); an invalid or
 * unknown one is skipped and reported in `skipped`, the others kept.
 */
export function parseSettingsFile(text: string): ParsedSettingsFile {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (err) {
    return { ok: false, problem: `not JSON: ${err instanceof Error ? err.message : String(err)}` }
  }
  if (!isRecord(json)) return { ok: false, problem: 'not a JSON object' }
  if (json['version'] !== 1) return { ok: false, problem: 'missing or unknown "version" (expected 1)' }
  const overrides = json['overrides']
  if (!isRecord(overrides)) return { ok: false, problem: '"overrides" is not a JSON object' }
  const values: Partial<MutableValues> = {}
  const skipped: string[] = []
  for (const [key, value] of Object.entries(overrides)) {
    const name = SETTING_NAMES.find((n) => SETTING_KEYS[n] === key)
    if (name === undefined) {
      skipped.push(`unknown key ${JSON.stringify(key)} (known: ${MUTABLE_KEYS.join(', ')})`)
      continue
    }
    const raw = rawText(value)
    const checked = raw === null ? null : validateValue(key, raw)
    if (checked === null || !checked.ok) {
      skipped.push(checked?.message ?? `${key}: ${JSON.stringify(value)} is not a value of the right type`)
      continue
    }
    assign(values, name, checked.value)
  }
  return { ok: true, values, skipped }
}

/** The value as config-file text, for the validator; null for a JSON type no setting has. */
function rawText(value: unknown): string | null {
  if (Array.isArray(value)) return value.every((v) => typeof v === 'string') ? value.join(',') : null
  if (typeof value === 'boolean') return String(value)
  if (typeof value === 'number') return Number.isInteger(value) ? String(value) : null
  return null
}

function assign(values: Partial<MutableValues>, name: SettingName, value: unknown): void {
  // `value` came from validateValue for SETTING_KEYS[name]: it has that setting's type.
  ;(values as Record<SettingName, unknown>)[name] = value
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function isErrnoCode(err: unknown, code: string): boolean {
  return err instanceof Error && 'code' in err && err.code === code
}

/** Makes a rename durable. Best effort: some file systems refuse to open or fsync a directory. */
async function syncDir(dir: string): Promise<void> {
  try {
    const fh = await open(dir, 'r')
    try {
      await fh.sync()
    } finally {
      await fh.close()
    }
  } catch {
    // The rename itself has happened; only its durability across a power cut is at stake.
  }
}
