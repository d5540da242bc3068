/**
 * What the services, the fronts, the REST API and the metrics see of the
 * cache: `CacheStoreApi`, implemented by the on-disk `CacheStore`
 * (store.ts) and by `NoopStore` (noop-store.ts, for a cache directory that
 * is unusable). Both honour the contract in
 * test/unit/cache/fixtures/store-contract.ts.
 */
import type { Writable } from 'node:stream'
import type { CacheBody } from './body.js'
import type { EntryKind } from './entry-file.js'
import type { StoreStats } from './figures.js'

export type { CacheBody } from './body.js'
export type { EntryKind } from './entry-file.js'
export type { KindStats, RepoStats, StoreStats } from './figures.js'

export type FillOutcome =
  | { commit: true; info?: Record<string, string> }
  /**
   * Not storable. With `deliver`, the body was nevertheless complete (say,
   * the upstream's own `ERR` answer): readers get all of it and end
   * normally, nothing is committed and nobody new joins. Without it, the
   * readers fail with ERR_CACHE_FILL_FAILED.
   */
  | { commit: false; reason: string; deliver?: boolean }

/**
 * Writes the body into `sink` (end it, e.g. with `pipeline`) and says
 * whether the exchange succeeded. `signal` aborts only on the store's
 * `close()`. Called at most once per key at a time.
 */
export type Produce = (sink: Writable, signal: AbortSignal) => Promise<FillOutcome>

export interface OpenRequest {
  key: string
  kind: EntryKind
  repo: string
  ttlMs: number
  /**
   * false: a miss must not write (the disk guard paused caching). Hits, and
   * joins of a fill already running, are still served; a miss returns
   * `{ how: 'bypass' }` without calling produce.
   */
  admit: boolean
  /** Called for a miss only: see `Produce`. */
  produce: Produce
}

export type OpenResult =
  | {
      how: 'hit' | 'miss' | 'join'
      /** The body only. Fill errors arrive as `ERR_CACHE_FILL_FAILED`. */
      body: CacheBody
      /** The stored `info` for a hit; null for miss and join (not known until commit). */
      info: Record<string, string> | null
    }
  | { how: 'bypass' }

export interface CacheStoreApi {
  /**
   * Serve a key: hit, join of a running fill, a new fill (miss), or bypass.
   * Rejects with a CacheError for a key that is not a lower-case hex
   * SHA-256 (`ERR_CACHE_BAD_KEY`) and once closed (`ERR_CACHE_CLOSED`).
   */
  open(req: OpenRequest): Promise<OpenResult>
  /**
   * The body of an entry held in memory of `repo` and `kind` with
   * `createdAt + ttlMs > now()`, counted as a hit with its bytes served;
   * undefined when there is none, and then `open()` does the rest. No
   * stream and no await: a cached poll's path.
   */
  hotHit(key: string, kind: EntryKind, repo: string, ttlMs: number): Buffer | undefined
  /** Counts a request of a cacheable kind that the caller served without open(). */
  recordBypass(repo: string, kind: EntryKind): void
  /**
   * Drops every committed entry of `repo` (of `kind`, if given) and dooms
   * its fills in flight. Resolves, with the number of entries dropped, once
   * their files are unlinked.
   */
  invalidateRepo(repo: string, kind?: EntryKind): Promise<number>
  /** Drops every entry and dooms every fill in flight. */
  clear(): Promise<void>
  /** Deletes the committed entries whose TTL has passed; returns how many. */
  sweepExpired(ttlMsFor: (kind: EntryKind) => number): Promise<number>
  /** A copy of the figures. */
  stats(): StoreStats
  /** Resolves when no fill is running and no entry file removal is pending. */
  idle(): Promise<void>
  /** Ends every fill and body in flight; idempotent. */
  close(): Promise<void>
}
