/**
 * Streaming check of a packfile's envelope (gitformat-pack): the `PACK`
 * signature, version 2 or 3, the object count, and the trailer, which is the
 * SHA-1 (SHA-256 in sha256 repositories) of every byte before it.
 *
 * The pack is never buffered: bytes are hashed as they arrive, holding back
 * only the last trailer-sized run, which may turn out to be the trailer. The
 * objects themselves are not inflated, so a pack with a correct checksum but
 * corrupt contents passes (git's own checksum makes that unlikely).
 */
import { createHash } from 'node:crypto'
import type { Hash } from 'node:crypto'

export type ObjectFormat = 'sha1' | 'sha256'

export type PackVerifyResult =
  { ok: true; objects: number; bytes: number } | { ok: false; reason: string }

const HEADER_SIZE = 12
const SIGNATURE = Buffer.from('PACK', 'latin1')

export class PackVerifier {
  readonly #trailerSize: number
  readonly #hash: Hash
  readonly #header = Buffer.alloc(HEADER_SIZE)
  #tail: Buffer = Buffer.alloc(0)
  #bytes = 0
  #objects: number | null = null
  #failure: string | null = null

  constructor(objectFormat: ObjectFormat = 'sha1') {
    this.#trailerSize = objectFormat === 'sha256' ? 32 : 20
    this.#hash = createHash(objectFormat === 'sha256' ? 'sha256' : 'sha1')
  }

  /** Bytes seen so far. */
  get bytes(): number {
    return this.#bytes
  }

  /** The object count from the header, once 12 bytes have arrived and were valid. */
  get objects(): number | null {
    return this.#objects
  }

  /** Why the pack is already known to be bad (a bad header), or null. */
  get failure(): string | null {
    return this.#failure
  }

  update(data: Uint8Array): void {
    if (this.#failure !== null || data.byteLength === 0) return
    if (this.#bytes < HEADER_SIZE) this.#readHeader(data)
    this.#bytes += data.byteLength
    const n = this.#trailerSize
    if (data.byteLength >= n) {
      this.#hash.update(this.#tail)
      this.#hash.update(data.subarray(0, data.byteLength - n))
      this.#tail = Buffer.from(data.subarray(data.byteLength - n))
    } else {
      const all = Buffer.concat([this.#tail, data])
      if (all.length > n) {
        this.#hash.update(all.subarray(0, all.length - n))
        this.#tail = all.subarray(all.length - n)
      } else {
        this.#tail = all
      }
    }
  }

  /** Call once, at the end of the pack. */
  finish(): PackVerifyResult {
    if (this.#failure !== null) return { ok: false, reason: this.#failure }
    if (
      this.#bytes < HEADER_SIZE + this.#trailerSize ||
      this.#objects === null
    ) {
      return { ok: false, reason: `pack truncated: ${this.#bytes} bytes` }
    }
    const computed = this.#hash.digest()
    if (!computed.equals(this.#tail)) {
      return {
        ok: false,
        reason: `pack checksum mismatch: trailer ${this.#tail.toString('hex')}, computed ${computed.toString('hex')}`,
      }
    }
    return { ok: true, objects: this.#objects, bytes: this.#bytes }
  }

  #readHeader(data: Uint8Array): void {
    const take = Math.min(HEADER_SIZE - this.#bytes, data.byteLength)
    this.#header.set(data.subarray(0, take), this.#bytes)
    if (this.#bytes + take < HEADER_SIZE) return
    if (!this.#header.subarray(0, 4).equals(SIGNATURE)) {
      this.#failure = `bad pack signature "${this.#header.subarray(0, 4).toString('hex')}" (expected PACK)`
      return
    }
    const version = this.#header.readUInt32BE(4)
    if (version !== 2 && version !== 3) {
      this.#failure = `unsupported pack version ${version}`
      return
    }
    this.#objects = this.#header.readUInt32BE(8)
  }
}
