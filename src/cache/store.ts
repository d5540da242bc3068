/**
 * The on-disk cache: committed entries in an LRU index, plus single-flight
 * fills that stream to every concurrent reader while they are written
 * (Gitaly's streamcache model; the file format is in `entry-file.ts`).
 *
 * ```
 *             produce(sink) ──▶ FillSink ──pwrite──▶ tmp/<key>.<rnd> ──rename──▶ entries/ab/<key>
 *                                  │ progress                ▲ pread (one shared fd)
 *   open() miss ─▶ EntryReader ◀───┤                         │
 *   open() join ─▶ EntryReader ◀───┘ ... each from offset 0 ─┘
 *   open() hit  ─▶ EntryReader ◀── pread (its own fd) ── entries/ab/<key>
 *   open() hit  ─▶ WholeBody   ◀── memory (a small refs entry hit before)
 * ```
 *
 * This file is the facade that composes the parts, one concept each:
 *
 * - `entry-index.ts`: the LRU index of committed entries, the pins that
 *   keep a file until a hit has opened it, and the per-key queue of renames
 *   and unlinks.
 * - `fill.ts`: fills, the single-flight pipe from a producer to its
 *   readers, and their commit, failure or doom (with the decided producer
 *   lifetime: a fill outlives its clients).
 * - `hot-bodies.ts`: small refs entries kept in memory after their first
 *   hit, within a byte budget.
 * - `figures.ts`: per-repository counters and the stats snapshot.
 * - `recovery.ts`: `init()`'s sweep of tmp/ and rebuild of the index.
 * - `body.ts`: the body handed out (`CacheBody`), so no caller asks what
 *   kind it is.
 *
 * What stays here is the hit path, which needs three of them at once: the
 * lookup and the open() of the entry's file happen in one synchronous
 * step, with the record pinned until open() returns (entry-index.ts says
 * why). A hit opens its own read-only fd; the reader closes it on end,
 * error or destroy. A body that is never read to the end must be destroyed
 * by its owner, or it keeps its fd open.
 *
 * The services see this class through `CacheStoreApi` (store-api.ts); when
 * `init()` fails, the proxy uses `NoopStore` instead (noop-store.ts).
 */
import { open as openFile } from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'
import { CacheError } from '../errors.js'
import type { Log } from '../logger.js'
import { checkKey, openTmpFile } from './entry-file.js'
import type { EntryFile, EntryKind } from './entry-file.js'
import { EntryIndex, type IndexRecord } from './entry-index.js'
import { EntryReader, WholeBody } from './entry-reader.js'
import type { CacheBody } from './body.js'
import { Figures, type StoreStats } from './figures.js'
import { Fills } from './fill.js'
import { HotBodies } from './hot-bodies.js'
import { recoverIndex } from './recovery.js'
import type { CacheStoreApi, OpenRequest, OpenResult } from './store-api.js'

export type { EntryKind } from './entry-file.js'
export type { CacheBody } from './body.js'
export type { KindStats, RepoStats, StoreStats } from './figures.js'
export type { CacheStoreApi, FillOutcome, OpenRequest, OpenResult } from './store-api.js'

export interface EntryInfo {
  key: string
  kind: EntryKind
  repo: string
  createdAt: number
  bodySize: number
  /** bytes on disk, trailer included */
  size: number
  bodySha256: string
  info: Record<string, string>
}

export interface CacheStoreOptions {
  dir: string
  log: Log
  /** bytes; 0 or absent: no cap */
  maxSize?: number
  /** epoch ms; injectable for tests */
  now?: () => number
  /**
   * Told of every failed fill or commit, with the underlying error (the
   * disk guard pauses caching on ENOSPC through this).
   */
  onFillError?: (err: unknown) => void
  /** Creates a fill's temp file. For tests (fault injection); defaults to `openTmpFile`. */
  openForWrite?: (file: string) => Promise<EntryFile>
  /** Opens a committed entry for a hit. For tests (slow opens); defaults to fs `open(file, 'r')`. */
  openForRead?: (file: string) => Promise<FileHandle>
}

export class CacheStore implements CacheStoreApi {
  readonly #dir: string
  readonly #log: Log
  readonly #now: () => number
  readonly #openForRead: (file: string) => Promise<FileHandle>
  readonly #figures = new Figures()
  readonly #hot: HotBodies
  readonly #index: EntryIndex
  readonly #fills: Fills
  readonly #hitReaders = new Set<EntryReader | WholeBody>()
  #state: 'new' | 'ready' | 'closed' = 'new'

  constructor(opts: CacheStoreOptions) {
    const maxSize = opts.maxSize ?? 0
    if (!Number.isSafeInteger(maxSize) || maxSize < 0) {
      throw new TypeError(`maxSize must be a non-negative integer, got ${String(opts.maxSize)}`)
    }
    this.#dir = opts.dir
    this.#log = opts.log.child({ component: 'cache-store' })
    this.#now = opts.now ?? Date.now
    this.#openForRead = opts.openForRead ?? ((file) => openFile(file, 'r'))
    this.#hot = new HotBodies(this.#log)
    this.#index = new EntryIndex({
      maxSize,
      now: this.#now,
      log: this.#log,
      onInsert: (rec) => {
        const counters = this.#figures.counters(rec.meta.repo, rec.meta.kind)
        counters.entries++
        counters.size += rec.size
      },
      onRemove: (rec) => {
        const counters = this.#figures.counters(rec.meta.repo, rec.meta.kind)
        counters.entries--
        counters.size -= rec.size
        this.#hot.forget(rec)
      },
    })
    this.#fills = new Fills({
      dir: opts.dir,
      log: this.#log,
      now: this.#now,
      index: this.#index,
      openForWrite: opts.openForWrite ?? openTmpFile,
      onFillError: (err) => {
        try {
          opts.onFillError?.(err)
        } catch (hookErr) {
          this.#log.error({ err: hookErr }, 'onFillError hook threw')
        }
      },
      accepting: () => this.#state === 'ready',
    })
  }

  /**
   * Creates the directories, deletes the leftovers of a crash under tmp/,
   * and rebuilds the index from the trailers under entries/ (deleting, and
   * logging, every file that is not a whole entry). See recovery.ts.
   */
  async init(): Promise<void> {
    if (this.#state !== 'new') {
      throw new CacheError('ERR_CACHE_STATE', `init() on a ${this.#state} cache store`)
    }
    await recoverIndex(this.#dir, this.#index, this.#log)
    this.#state = 'ready'
  }

  /**
   * A committed entry with `createdAt + ttlMs > now()`, or undefined. An
   * expired entry is deleted on the way. Does not count as a use for LRU.
   */
  peek(key: string, ttlMs: number): EntryInfo | undefined {
    checkKey(key)
    if (this.#state !== 'ready') return undefined
    const rec = this.#index.lookup(key, ttlMs, false)
    return rec === undefined ? undefined : toEntryInfo(rec)
  }

  hotHit(key: string, kind: EntryKind, repo: string, ttlMs: number): Buffer | undefined {
    if (this.#state !== 'ready') return undefined
    const rec = this.#index.lookup(key, ttlMs, true)
    const body = rec === undefined ? undefined : this.#hot.of(rec)
    if (rec === undefined || body === undefined || rec.meta.repo !== repo || rec.meta.kind !== kind) return undefined
    this.#figures.hit(repo, kind, this.#now()).bytesServed += body.length
    return body
  }

  async open(req: OpenRequest): Promise<OpenResult> {
    checkKey(req.key)
    this.#checkReady()
    const rec = this.#index.lookup(req.key, req.ttlMs, true)
    if (rec !== undefined) {
      if (!sameOwner(rec.meta, req)) return this.#conflict(req, rec.meta)
      const body = await this.#openHit(rec)
      if (body !== undefined) {
        this.#figures.hit(rec.meta.repo, rec.meta.kind, this.#now())
        return { how: 'hit', body, info: { ...rec.meta.info } }
      }
      this.#checkReady() // we awaited
    }
    // From here to the end: no await, so the lookup and the registration of a new fill are one step.
    const counters = this.#figures.counters(req.repo, req.kind)
    const fill = this.#fills.joinable(req.key)
    if (fill !== undefined) {
      if (!sameOwner(fill, req)) return this.#conflict(req, fill)
      counters.joins++
      return { how: 'join', body: this.#fills.join(fill), info: null }
    }
    if (!req.admit) {
      counters.bypasses++
      return { how: 'bypass' }
    }
    counters.misses++
    return { how: 'miss', body: this.#fills.start(req), info: null }
  }

  recordBypass(repo: string, kind: EntryKind): void {
    this.#figures.counters(repo, kind).bypasses++
  }

  async invalidateRepo(repo: string, kind?: EntryKind): Promise<number> {
    const matches = (r: string, k: EntryKind): boolean => r === repo && (kind === undefined || k === kind)
    const doomed = this.#fills.doom(matches)
    const entries = await this.#index.remove((meta) => matches(meta.repo, meta.kind))
    if (entries > 0 || doomed > 0) {
      this.#log.info({ repo, kind, entries, doomedFills: doomed }, 'cache invalidated')
    }
    return entries
  }

  async clear(): Promise<void> {
    const doomed = this.#fills.doom(() => true)
    const entries = await this.#index.clear()
    this.#log.info({ entries, doomedFills: doomed }, 'cache cleared')
  }

  async sweepExpired(ttlMsFor: (kind: EntryKind) => number): Promise<number> {
    const now = this.#now()
    const entries = await this.#index.remove((meta) => meta.createdAt + ttlMsFor(meta.kind) <= now)
    if (entries > 0) this.#log.info({ entries }, 'expired cache entries removed')
    return entries
  }

  stats(): StoreStats {
    return this.#figures.snapshot(this.#fills.inFlight, this.#index.evictions)
  }

  /**
   * Resolves when no fill is running (produce() settled, commit or cleanup
   * done) and no entry file removal is pending. For graceful shutdown and
   * tests.
   */
  async idle(): Promise<void> {
    for (;;) {
      const waits = [...this.#fills.tasks(), ...this.#index.pendingFileOps()]
      if (waits.length === 0) return
      await Promise.all(waits)
    }
  }

  /**
   * Aborts every fill in flight (its readers get `ERR_CACHE_FILL_FAILED`,
   * produce() its signal), destroys every hit reader (`ERR_CACHE_CLOSED`),
   * and resolves once their fds are closed and temp files removed. Does not
   * wait for a produce() that ignores its signal.
   */
  async close(): Promise<void> {
    if (this.#state === 'closed') return
    this.#state = 'closed'
    const waits: Promise<unknown>[] = this.#fills.abortAll()
    for (const reader of this.#hitReaders) {
      waits.push(new Promise((resolve) => reader.once('close', resolve)))
      reader.destroy(new CacheError('ERR_CACHE_CLOSED', 'the cache store is closing'))
    }
    waits.push(...this.#index.pendingFileOps())
    await Promise.all(waits)
  }

  // --- hits ---

  /** Opens a hit's own fd. Called right after the lookup, without an await in between. */
  async #openHit(rec: IndexRecord): Promise<CacheBody | undefined> {
    const held = this.#hot.of(rec)
    if (held !== undefined) return this.#memoryHit(rec, held)
    let fh: FileHandle
    try {
      fh = await this.#index.pin(rec, this.#openForRead(rec.path))
    } catch (err) {
      this.#log.warn({ key: rec.meta.key, repo: rec.meta.repo, err }, 'cache entry file vanished; dropping it')
      this.#index.drop(rec)
      return undefined
    }
    if (this.#state !== 'ready') {
      await fh.close()
      throw new CacheError('ERR_CACHE_CLOSED', 'the cache store is closed')
    }
    if (this.#hot.wants(rec)) {
      // read() closes fh: a short file is a miss, never a hit read through a closed handle.
      const body = await this.#hot.read(fh, rec)
      if (body === undefined) {
        this.#dropTruncated(rec)
        return undefined
      }
      // Another hit of the same entry may have stored it while this one read.
      if (this.#index.holds(rec)) this.#hot.keep(rec, body)
      return this.#memoryHit(rec, body)
    }
    const counters = this.#figures.counters(rec.meta.repo, rec.meta.kind)
    const reader: EntryReader = new EntryReader({
      read: async (buf, position) => {
        const { bytesRead } = await fh.read(buf, 0, buf.length, position)
        if (bytesRead === 0) this.#dropTruncated(rec)
        return bytesRead
      },
      available: () => rec.meta.bodySize,
      complete: () => true,
      release: async (delivered) => {
        this.#hitReaders.delete(reader)
        counters.bytesServed += delivered
        try {
          await fh.close()
        } catch (err) {
          this.#log.warn({ key: rec.meta.key, err }, 'closing a cache entry file failed')
        }
      },
    })
    this.#hitReaders.add(reader)
    return reader
  }

  /** A hit served from the record's in-memory body: one buffer, no copy. */
  #memoryHit(rec: IndexRecord, body: Buffer): WholeBody {
    const counters = this.#figures.counters(rec.meta.repo, rec.meta.kind)
    const reader: WholeBody = new WholeBody(body, (delivered) => {
      this.#hitReaders.delete(reader)
      counters.bytesServed += delivered
    })
    this.#hitReaders.add(reader)
    return reader
  }

  #dropTruncated(rec: IndexRecord): void {
    this.#log.warn({ key: rec.meta.key, repo: rec.meta.repo }, 'cache entry file is truncated; dropping it')
    this.#index.drop(rec)
  }

  /** A key that names another repository or kind: never serve it across (DESIGN §2). */
  #conflict(req: OpenRequest, found: { repo: string; kind: EntryKind }): OpenResult {
    this.#log.error(
      { key: req.key, repo: req.repo, kind: req.kind, found: { repo: found.repo, kind: found.kind } },
      'cache key conflict: the key belongs to another repository or kind; bypassing',
    )
    this.#figures.counters(req.repo, req.kind).bypasses++
    return { how: 'bypass' }
  }

  #checkReady(): void {
    if (this.#state === 'new') throw new CacheError('ERR_CACHE_STATE', 'cache store used before init()')
    if (this.#state === 'closed') throw new CacheError('ERR_CACHE_CLOSED', 'the cache store is closed')
  }
}

/**
 * Whether an entry (or fill) may answer `req`: same kind, and same
 * repository, except for LFS objects, which are content-addressed and
 * stored once for all repositories (the caller checked the grant).
 */
function sameOwner(found: { repo: string; kind: EntryKind }, req: { repo: string; kind: EntryKind }): boolean {
  return found.kind === req.kind && (found.repo === req.repo || req.kind === 'lfs')
}

function toEntryInfo(rec: IndexRecord): EntryInfo {
  const { key, kind, repo, createdAt, bodySize, bodySha256, info } = rec.meta
  return { key, kind, repo, createdAt, bodySize, size: rec.size, bodySha256, info: { ...info } }
}
