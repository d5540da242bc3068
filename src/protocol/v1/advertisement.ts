/**
 * The v0/v1 ref advertisement (gitprotocol-pack, gitprotocol-http):
 *
 *   001e# service=git-upload-pack\n  0000        smart HTTP only
 *   000eversion 1\n                               v1 only
 *   <oid> <ref>\0<capabilities>\n                 first ref (an empty repository
 *   <oid> <ref>\n ...                              sends <zero-id> capabilities^{})
 *   shallow <oid> ...                             when the server repository is shallow
 *   0000
 *
 * `createAdvertisementFilterV1` rewrites only the capability list of the
 * first ref line and passes every other byte through; `parseAdvertisementV1`
 * reads a whole advertisement.
 */
import { Transform } from 'node:stream'
import type { TransformCallback } from 'node:stream'
import { ProtocolError, toError } from '../../errors.js'
import {
  PktLineFramer,
  encodePacket,
  errorMessage,
  packetText,
  parsePackets,
} from '../pkt-line.js'
import type { Frame } from '../pkt-line.js'
import { isObjectId, quoteLine } from '../request-values.js'

type FilterState = 'start' | 'service-flush' | 'after-service' | 'refs' | 'pass'

function textOf(frame: Frame): string {
  return packetText(frame.raw.subarray(4))
}

function isVersionLine(frame: Frame): boolean {
  return frame.length > 4 && /^version \d+$/.test(textOf(frame))
}

/** The capability name of a word: the part before `=`. */
function capabilityName(word: string): string {
  const eq = word.indexOf('=')
  return eq < 0 ? word : word.slice(0, eq)
}

/**
 * The first ref line with the capabilities in `remove` taken out, or the
 * same bytes if there is nothing to take out. Works on bytes (latin1), so
 * everything else in the line stays byte-identical.
 */
function rewriteFirstRef(frame: Frame, remove: ReadonlySet<string>): Buffer {
  const payload = frame.raw.subarray(4)
  const nul = payload.indexOf(0)
  if (nul < 0) return frame.raw
  const hasLf = payload[payload.length - 1] === 0x0a
  const caps = payload.toString(
    'latin1',
    nul + 1,
    hasLf ? payload.length - 1 : payload.length,
  )
  const words = caps.split(' ')
  const kept = words.filter((w) => w === '' || !remove.has(capabilityName(w)))
  if (kept.length === words.length) return frame.raw
  const line = Buffer.concat([
    payload.subarray(0, nul + 1),
    Buffer.from(
      kept.filter((w) => w !== '').join(' ') + (hasLf ? '\n' : ''),
      'latin1',
    ),
  ])
  return encodePacket(line)
}

class AdvertisementFilterV1 extends Transform {
  readonly #remove: ReadonlySet<string>
  readonly #framer = new PktLineFramer()
  #state: FilterState = 'start'

  constructor(remove: ReadonlySet<string>) {
    super()
    this.#remove = remove
  }

  override _transform(
    chunk: Buffer,
    _encoding: BufferEncoding,
    callback: TransformCallback,
  ): void {
    if (this.#state === 'pass') {
      callback(null, chunk)
      return
    }
    this.#framer.write(chunk)
    try {
      for (
        let frame = this.#framer.next();
        frame !== null;
        frame = this.#framer.next()
      ) {
        this.#emit(this.#handle(frame))
        if (this.#isPassing()) {
          this.#emit(this.#framer.takeRest())
          break
        }
      }
    } catch (err) {
      callback(toError(err))
      return
    }
    callback()
  }

  override _flush(callback: TransformCallback): void {
    if (this.#state !== 'pass' && this.#framer.pending > 0) {
      callback(
        new ProtocolError(
          'ERR_PROTOCOL_TRUNCATED',
          `advertisement ended inside a pkt-line at offset ${this.#framer.offset}`,
          { offset: this.#framer.offset },
        ),
      )
      return
    }
    callback()
  }

  /** A method, not an inline test, because #handle() changes the state behind TypeScript's back. */
  #isPassing(): boolean {
    return this.#state === 'pass'
  }

  #emit(bytes: Buffer): void {
    if (bytes.length > 0) this.push(bytes)
  }

  /** The bytes to send for `frame`, advancing the state. */
  #handle(frame: Frame): Buffer {
    const isData = frame.length >= 4
    if (isData && errorMessage(frame.raw.subarray(4)) !== null) {
      this.#state = 'pass'
      return frame.raw
    }
    switch (this.#state) {
      case 'start':
        if (isData && textOf(frame).startsWith('# service=')) {
          this.#state = 'service-flush'
          return frame.raw
        }
        return this.#afterService(frame)
      case 'service-flush':
        this.#state = 'after-service'
        if (frame.length === 0) return frame.raw
        return this.#afterService(frame)
      case 'after-service':
        return this.#afterService(frame)
      case 'refs':
        return this.#firstRef(frame)
      case 'pass':
        return frame.raw
    }
  }

  #afterService(frame: Frame): Buffer {
    if (isVersionLine(frame)) {
      // `version 1` precedes the refs; anything else (v2) is not ours to touch
      this.#state = textOf(frame) === 'version 1' ? 'refs' : 'pass'
      return frame.raw
    }
    return this.#firstRef(frame)
  }

  #firstRef(frame: Frame): Buffer {
    this.#state = 'pass'
    return frame.length >= 4 ? rewriteFirstRef(frame, this.#remove) : frame.raw
  }
}

/**
 * A Transform that removes the capabilities named in `removeCapabilities`
 * (matched on the part before `=`) from a v0/v1 advertisement, in the HTTP
 * form (`# service=` line first) or the ssh form. Everything else, including
 * what follows the advertisement on an ssh stream, passes through unchanged,
 * and a v2 advertisement passes through whole. Buffers at most one packet;
 * errors with ProtocolError on a malformed packet or an advertisement cut
 * inside a packet.
 */
export function createAdvertisementFilterV1(
  removeCapabilities: ReadonlySet<string>,
): Transform {
  return new AdvertisementFilterV1(removeCapabilities)
}

export interface AdvertisementV1 {
  version: 0 | 1
  /** From the `# service=` line (smart HTTP), null in the ssh form. */
  service: string | null
  /** Every advertised ref in order, peeled `^{}` entries included; not the `capabilities^{}` placeholder. */
  refs: { oid: string; name: string }[]
  capabilities: string[]
  /** `shallow <oid>` lines (a shallow server repository). */
  shallows: string[]
}

function badAdvertisement(message: string): ProtocolError {
  return new ProtocolError('ERR_PROTOCOL_BAD_ADVERTISEMENT', message)
}

const ZERO_ID = /^0+$/

/** Parses a complete v0/v1 advertisement. Throws ProtocolError if it is anything else. */
export function parseAdvertisementV1(body: Buffer): AdvertisementV1 {
  const packets = parsePackets(body)
  const result: AdvertisementV1 = {
    version: 0,
    service: null,
    refs: [],
    capabilities: [],
    shallows: [],
  }
  let i = 0
  const textAt = (index: number): string | null => {
    const p = packets[index]
    return p?.kind === 'data' ? packetText(p.payload) : null
  }
  const first = packets[0]
  if (first?.kind === 'data') {
    const err = errorMessage(first.payload)
    if (err !== null) throw badAdvertisement(`the server sent ERR: ${err}`)
  }
  const service = textAt(0)
  if (service?.startsWith('# service=') === true) {
    result.service = service.slice('# service='.length)
    if (packets[1]?.kind !== 'flush') {
      throw badAdvertisement('no flush after the # service line')
    }
    i = 2
  }
  const version = textAt(i)
  if (version === 'version 1') {
    result.version = 1
    i++
  } else if (version !== null && /^version \d+$/.test(version)) {
    throw badAdvertisement(`not a v0/v1 advertisement: ${quoteLine(version)}`)
  }
  let isFirstRef = true
  for (; i < packets.length; i++) {
    const p = packets[i]
    if (p === undefined || p.kind === 'flush') break
    if (p.kind !== 'data') {
      throw badAdvertisement(`unexpected ${p.kind} packet in the ref list`)
    }
    let line = p.payload.toString('utf8')
    if (line.endsWith('\n')) line = line.slice(0, -1)
    if (isFirstRef) {
      isFirstRef = false
      const nul = line.indexOf('\0')
      if (nul >= 0) {
        result.capabilities = line
          .slice(nul + 1)
          .split(' ')
          .filter((w) => w !== '')
        line = line.slice(0, nul)
      }
    }
    if (line.startsWith('shallow ')) {
      const oid = line.slice('shallow '.length)
      if (!isObjectId(oid)) {
        throw badAdvertisement(`bad shallow line ${quoteLine(line)}`)
      }
      result.shallows.push(oid)
      continue
    }
    const space = line.indexOf(' ')
    const oid = line.slice(0, space)
    const name = line.slice(space + 1)
    if (space < 0 || !isObjectId(oid) || name === '' || name.includes('\0')) {
      throw badAdvertisement(`bad ref line ${quoteLine(line)}`)
    }
    if (name === 'capabilities^{}' && ZERO_ID.test(oid)) continue
    result.refs.push({ oid, name })
  }
  if (packets[i]?.kind !== 'flush') {
    throw badAdvertisement('the ref list does not end with a flush')
  }
  if (i + 1 < packets.length) {
    throw badAdvertisement('data after the final flush')
  }
  return result
}
