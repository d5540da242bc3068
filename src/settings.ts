/**
 * The settings that may change at run time (DESIGN §6): which fronts may be
 * served from cache, refs/upload-pack enabled and TTL. Each request reads
 * them afresh, so a change takes effect on the next request. REST overrides
 * win over the configured value and can be dropped to return to it.
 */
import type { Config, Protocol } from './config/load.js'

export interface MutableValues {
  protocols: readonly Protocol[]
  refsEnabled: boolean
  refsTtl: number
  uploadPackEnabled: boolean
  uploadPackTtl: number
}

export type SettingName = keyof MutableValues

export class Settings {
  readonly #base: MutableValues
  #overrides: Partial<MutableValues> = {}

  constructor(config: Config) {
    this.#base = {
      protocols: config.cache.protocols,
      refsEnabled: config.cache.refsEnabled,
      refsTtl: config.cache.refsTtl,
      uploadPackEnabled: config.cache.uploadPackEnabled,
      uploadPackTtl: config.cache.uploadPackTtl,
    }
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
