/**
 * Dropping what the cache holds of a repository (DESIGN §3.2): after a push
 * through either front, a push webhook, or a cached advertisement found out
 * of date. The fronts and the webhook ask here, not the store.
 */
import type { CacheStoreApi, EntryKind } from '../cache/store-api.js'

export class Invalidation {
  readonly #store: CacheStoreApi

  constructor(store: CacheStoreApi) {
    this.#store = store
  }

  /** Drops every entry of `repo` (of `kind`, if given) and dooms its fills; resolves with the entries dropped. */
  repo(repo: string, kind?: EntryKind): Promise<number> {
    return this.#store.invalidateRepo(repo, kind)
  }

  /** The repositories the cache has figures for (a webhook matches names against them). */
  knownRepos(): string[] {
    return [...this.#store.stats().repos.keys()]
  }
}
