import fc from 'fast-check'
import t from 'tap'
import { ProtocolError } from '../../../src/errors.js'
import {
  MAX_PACKET_SIZE,
  MAX_PAYLOAD_SIZE,
  PktLineDecoder,
  PktLineFramer,
  encodeDelim,
  encodeError,
  encodeFlush,
  encodePacket,
  encodeResponseEnd,
  encodeSideband,
  errorMessage,
  packetText,
  parsePackets,
} from '../../../src/protocol/pkt-line.js'
import type { Packet } from '../../../src/protocol/pkt-line.js'
import {
  chunkingArb,
  cut,
  garbageArb,
  holds,
  outcome,
} from './fixtures/properties.js'
import type { Outcome } from './fixtures/properties.js'
import { showPackets as show } from './fixtures/transcripts.js'

/** Decodes `parts` with one decoder; also returns what came out before an error. */
function decode(
  parts: Buffer[],
  opts: ConstructorParameters<typeof PktLineDecoder>[0] = {},
): { packets: string[]; result: Outcome<null> } {
  const decoder = new PktLineDecoder(opts)
  const packets: string[] = []
  const total = parts.reduce((n, p) => n + p.length, 0)
  const result = outcome(total, () => {
    for (const part of parts) packets.push(...show(decoder.push(part)))
    decoder.end()
    return null
  })
  return { packets, result }
}

const smallPacketArb: fc.Arbitrary<Packet> = fc.oneof(
  { weight: 1, arbitrary: fc.constant<Packet>({ kind: 'flush' }) },
  { weight: 1, arbitrary: fc.constant<Packet>({ kind: 'delim' }) },
  { weight: 1, arbitrary: fc.constant<Packet>({ kind: 'response-end' }) },
  {
    weight: 6,
    arbitrary: fc
      .uint8Array({ maxLength: 64 })
      .map((b): Packet => ({ kind: 'data', payload: Buffer.from(b) })),
  },
)

/** Mostly small packets; now and then one near or at the largest size. */
const packetArb: fc.Arbitrary<Packet> = fc.oneof(
  { weight: 15, arbitrary: smallPacketArb },
  {
    weight: 1,
    arbitrary: fc
      .integer({ min: MAX_PAYLOAD_SIZE - 300, max: MAX_PAYLOAD_SIZE })
      .map((n): Packet => ({
        kind: 'data',
        payload: Buffer.alloc(n, n & 0xff),
      })),
  },
)

function encode(p: Packet): Buffer {
  switch (p.kind) {
    case 'flush':
      return encodeFlush()
    case 'delim':
      return encodeDelim()
    case 'response-end':
      return encodeResponseEnd()
    case 'data':
      return encodePacket(p.payload)
  }
}

const streamArb = fc.array(packetArb, { maxLength: 12 })

void t.test(
  'arbitrary bytes, arbitrarily chunked, fail only with ProtocolError',
  (t) => {
    holds(
      t,
      'decoder',
      fc.property(garbageArb, chunkingArb, (buf, chunking) => {
        decode(cut(buf, chunking))
      }),
      { numRuns: 1000 },
    )
    holds(
      t,
      'parsePackets',
      fc.property(garbageArb, (buf) => {
        outcome(buf.length, () => parsePackets(buf))
      }),
      { numRuns: 500 },
    )
    holds(
      t,
      'framer, with a small maxPacketSize',
      fc.property(
        garbageArb,
        chunkingArb,
        fc.integer({ min: 4, max: 0xffff }),
        (buf, chunking, maxPacketSize) => {
          const framer = new PktLineFramer({ maxPacketSize })
          outcome(buf.length, () => {
            for (const part of cut(buf, chunking)) {
              framer.write(part)
              while (framer.next() !== null);
            }
          })
        },
      ),
      { numRuns: 500 },
    )
    t.end()
  },
)

void t.test('chunking does not change the result', (t) => {
  holds(
    t,
    'same packets, or the same error at the same offset',
    fc.property(garbageArb, chunkingArb, (buf, chunking) => {
      const whole = decode([buf])
      const parts = decode(cut(buf, chunking))
      if (whole.result.ok) {
        return (
          parts.result.ok &&
          fc.stringify(parts.packets) === fc.stringify(whole.packets)
        )
      }
      if (fc.stringify(parts.result) !== fc.stringify(whole.result))
        return false
      // before failing, a chunked decoder hands out only packets that precede the error
      const offset = whole.result.offset ?? buf.length
      const before = decode([buf.subarray(0, offset)])
      return (
        fc.stringify(before.packets.slice(0, parts.packets.length)) ===
        fc.stringify(parts.packets)
      )
    }),
    { numRuns: 1000 },
  )
  holds(
    t,
    'the framer hands out every byte once, at consecutive offsets',
    fc.property(garbageArb, chunkingArb, (buf, chunking) => {
      const framer = new PktLineFramer()
      const seen: Buffer[] = []
      let failed = false
      for (const part of cut(buf, chunking)) {
        framer.write(part)
        const r = outcome(buf.length, () => {
          for (let f = framer.next(); f !== null; f = framer.next()) {
            if (f.offset !== seen.reduce((n, b) => n + b.length, 0)) {
              throw new Error(`frame at ${f.offset} is not consecutive`)
            }
            seen.push(Buffer.from(f.raw))
          }
        })
        if (!r.ok) {
          failed = true
          break
        }
      }
      if (failed) return true
      return Buffer.concat([...seen, framer.takeRest()]).equals(buf)
    }),
    { numRuns: 500 },
  )
  t.end()
})

void t.test('encode/decode round-trips', (t) => {
  holds(
    t,
    'encoded packets decode to the same packets, whatever the chunk boundaries',
    fc.property(streamArb, chunkingArb, (packets, chunking) => {
      const buf = Buffer.concat(packets.map(encode))
      const { packets: got, result } = decode(cut(buf, chunking))
      return result.ok && fc.stringify(got) === fc.stringify(show(packets))
    }),
    { numRuns: 300 },
  )
  holds(
    t,
    'a stream cut inside a packet is ERR_PROTOCOL_TRUNCATED at the packet, at a boundary it is fine',
    fc.property(streamArb, fc.nat(), chunkingArb, (packets, at, chunking) => {
      const frames = packets.map(encode)
      const buf = Buffer.concat(frames)
      const end = at % (buf.length + 1)
      const { result } = decode(cut(buf.subarray(0, end), chunking))
      let start = 0
      for (const f of frames) {
        if (end === start) break
        if (end < start + f.length) {
          return (
            !result.ok &&
            result.code === 'ERR_PROTOCOL_TRUNCATED' &&
            result.offset === start
          )
        }
        start += f.length
      }
      return result.ok
    }),
    { numRuns: 300 },
  )
  holds(
    t,
    'raw mode after a flush: packets before, raw bytes after, under any chunking',
    fc.property(
      fc.array(
        packetArb.filter((p) => p.kind !== 'flush'),
        { maxLength: 6 },
      ),
      fc.uint8Array({ maxLength: 300 }),
      chunkingArb,
      (packets, raw, chunking) => {
        const head = Buffer.concat([...packets.map(encode), encodeFlush()])
        const buf = Buffer.concat([head, raw])
        const decoder = new PktLineDecoder({
          rawAfter: (p) => p.kind === 'flush',
        })
        const got: Packet[] = []
        for (const part of cut(buf, chunking)) got.push(...decoder.push(part))
        decoder.end()
        return (
          decoder.rawMode &&
          decoder.offset === head.length &&
          fc.stringify(show(got)) ===
            fc.stringify(show([...packets, { kind: 'flush' }])) &&
          decoder.takeRest().equals(Buffer.from(raw))
        )
      },
    ),
    { numRuns: 300 },
  )
  holds(
    t,
    'side-band: packets within the limit, channel byte first, data back in order',
    fc.property(
      fc.constantFrom<1 | 2 | 3>(1, 2, 3),
      fc.uint8Array({ maxLength: 3000 }),
      fc.oneof(
        fc.constant(MAX_PACKET_SIZE),
        fc.constant(1000),
        fc.integer({ min: 6, max: 80 }),
      ),
      (channel, data, max) => {
        const packets = encodeSideband(channel, data, max)
        const decoded = parsePackets(Buffer.concat(packets))
        const parts: Buffer[] = []
        for (const [i, p] of decoded.entries()) {
          const raw = packets[i]
          if (p.kind !== 'data' || raw === undefined || raw.length > max)
            return false
          if (p.payload[0] !== channel || p.payload.length < 2) return false
          parts.push(p.payload.subarray(1))
        }
        return Buffer.concat(parts).equals(Buffer.from(data))
      },
    ),
    { numRuns: 300 },
  )
  holds(
    t,
    'ERR packets and packetText',
    fc.property(fc.string({ unit: 'grapheme', maxLength: 200 }), (message) => {
      const line = message.replace(/\n/g, ' ')
      const payload = encodeError(line).subarray(4)
      return (
        errorMessage(payload) === line &&
        packetText(encodePacket(`${line}\n`).subarray(4)) === line &&
        packetText(encodePacket(line).subarray(4)) === line
      )
    }),
    { numRuns: 300 },
  )
  t.end()
})

/** `length` as 4 hex digits, each in upper or lower case as `upper` says. */
function hexHeader(length: number, upper: boolean[]): string {
  return Array.from(length.toString(16).padStart(4, '0'))
    .map((c, i) => (upper[i] === true ? c.toUpperCase() : c))
    .join('')
}

void t.test('length limits and malformed headers', (t) => {
  const prefixArb = fc
    .array(smallPacketArb, { maxLength: 8 })
    .map((ps) => Buffer.concat(ps.map(encode)))
  const caseArb = fc.array(fc.boolean(), { minLength: 4, maxLength: 4 })
  holds(
    t,
    'a length over 65520 is ERR_PROTOCOL_TOO_LONG at its header, before its payload arrives',
    fc.property(
      prefixArb,
      fc.integer({ min: MAX_PACKET_SIZE + 1, max: 0xffff }),
      caseArb,
      fc.uint8Array({ maxLength: 100 }),
      chunkingArb,
      (prefix, length, upper, after, chunking) => {
        const buf = Buffer.concat([
          prefix,
          Buffer.from(hexHeader(length, upper), 'latin1'),
          after,
        ])
        const { result } = decode(cut(buf, chunking))
        return (
          !result.ok &&
          result.code === 'ERR_PROTOCOL_TOO_LONG' &&
          result.offset === prefix.length
        )
      },
    ),
    { numRuns: 500 },
  )
  holds(
    t,
    'a length over maxPacketSize is refused, one at the limit is accepted',
    fc.property(
      fc.integer({ min: 5, max: 2000 }),
      fc.boolean(),
      (maxPacketSize, over) => {
        const length = over ? maxPacketSize + 1 : maxPacketSize
        const buf = Buffer.concat([
          Buffer.from(hexHeader(length, []), 'latin1'),
          Buffer.alloc(length - 4, 0x61),
        ])
        const { packets, result } = decode([buf], { maxPacketSize })
        return over
          ? !result.ok &&
              result.code === 'ERR_PROTOCOL_TOO_LONG' &&
              result.offset === 0
          : result.ok && packets.length === 1
      },
    ),
    { numRuns: 300 },
  )
  holds(
    t,
    'a header with a non-hex byte is ERR_PROTOCOL_BAD_LENGTH at its offset',
    fc.property(
      prefixArb,
      fc.integer({ min: 4, max: MAX_PACKET_SIZE }),
      fc.nat({ max: 3 }),
      fc
        .nat({ max: 255 })
        .filter((b) => !/[0-9a-fA-F]/.test(String.fromCharCode(b))),
      fc.uint8Array({ maxLength: 20 }),
      chunkingArb,
      (prefix, length, at, byte, after, chunking) => {
        const head = Buffer.from(hexHeader(length, []), 'latin1')
        head[at] = byte
        const buf = Buffer.concat([prefix, head, after])
        const { result } = decode(cut(buf, chunking))
        return (
          !result.ok &&
          result.code === 'ERR_PROTOCOL_BAD_LENGTH' &&
          result.offset === prefix.length
        )
      },
    ),
    { numRuns: 500 },
  )
  holds(
    t,
    '0003 is ERR_PROTOCOL_BAD_LENGTH',
    fc.property(prefixArb, chunkingArb, (prefix, chunking) => {
      const buf = Buffer.concat([prefix, Buffer.from('0003', 'latin1')])
      const { result } = decode(cut(buf, chunking))
      return (
        !result.ok &&
        result.code === 'ERR_PROTOCOL_BAD_LENGTH' &&
        result.offset === prefix.length
      )
    }),
    { numRuns: 200 },
  )
  holds(
    t,
    'the encoder refuses a payload over 65516 bytes (RangeError, a caller bug, not input)',
    fc.property(
      fc.integer({ min: MAX_PAYLOAD_SIZE + 1, max: MAX_PAYLOAD_SIZE + 50 }),
      (n) => {
        try {
          encodePacket(Buffer.alloc(n))
          return false
        } catch (err) {
          return err instanceof RangeError && !(err instanceof ProtocolError)
        }
      },
    ),
    { numRuns: 50 },
  )
  t.end()
})
