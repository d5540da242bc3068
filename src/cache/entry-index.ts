/**
 * The index of committed entries: an LRU over their files' sizes, and the
 * removal of a file once its record leaves the index (eviction,
 * invalidation, expiry, clear).
 *
 * A record in the index holds no fd; a hit opens its own. Unlinking a
 * committed entry relies on POSIX unlink-while-open: readers already
 * holding an fd read on. To make sure the fd is opened BEFORE the unlink, a
 * hit calls open() in the same synchronous step as the lookup and `pin`s
 * the record until open() returns; the unlink of a record waits for its
 * pins. Once out of the index a record is never found again, so no new
 * reader sees it.
 *
 * Every rename into and unlink of `entries/<key>` runs through a per-key
 * queue (`serialize`), and an unlink checks the inode first, so removing an
 * old entry can never remove a newer file committed at the same path.
 */
import { stat, unlink } from 'node:fs/promises'
import { LRUCache } from 'lru-cache'
import type { Log } from '../logger.js'
import { errorCode } from './entry-file.js'
import type { EntryMeta } from './entry-file.js'

/** A committed entry in the index. */
export interface IndexRecord {
  meta: EntryMeta
  path: string
  /** bytes on disk, trailer included */
  size: number
  ino: number
  /** hits whose open() of this file is in progress */
  pins: number
  onUnpinned: (() => void)[]
  /** set when the record leaves the index: the removal of its file */
  removal: Promise<void> | undefined
}

export function indexRecord(meta: EntryMeta, file: string, size: number, ino: number): IndexRecord {
  return { meta, path: file, size, ino, pins: 0, onUnpinned: [], removal: undefined }
}

export interface EntryIndexOptions {
  /** bytes; 0: no cap */
  maxSize: number
  now: () => number
  log: Log
  /** Told of every record that enters the index. Bookkeeping only: no index mutation. */
  onInsert: (rec: IndexRecord) => void
  /** Told of every record that leaves the index, before its file goes. Bookkeeping only. */
  onRemove: (rec: IndexRecord) => void
}

export class EntryIndex {
  readonly #maxSize: number
  readonly #now: () => number
  readonly #log: Log
  readonly #onInsert: (rec: IndexRecord) => void
  readonly #onRemove: (rec: IndexRecord) => void
  readonly #lru: LRUCache<string, IndexRecord>
  /** per-key queue of renames into / unlinks of entries/<key> */
  readonly #pathOps = new Map<string, Promise<void>>()
  #evictions = 0

  constructor(opts: EntryIndexOptions) {
    this.#maxSize = opts.maxSize
    this.#now = opts.now
    this.#log = opts.log
    this.#onInsert = opts.onInsert
    this.#onRemove = opts.onRemove
    this.#lru = new LRUCache<string, IndexRecord>({
      // lru-cache needs a bound; "no cap" is a bound nobody reaches.
      maxSize: opts.maxSize > 0 ? opts.maxSize : Number.MAX_SAFE_INTEGER,
      sizeCalculation: (rec) => rec.size,
      dispose: (rec, key, reason) => {
        this.#onDispose(rec, key, reason)
      },
    })
  }

  /** Records evicted for room since start-up. */
  get evictions(): number {
    return this.#evictions
  }

  /** Whether an entry of `size` bytes on disk may be indexed at all. */
  fits(size: number): boolean {
    return this.#maxSize === 0 || size <= this.#maxSize
  }

  get maxSize(): number {
    return this.#maxSize
  }

  /** Records in the index, and their bytes on disk. */
  get count(): number {
    return this.#lru.size
  }

  get bytes(): number {
    return this.#lru.calculatedSize
  }

  /**
   * The record of `key` with `createdAt + ttlMs > now()`, or undefined. An
   * expired record is dropped on the way. `touch`: counts as a use for LRU.
   */
  lookup(key: string, ttlMs: number, touch: boolean): IndexRecord | undefined {
    const rec = touch ? this.#lru.get(key) : this.#lru.peek(key)
    if (rec === undefined) return undefined
    if (rec.meta.createdAt + ttlMs <= this.#now()) {
      this.#lru.delete(key)
      return undefined
    }
    return rec
  }

  /** True while `rec` (this very record, not a newer one of its key) is in the index. */
  holds(rec: IndexRecord): boolean {
    return this.#lru.peek(rec.meta.key) === rec
  }

  insert(rec: IndexRecord): void {
    this.#lru.set(rec.meta.key, rec)
    this.#onInsert(rec)
  }

  /** Takes `rec` out of the index, if it is still there. */
  drop(rec: IndexRecord): void {
    if (this.holds(rec)) this.#lru.delete(rec.meta.key)
  }

  /** Drops the records that match; resolves with how many once their files are unlinked. */
  async remove(matches: (meta: EntryMeta) => boolean): Promise<number> {
    const recs = [...this.#lru.values()].filter((rec) => matches(rec.meta))
    for (const rec of recs) this.#lru.delete(rec.meta.key)
    await removalOf(recs)
    return recs.length
  }

  /** Drops every record; resolves with how many once their files are unlinked. */
  async clear(): Promise<number> {
    const recs = [...this.#lru.values()]
    this.#lru.clear()
    await removalOf(recs)
    return recs.length
  }

  /**
   * Awaits `opening` (a hit's open() of the record's file, started in the
   * same synchronous step as the lookup) with the record pinned: its file
   * is not unlinked before the open settled.
   */
  async pin<T>(rec: IndexRecord, opening: Promise<T>): Promise<T> {
    rec.pins++
    try {
      return await opening
    } finally {
      rec.pins--
      if (rec.pins === 0) for (const resume of rec.onUnpinned.splice(0)) resume()
    }
  }

  /** Runs `op` after every earlier operation on `entries/<key>`. The queue itself never rejects. */
  serialize<T>(key: string, op: () => Promise<T>): Promise<T> {
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

  /** The file operations queued now (they never reject); empty when none is pending. */
  pendingFileOps(): Promise<void>[] {
    return [...this.#pathOps.values()]
  }

  /** lru-cache dispose hook: bookkeeping, and the (queued) removal of the file. No cache mutation here. */
  #onDispose(rec: IndexRecord, key: string, reason: LRUCache.DisposeReason): void {
    this.#onRemove(rec)
    if (reason === 'evict') {
      this.#evictions++
      this.#log.debug({ key, repo: rec.meta.repo, bytes: rec.size }, 'cache entry evicted')
    }
    rec.removal = this.serialize(key, async () => {
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
}

async function removalOf(recs: IndexRecord[]): Promise<void> {
  await Promise.all(recs.map((rec) => rec.removal ?? Promise.resolve()))
}
