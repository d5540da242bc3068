/**
 * Changes to the run-time settings made through REST: saved first, applied
 * second, so a change that cannot be saved changes nothing (and answers 500)
 * and one that answered 204 survives a restart. Changes run one at a time:
 * each starts from the overrides the previous one left, so two concurrent
 * calls can never save a file that lacks one of them.
 */
import type { Log } from '../logger.js'
import { SETTING_KEYS, type MutableValues, type SettingName, type Settings, type SettingsPersistence } from '../settings.js'

export class OverrideWriter {
  readonly #settings: Settings
  readonly #persistence: SettingsPersistence
  readonly #log: Log
  #queue: Promise<void> = Promise.resolve()

  constructor(opts: { settings: Settings; persistence: SettingsPersistence; log: Log }) {
    this.#settings = opts.settings
    this.#persistence = opts.persistence
    this.#log = opts.log
  }

  /** Sets the override of `name` to what `next` computes from its effective value at that moment. */
  update<K extends SettingName>(name: K, next: (current: MutableValues[K]) => MutableValues[K], by: string): Promise<void> {
    return this.#serial(async () => {
      const value = next(this.#settings.get(name))
      await this.#apply({ ...this.#settings.overrides(), [name]: value })
      this.#log.info({ setting: SETTING_KEYS[name], value: shown(value), by }, 'setting changed through REST')
    })
  }

  set<K extends SettingName>(name: K, value: MutableValues[K], by: string): Promise<void> {
    return this.update(name, () => value, by)
  }

  /** Drops the override of `name`: the configured (file or environment) value applies again. */
  drop(name: SettingName, by: string): Promise<void> {
    return this.#serial(async () => {
      const next = this.#settings.overrides()
      const had = name in next
      Reflect.deleteProperty(next, name)
      await this.#apply(next)
      this.#log.info(
        { setting: SETTING_KEYS[name], value: shown(this.#settings.get(name)), by, overridden: had },
        'setting override dropped through REST: the configured value applies',
      )
    })
  }

  async #apply(next: Partial<MutableValues>): Promise<void> {
    await this.#persistence.save(next)
    this.#settings.replaceOverrides(next)
  }

  #serial(op: () => Promise<void>): Promise<void> {
    const run = this.#queue.then(op)
    this.#queue = run.catch(() => undefined) // the caller gets the rejection; later changes still run
    return run
  }
}

/** Protocol lists as `HTTP,SSH` in logs, like the config file writes them. */
function shown(value: MutableValues[SettingName]): string | number | boolean {
  return typeof value === 'object' ? value.join(',') : value
}
