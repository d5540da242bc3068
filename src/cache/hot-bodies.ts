/**
 * Hot bodies: small ref entries (advertisements, ls-refs) are polled over
 * and over, so after their first hit they are served from memory, sparing
 * each poll an open, a read and a close. Entries never change once
 * committed, so the copy is exact; it goes when its record leaves the
 * index (`forget`, from the index's removal hook).
 *
 * Budget: an entry of up to HOT_ENTRY_MAX bytes, and HOT_TOTAL_MAX bytes in
 * all. An entry that does not fit is read from its file at every hit.
 */
import type { FileHandle } from 'node:fs/promises'
import type { Log } from '../logger.js'
import type { IndexRecord } from './entry-index.js'

const HOT_ENTRY_MAX = 2 * 1024 * 1024
const HOT_TOTAL_MAX = 32 * 1024 * 1024

export class HotBodies {
  readonly #log: Log
  readonly #bodies = new Map<IndexRecord, Buffer>()
  /** bytes of the bodies held */
  #bytes = 0

  constructor(log: Log) {
    this.#log = log
  }

  /** The body held for `rec`, if any. */
  of(rec: IndexRecord): Buffer | undefined {
    return this.#bodies.get(rec)
  }

  /** Whether a hit of `rec` should read its body whole and keep it: a small refs entry within the budget. */
  wants(rec: IndexRecord): boolean {
    const { kind, bodySize } = rec.meta
    return kind === 'refs' && bodySize <= HOT_ENTRY_MAX && this.#bytes + bodySize <= HOT_TOTAL_MAX
  }

  /** Keeps `body` for `rec`, unless another hit of it stored one meanwhile. */
  keep(rec: IndexRecord, body: Buffer): void {
    if (this.#bodies.has(rec)) return
    this.#bodies.set(rec, body)
    this.#bytes += body.length
  }

  /** `rec` left the index: its body goes. */
  forget(rec: IndexRecord): void {
    const body = this.#bodies.get(rec)
    if (body === undefined) return
    this.#bodies.delete(rec)
    this.#bytes -= body.length
  }

  /** The whole body of `rec` read through `fh` (closed here), or undefined if the file is short. */
  async read(fh: FileHandle, rec: IndexRecord): Promise<Buffer | undefined> {
    try {
      const body = Buffer.allocUnsafe(rec.meta.bodySize)
      let got = 0
      while (got < body.length) {
        const { bytesRead } = await fh.read(body, got, body.length - got, got)
        if (bytesRead === 0) break
        got += bytesRead
      }
      return got < body.length ? undefined : body
    } finally {
      await fh.close().catch((err: unknown) => {
        this.#log.warn({ key: rec.meta.key, err }, 'closing a cache entry file failed')
      })
    }
  }
}
