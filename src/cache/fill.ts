/**
 * Fills: the single-flight pipe from one producer (an upstream answer) to
 * every reader that wants the entry while it is written (Gitaly's
 * streamcache pipe), ending in the entry's commit into the index.
 *
 * ```
 *   produce(sink) ──▶ FillSink ──pwrite──▶ tmp/<key>.<rnd> ──rename──▶ entries/ab/<key>
 *                        │ progress                ▲ pread (one shared fd)
 *   start() ─▶ EntryReader ◀───┤                   │
 *   join()  ─▶ EntryReader ◀───┘ ... each from offset 0
 * ```
 *
 * Single flight. `#joinable` maps a key to the one fill that new readers
 * may join. The store registers a new fill there in the same synchronous
 * step as its lookup, so any number of concurrent `open()`s make one
 * `produce` call. A fill leaves the map exactly when it stops being
 * joinable: in the same tick as its entry enters the index (so a request
 * sees the fill or the entry, never neither), or FIRST thing when it fails
 * (then its readers are destroyed with `ERR_CACHE_FILL_FAILED`, then the
 * temp file is unlinked), or when it is invalidated ("doomed": it streams
 * on to its readers, but is never committed and nobody new joins it; the
 * next request starts afresh).
 *
 * Producer lifetime (decided): the fill is NOT tied to any client. Its
 * signal aborts only on the store's `close()`. A reader that goes away
 * (client hung up) just stops reading; the fill goes on for the others, and
 * if every reader has gone it still completes and commits, so the next
 * request is a hit. Clients of one burst come and go independently, and a
 * half-downloaded pack that nobody can reuse would make the next clone pay
 * upstream again.
 *
 * Backpressure. The producer is paced by the disk only (each write waits
 * for its pwrite), not by the readers as in Gitaly: a fill must complete
 * without readers, and a slow reader lags behind on disk instead of
 * slowing the upstream transfer for everyone. Readers follow by positional
 * reads up to the byte count the sink has confirmed written, and are woken
 * by a progress notification when they catch up.
 *
 * A write that fails mid-fill (ENOSPC, EDQUOT, EIO, the directory gone)
 * does not fail the readers (DESIGN §3.5): the fill becomes a relay
 * (fill-relay.ts). It leaves the single-flight map (later requests go
 * around it), its temp file is unlinked at once (the shared fd stays open),
 * readers read the bytes below the failure point from the file and the
 * rest from a few chunks in memory, and from then on the producer is paced
 * by the slowest reader. It is never committed; the store is told with an
 * `ERR_CACHE_WRITE_FAILED` (the disk guard pauses caching). A relay whose
 * readers have all gone is failed and its producer aborted: with nobody to
 * relay to and nothing to store, reading on would be wasted upstream work.
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
 * File descriptor: a fill has one read-write fd, shared by its sink and all
 * its readers (positional I/O). It is closed when the writer is done and
 * the last reader closed. The tmp file's rename or unlink does not disturb
 * it. A body that is never read to the end must be destroyed by its owner,
 * or it keeps the fill's fd open.
 */
import { createHash } from 'node:crypto'
import { stat } from 'node:fs/promises'
import { Writable } from 'node:stream'
import { finished } from 'node:stream/promises'
import { CacheError, toError } from '../errors.js'
import type { Log } from '../logger.js'
import { appendTrailer, entryPath, publishFile, tmpPath, unlinkQuiet } from './entry-file.js'
import type { EntryFile, EntryKind, EntryMeta } from './entry-file.js'
import { indexRecord, type EntryIndex } from './entry-index.js'
import { EntryReader } from './entry-reader.js'
import { FillRelay } from './fill-relay.js'
import type { FillOutcome, Produce } from './store-api.js'

export interface FillRequest {
  key: string
  kind: EntryKind
  repo: string
  produce: Produce
}

type FillState = 'writing' | 'done' | 'failed'

/** One upstream fill in progress. */
export interface Fill {
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
  /** set when a write failed: the rest of the body goes to the readers from memory (fill-relay.ts) */
  relay: FillRelay | undefined
  /** each reader's next read position (the relay drops what all have read) */
  positions: Map<EntryReader, number>
}

/**
 * Writes the fill's body into its temp file; each write completes before
 * the next. Once a write failed, the rest goes to the fill's relay instead
 * (`onWriteFailed` sets it up), which calls back only when it has room.
 */
class FillSink extends Writable {
  readonly #fill: Fill
  readonly #file: EntryFile
  readonly #onProgress: () => void
  readonly #onWriteFailed: (err: unknown) => FillRelay | undefined

  constructor(
    fill: Fill,
    file: EntryFile,
    onProgress: () => void,
    onWriteFailed: (err: unknown) => FillRelay | undefined,
  ) {
    super({ highWaterMark: 64 * 1024 })
    this.#fill = fill
    this.#file = file
    this.#onProgress = onProgress
    this.#onWriteFailed = onWriteFailed
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    const fill = this.#fill
    if (fill.relay !== undefined) {
      this.#relay(fill.relay, chunk, callback)
      return
    }
    this.#file.write(chunk, fill.written).then(
      () => {
        fill.hash.update(chunk)
        fill.written += chunk.length
        this.#onProgress()
        callback()
      },
      (err: unknown) => {
        const relay = this.#onWriteFailed(err)
        if (relay === undefined) callback(toError(err))
        else this.#relay(relay, chunk, callback)
      },
    )
  }

  #relay(relay: FillRelay, chunk: Buffer, callback: (error?: Error | null) => void): void {
    relay.push(chunk, () => {
      callback()
    })
    this.#onProgress()
  }
}

/** A function, not an inline test: the state changes across awaits, which narrowing does not see. */
function isWriting(fill: Fill): boolean {
  return fill.state === 'writing'
}

export interface FillsOptions {
  dir: string
  log: Log
  now: () => number
  /** where a committed fill goes */
  index: EntryIndex
  /** Creates a fill's temp file. */
  openForWrite: (file: string) => Promise<EntryFile>
  /** Told of every failed fill or commit, with the underlying error. Must not throw. */
  onFillError: (err: unknown) => void
  /** False once the store is closing: nothing is committed any more. */
  accepting: () => boolean
}

export class Fills {
  readonly #o: FillsOptions
  /** joinable fills */
  readonly #joinable = new Map<string, Fill>()
  /** every fill whose task has not settled (doomed and failed ones included) */
  readonly #running = new Set<Fill>()

  constructor(opts: FillsOptions) {
    this.#o = opts
  }

  /** Fills whose task has not settled, doomed and failed ones included. */
  get inFlight(): number {
    return this.#running.size
  }

  /** The fill that a new reader of `key` may join, if one is running. */
  joinable(key: string): Fill | undefined {
    return this.#joinable.get(key)
  }

  /** Starts the fill of `req.key` (none may be joinable) and returns its first reader. */
  start(req: FillRequest): EntryReader {
    const fill: Fill = {
      key: req.key,
      kind: req.kind,
      repo: req.repo,
      tmp: tmpPath(this.#o.dir, req.key),
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
      relay: undefined,
      positions: new Map(),
    }
    this.#joinable.set(fill.key, fill)
    this.#running.add(fill)
    const reader = this.join(fill)
    fill.task = this.#run(fill, req.produce)
    return reader
  }

  /** A new reader of `fill`, from offset 0. */
  join(fill: Fill): EntryReader {
    const reader: EntryReader = new EntryReader({
      read: async (buf, position) => {
        // Readers only read below `available()`, and the file is open before anything is written.
        if (fill.file === undefined) throw new CacheError('ERR_CACHE_READ_FAILED', 'fill file not open')
        const relay = fill.relay
        let got: number
        if (relay !== undefined && position >= relay.base) {
          got = relay.read(buf, position)
        } else {
          // Below the failure point (if any) the file holds the bytes; beyond it, garbage of the failed write.
          const end = relay?.base ?? fill.written
          got = await fill.file.read(buf.subarray(0, Math.min(buf.length, end - position)), position)
        }
        fill.positions.set(reader, position + got)
        this.#releaseRelay(fill)
        return got
      },
      available: () => fill.relay?.end ?? fill.written,
      complete: () => fill.state === 'done',
      release: async () => {
        fill.readers.delete(reader)
        fill.positions.delete(reader)
        if (fill.relay !== undefined && fill.state === 'writing') {
          if (fill.readers.size === 0) this.#fail(fill, 'every reader left a fill that could not be cached', undefined)
          else this.#releaseRelay(fill)
        }
        await this.#closeFileIfUnused(fill)
      },
    })
    fill.readers.add(reader)
    return reader
  }

  /** Dooms the running fills that match: no one joins them, they are never committed. */
  doom(matches: (repo: string, kind: EntryKind) => boolean): number {
    let n = 0
    for (const fill of this.#running) {
      if (fill.state !== 'writing' || fill.doomed || !matches(fill.repo, fill.kind)) continue
      fill.doomed = true
      this.#leaveMap(fill)
      n++
    }
    return n
  }

  /**
   * Aborts every fill in flight (its readers get `ERR_CACHE_FILL_FAILED`,
   * produce() its signal). Returns the cleanups to wait for.
   */
  abortAll(): Promise<void>[] {
    const waits: Promise<void>[] = []
    for (const fill of this.#running) {
      fill.abort.abort(new CacheError('ERR_CACHE_CLOSED', 'the cache store is closing'))
      this.#fail(fill, 'the cache store is closing', undefined)
      if (fill.cleanup !== undefined) waits.push(fill.cleanup)
    }
    return waits
  }

  /** The tasks of the fills running now (they never reject). */
  tasks(): Promise<void>[] {
    return [...this.#running].map((f) => f.task)
  }

  #leaveMap(fill: Fill): void {
    if (this.#joinable.get(fill.key) === fill) this.#joinable.delete(fill.key)
  }

  #notify(fill: Fill): void {
    for (const reader of fill.readers) reader.notify()
  }

  /** Lets the relay drop what every reader has read. */
  #releaseRelay(fill: Fill): void {
    const relay = fill.relay
    if (relay === undefined) return
    let slowest = Infinity
    for (const r of fill.readers) slowest = Math.min(slowest, fill.positions.get(r) ?? 0)
    relay.release(slowest)
  }

  /**
   * A write of the temp file failed mid-fill (DESIGN §3.5): the fill goes
   * on as a relay from memory. Nobody new joins it, it is never committed,
   * its temp file goes now (the shared fd stays open for the readers), and
   * the store is told (the disk guard pauses caching). Returns the relay,
   * or undefined when the fill is not writing any more.
   */
  #startRelay(fill: Fill, cause: unknown): FillRelay | undefined {
    if (fill.state !== 'writing') return undefined
    if (fill.relay !== undefined) return fill.relay
    const relay = new FillRelay(fill.written)
    fill.relay = relay
    this.#leaveMap(fill)
    const err = new CacheError(
      'ERR_CACHE_WRITE_FAILED',
      `writing the cache file failed at ${fill.written} bytes: ${toError(cause).message}`,
      { cause },
    )
    this.#o.log.warn(
      { key: fill.key, repo: fill.repo, kind: fill.kind, readers: fill.readers.size, err },
      'cache write failed mid-fill: relaying the rest from memory, not cached',
    )
    fill.cleanup = unlinkQuiet(fill.tmp, this.#o.log)
    this.#o.onFillError(err)
    if (fill.readers.size === 0) this.#fail(fill, 'no reader left for a fill that cannot be cached', undefined)
    return fill.relay
  }

  /** The whole life of a fill. Never rejects. */
  async #run(fill: Fill, produce: Produce): Promise<void> {
    try {
      await this.#fillBody(fill, produce)
      if (fill.state === 'writing') await this.#finish(fill)
    } catch (err) {
      this.#fail(fill, `internal error: ${toError(err).message}`, err)
    } finally {
      fill.writerDone = true
      await this.#closeFileIfUnused(fill)
      if (fill.cleanup !== undefined) await fill.cleanup
      this.#running.delete(fill)
    }
  }

  /** Runs produce(). On return the fill is 'failed', or still 'writing' with the whole body written. */
  async #fillBody(fill: Fill, produce: Produce): Promise<void> {
    let file: EntryFile
    try {
      file = await this.#o.openForWrite(fill.tmp)
    } catch (err) {
      this.#fail(fill, `cannot create the cache file: ${toError(err).message}`, err)
      return
    }
    fill.file = file
    if (!isWriting(fill)) {
      // Failed (store closed) while the file was being created: its cleanup may have run before.
      await unlinkQuiet(fill.tmp, this.#o.log)
      return
    }
    const sink = new FillSink(
      fill,
      file,
      () => {
        this.#notify(fill)
      },
      (err) => this.#startRelay(fill, err),
    )
    fill.sink = sink
    sink.on('error', (err) => {
      this.#fail(fill, `writing the cache file failed: ${err.message}`, err)
    })

    let outcome: FillOutcome
    try {
      outcome = await produce(sink, fill.abort.signal)
    } catch (err) {
      this.#fail(fill, `produce failed: ${toError(err).message}`, err)
      return
    }
    if (!isWriting(fill)) return // failed while produce() ran
    if (!outcome.commit) {
      if (outcome.deliver !== true || !sink.writableEnded) {
        this.#fail(fill, outcome.reason, undefined)
        return
      }
      // Deliver, never commit: leave the map first so nobody joins, then
      // finish like a doomed fill (readers end, the temp file goes).
      this.#leaveMap(fill)
      fill.doomed = true
      await this.#sinkFinished(fill, sink)
      return
    }
    if (!sink.writableEnded) {
      this.#fail(fill, 'produce resolved without ending the sink', undefined)
      return
    }
    if (await this.#sinkFinished(fill, sink)) fill.info = { ...(outcome.info ?? {}) }
  }

  /** Waits for the sink's last write; false (and the fill failed) if it failed. */
  async #sinkFinished(fill: Fill, sink: FillSink): Promise<boolean> {
    try {
      await finished(sink)
      return true
    } catch (err) {
      this.#fail(fill, `writing the cache file failed: ${toError(err).message}`, err)
      return false
    }
  }

  /**
   * The body is complete and produce() succeeded: commit (or discard a
   * doomed or oversized fill), then let the readers end. Never throws.
   */
  async #finish(fill: Fill): Promise<void> {
    const meta: EntryMeta = {
      key: fill.key,
      kind: fill.kind,
      repo: fill.repo,
      createdAt: this.#o.now(),
      bodySize: fill.written,
      bodySha256: fill.hash.digest('hex'),
      info: fill.info,
    }
    const { index } = this.#o
    const log = this.#o.log.child({ key: fill.key, repo: fill.repo, kind: fill.kind })
    if (fill.relay !== undefined) {
      // The readers have the rest in memory; the temp file is gone already.
      log.info({ bytes: fill.relay.end, peakHeld: fill.relay.peak }, 'fill relayed to its readers: not cached')
      fill.state = 'done'
      this.#notify(fill)
      return
    }
    let committed = false
    try {
      if (fill.doomed) {
        log.debug({ bytes: meta.bodySize }, 'fill invalidated while running: not committed')
      } else if (fill.file !== undefined) {
        const size = await appendTrailer(fill.file, meta)
        if (!index.fits(size)) {
          log.info({ bytes: size, maxSize: index.maxSize }, 'entry larger than the cache max size: not committed')
        } else {
          committed = await this.#publish(fill, meta, size)
          if (committed) log.debug({ bytes: size }, 'cache entry committed')
        }
      }
    } catch (err) {
      log.warn({ err }, 'committing a cache entry failed: not cached')
      this.#o.onFillError(err)
    }
    if (!committed) {
      this.#leaveMap(fill)
      await unlinkQuiet(fill.tmp, this.#o.log)
    }
    if (fill.state === 'writing') {
      fill.state = 'done'
      this.#notify(fill)
    }
  }

  /** Renames the fill into place and indexes it, unless it was doomed meanwhile. */
  async #publish(fill: Fill, meta: EntryMeta, size: number): Promise<boolean> {
    const { index, log } = this.#o
    const dest = entryPath(this.#o.dir, fill.key)
    const stillWanted = (): boolean => !fill.doomed && fill.state === 'writing' && this.#o.accepting()
    return index.serialize(fill.key, async () => {
      if (!stillWanted()) return false
      await publishFile(fill.tmp, dest)
      let ino: number
      try {
        ino = (await stat(dest)).ino
      } catch (err) {
        await unlinkQuiet(dest, log)
        throw err
      }
      if (!stillWanted()) {
        await unlinkQuiet(dest, log)
        return false
      }
      // One step: the entry becomes visible as the fill stops being joinable.
      this.#leaveMap(fill)
      index.insert(indexRecord(meta, dest, size, ino))
      return true
    })
  }

  /**
   * Fails a fill that is still writing: FIRST out of the single-flight map,
   * THEN its readers are destroyed, THEN the temp file is unlinked.
   */
  #fail(fill: Fill, reason: string, cause: unknown): void {
    if (fill.state !== 'writing') return
    fill.state = 'failed'
    this.#leaveMap(fill)
    const err = new CacheError('ERR_CACHE_FILL_FAILED', `cache fill failed: ${reason}`, { cause })
    for (const reader of fill.readers) reader.destroy(err)
    fill.relay?.clear()
    fill.sink?.destroy()
    if (fill.relay !== undefined) fill.abort.abort(err) // the producer may be waiting for room in the relay
    fill.writerDone = true
    const before = fill.cleanup
    fill.cleanup = (async () => {
      await before
      await unlinkQuiet(fill.tmp, this.#o.log)
      await this.#closeFileIfUnused(fill)
    })()
    this.#o.log.warn({ key: fill.key, repo: fill.repo, kind: fill.kind, err }, 'cache fill failed')
    // A relayed fill reported its write failure already.
    if (fill.relay === undefined) this.#o.onFillError(cause ?? err)
  }

  async #closeFileIfUnused(fill: Fill): Promise<void> {
    if (!fill.writerDone || fill.readers.size > 0 || fill.file === undefined) return
    fill.fileClose ??= fill.file.close().catch((err: unknown) => {
      this.#o.log.warn({ key: fill.key, err }, 'closing a cache fill file failed')
    })
    await fill.fileClose
  }
}
