/**
 * The store for a cache that cannot be used (its directory is unusable at
 * start-up): nothing is stored, every `open()` is a bypass, and the callers
 * serve every request through the upstream (DESIGN §3.5) without a branch
 * of their own. Like Gitaly's NullCache beside its streamcache.
 *
 * It keeps the same request figures as the real store (bypasses, per
 * repository), so REST and the metrics still count what went around the
 * cache; everything about entries stays zero.
 */
import { CacheError } from '../errors.js'
import { checkKey } from './entry-file.js'
import type { EntryKind } from './entry-file.js'
import { Figures, type StoreStats } from './figures.js'
import type { CacheStoreApi, OpenRequest, OpenResult } from './store-api.js'

export class NoopStore implements CacheStoreApi {
  readonly #figures = new Figures()
  #closed = false

  async open(req: OpenRequest): Promise<OpenResult> {
    checkKey(req.key)
    if (this.#closed) throw new CacheError('ERR_CACHE_CLOSED', 'the cache store is closed')
    this.#figures.counters(req.repo, req.kind).bypasses++
    return { how: 'bypass' }
  }

  hotHit(): undefined {
    return undefined
  }

  recordBypass(repo: string, kind: EntryKind): void {
    this.#figures.counters(repo, kind).bypasses++
  }

  async invalidateRepo(): Promise<number> {
    return 0
  }

  async clear(): Promise<void> {
    // nothing stored
  }

  async sweepExpired(): Promise<number> {
    return 0
  }

  stats(): StoreStats {
    return this.#figures.snapshot(0, 0)
  }

  async idle(): Promise<void> {
    // nothing runs
  }

  async close(): Promise<void> {
    this.#closed = true
  }
}
