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
 * ```
 *
 * Single flight. `#fills` maps a key to the one fill that new readers may
 * join. A miss registers its fill there in the same synchronous step as
 * the lookup, so any number of concurrent `open()`s make one `produce` call.
 * A fill leaves the map exactly when it stops being joinable: in the same
 * tick as its entry enters the index (so a request sees the fill or the
 * entry, never neither), or FIRST thing when it fails (then its readers are
 * destroyed with `ERR_CACHE_FILL_FAILED`, then the temp file is unlinked),
 * or when it is invalidated ("doomed": it streams on to its readers, but is
 * never committed and nobody new joins it; the next request starts afresh).
 *
 * Producer lifetime (decided): the fill is NOT tied to any client. Its
 * signal aborts only on `close()`. A reader that goes away (client hung up)
 * just stops reading; the fill goes on for the others, and if every reader
 * has gone it still completes and commits, so the next request is a hit.
 * Clients of one burst come and go independently, and a half-downloaded
 * pack that nobody can reuse would make the next clone pay upstream again.
 *
 * Backpressure. The producer is paced by the disk only (each write waits
 * for its pwrite), not by the readers as in Gitaly: a fill must complete
 * without readers, and a slow reader lags behind on disk instead of
 * slowing the upstream transfer for everyone. Readers follow by positional
 * reads up to the byte count the sink has confirmed written, and are
 * woken by a progress notification when they catch up.
 *
 * Readers end after the commit (trailer, fsync, rename, directory fsync,
 * index) or the discard of a doomed fill is done, so once a miss or join
 * body has ended, the next `open()` is a hit. The price: the last bytes'
 * end-of-stream waits for the fsync of the whole file. A failed commit
 * does not fail the readers: they got the whole, valid body; the entry is
 * just not cached (and logged).
 *
 * Errors for the caller: a miss or join body fails with
 * `ERR_CACHE_FILL_FAILED` (`cause`: what produce() threw, the sink's I/O
 * error, ...). If no byte was delivered yet, the request can still go
 * around the cache; otherwise the connection must be cut (DESIGN §3.5).
 *
 * File descriptor lifetime:
 * - A fill has one read-write fd, shared by its sink and all its readers
 *   (positional I/O). It is closed when the writer is done and the last
 *   reader closed. The tmp file's rename or unlink does not disturb it.
 * - A hit opens its own read-only fd; the reader closes it on end, error
 *   or destroy. Only a live reader holds an fd; entries in the index don't.
 *   A body that is never read to the end must be destroyed by its owner,
 *   or it keeps its fd (and, for a fill, the fill's fd) open.
 * - Unlinking a committed entry (eviction, invalidation, expiry) relies on
 *   POSIX unlink-while-open: readers already holding an fd read on. To make
 *   sure the fd is opened BEFORE the unlink, a hit calls open() in the same
 *   synchronous step as the index lookup and pins the record until open()
 *   returns; the unlink of a record waits for its pins. Once out of the
 *   index a record is never found again, so no new reader sees it.
 * - Every rename into and unlink of `entries/<key>` runs through a per-key
 *   queue, and an unlink checks the inode first, so removing an old entry
 *   can never remove a newer file committed at the same path.
 *
 * Counters: `bytesServed` counts bytes delivered by hit readers only (bytes
 * from the cache, not from an upstream fill). open() counts its own hits,
 * misses, joins and bypasses; `recordBypass` is for requests the caller
 * sends around the store without calling open().
 */
import { createHash } from 'node:crypto'
import { open as openFile, readdir, rm, stat, unlink, mkdir } from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'
import path from 'node:path'
import { type Readable, Writable } from 'node:stream'
import { finished } from 'node:stream/promises'
import { LRUCache } from 'lru-cache'
import { CacheError, toError } from '../errors.js'
import type { Log } from '../logger.js'
import {
  appendTrailer,
  entriesDir,
  entryPath,
  isCacheKey,
  openTmpFile,
  publishFile,
  readEntryMeta,
  tmpDir,
  tmpPath,
} from './entry-file.js'
import type { EntryFile, EntryKind, EntryMeta } from './entry-file.js'
import { EntryReader, WholeBody } from './entry-reader.js'

export type { EntryKind } from './entry-file.js'

export type FillOutcome =
  | { commit: true; info?: Record<string, string> }
  /**
   * Not storable. With `deliver`, the body was nevertheless complete (say,
   * the upstream's own `ERR` answer): readers get all of it and end
   * normally, nothing is committed and nobody new joins. Without it, the
   * readers fail with ERR_CACHE_FILL_FAILED.
   */
  | { commit: false; reason: string; deliver?: boolean }

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
  /**
   * Writes the body into `sink` (end it, e.g. with `pipeline`) and says
   * whether the exchange succeeded. `signal` aborts only on `close()`.
   * Called at most once per key at a time.
   */
  produce: (sink: Writable, signal: AbortSignal) => Promise<FillOutcome>
}

export type OpenResult =
  | {
      how: 'hit' | 'miss' | 'join'
      /** The body only. Fill errors arrive as `ERR_CACHE_FILL_FAILED`. */
      body: Readable
      /** The stored `info` for a hit; null for miss and join (not known until commit). */
      info: Record<string, string> | null
    }
  | { how: 'bypass' }

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

export interface KindStats {
  entries: number
  /** bytes on disk of committed entries */
  size: number
  hits: number
  misses: number
  joins: number
  bypasses: number
  bytesServed: number
  /** epoch ms */
  lastHit: number | null
}

export interface RepoStats {
  refs: KindStats
  uploadPack: KindStats
}

export interface StoreStats {
  repos: Map<string, RepoStats>
  totals: RepoStats
  /** fills whose produce() has not settled yet, doomed ones included */
  fillsInFlight: number
  evictions: number
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

/** A committed entry in the index. */
interface IndexRecord {
  meta: EntryMeta
  path: string
  size: number
  ino: number
  /** hits whose open() of this file is in progress */
  pins: number
  onUnpinned: (() => void)[]
  /** set when the record leaves the index: the removal of its file */
  removal: Promise<void> | undefined
  /** the body, kept in memory after the first hit of a small refs entry */
  body?: Buffer
}

/**
 * Small ref entries (advertisements, ls-refs) are polled over and over:
 * after their first hit they are served from memory, sparing each poll an
 * open, a read and a close. Entries never change once committed, so the
 * copy is exact; it goes with the record when the record leaves the index.
 */
const HOT_ENTRY_MAX = 2 * 1024 * 1024
const hotBodyOf = (rec: IndexRecord): Buffer | undefined => rec.body
const HOT_TOTAL_MAX = 32 * 1024 * 1024

type FillState = 'writing' | 'done' | 'failed'

/** One upstream fill in progress. */
interface Fill {
  readonly key: string
  readonly kind: EntryKind
  readonly repo: string
  readonly tmp: string
  readonly abort: AbortController
  readonly readers: Set<EntryReader>
  readonly hash: ReturnType<typeof createHash>
  state: FillState
  /** invalidated: stream on, never commit */
  doomed: boolean
  file: EntryFile | undefined
  /** body bytes confirmed written */
  written: number
  sink: FillSink | undefined
  info: Record<string, string>
  /** the sink will write no more */
  writerDone: boolean
  fileClose: Promise<void> | undefined
  /** temp file removal after a failure */
  cleanup: Promise<void> | undefined
  /** the whole fill, produce() included; never rejects */
  task: Promise<void>
}

/** Writes the fill's body into its temp file; each write completes before the next. */
class FillSink extends Writable {
  readonly #fill: Fill
  readonly #file: EntryFile
  readonly #onProgress: () => void

  constructor(fill: Fill, file: EntryFile, onProgress: () => void) {
    super({ highWaterMark: 64 * 1024 })
    this.#fill = fill
    this.#file = file
    this.#onProgress = onProgress
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    const fill = this.#fill
    this.#file.write(chunk, fill.written).then(
      () => {
        fill.hash.update(chunk)
        fill.written += chunk.length
        this.#onProgress()
        callback()
      },
      (err: unknown) => {
        callback(toError(err))
      },
    )
  }
}

/** A function, not an inline test: the state changes across awaits, which narrowing does not see. */
function isWriting(fill: Fill): boolean {
  return fill.state === 'writing'
}

function emptyKindStats(): KindStats {
  return { entries: 0, size: 0, hits: 0, misses: 0, joins: 0, bypasses: 0, bytesServed: 0, lastHit: null }
}

function kindField(kind: EntryKind): keyof RepoStats {
  return kind === 'refs' ? 'refs' : 'uploadPack'
}

function errorCode(err: unknown): unknown {
  return err instanceof Error && 'code' in err ? err.code : undefined
}

const SHARD_RE = /^[0-9a-f]{2}$/
/** Entry files whose trailers init() reads at once. */
const INIT_CONCURRENCY = 16

export class CacheStore {
  readonly #dir: string
  readonly #log: Log
  readonly #maxSize: number
  readonly #now: () => number
  readonly #openForWrite: (file: string) => Promise<EntryFile>
  readonly #onFillError: (err: unknown) => void
  /** bytes of entry bodies kept in memory (small refs entries) */
  #hotBytes = 0
  readonly #openForRead: (file: string) => Promise<FileHandle>
  readonly #index: LRUCache<string, IndexRecord>
  /** joinable fills */
  readonly #fills = new Map<string, Fill>()
  /** every fill whose task has not settled (doomed and failed ones included) */
  readonly #running = new Set<Fill>()
  readonly #hitReaders = new Set<Readable>()
  /** per-key queue of renames into / unlinks of entries/<key> */
  readonly #pathOps = new Map<string, Promise<void>>()
  readonly #repos = new Map<string, RepoStats>()
  #evictions = 0
  #state: 'new' | 'ready' | 'closed' = 'new'

  constructor(opts: CacheStoreOptions) {
    const maxSize = opts.maxSize ?? 0
    if (!Number.isSafeInteger(maxSize) || maxSize < 0) {
      throw new TypeError(`maxSize must be a non-negative integer, got ${String(opts.maxSize)}`)
    }
    this.#dir = opts.dir
    this.#log = opts.log.child({ component: 'cache-store' })
    this.#maxSize = maxSize
    this.#now = opts.now ?? Date.now
    this.#openForWrite = opts.openForWrite ?? openTmpFile
    this.#onFillError = (err) => {
      try {
        opts.onFillError?.(err)
      } catch (hookErr) {
        this.#log.error({ err: hookErr }, 'onFillError hook threw')
      }
    }
    this.#openForRead = opts.openForRead ?? ((file) => openFile(file, 'r'))
    this.#index = new LRUCache<string, IndexRecord>({
      // lru-cache needs a bound; "no cap" is a bound nobody reaches.
      maxSize: maxSize > 0 ? maxSize : Number.MAX_SAFE_INTEGER,
      sizeCalculation: (rec) => rec.size,
      dispose: (rec, key, reason) => {
        this.#onDispose(rec, key, reason)
      },
    })
  }

  /**
   * Creates the directories, deletes the leftovers of a crash under tmp/,
   * and rebuilds the index from the trailers under entries/ (deleting, and
   * logging, every file that is not a whole entry).
   */
  async init(): Promise<void> {
    if (this.#state !== 'new') {
      throw new CacheError('ERR_CACHE_STATE', `init() on a ${this.#state} cache store`)
    }
    const started = performance.now()
    const entries = entriesDir(this.#dir)
    const tmp = tmpDir(this.#dir)
    await mkdir(entries, { recursive: true })
    await mkdir(tmp, { recursive: true })

    let removedTmp = 0
    for (const name of await readdir(tmp)) {
      await rm(path.join(tmp, name), { recursive: true, force: true })
      removedTmp++
    }

    let removedCorrupt = 0
    const removeJunk = async (file: string, why: string, err?: unknown): Promise<void> => {
      this.#log.warn({ file, why, err }, 'removing a corrupt cache file')
      removedCorrupt++
      await rm(file, { recursive: true, force: true })
    }

    const candidates: { key: string; file: string }[] = []
    for (const shard of await readdir(entries, { withFileTypes: true })) {
      const shardPath = path.join(entries, shard.name)
      if (!shard.isDirectory() || !SHARD_RE.test(shard.name)) {
        await removeJunk(shardPath, 'not an entry shard directory')
        continue
      }
      for (const name of await readdir(shardPath)) {
        const file = path.join(shardPath, name)
        if (!isCacheKey(name) || !name.startsWith(shard.name)) {
          await removeJunk(file, 'not an entry file name')
          continue
        }
        candidates.push({ key: name, file })
      }
    }

    const found: IndexRecord[] = []
    let next = 0
    const worker = async (): Promise<void> => {
      for (let c = candidates[next++]; c !== undefined; c = candidates[next++]) {
        try {
          const { meta, fileSize, ino } = await readEntryMeta(c.file)
          if (meta.key !== c.key) {
            await removeJunk(c.file, `metadata is for key ${meta.key}`)
            continue
          }
          found.push({ meta, path: c.file, size: fileSize, ino, pins: 0, onUnpinned: [], removal: undefined })
        } catch (err) {
          if (errorCode(err) === 'ENOENT') continue
          const why = errorCode(err) === 'ERR_CACHE_ENTRY_CORRUPT' ? 'corrupt' : 'unreadable'
          await removeJunk(c.file, why, err)
        }
      }
    }
    await Promise.all(Array.from({ length: INIT_CONCURRENCY }, worker))

    // Oldest first, so that the newest entries are the most recently used.
    found.sort((a, b) => a.meta.createdAt - b.meta.createdAt)
    let tooLarge = 0
    for (const rec of found) {
      if (this.#maxSize > 0 && rec.size > this.#maxSize) {
        tooLarge++
        await rm(rec.path, { force: true })
        continue
      }
      this.#insert(rec)
    }
    this.#state = 'ready'
    const totals = this.stats().totals
    this.#log.info(
      {
        entries: totals.refs.entries + totals.uploadPack.entries,
        bytes: totals.refs.size + totals.uploadPack.size,
        removedTmp,
        removedCorrupt,
        removedTooLarge: tooLarge,
        evictions: this.#evictions,
        ms: Math.round(performance.now() - started),
      },
      'cache index rebuilt',
    )
  }

  /**
   * A committed entry with `createdAt + ttlMs > now()`, or undefined. An
   * expired entry is deleted on the way. Does not count as a use for LRU.
   */
  peek(key: string, ttlMs: number): EntryInfo | undefined {
    this.#checkKey(key)
    if (this.#state !== 'ready') return undefined
    const rec = this.#lookup(key, ttlMs, false)
    return rec === undefined ? undefined : toEntryInfo(rec)
  }

  /**
   * The body of a hot entry (a small ref entry read once already, kept in
   * memory) of `repo` and `kind` with `createdAt + ttlMs > now()`, counted
   * as a hit with its bytes served; undefined when there is none, and then
   * `open()` does the rest. No stream and no await: a cached poll's path.
   */
  hotHit(key: string, kind: EntryKind, repo: string, ttlMs: number): Buffer | undefined {
    if (this.#state !== 'ready') return undefined
    const rec = this.#lookup(key, ttlMs, true)
    const body = rec?.body
    if (rec === undefined || body === undefined || rec.meta.repo !== repo || rec.meta.kind !== kind) return undefined
    const counters = this.#counters(repo, kind)
    counters.hits++
    counters.lastHit = this.#now()
    counters.bytesServed += body.length
    return body
  }

  /** Serve a key: hit, join of a running fill, a new fill (miss), or bypass. */
  async open(req: OpenRequest): Promise<OpenResult> {
    this.#checkKey(req.key)
    this.#checkReady()
    const rec = this.#lookup(req.key, req.ttlMs, true)
    if (rec !== undefined) {
      if (rec.meta.repo !== req.repo || rec.meta.kind !== req.kind) return this.#conflict(req, rec.meta)
      const body = await this.#openHit(rec)
      if (body !== undefined) {
        const counters = this.#counters(rec.meta.repo, rec.meta.kind)
        counters.hits++
        counters.lastHit = this.#now()
        return { how: 'hit', body, info: { ...rec.meta.info } }
      }
      this.#checkReady() // we awaited
    }
    // From here to the end: no await, so the lookup and the registration of a new fill are one step.
    const counters = this.#counters(req.repo, req.kind)
    const fill = this.#fills.get(req.key)
    if (fill !== undefined) {
      if (fill.repo !== req.repo || fill.kind !== req.kind) return this.#conflict(req, fill)
      counters.joins++
      return { how: 'join', body: this.#addFillReader(fill), info: null }
    }
    if (!req.admit) {
      counters.bypasses++
      return { how: 'bypass' }
    }
    counters.misses++
    return { how: 'miss', body: this.#startFill(req), info: null }
  }

  /** Counts a request of a cacheable kind that the caller served without open(). */
  recordBypass(repo: string, kind: EntryKind): void {
    this.#counters(repo, kind).bypasses++
  }

  /**
   * Drops every committed entry of `repo` (of `kind`, if given) and dooms
   * its fills in flight. Resolves, with the number of entries dropped, once
   * their files are unlinked.
   */
  async invalidateRepo(repo: string, kind?: EntryKind): Promise<number> {
    const matches = (r: string, k: EntryKind): boolean => r === repo && (kind === undefined || k === kind)
    const doomed = this.#doomFills((f) => matches(f.repo, f.kind))
    const recs = [...this.#index.values()].filter((rec) => matches(rec.meta.repo, rec.meta.kind))
    for (const rec of recs) this.#index.delete(rec.meta.key)
    await Promise.all(recs.map((rec) => rec.removal ?? Promise.resolve()))
    if (recs.length > 0 || doomed > 0) {
      this.#log.info({ repo, kind, entries: recs.length, doomedFills: doomed }, 'cache invalidated')
    }
    return recs.length
  }

  /** Drops every entry and dooms every fill in flight. */
  async clear(): Promise<void> {
    const doomed = this.#doomFills(() => true)
    const recs = [...this.#index.values()]
    this.#index.clear()
    await Promise.all(recs.map((rec) => rec.removal ?? Promise.resolve()))
    this.#log.info({ entries: recs.length, doomedFills: doomed }, 'cache cleared')
  }

  /** Deletes the committed entries whose TTL has passed; returns how many. */
  async sweepExpired(ttlMsFor: (kind: EntryKind) => number): Promise<number> {
    const now = this.#now()
    const recs = [...this.#index.values()].filter(
      (rec) => rec.meta.createdAt + ttlMsFor(rec.meta.kind) <= now,
    )
    for (const rec of recs) this.#index.delete(rec.meta.key)
    await Promise.all(recs.map((rec) => rec.removal ?? Promise.resolve()))
    if (recs.length > 0) this.#log.info({ entries: recs.length }, 'expired cache entries removed')
    return recs.length
  }

  stats(): StoreStats {
    const repos = new Map<string, RepoStats>()
    const totals: RepoStats = { refs: emptyKindStats(), uploadPack: emptyKindStats() }
    for (const [repo, s] of this.#repos) {
      repos.set(repo, { refs: { ...s.refs }, uploadPack: { ...s.uploadPack } })
      for (const field of ['refs', 'uploadPack'] as const) {
        const t = totals[field]
        const k = s[field]
        t.entries += k.entries
        t.size += k.size
        t.hits += k.hits
        t.misses += k.misses
        t.joins += k.joins
        t.bypasses += k.bypasses
        t.bytesServed += k.bytesServed
        if (k.lastHit !== null && (t.lastHit === null || k.lastHit > t.lastHit)) t.lastHit = k.lastHit
      }
    }
    return { repos, totals, fillsInFlight: this.#running.size, evictions: this.#evictions }
  }

  /**
   * Resolves when no fill is running (produce() settled, commit or cleanup
   * done) and no entry file removal is pending. For graceful shutdown and
   * tests.
   */
  async idle(): Promise<void> {
    while (this.#running.size > 0 || this.#pathOps.size > 0) {
      await Promise.all([...[...this.#running].map((f) => f.task), ...this.#pathOps.values()])
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
    const waits: Promise<unknown>[] = []
    for (const fill of this.#running) {
      fill.abort.abort(new CacheError('ERR_CACHE_CLOSED', 'the cache store is closing'))
      this.#failFill(fill, 'the cache store is closing', undefined)
      if (fill.cleanup !== undefined) waits.push(fill.cleanup)
    }
    for (const reader of this.#hitReaders) {
      waits.push(new Promise((resolve) => reader.once('close', resolve)))
      reader.destroy(new CacheError('ERR_CACHE_CLOSED', 'the cache store is closing'))
    }
    waits.push(...this.#pathOps.values())
    await Promise.all(waits)
  }

  // --- lookups and hits ---

  #lookup(key: string, ttlMs: number, touch: boolean): IndexRecord | undefined {
    const rec = touch ? this.#index.get(key) : this.#index.peek(key)
    if (rec === undefined) return undefined
    if (rec.meta.createdAt + ttlMs <= this.#now()) {
      this.#index.delete(key)
      return undefined
    }
    return rec
  }

  /** Opens a hit's own fd. Called right after the lookup, without an await in between. */
  async #openHit(rec: IndexRecord): Promise<Readable | undefined> {
    if (rec.body !== undefined) return this.#memoryHit(rec, rec.body)
    const opening = this.#openForRead(rec.path)
    rec.pins++
    let fh: FileHandle
    try {
      fh = await opening
    } catch (err) {
      this.#log.warn(
        { key: rec.meta.key, repo: rec.meta.repo, err },
        'cache entry file vanished; dropping it',
      )
      this.#dropIfIndexed(rec)
      return undefined
    } finally {
      rec.pins--
      if (rec.pins === 0) for (const resume of rec.onUnpinned.splice(0)) resume()
    }
    if (this.#state !== 'ready') {
      await fh.close()
      throw new CacheError('ERR_CACHE_CLOSED', 'the cache store is closed')
    }
    if (rec.meta.kind === 'refs' && rec.meta.bodySize <= HOT_ENTRY_MAX && this.#hotBytes + rec.meta.bodySize <= HOT_TOTAL_MAX) {
      // #readWhole closes fh: a short file is a miss, never a hit read through a closed handle.
      const body = await this.#readWhole(fh, rec)
      if (body === undefined) return undefined
      // Another hit of the same entry may have stored it while this one read.
      if (this.#index.peek(rec.meta.key) === rec && hotBodyOf(rec) === undefined) {
        rec.body = body
        this.#hotBytes += body.length
      }
      return this.#memoryHit(rec, body)
    }
    const counters = this.#counters(rec.meta.repo, rec.meta.kind)
    const reader: EntryReader = new EntryReader({
      read: async (buf, position) => {
        const { bytesRead } = await fh.read(buf, 0, buf.length, position)
        if (bytesRead === 0) {
          this.#log.warn(
            { key: rec.meta.key, repo: rec.meta.repo },
            'cache entry file is truncated; dropping it',
          )
          this.#dropIfIndexed(rec)
        }
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

  /** The whole body of a small entry, read through `fh` (closed here), or undefined if the file is short. */
  async #readWhole(fh: FileHandle, rec: IndexRecord): Promise<Buffer | undefined> {
    try {
      const body = Buffer.allocUnsafe(rec.meta.bodySize)
      let got = 0
      while (got < body.length) {
        const { bytesRead } = await fh.read(body, got, body.length - got, got)
        if (bytesRead === 0) break
        got += bytesRead
      }
      if (got < body.length) {
        this.#log.warn({ key: rec.meta.key, repo: rec.meta.repo }, 'cache entry file is truncated; dropping it')
        this.#dropIfIndexed(rec)
        return undefined
      }
      return body
    } finally {
      await fh.close().catch((err: unknown) => {
        this.#log.warn({ key: rec.meta.key, err }, 'closing a cache entry file failed')
      })
    }
  }

  /** A hit served from the record's in-memory body: one buffer, no copy. */
  #memoryHit(rec: IndexRecord, body: Buffer): Readable {
    const counters = this.#counters(rec.meta.repo, rec.meta.kind)
    const reader: WholeBody = new WholeBody(body, (delivered) => {
      this.#hitReaders.delete(reader)
      counters.bytesServed += delivered
    })
    this.#hitReaders.add(reader)
    return reader
  }

  #dropIfIndexed(rec: IndexRecord): void {
    if (this.#index.peek(rec.meta.key) === rec) this.#index.delete(rec.meta.key)
  }

  /** A key that names another repository or kind: never serve it across (DESIGN §2). */
  #conflict(req: OpenRequest, found: { repo: string; kind: EntryKind }): OpenResult {
    this.#log.error(
      { key: req.key, repo: req.repo, kind: req.kind, found: { repo: found.repo, kind: found.kind } },
      'cache key conflict: the key belongs to another repository or kind; bypassing',
    )
    this.#counters(req.repo, req.kind).bypasses++
    return { how: 'bypass' }
  }

  // --- fills ---

  #startFill(req: OpenRequest): EntryReader {
    const fill: Fill = {
      key: req.key,
      kind: req.kind,
      repo: req.repo,
      tmp: tmpPath(this.#dir, req.key),
      abort: new AbortController(),
      readers: new Set(),
      hash: createHash('sha256'),
      state: 'writing',
      doomed: false,
      file: undefined,
      written: 0,
      sink: undefined,
      info: {},
      writerDone: false,
      fileClose: undefined,
      cleanup: undefined,
      task: Promise.resolve(),
    }
    this.#fills.set(fill.key, fill)
    this.#running.add(fill)
    const reader = this.#addFillReader(fill)
    fill.task = this.#runFill(fill, req.produce)
    return reader
  }

  #addFillReader(fill: Fill): EntryReader {
    const reader: EntryReader = new EntryReader({
      read: async (buf, position) => {
        // Readers only read below `written`, and the file is open before anything is written.
        if (fill.file === undefined) throw new CacheError('ERR_CACHE_READ_FAILED', 'fill file not open')
        return fill.file.read(buf, position)
      },
      available: () => fill.written,
      complete: () => fill.state === 'done',
      release: async () => {
        fill.readers.delete(reader)
        await this.#closeFillFileIfUnused(fill)
      },
    })
    fill.readers.add(reader)
    return reader
  }

  #notify(fill: Fill): void {
    for (const reader of fill.readers) reader.notify()
  }

  /** The whole life of a fill. Never rejects. */
  async #runFill(fill: Fill, produce: OpenRequest['produce']): Promise<void> {
    try {
      await this.#fillBody(fill, produce)
      if (fill.state === 'writing') await this.#finishFill(fill)
    } catch (err) {
      this.#failFill(fill, `internal error: ${toError(err).message}`, err)
    } finally {
      fill.writerDone = true
      await this.#closeFillFileIfUnused(fill)
      if (fill.cleanup !== undefined) await fill.cleanup
      this.#running.delete(fill)
    }
  }

  /** Runs produce(). On return the fill is 'failed', or still 'writing' with the whole body written. */
  async #fillBody(fill: Fill, produce: OpenRequest['produce']): Promise<void> {
    let file: EntryFile
    try {
      file = await this.#openForWrite(fill.tmp)
    } catch (err) {
      this.#failFill(fill, `cannot create the cache file: ${toError(err).message}`, err)
      return
    }
    fill.file = file
    if (!isWriting(fill)) {
      // Failed (store closed) while the file was being created: its cleanup may have run before.
      await this.#unlinkQuiet(fill.tmp)
      return
    }
    const sink = new FillSink(fill, file, () => {
      this.#notify(fill)
    })
    fill.sink = sink
    sink.on('error', (err) => {
      this.#failFill(fill, `writing the cache file failed: ${err.message}`, err)
    })

    let outcome: FillOutcome
    try {
      outcome = await produce(sink, fill.abort.signal)
    } catch (err) {
      this.#failFill(fill, `produce failed: ${toError(err).message}`, err)
      return
    }
    if (!isWriting(fill)) return // failed while produce() ran
    if (!outcome.commit) {
      if (outcome.deliver !== true || !sink.writableEnded) {
        this.#failFill(fill, outcome.reason, undefined)
        return
      }
      // Deliver, never commit: leave the map first so nobody joins, then
      // finish like a doomed fill (readers end, the temp file goes).
      if (this.#fills.get(fill.key) === fill) this.#fills.delete(fill.key)
      fill.doomed = true
      try {
        await finished(sink)
      } catch (err) {
        this.#failFill(fill, `writing the cache file failed: ${toError(err).message}`, err)
      }
      return
    }
    if (!sink.writableEnded) {
      this.#failFill(fill, 'produce resolved without ending the sink', undefined)
      return
    }
    try {
      await finished(sink)
    } catch (err) {
      this.#failFill(fill, `writing the cache file failed: ${toError(err).message}`, err)
      return
    }
    fill.info = { ...(outcome.info ?? {}) }
  }

  /**
   * The body is complete and produce() succeeded: commit (or discard a
   * doomed or oversized fill), then let the readers end. Never throws.
   */
  async #finishFill(fill: Fill): Promise<void> {
    const meta: EntryMeta = {
      key: fill.key,
      kind: fill.kind,
      repo: fill.repo,
      createdAt: this.#now(),
      bodySize: fill.written,
      bodySha256: fill.hash.digest('hex'),
      info: fill.info,
    }
    const log = this.#log.child({ key: fill.key, repo: fill.repo, kind: fill.kind })
    let committed = false
    try {
      if (fill.doomed) {
        log.debug({ bytes: meta.bodySize }, 'fill invalidated while running: not committed')
      } else if (fill.file !== undefined) {
        const size = await appendTrailer(fill.file, meta)
        if (this.#maxSize > 0 && size > this.#maxSize) {
          log.info(
            { bytes: size, maxSize: this.#maxSize },
            'entry larger than the cache max size: not committed',
          )
        } else {
          committed = await this.#publish(fill, meta, size)
          if (committed) log.debug({ bytes: size }, 'cache entry committed')
        }
      }
    } catch (err) {
      log.warn({ err }, 'committing a cache entry failed: not cached')
      this.#onFillError(err)
    }
    if (!committed) {
      if (this.#fills.get(fill.key) === fill) this.#fills.delete(fill.key)
      await this.#unlinkQuiet(fill.tmp)
    }
    if (fill.state === 'writing') {
      fill.state = 'done'
      this.#notify(fill)
    }
  }

  /** Renames the fill into place and indexes it, unless it was doomed meanwhile. */
  async #publish(fill: Fill, meta: EntryMeta, size: number): Promise<boolean> {
    const dest = entryPath(this.#dir, fill.key)
    const stillWanted = (): boolean => !fill.doomed && fill.state === 'writing' && this.#state === 'ready'
    return this.#serialize(fill.key, async () => {
      if (!stillWanted()) return false
      await publishFile(fill.tmp, dest)
      let ino: number
      try {
        ino = (await stat(dest)).ino
      } catch (err) {
        await this.#unlinkQuiet(dest)
        throw err
      }
      if (!stillWanted()) {
        await this.#unlinkQuiet(dest)
        return false
      }
      // One step: the entry becomes visible as the fill stops being joinable.
      if (this.#fills.get(fill.key) === fill) this.#fills.delete(fill.key)
      this.#insert({ meta, path: dest, size, ino, pins: 0, onUnpinned: [], removal: undefined })
      return true
    })
  }

  /**
   * Fails a fill that is still writing: FIRST out of the single-flight map,
   * THEN its readers are destroyed, THEN the temp file is unlinked.
   */
  #failFill(fill: Fill, reason: string, cause: unknown): void {
    if (fill.state !== 'writing') return
    fill.state = 'failed'
    if (this.#fills.get(fill.key) === fill) this.#fills.delete(fill.key)
    const err = new CacheError('ERR_CACHE_FILL_FAILED', `cache fill failed: ${reason}`, { cause })
    for (const reader of fill.readers) reader.destroy(err)
    fill.sink?.destroy()
    fill.writerDone = true
    fill.cleanup = (async () => {
      await this.#unlinkQuiet(fill.tmp)
      await this.#closeFillFileIfUnused(fill)
    })()
    this.#log.warn({ key: fill.key, repo: fill.repo, kind: fill.kind, err }, 'cache fill failed')
    this.#onFillError(cause ?? err)
  }

  /** Dooms the running fills that match: no one joins them, they are never committed. */
  #doomFills(matches: (fill: Fill) => boolean): number {
    let n = 0
    for (const fill of this.#running) {
      if (fill.state !== 'writing' || fill.doomed || !matches(fill)) continue
      fill.doomed = true
      if (this.#fills.get(fill.key) === fill) this.#fills.delete(fill.key)
      n++
    }
    return n
  }

  async #closeFillFileIfUnused(fill: Fill): Promise<void> {
    if (!fill.writerDone || fill.readers.size > 0 || fill.file === undefined) return
    fill.fileClose ??= fill.file.close().catch((err: unknown) => {
      this.#log.warn({ key: fill.key, err }, 'closing a cache fill file failed')
    })
    await fill.fileClose
  }

  // --- the index and entry files ---

  #insert(rec: IndexRecord): void {
    this.#index.set(rec.meta.key, rec)
    const counters = this.#counters(rec.meta.repo, rec.meta.kind)
    counters.entries++
    counters.size += rec.size
  }

  /** lru-cache dispose hook: bookkeeping, and the (queued) removal of the file. No cache mutation here. */
  #onDispose(rec: IndexRecord, key: string, reason: LRUCache.DisposeReason): void {
    const counters = this.#counters(rec.meta.repo, rec.meta.kind)
    counters.entries--
    counters.size -= rec.size
    if (rec.body !== undefined) {
      this.#hotBytes -= rec.body.length
      delete rec.body
    }
    if (reason === 'evict') {
      this.#evictions++
      this.#log.debug({ key, repo: rec.meta.repo, bytes: rec.size }, 'cache entry evicted')
    }
    rec.removal = this.#serialize(key, async () => {
      if (rec.pins > 0) await new Promise<void>((resolve) => rec.onUnpinned.push(resolve))
      try {
        const st = await stat(rec.path)
        if (st.ino !== rec.ino) return // a newer entry now lives at this path
        await unlink(rec.path)
      } catch (err) {
        if (errorCode(err) !== 'ENOENT') this.#log.warn({ key, err }, 'removing a cache entry file failed')
      }
    })
  }

  /** Runs `op` after every earlier operation on `entries/<key>`. The queue itself never rejects. */
  #serialize<T>(key: string, op: () => Promise<T>): Promise<T> {
    const prev = this.#pathOps.get(key) ?? Promise.resolve()
    const result = prev.then(op)
    const tail = result.then(
      () => undefined,
      () => undefined,
    )
    this.#pathOps.set(key, tail)
    void tail.then(() => {
      // tail never rejects; drop the queue once it is empty
      if (this.#pathOps.get(key) === tail) this.#pathOps.delete(key)
    })
    return result
  }

  async #unlinkQuiet(file: string): Promise<void> {
    try {
      await unlink(file)
    } catch (err) {
      if (errorCode(err) !== 'ENOENT') this.#log.warn({ file, err }, 'removing a cache file failed')
    }
  }

  #counters(repo: string, kind: EntryKind): KindStats {
    let s = this.#repos.get(repo)
    if (s === undefined) {
      s = { refs: emptyKindStats(), uploadPack: emptyKindStats() }
      this.#repos.set(repo, s)
    }
    return s[kindField(kind)]
  }

  #checkKey(key: string): void {
    if (!isCacheKey(key)) {
      throw new CacheError('ERR_CACHE_BAD_KEY', 'a cache key must be a lower-case hex SHA-256')
    }
  }

  #checkReady(): void {
    if (this.#state === 'new') throw new CacheError('ERR_CACHE_STATE', 'cache store used before init()')
    if (this.#state === 'closed') throw new CacheError('ERR_CACHE_CLOSED', 'the cache store is closed')
  }
}

function toEntryInfo(rec: IndexRecord): EntryInfo {
  const { key, kind, repo, createdAt, bodySize, bodySha256, info } = rec.meta
  return { key, kind, repo, createdAt, bodySize, size: rec.size, bodySha256, info: { ...info } }
}
