/**
 * pkt-line framing (gitprotocol-common): the token layer shared by protocol
 * v0, v1 and v2.
 *
 * A packet is a 4-digit hex length that counts itself, then the payload.
 * `0000` is a flush, `0001` a delimiter (v2), `0002` a response end (v2
 * stateless). `0003` is invalid; `0004` is an empty data packet (git never
 * sends it, but it is well formed). The largest packet is 65520 bytes.
 *
 * Two layers: `PktLineFramer` cuts a byte stream into raw frames (header
 * included) for code that must pass bytes through unchanged, and
 * `PktLineDecoder` turns those frames into typed `Packet`s. Both accept any
 * chunking and keep at most one packet buffered. Returned buffers may share
 * memory with the pushed chunks: copy them if the producer reuses its buffers.
 */
import { ProtocolError } from '../errors.js'

/** Largest packet, header included (`fff0`). */
export const MAX_PACKET_SIZE = 65520
/** Largest payload of a packet of `MAX_PACKET_SIZE`. */
export const MAX_PAYLOAD_SIZE = MAX_PACKET_SIZE - 4

export type Packet =
  | { kind: 'flush' }
  | { kind: 'delim' }
  | { kind: 'response-end' }
  | { kind: 'data'; payload: Buffer }

/** One packet exactly as it was on the wire. */
export interface Frame {
  /** The packet's bytes, header included. */
  raw: Buffer
  /** The header's value: 0, 1, 2, or the total length (4 or more). */
  length: number
  /** Byte offset of the packet in the stream. */
  offset: number
}

const FLUSH = 0
const DELIM = 1
const RESPONSE_END = 2
const HEADER_SIZE = 4

function hexValue(byte: number): number {
  if (byte >= 0x30 && byte <= 0x39) return byte - 0x30
  if (byte >= 0x61 && byte <= 0x66) return byte - 0x57
  if (byte >= 0x41 && byte <= 0x46) return byte - 0x37
  return -1
}

/** `bytes` for an error message: printable ASCII as is, the rest as `\xNN`. */
export function describeBytes(bytes: Uint8Array): string {
  let s = ''
  for (const b of bytes) {
    s +=
      b >= 0x20 && b < 0x7f && b !== 0x5c
        ? String.fromCharCode(b)
        : `\\x${b.toString(16).padStart(2, '0')}`
  }
  return s
}

/**
 * Reads the 4-byte length header at `at` of `bytes`. Returns 0, 1, 2 or the
 * packet's total length. Throws ProtocolError (`offset` is the header's
 * position in the stream) for a non-hex header, a length of 3, or a packet
 * longer than `maxPacketSize`.
 */
export function parsePacketLength(
  bytes: Uint8Array,
  at: number,
  offset: number,
  maxPacketSize: number = MAX_PACKET_SIZE,
): number {
  let length = 0
  for (let i = 0; i < HEADER_SIZE; i++) {
    const digit = hexValue(bytes[at + i] ?? -1)
    if (digit < 0) {
      throw new ProtocolError(
        'ERR_PROTOCOL_BAD_LENGTH',
        `invalid pkt-line length "${describeBytes(bytes.subarray(at, at + HEADER_SIZE))}" at offset ${offset}`,
        { offset },
      )
    }
    length = length * 16 + digit
  }
  if (length === 3) {
    throw new ProtocolError(
      'ERR_PROTOCOL_BAD_LENGTH',
      `invalid pkt-line length 0003 at offset ${offset}`,
      {
        offset,
      },
    )
  }
  if (length > maxPacketSize) {
    throw new ProtocolError(
      'ERR_PROTOCOL_TOO_LONG',
      `pkt-line of ${length} bytes at offset ${offset} exceeds the limit of ${maxPacketSize}`,
      { offset },
    )
  }
  return length
}

function checkMaxPacketSize(value: number | undefined): number {
  if (value === undefined) return MAX_PACKET_SIZE
  if (!Number.isInteger(value) || value < HEADER_SIZE || value > 0xffff) {
    throw new TypeError(
      `expected maxPacketSize to be an integer from 4 to 65535, got ${String(value)}`,
    )
  }
  return value
}

function asBuffer(chunk: Uint8Array): Buffer {
  return Buffer.isBuffer(chunk)
    ? chunk
    : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
}

/**
 * Cuts a byte stream into raw packets. Pull-based: `write()` chunks, then call
 * `next()` until it returns null. The caller may stop between packets and
 * take the unparsed rest with `takeRest()` (a raw pack after the pkt-lines).
 * An invalid header throws from `next()`, and keeps throwing.
 */
export class PktLineFramer {
  readonly #maxPacketSize: number
  /** Unconsumed bytes: `#head` from `#pos`, then `#tail`. */
  #head: Buffer = Buffer.alloc(0)
  #pos = 0
  #tail: Buffer[] = []
  #tailLength = 0
  #offset = 0
  #error: ProtocolError | null = null

  constructor(opts: { maxPacketSize?: number } = {}) {
    this.#maxPacketSize = checkMaxPacketSize(opts.maxPacketSize)
  }

  /** Bytes handed out so far (packets and `takeRest()`). */
  get offset(): number {
    return this.#offset
  }

  /** Bytes written but not handed out yet. */
  get pending(): number {
    return this.#head.length - this.#pos + this.#tailLength
  }

  write(chunk: Uint8Array): void {
    if (chunk.byteLength === 0) return
    this.#tail.push(asBuffer(chunk))
    this.#tailLength += chunk.byteLength
  }

  /** The next `n` unconsumed bytes, or null if fewer are buffered. Does not consume. */
  peek(n: number): Buffer | null {
    if (this.pending < n) return null
    this.#ensure(n)
    return this.#head.subarray(this.#pos, this.#pos + n)
  }

  /** The next complete packet, or null if it has not fully arrived. */
  next(): Frame | null {
    if (this.#error) throw this.#error
    if (this.pending < HEADER_SIZE) return null
    this.#ensure(HEADER_SIZE)
    let length: number
    try {
      length = parsePacketLength(
        this.#head,
        this.#pos,
        this.#offset,
        this.#maxPacketSize,
      )
    } catch (err) {
      // parsePacketLength throws only ProtocolError
      this.#error = err as ProtocolError
      throw err
    }
    const total = length < HEADER_SIZE ? HEADER_SIZE : length
    if (this.pending < total) return null
    this.#ensure(total)
    const raw = this.#head.subarray(this.#pos, this.#pos + total)
    const frame = { raw, length, offset: this.#offset }
    this.#pos += total
    this.#offset += total
    return frame
  }

  /** Returns and clears every unconsumed byte. */
  takeRest(): Buffer {
    const rest =
      this.#tail.length === 0
        ? this.#head.subarray(this.#pos)
        : this.#concatAll()
    this.#head = Buffer.alloc(0)
    this.#pos = 0
    this.#tail = []
    this.#tailLength = 0
    this.#offset += rest.length
    return rest
  }

  /** Makes `#head` hold at least `n` unconsumed bytes (the caller checked `pending`). */
  #ensure(n: number): void {
    if (this.#head.length - this.#pos >= n) return
    this.#head = this.#concatAll()
    this.#pos = 0
    this.#tail = []
    this.#tailLength = 0
  }

  #concatAll(): Buffer {
    const rest = this.#head.subarray(this.#pos)
    return Buffer.concat(rest.length > 0 ? [rest, ...this.#tail] : this.#tail)
  }
}

export interface PktLineDecoderOptions {
  /** Largest accepted packet, header included. Default `MAX_PACKET_SIZE`. */
  maxPacketSize?: number
  /**
   * Called after each packet; returning true switches the decoder to raw
   * mode right after that packet (for a raw pack that follows `NAK` without
   * side-band, or the flush of a receive-pack command list).
   */
  rawAfter?: (packet: Packet) => boolean
}

/**
 * Incremental pkt-line decoder. `push()` returns the packets completed by a
 * chunk. In raw mode (see `rawAfter`, `enterRawMode()`), it stops parsing:
 * `push()` only buffers, and `takeRest()` hands the bytes out; the caller
 * usually forwards later chunks itself.
 */
export class PktLineDecoder {
  readonly #framer: PktLineFramer
  readonly #rawAfter: ((packet: Packet) => boolean) | undefined
  #rawMode = false

  constructor(opts: PktLineDecoderOptions = {}) {
    this.#framer = new PktLineFramer(
      opts.maxPacketSize === undefined
        ? {}
        : { maxPacketSize: opts.maxPacketSize },
    )
    this.#rawAfter = opts.rawAfter
  }

  /** Bytes consumed so far (parsed packets and bytes taken by `takeRest()`). */
  get offset(): number {
    return this.#framer.offset
  }

  /** Bytes buffered: a partial packet, or raw bytes in raw mode. */
  get pending(): number {
    return this.#framer.pending
  }

  get rawMode(): boolean {
    return this.#rawMode
  }

  /** Stops parsing from now on; what is buffered and what follows is raw. */
  enterRawMode(): void {
    this.#rawMode = true
  }

  /** Returns and clears the buffered, unparsed bytes. */
  takeRest(): Buffer {
    return this.#framer.takeRest()
  }

  /** Throws ProtocolError for a malformed packet; packets before it in the same chunk are lost. */
  push(chunk: Uint8Array): Packet[] {
    this.#framer.write(chunk)
    const packets: Packet[] = []
    while (!this.#rawMode) {
      const frame = this.#framer.next()
      if (frame === null) break
      const packet = toPacket(frame)
      packets.push(packet)
      if (this.#rawAfter?.(packet) === true) this.#rawMode = true
    }
    return packets
  }

  /** Declares the end of input: throws ERR_PROTOCOL_TRUNCATED if a partial packet is pending. */
  end(): void {
    if (this.#rawMode || this.#framer.pending === 0) return
    throw new ProtocolError(
      'ERR_PROTOCOL_TRUNCATED',
      `input ended inside a pkt-line: ${this.#framer.pending} bytes pending at offset ${this.#framer.offset}`,
      { offset: this.#framer.offset },
    )
  }
}

/** The typed packet of a raw frame. */
export function toPacket(frame: Frame): Packet {
  switch (frame.length) {
    case FLUSH:
      return { kind: 'flush' }
    case DELIM:
      return { kind: 'delim' }
    case RESPONSE_END:
      return { kind: 'response-end' }
    default:
      return { kind: 'data', payload: frame.raw.subarray(HEADER_SIZE) }
  }
}

/** Every packet of a complete buffer. Throws ProtocolError if it is malformed or truncated. */
export function parsePackets(buf: Buffer): Packet[] {
  const decoder = new PktLineDecoder()
  const packets = decoder.push(buf)
  decoder.end()
  return packets
}

function header(length: number): string {
  return length.toString(16).padStart(HEADER_SIZE, '0')
}

/** A data packet. Throws RangeError if the payload exceeds `MAX_PAYLOAD_SIZE`. */
export function encodePacket(payload: string | Uint8Array): Buffer {
  const body =
    typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload
  if (body.byteLength > MAX_PAYLOAD_SIZE) {
    throw new RangeError(
      `pkt-line payload of ${body.byteLength} bytes exceeds ${MAX_PAYLOAD_SIZE}`,
    )
  }
  const out = Buffer.allocUnsafe(HEADER_SIZE + body.byteLength)
  out.write(header(HEADER_SIZE + body.byteLength), 0, 'latin1')
  out.set(body, HEADER_SIZE)
  return out
}

export function encodeFlush(): Buffer {
  return Buffer.from('0000', 'latin1')
}

export function encodeDelim(): Buffer {
  return Buffer.from('0001', 'latin1')
}

export function encodeResponseEnd(): Buffer {
  return Buffer.from('0002', 'latin1')
}

/** An `ERR <message>\n` packet. */
export function encodeError(message: string): Buffer {
  return encodePacket(`ERR ${message}\n`)
}

/**
 * `data` as side-band packets on `channel`, each at most `maxPacketSize`
 * bytes in total (65520 for side-band-64k; pass 1000 for side-band). Empty
 * data gives no packets (a keepalive is `encodePacket(Buffer.of(1))`).
 */
export function encodeSideband(
  channel: 1 | 2 | 3,
  data: Uint8Array,
  maxPacketSize: number = MAX_PACKET_SIZE,
): Buffer[] {
  const step = checkMaxPacketSize(maxPacketSize) - HEADER_SIZE - 1
  if (step < 1)
    throw new TypeError(
      `maxPacketSize ${maxPacketSize} leaves no room for side-band data`,
    )
  const packets: Buffer[] = []
  for (let at = 0; at < data.byteLength; at += step) {
    const part = data.subarray(at, Math.min(at + step, data.byteLength))
    const out = Buffer.allocUnsafe(HEADER_SIZE + 1 + part.byteLength)
    out.write(header(out.length), 0, 'latin1')
    out[HEADER_SIZE] = channel
    out.set(part, HEADER_SIZE + 1)
    packets.push(out)
  }
  return packets
}

/** The payload as UTF-8 text, one trailing LF removed. */
export function packetText(payload: Buffer): string {
  const end =
    payload.length > 0 && payload[payload.length - 1] === 0x0a
      ? payload.length - 1
      : payload.length
  return payload.toString('utf8', 0, end)
}

const ERR_PREFIX = Buffer.from('ERR ', 'latin1')

/** The text after `ERR ` (trailing LF removed) if this is an ERR packet, else null. */
export function errorMessage(payload: Buffer): string | null {
  if (
    payload.length < ERR_PREFIX.length ||
    !payload.subarray(0, ERR_PREFIX.length).equals(ERR_PREFIX)
  ) {
    return null
  }
  return packetText(payload.subarray(ERR_PREFIX.length))
}
