/**
 * Checks an upload-pack response while it streams into the cache, and says
 * which bytes to store: the "store rule" of docs/git-protocol-notes §5.
 *
 * v0/v1:  [shallow <oid> | unshallow <oid> ... 0000]   when the request had deepen/shallow
 *         ACK <oid> common|ready|continue ... / NAK    negotiation (only NAK without haves)
 *         ACK <oid> | NAK                              the last one, then the pack:
 *         side-band: <channel byte><data> packets ... 0000    without: raw pack bytes to EOF
 * v2:     [acknowledgments ... 0001] [shallow-info ... 0001] [wanted-refs ... 0001]
 *         [packfile-uris ... 0001] packfile <side-band packets> 0000
 *         (or acknowledgments ... 0000 when the server is not ready)
 *
 * Stored bytes are the input minus side-band channel-2 packets (progress, or
 * a sideband-all keepalive) and empty channel-1 packets (keepalives), so a
 * stored response does not depend on `no-progress` or on upstream timing.
 * The pack (channel 1, or the raw bytes) is verified on the fly by
 * PackVerifier and never buffered; at most one packet is held back.
 */
import { ProtocolError } from '../errors.js'
import { PackVerifier } from './pack-verifier.js'
import type { ObjectFormat } from './pack-verifier.js'
import {
  PktLineFramer,
  describeBytes,
  errorMessage,
  packetText,
} from './pkt-line.js'
import type { Frame } from './pkt-line.js'
import { quoteLine } from './request-values.js'

export type Sideband = 'none' | 'side-band' | 'side-band-64k'

export interface UploadPackResponseCheckerOptions {
  /** 'v0' also covers v1, whose responses are identical. */
  protocol: 'v0' | 'v2'
  /** v0/v1: what the request's capabilities chose (see `sidebandOf`). Ignored for v2. */
  sideband: Sideband
  /**
   * Whether the response must carry a pack. False for the first POST of a
   * v0 smart-HTTP depth exchange, which is only the shallow list and `0000`.
   */
  expectPack: boolean
  /** Decides the pack trailer (SHA-1, 20 bytes, or SHA-256, 32) and object id length. Default sha1. */
  objectFormat?: ObjectFormat
  /** v2 with the `sideband-all` argument: every packet but flush/delim carries a channel byte. */
  sidebandAll?: boolean
  /**
   * A negotiation round (haves without `done`): the answer may be complete
   * without a pack. v2: an `acknowledgments` section without `ready`, then
   * `0000`. v0/v1 (stateless): the optional shallow list, then ACK lines
   * ending in `NAK`, then the end of the body (upload-pack exits there).
   * See docs/protocol.md.
   */
  negotiation?: boolean
  /** v0/v1 `no-done`: an `ACK <oid> ready` in a negotiation round is followed by `ACK <oid>` and the pack. */
  noDone?: boolean
}

export type UploadPackResponseResult =
  | { ok: true; packObjects: number; shallow: string[]; unshallow: string[] }
  | { ok: false; reason: string }

/** The side-band mode a v0/v1 request chose: side-band-64k wins over side-band. */
export function sidebandOf(capabilities: string[]): Sideband {
  if (capabilities.includes('side-band-64k')) return 'side-band-64k'
  if (capabilities.includes('side-band')) return 'side-band'
  return 'none'
}

/** side-band (not 64k) packets are at most this long (git's DEFAULT_PACKET_MAX). */
const SMALL_SIDEBAND_MAX = 1000
const PACK_SIGNATURE = Buffer.from('PACK', 'latin1')

const V2_SECTIONS = [
  'acknowledgments',
  'shallow-info',
  'wanted-refs',
  'packfile-uris',
  'packfile',
] as const
type V2Section = (typeof V2_SECTIONS)[number]

type State =
  | { at: 'v0-start' }
  | { at: 'v0-shallow' }
  | { at: 'v0-acks' }
  | { at: 'v0-pack' }
  | { at: 'v0-raw-pack' }
  | { at: 'v2-section-start'; last: number }
  | { at: 'v2-section'; section: V2Section; index: number; ready: boolean }
  | { at: 'end' }

function asBuffer(chunk: Uint8Array): Buffer {
  return Buffer.isBuffer(chunk)
    ? chunk
    : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
}

/** A failure detected while handling a packet; caught inside push(), never escapes. */
class ResponseFailure extends Error {}

export class UploadPackResponseChecker {
  readonly #sideband: Sideband
  readonly #expectPack: boolean
  readonly #sidebandAll: boolean
  readonly #oidLength: number
  readonly #negotiation: boolean
  readonly #noDone: boolean
  /** v0: the last acknowledgment line, and whether one said `ready`. */
  #lastAck: 'NAK' | 'ACK' | null = null
  #sawReady = false
  /** v2: the answer ended with the acknowledgments section (no `ready`). */
  #acksOnly = false
  readonly #framer = new PktLineFramer()
  readonly #pack: PackVerifier
  readonly #shallow: string[] = []
  readonly #unshallow: string[] = []
  #state: State
  #packSeen = false
  #failure: string | null = null
  #result: UploadPackResponseResult | null = null

  constructor(opts: UploadPackResponseCheckerOptions) {
    this.#sideband = opts.protocol === 'v2' ? 'side-band-64k' : opts.sideband
    this.#expectPack = opts.expectPack
    this.#sidebandAll = opts.protocol === 'v2' && opts.sidebandAll === true
    this.#negotiation = opts.negotiation === true
    this.#noDone = opts.noDone === true
    const format = opts.objectFormat ?? 'sha1'
    this.#oidLength = format === 'sha256' ? 64 : 40
    this.#pack = new PackVerifier(format)
    this.#state =
      opts.protocol === 'v2'
        ? { at: 'v2-section-start', last: -1 }
        : { at: 'v0-start' }
  }

  /**
   * The bytes to store for `chunk`: the input without progress and keepalive
   * packets. A packet split across chunks is returned with the chunk that
   * completes it. Never throws; once the response has failed (or after
   * finish()), returns the input unchanged.
   */
  push(chunk: Uint8Array): Buffer {
    const input = asBuffer(chunk)
    if (this.#failure !== null || this.#result !== null) return input
    try {
      return this.#push(input)
    } catch (err) {
      this.#failure ??= err instanceof Error ? err.message : String(err)
      return input
    }
  }

  /** Call at the end of the response. Reports the first failure, if any. Idempotent. */
  finish(): UploadPackResponseResult {
    this.#result ??= this.#finish()
    return this.#result
  }

  #finish(): UploadPackResponseResult {
    if (this.#failure !== null) return { ok: false, reason: this.#failure }
    const state = this.#state.at
    if (this.#negotiationComplete()) {
      return { ok: true, packObjects: 0, shallow: this.#shallow, unshallow: this.#unshallow }
    }
    if (state !== 'end' && state !== 'v0-raw-pack') {
      const inside =
        this.#framer.pending > 0
          ? `, ${this.#framer.pending} bytes of a partial packet`
          : ''
      return {
        ok: false,
        reason: `response ended before the final flush (in ${state} at offset ${this.#framer.offset}${inside})`,
      }
    }
    if (!this.#packSeen) {
      if (this.#expectPack) return { ok: false, reason: 'response has no pack' }
      return {
        ok: true,
        packObjects: 0,
        shallow: this.#shallow,
        unshallow: this.#unshallow,
      }
    }
    const pack = this.#pack.finish()
    if (!pack.ok) return { ok: false, reason: pack.reason }
    return {
      ok: true,
      packObjects: pack.objects,
      shallow: this.#shallow,
      unshallow: this.#unshallow,
    }
  }

  /** A negotiation round's answer that is complete without a pack (see the option). */
  #negotiationComplete(): boolean {
    if (!this.#negotiation || this.#packSeen) return false
    if (this.#state.at === 'end') return this.#acksOnly
    return (
      this.#state.at === 'v0-acks' &&
      this.#framer.pending === 0 &&
      this.#lastAck === 'NAK' &&
      !(this.#noDone && this.#sawReady)
    )
  }

  #fail(reason: string): never {
    throw new ResponseFailure(reason)
  }

  #push(input: Buffer): Buffer {
    if (this.#state.at === 'v0-raw-pack') {
      this.#updatePack(input)
      return input
    }
    this.#framer.write(input)
    const out: Buffer[] = []
    for (;;) {
      if (this.#state.at === 'end') {
        if (this.#framer.pending > 0) {
          this.#fail(
            `${this.#framer.pending} bytes after the final flush at offset ${this.#framer.offset}`,
          )
        }
        break
      }
      if (this.#state.at === 'v0-acks' && this.#sideband === 'none') {
        const head = this.#framer.peek(4)
        if (head === null) break
        if (head.equals(PACK_SIGNATURE)) {
          this.#state = { at: 'v0-raw-pack' }
          this.#packSeen = true
          const rest = this.#framer.takeRest()
          this.#updatePack(rest)
          out.push(rest)
          break
        }
      }
      let frame: Frame | null
      try {
        frame = this.#framer.next()
      } catch (err) {
        this.#fail(
          `malformed packet: ${err instanceof ProtocolError ? err.message : String(err)}`,
        )
      }
      if (frame === null) break
      if (this.#handle(frame)) out.push(frame.raw)
    }
    return out.length === 1 && out[0] !== undefined
      ? out[0]
      : Buffer.concat(out)
  }

  #updatePack(bytes: Buffer): void {
    this.#pack.update(bytes)
    const failure = this.#pack.failure
    if (failure !== null) this.#fail(failure)
  }

  /** Advances the state for one packet; returns whether to store it. */
  #handle(frame: Frame): boolean {
    if (frame.length === 2) {
      this.#fail(`unexpected response-end packet at offset ${frame.offset}`)
    }
    if (frame.length >= 4) this.#failOnErr(frame, frame.raw.subarray(4))
    switch (this.#state.at) {
      case 'v0-start':
      case 'v0-shallow':
        return this.#v0Shallow(frame)
      case 'v0-acks':
        return this.#v0Acks(frame)
      case 'v0-pack':
        if (frame.length === 0) {
          this.#state = { at: 'end' }
          return true
        }
        return this.#sidebandPacket(frame)
      case 'v2-section-start':
        return this.#v2SectionStart(frame, this.#state.last)
      case 'v2-section':
        return this.#v2SectionLine(frame, this.#state)
      case 'v0-raw-pack':
      case 'end':
        // #push never parses packets in these states
        return this.#fail(`internal: packet in state ${this.#state.at}`)
    }
  }

  #failOnErr(frame: Frame, payload: Buffer): void {
    const err = errorMessage(payload)
    if (err !== null) {
      this.#fail(
        `upstream sent ERR at offset ${frame.offset}: ${quoteLine(err, 200)}`,
      )
    }
  }

  #fatalMessage(at: number, data: Buffer): string {
    const text = quoteLine(packetText(data), 200)
    return `upstream sent a fatal side-band message at offset ${at}: ${text}`
  }

  #text(frame: Frame): string {
    if (frame.length < 4) {
      const kind = frame.length === 0 ? 'flush' : 'delim'
      this.#fail(
        `unexpected ${kind} packet at offset ${frame.offset} (in ${this.#state.at})`,
      )
    }
    return packetText(frame.raw.subarray(4))
  }

  #badLine(frame: Frame, text: string): never {
    return this.#fail(
      `unexpected line at offset ${frame.offset} (in ${this.#state.at}): ${quoteLine(text)}`,
    )
  }

  #isOid(value: string): boolean {
    return value.length === this.#oidLength && /^[0-9a-f]+$/.test(value)
  }

  /** `shallow <oid>` / `unshallow <oid>`; true if the line was one. */
  #shallowLine(text: string): boolean {
    const space = text.indexOf(' ')
    const word = text.slice(0, space)
    const oid = text.slice(space + 1)
    if (space < 0 || !this.#isOid(oid)) return false
    if (word === 'shallow') this.#shallow.push(oid)
    else if (word === 'unshallow') this.#unshallow.push(oid)
    else return false
    return true
  }

  #v0Shallow(frame: Frame): boolean {
    if (frame.length === 0) {
      this.#state = this.#expectPack ? { at: 'v0-acks' } : { at: 'end' }
      return true
    }
    const text = this.#text(frame)
    if (this.#shallowLine(text)) {
      this.#state = { at: 'v0-shallow' }
      return true
    }
    if (this.#state.at === 'v0-start' && this.#expectPack) {
      return this.#v0Acks(frame)
    }
    return this.#badLine(frame, text)
  }

  #v0Acks(frame: Frame): boolean {
    if (
      frame.length >= 5 &&
      this.#sideband !== 'none' &&
      (frame.raw[4] ?? 0) <= 3
    ) {
      this.#state = { at: 'v0-pack' }
      return this.#sidebandPacket(frame)
    }
    const text = this.#text(frame)
    this.#state = { at: 'v0-acks' }
    if (text === 'NAK') {
      this.#lastAck = 'NAK'
      return true
    }
    const parts = text.split(' ')
    const [ack, oid, status] = parts
    if (
      ack === 'ACK' &&
      oid !== undefined &&
      this.#isOid(oid) &&
      (parts.length === 2 ||
        (parts.length === 3 &&
          (status === 'common' || status === 'ready' || status === 'continue')))
    ) {
      this.#lastAck = 'ACK'
      if (status === 'ready') this.#sawReady = true
      return true
    }
    return this.#badLine(frame, text)
  }

  /** A packet of the pack stream (v0 after NAK, v2 packfile section); returns whether to store it. */
  #sidebandPacket(frame: Frame): boolean {
    const at = frame.offset
    if (frame.length === 1) {
      this.#fail(`unexpected delim packet at offset ${at} inside the pack`)
    }
    if (frame.length === 4) {
      this.#fail(`empty packet at offset ${at} inside the pack (no channel)`)
    }
    if (this.#sideband === 'side-band' && frame.length > SMALL_SIDEBAND_MAX) {
      this.#fail(
        `side-band packet of ${frame.length} bytes at offset ${frame.offset} exceeds ${SMALL_SIDEBAND_MAX}`,
      )
    }
    const data = frame.raw.subarray(5)
    // frame.length >= 5 here, so the channel byte exists
    switch (frame.raw[4] ?? -1) {
      case 1:
        if (data.length === 0) return false // keepalive
        this.#packSeen = true
        this.#updatePack(data)
        return true
      case 2:
        return false // progress
      case 3:
        return this.#fail(this.#fatalMessage(at, data))
      default:
        return this.#fail(
          `bad side-band channel at offset ${frame.offset}: "${describeBytes(frame.raw.subarray(0, 8))}"`,
        )
    }
  }

  /**
   * For sideband-all, the line inside a channel-1 packet (null for a packet
   * to drop); otherwise the frame itself.
   */
  #unwrapSidebandAll(frame: Frame): Frame | null {
    if (!this.#sidebandAll || frame.length < 4) return frame
    const at = frame.offset
    if (frame.length === 4) {
      this.#fail(`empty packet at offset ${at} (sideband-all)`)
    }
    const channel = frame.raw[4]
    const data = frame.raw.subarray(5)
    if (channel === 2) return null
    if (channel === 3) this.#fail(this.#fatalMessage(at, data))
    if (channel !== 1) {
      this.#fail(`bad side-band channel at offset ${at} (sideband-all)`)
    }
    if (frame.length === 5) return null // keepalive
    // upload-pack sends its ERR line on channel 1 too
    this.#failOnErr(frame, data)
    // the line without its channel byte, re-framed so that #text() reads it
    const raw = Buffer.concat([frame.raw.subarray(0, 4), data])
    return { raw, length: frame.length - 1, offset: at }
  }

  #v2SectionStart(frame: Frame, last: number): boolean {
    if (frame.length === 0) {
      this.#state = { at: 'end' }
      return true
    }
    const line = this.#unwrapSidebandAll(frame)
    if (line === null) return false
    const text = this.#text(line)
    const index = V2_SECTIONS.indexOf(text as V2Section) // only a known name yields an index >= 0
    const section = V2_SECTIONS[index]
    if (section === undefined) return this.#badLine(frame, text)
    if (index <= last) {
      this.#fail(`section ${text} out of order at offset ${frame.offset}`)
    }
    this.#state = { at: 'v2-section', section, index, ready: false }
    return true
  }

  #v2SectionLine(
    frame: Frame,
    state: Extract<State, { at: 'v2-section' }>,
  ): boolean {
    if (state.section === 'packfile') {
      if (frame.length === 0) {
        this.#state = { at: 'end' }
        return true
      }
      return this.#sidebandPacket(frame)
    }
    if (frame.length === 0) {
      if (state.section !== 'acknowledgments') {
        this.#fail(
          `flush after the ${state.section} section at offset ${frame.offset} (expected 0001)`,
        )
      }
      if (state.ready) {
        this.#fail(`flush after "ready" at offset ${frame.offset} (expected 0001 and the pack)`)
      }
      this.#acksOnly = true
      this.#state = { at: 'end' }
      return true
    }
    if (frame.length === 1) {
      if (state.section === 'acknowledgments' && !state.ready) {
        this.#fail(
          `delim after acknowledgments without "ready" at offset ${frame.offset}`,
        )
      }
      this.#state = { at: 'v2-section-start', last: state.index }
      return true
    }
    const line = this.#unwrapSidebandAll(frame)
    if (line === null) return false
    const text = this.#text(line)
    switch (state.section) {
      case 'acknowledgments': {
        if (text === 'NAK') return true
        if (text === 'ready') {
          state.ready = true
          return true
        }
        if (text.startsWith('ACK ') && this.#isOid(text.slice(4))) return true
        return this.#badLine(frame, text)
      }
      case 'shallow-info':
        return this.#shallowLine(text) || this.#badLine(frame, text)
      case 'wanted-refs': {
        const space = text.indexOf(' ')
        if (
          space > 0 &&
          this.#isOid(text.slice(0, space)) &&
          space < text.length - 1
        )
          return true
        return this.#badLine(frame, text)
      }
      case 'packfile-uris': {
        const space = text.indexOf(' ')
        if (space > 0 && space < text.length - 1) return true
        return this.#badLine(frame, text)
      }
    }
  }
}
