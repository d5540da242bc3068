/**
 * Small I/O helpers for SSH channels (the front's and the upstream's): a pkt-line reader over a channel
 * that can hand the rest of the stream out raw, and writes that wait until
 * ssh2 has taken the bytes (its write callbacks fire once the channel window
 * allowed them out).
 */
import type { Readable, Writable } from 'node:stream'
import { ProtocolError } from '../errors.js'
import { PktLineFramer, type Frame } from '../protocol/pkt-line.js'

/** Largest request section (want list, v2 command) read before deciding; bigger ones pass through. */
export const MAX_SECTION = 32 * 1024 * 1024

export class PktReader {
  readonly #it: AsyncIterator<Buffer>
  readonly #framer = new PktLineFramer()
  #ended = false

  constructor(stream: Readable) {
    // destroyOnReturn false: the channel's end of input must not destroy its
    // output side, which still carries the answer.
    this.#it = stream.iterator({ destroyOnReturn: false }) as AsyncIterator<Buffer> // channels yield Buffers
  }

  /** The next packet (a copy), or null at a clean end of input. */
  async next(): Promise<Frame | null> {
    for (;;) {
      const frame = this.#framer.next()
      if (frame !== null) return { ...frame, raw: Buffer.from(frame.raw) }
      if (this.#ended) {
        if (this.#framer.pending > 0) {
          throw new ProtocolError('ERR_PROTOCOL_TRUNCATED', 'input ended inside a pkt-line', { offset: this.#framer.offset })
        }
        return null
      }
      const r = await this.#it.next()
      if (r.done === true) this.#ended = true
      else this.#framer.write(r.value)
    }
  }

  /**
   * The packets up to and including the next flush, or null when the input
   * ends before any packet. Throws if it ends after some, or past `limit` bytes.
   */
  async untilFlush(limit = MAX_SECTION): Promise<Frame[] | null> {
    const frames: Frame[] = []
    let size = 0
    for (;;) {
      const frame = await this.next()
      if (frame === null) {
        if (frames.length === 0) return null
        throw new ProtocolError('ERR_PROTOCOL_TRUNCATED', 'input ended before a flush packet', { offset: size })
      }
      frames.push(frame)
      size += frame.raw.length
      if (frame.length === 0) return frames
      if (size > limit) throw new ProtocolError('ERR_PROTOCOL_TOO_LONG', `section longer than ${limit} bytes`)
    }
  }

  /** What is buffered, then the rest of the stream, unparsed. */
  async *rest(): AsyncGenerator<Buffer> {
    const head = this.#framer.takeRest()
    if (head.length > 0) yield head
    while (!this.#ended) {
      const r = await this.#it.next()
      if (r.done === true) this.#ended = true
      else yield r.value
    }
  }
}

export function concatFrames(frames: readonly Frame[]): Buffer {
  return Buffer.concat(frames.map((f) => f.raw))
}

/** Resolves once `stream` has taken `data` (and everything written before it). */
export function send(stream: Writable, data: Buffer, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(abortError(signal))
      return
    }
    const onAbort = (): void => {
      reject(abortError(signal))
    }
    signal.addEventListener('abort', onAbort, { once: true })
    stream.write(data, (err) => {
      signal.removeEventListener('abort', onAbort)
      if (err === undefined || err === null) resolve()
      else reject(err)
    })
  })
}

function abortError(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new Error('the SSH channel closed')
}
