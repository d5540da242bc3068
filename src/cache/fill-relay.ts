/**
 * The memory relay of a fill whose temp file can no longer be written
 * (ENOSPC, EDQUOT, EIO, the cache directory gone: DESIGN §3.5).
 *
 * ```
 *   body bytes:  [0 ........ base) [base ......................... end)
 *                 in the temp file   upstream chunks kept in memory, from the
 *                 (read by pread)    slowest reader's position on
 * ```
 *
 * Bytes below `base` (the failure point) are already in the fill's temp
 * file; its fd stays open for the readers, so they keep reading them from
 * there even after the file is unlinked (decided: keeping them in memory
 * instead would hold the whole written part of the body, megabytes, for a
 * reader that joined late; the file's pages are in the page cache and a
 * read does not write). Bytes from `base` on come only from memory.
 *
 * Backpressure: `push()` calls its callback (which lets the producer write
 * the next chunk, and so read the next one from upstream) only while the
 * bytes held are below `maxHeld`. A chunk is dropped once every reader has
 * read past it (`release(slowest)`), and that releases a held callback. So
 * the upstream is read no faster than the slowest reader takes it, and a
 * fill holds at most `maxHeld` plus one chunk.
 */

/** Bytes a relay may hold before it stops taking more from the producer. */
export const RELAY_MAX_HELD = 256 * 1024

interface Chunk {
  at: number
  buf: Buffer
}

export class FillRelay {
  /** body bytes in the temp file (the failure point) */
  readonly base: number
  readonly #maxHeld: number
  readonly #chunks: Chunk[] = []
  #end: number
  #held = 0
  #peak = 0
  /** the producer's write callback, held while the relay is full */
  #pending: (() => void) | undefined

  constructor(base: number, maxHeld = RELAY_MAX_HELD) {
    this.base = base
    this.#end = base
    this.#maxHeld = maxHeld
  }

  /** Body bytes known: the file's, then memory's. */
  get end(): number {
    return this.#end
  }

  /** Bytes held in memory now. */
  get held(): number {
    return this.#held
  }

  /** The most bytes held at once. */
  get peak(): number {
    return this.#peak
  }

  /** Appends the next chunk of the body; `done` is called once there is room for more. */
  push(chunk: Buffer, done: () => void): void {
    if (chunk.length > 0) {
      this.#chunks.push({ at: this.#end, buf: chunk })
      this.#end += chunk.length
      this.#held += chunk.length
      this.#peak = Math.max(this.#peak, this.#held)
    }
    if (this.#held < this.#maxHeld) {
      done()
    } else {
      this.#pending = done
    }
  }

  /**
   * Copies bytes at `position` (>= base, < end, not yet released) into
   * `buf`; returns how many (the rest of one chunk at most).
   */
  read(buf: Uint8Array, position: number): number {
    for (const c of this.#chunks) {
      if (position >= c.at + c.buf.length) continue
      if (position < c.at) break
      const from = position - c.at
      const n = Math.min(buf.length, c.buf.length - from)
      buf.set(c.buf.subarray(from, from + n))
      return n
    }
    return 0
  }

  /** Every reader is at `slowest` or beyond: drops the chunks below it, and lets the producer go on. */
  release(slowest: number): void {
    while (this.#chunks.length > 0) {
      const c = this.#chunks[0]
      if (c === undefined || c.at + c.buf.length > slowest) break
      this.#chunks.shift()
      this.#held -= c.buf.length
    }
    if (this.#pending !== undefined && this.#held < this.#maxHeld) {
      const done = this.#pending
      this.#pending = undefined
      done()
    }
  }

  /** Drops everything (the fill ended or failed); a held callback is never called. */
  clear(): void {
    this.#chunks.length = 0
    this.#held = 0
    this.#pending = undefined
  }
}
