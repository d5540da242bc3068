/**
 * A streaming check of a pkt-line answer that has no pack in it (ref
 * advertisements, v2 capability advertisements, ls-refs): well-framed, no
 * `ERR` packet, and its last packet a flush. The store rule for ref entries.
 * `push()` never throws; `finish()` reports the first problem.
 */
import { errorMessage, PktLineDecoder } from './pkt-line.js'

export class PktStreamChecker {
  readonly #decoder = new PktLineDecoder()
  #failure: string | null = null
  #lastWasFlush = false
  #packets = 0

  push(chunk: Uint8Array): void {
    if (this.#failure !== null) return
    try {
      for (const packet of this.#decoder.push(chunk)) {
        this.#packets++
        this.#lastWasFlush = packet.kind === 'flush'
        if (packet.kind === 'data') {
          const err = errorMessage(packet.payload)
          if (err !== null) this.#failure = `upstream sent ERR: ${err.slice(0, 200)}`
        }
      }
    } catch (err) {
      this.#failure = err instanceof Error ? err.message : String(err)
    }
  }

  finish(): { ok: true } | { ok: false; reason: string } {
    if (this.#failure !== null) return { ok: false, reason: this.#failure }
    if (this.#decoder.pending > 0) return { ok: false, reason: 'answer ends inside a packet' }
    if (this.#packets === 0) return { ok: false, reason: 'empty answer' }
    if (!this.#lastWasFlush) return { ok: false, reason: 'answer does not end with a flush packet' }
    return { ok: true }
  }
}
