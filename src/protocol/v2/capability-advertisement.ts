/**
 * The protocol v2 capability advertisement (gitprotocol-v2): the body of
 * `GET info/refs` with `Git-Protocol: version=2`, and the first thing an
 * upload-pack started with GIT_PROTOCOL=version=2 says over ssh.
 *
 *   000eversion 2\n
 *   <key>[=<value>]\n ...       agent=git/2.39.5, ls-refs=unborn, fetch=shallow wait-for-done filter, ...
 *   0000
 *
 * Small, so it is handled as a whole buffer.
 */
import { ProtocolError } from '../../errors.js'
import { PktLineFramer, encodePacket, packetText } from '../pkt-line.js'
import type { Frame } from '../pkt-line.js'

export interface CapabilityRemovalV2 {
  /** Features to remove from the `fetch=` value (`ref-in-want`, `sideband-all`, `packfile-uris`). */
  fetchFeatures: ReadonlySet<string>
  /** Whole capability lines to drop, by key (`bundle-uri`, `promisor-remote`). */
  capabilities: ReadonlySet<string>
}

function splitCapability(text: string): [string, string | null] {
  const eq = text.indexOf('=')
  return eq < 0 ? [text, null] : [text.slice(0, eq), text.slice(eq + 1)]
}

function isVersion2(frame: Frame | null): boolean {
  return (
    frame !== null &&
    frame.length > 4 &&
    packetText(frame.raw.subarray(4)) === 'version 2'
  )
}

function firstFrame(framer: PktLineFramer): Frame | null {
  try {
    return framer.next()
  } catch {
    return null
  }
}

function truncated(framer: PktLineFramer): ProtocolError {
  return new ProtocolError(
    'ERR_PROTOCOL_TRUNCATED',
    `v2 capability advertisement does not end with a flush (offset ${framer.offset})`,
    { offset: framer.offset },
  )
}

/**
 * `body` without the capabilities and fetch features named in `remove`.
 * Other packets, and any bytes after the final flush, stay byte-identical;
 * if nothing is removed the same Buffer is returned. Input that does not
 * start with `version 2` is returned unchanged. Throws ProtocolError for a
 * malformed or truncated v2 advertisement.
 */
export function filterCapabilityAdvertisementV2(
  body: Buffer,
  remove: CapabilityRemovalV2,
): Buffer {
  const framer = new PktLineFramer()
  framer.write(body)
  const version = firstFrame(framer)
  if (version === null || !isVersion2(version)) return body
  const out: Buffer[] = [version.raw]
  let changed = false
  for (;;) {
    const frame = framer.next()
    if (frame === null) throw truncated(framer)
    if (frame.length < 4) {
      out.push(frame.raw)
      if (frame.length === 0) break
      continue
    }
    const payload = frame.raw.subarray(4)
    const text = packetText(payload)
    const [key, value] = splitCapability(text)
    if (remove.capabilities.has(key)) {
      changed = true
      continue
    }
    if (key === 'fetch' && value !== null) {
      // the features as latin1, one char per byte: kept ones stay byte-identical
      // (a UTF-8 round trip would turn each invalid byte into 3, and could
      // even push the line over the packet limit)
      const lf = payload[payload.length - 1] === 0x0a
      const features = payload
        .toString(
          'latin1',
          'fetch='.length,
          lf ? payload.length - 1 : payload.length,
        )
        .split(' ')
      const kept = features.filter((f) => !remove.fetchFeatures.has(f))
      if (kept.length !== features.length) {
        changed = true
        const nonEmpty = kept.filter((f) => f !== '')
        const line =
          nonEmpty.length > 0 ? `fetch=${nonEmpty.join(' ')}` : 'fetch'
        out.push(encodePacket(Buffer.from(lf ? `${line}\n` : line, 'latin1')))
        continue
      }
    }
    out.push(frame.raw)
  }
  if (!changed) return body
  out.push(framer.takeRest())
  return Buffer.concat(out)
}

export interface CapabilityAdvertisementV2 {
  /** Key to value (`fetch` → `shallow wait-for-done filter`); null for a key without `=`. */
  capabilities: Map<string, string | null>
}

/** Parses a complete v2 capability advertisement. Throws ProtocolError if it is anything else. */
export function parseCapabilityAdvertisementV2(
  body: Buffer,
): CapabilityAdvertisementV2 {
  const framer = new PktLineFramer()
  framer.write(body)
  const version = framer.next()
  if (!isVersion2(version)) {
    throw new ProtocolError(
      'ERR_PROTOCOL_BAD_ADVERTISEMENT',
      'not a v2 capability advertisement',
      {
        offset: 0,
      },
    )
  }
  const capabilities = new Map<string, string | null>()
  for (;;) {
    const frame = framer.next()
    if (frame === null) throw truncated(framer)
    if (frame.length === 0) break
    if (frame.length < 4) {
      throw new ProtocolError(
        'ERR_PROTOCOL_BAD_ADVERTISEMENT',
        `unexpected special packet in the capability list at offset ${frame.offset}`,
        { offset: frame.offset },
      )
    }
    const [key, value] = splitCapability(packetText(frame.raw.subarray(4)))
    capabilities.set(key, value)
  }
  if (framer.pending > 0) {
    throw new ProtocolError(
      'ERR_PROTOCOL_BAD_ADVERTISEMENT',
      `data after the final flush at offset ${framer.offset}`,
      { offset: framer.offset },
    )
  }
  return { capabilities }
}
