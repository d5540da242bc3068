/**
 * A Readable over a cache file that may still be growing (Gitaly's
 * streamcache reader): it reads from offset 0 what the source says is
 * written, and when it has caught up it waits for `notify()` (the writer
 * made progress or finished) instead of polling. It ends once the source is
 * complete and every byte up to `available()` was pushed.
 *
 * The reader owns nothing but its position: the source decides where the
 * bytes come from (a committed entry's own fd, or the fd a fill shares with
 * all its readers) and `release()` is called exactly once when the reader
 * closes, for whatever reason (end, error, destroy by the consumer), so the
 * source can close or un-reference its fd. The reader's 'close' event comes
 * after `release()` settled.
 *
 * Both readers here are `CacheBody`s (body.ts): the store hands them out
 * as such.
 */
import { Readable } from 'node:stream'
import type { Writable } from 'node:stream'
import { CacheError, toError } from '../errors.js'
import { copyReadable, type CacheBody } from './body.js'

/** Read size and highWaterMark of entry readers. */
export const READ_CHUNK = 64 * 1024

/** Buffers a reader keeps for reuse: one being read into, one or two being written. */
const FREE_MAX = 4

export interface ReadSource {
  /** Reads up to `buf.length` bytes at `position`; 0 means end of file. */
  read(buf: Uint8Array, position: number): Promise<number>
  /** Bytes that can be read now (never decreases). */
  available(): number
  /** True once `available()` is final: the reader ends when it gets there. */
  complete(): boolean
  /** Called once when the reader closes, with the bytes handed to its consumer. Must not reject. */
  release(delivered: number): Promise<void>
}

export class EntryReader extends Readable implements CacheBody {
  readonly #src: ReadSource
  #pos = 0
  #pushed = 0
  /** A pump loop is running. */
  #busy = false
  /** Caught up with a source that is not complete: `notify()` resumes. */
  #waiting = false
  /** Read buffers given back by the consumer (`recycle`), and every one this reader made. */
  readonly #free: Buffer[] = []
  readonly #mine = new WeakSet<ArrayBufferLike>()

  constructor(src: ReadSource) {
    super({ highWaterMark: READ_CHUNK })
    this.#src = src
  }

  /** The source has more bytes, or completed. Cheap when the reader is not waiting. */
  notify(): void {
    if (!this.#waiting || this.destroyed) return
    this.#waiting = false
    void this.#pump() // #pump never rejects: failures destroy the reader
  }

  /** Copies with this reader's buffers recycled as `dest` writes them. */
  copyTo(dest: Writable, signal: AbortSignal, end: boolean): Promise<number> {
    return copyReadable(this, dest, signal, end, (chunk) => {
      this.recycle(chunk)
    })
  }

  /** Never in memory. */
  whole(): null {
    return null
  }

  get stream(): Readable {
    return this
  }

  /**
   * Give back a chunk this reader pushed, once its consumer is done with it
   * (its socket wrote it): the next read reuses the buffer instead of
   * allocating one. Anything else is ignored.
   */
  recycle(chunk: Buffer): void {
    if (this.destroyed || this.#free.length >= FREE_MAX || chunk.byteOffset !== 0 || !this.#mine.has(chunk.buffer)) return
    this.#free.push(Buffer.from(chunk.buffer, 0, READ_CHUNK))
  }

  #buffer(): Buffer {
    const free = this.#free.pop()
    if (free !== undefined) return free
    const buf = Buffer.allocUnsafe(READ_CHUNK) // larger than Buffer's pool: an ArrayBuffer of its own
    this.#mine.add(buf.buffer)
    return buf
  }

  /** Not `this.destroyed` inline: it changes across awaits, which narrowing does not see. */
  #isDestroyed(): boolean {
    return this.destroyed
  }

  override _read(): void {
    if (this.#busy || this.#waiting) return
    void this.#pump() // #pump never rejects: failures destroy the reader
  }

  async #pump(): Promise<void> {
    this.#busy = true
    try {
      for (;;) {
        if (this.destroyed) return
        const available = this.#src.available()
        if (this.#pos >= available) {
          if (this.#src.complete()) {
            this.push(null)
          } else {
            this.#waiting = true
          }
          return
        }
        const want = Math.min(READ_CHUNK, available - this.#pos)
        const whole = this.#buffer()
        const buf = want === READ_CHUNK ? whole : whole.subarray(0, want)
        const got = await this.#src.read(buf, this.#pos)
        if (this.#isDestroyed()) return // destroyed while reading
        if (got <= 0) {
          this.destroy(
            new CacheError(
              'ERR_CACHE_ENTRY_TRUNCATED',
              `cache file ended at ${this.#pos} bytes, ${available} expected`,
            ),
          )
          return
        }
        this.#pos += got
        this.#pushed += got
        if (!this.push(got === want ? buf : buf.subarray(0, got))) return
      }
    } catch (err) {
      const message = `reading the cache file failed: ${toError(err).message}`
      this.destroy(
        err instanceof CacheError ? err : new CacheError('ERR_CACHE_READ_FAILED', message, { cause: err }),
      )
    } finally {
      this.#busy = false
    }
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.#waiting = false
    // Bytes still in our buffer never reached the consumer.
    const delivered = this.#pushed - this.readableLength
    this.#src.release(delivered).then(
      () => {
        callback(err)
      },
      (releaseErr: unknown) => {
        callback(err ?? toError(releaseErr))
      },
    )
  }
}

/**
 * A body that is whole in memory already (a small, hot cache entry). It
 * streams like any body, and a consumer that can write a buffer at once
 * takes it with `whole()` instead: no stream machinery per request, which
 * is what a cached poll costs otherwise.
 */
export class WholeBody extends Readable implements CacheBody {
  readonly #buf: Buffer
  #delivered = false

  /** `onClose` gets the bytes handed to the consumer, once, when the body closes. */
  constructor(buf: Buffer, onClose: (delivered: number) => void) {
    super()
    this.#buf = buf
    this.once('end', () => {
      this.#delivered = true
    })
    this.once('close', () => {
      onClose(this.#delivered ? this.#buf.length : 0)
    })
  }

  /** The whole body, counted as delivered; the stream is closed. Asking again gives the same buffer. */
  whole(): Buffer {
    this.#delivered = true
    this.destroy()
    return this.#buf
  }

  copyTo(dest: Writable, signal: AbortSignal, end: boolean): Promise<number> {
    return copyReadable(this, dest, signal, end)
  }

  get stream(): Readable {
    return this
  }

  override _read(): void {
    this.push(this.#buf)
    this.push(null)
  }
}
