import t from 'tap'
import { ProtocolError } from '../../../src/errors.js'
import {
  MAX_PACKET_SIZE,
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
  DELIM,
  FLUSH,
  chunkings,
  fixture,
  pkt,
  showPackets as show,
} from './fixtures/transcripts.js'

function decodeAll(
  parts: Buffer[],
  opts: ConstructorParameters<typeof PktLineDecoder>[0] = {},
): Packet[] {
  const decoder = new PktLineDecoder(opts)
  const packets: Packet[] = []
  for (const part of parts) packets.push(...decoder.push(part))
  decoder.end()
  return packets
}

void t.test('decodes well-formed input', (t) => {
  const cases: { name: string; input: string; want: string[] }[] = [
    { name: 'empty input', input: '', want: [] },
    { name: 'flush', input: '0000', want: ['flush'] },
    { name: 'delim', input: '0001', want: ['delim'] },
    { name: 'response-end', input: '0002', want: ['response-end'] },
    { name: 'empty data packet (0004)', input: '0004', want: ['data:'] },
    { name: 'text line', input: '000ahello\n', want: ['data:hello\n'] },
    { name: 'no trailing LF', input: '0009hello', want: ['data:hello'] },
    { name: 'upper-case hex', input: '000Ahello\n', want: ['data:hello\n'] },
    {
      name: 'mixed-case hex',
      input: `00bA${'x'.repeat(0xba - 4)}`,
      want: [`data:${'x'.repeat(0xba - 4)}`],
    },
    {
      name: 'binary payload',
      input: '0008\x00\x01\xff\n',
      want: ['data:\x00\x01\xff\n'],
    },
    {
      name: 'a v2 request',
      input: '0014command=ls-refs\n00010009peel\n0000',
      want: ['data:command=ls-refs\n', 'delim', 'data:peel\n', 'flush'],
    },
  ]
  for (const c of cases) {
    const input = Buffer.from(c.input, 'latin1')
    t.strictSame(show(parsePackets(input)), c.want, c.name)
    for (const { name, parts } of chunkings(input)) {
      t.strictSame(show(decodeAll(parts)), c.want, `${c.name}, ${name} chunks`)
    }
  }
  t.end()
})

void t.test('rejects malformed input with a code and a byte offset', (t) => {
  const cases: {
    name: string
    input: string
    code: string
    offset: number
    max?: number
  }[] = [
    { name: '0003', input: '0003', code: 'ERR_PROTOCOL_BAD_LENGTH', offset: 0 },
    {
      name: '0003 after a packet',
      input: '0009hello0003',
      code: 'ERR_PROTOCOL_BAD_LENGTH',
      offset: 9,
    },
    {
      name: 'non-hex digit',
      input: '00g0hello',
      code: 'ERR_PROTOCOL_BAD_LENGTH',
      offset: 0,
    },
    {
      name: 'raw pack where a packet belongs',
      input: '0000PACK\x00\x00\x00\x02',
      code: 'ERR_PROTOCOL_BAD_LENGTH',
      offset: 4,
    },
    {
      name: 'space in the length',
      input: '000 abc',
      code: 'ERR_PROTOCOL_BAD_LENGTH',
      offset: 0,
    },
    {
      name: 'sign in the length',
      input: '-001abc',
      code: 'ERR_PROTOCOL_BAD_LENGTH',
      offset: 0,
    },
    {
      name: 'fff1 (one over the limit)',
      input: 'fff1',
      code: 'ERR_PROTOCOL_TOO_LONG',
      offset: 0,
    },
    {
      name: 'ffff',
      input: '0000ffff',
      code: 'ERR_PROTOCOL_TOO_LONG',
      offset: 4,
    },
    {
      name: 'over a custom limit',
      input: '000ahello\n0065',
      code: 'ERR_PROTOCOL_TOO_LONG',
      offset: 10,
      max: 100,
    },
    {
      name: 'truncated payload',
      input: '000ahel',
      code: 'ERR_PROTOCOL_TRUNCATED',
      offset: 0,
    },
    {
      name: 'truncated header',
      input: '0000000',
      code: 'ERR_PROTOCOL_TRUNCATED',
      offset: 4,
    },
  ]
  for (const c of cases) {
    const input = Buffer.from(c.input, 'latin1')
    for (const { name, parts } of chunkings(input)) {
      const opts = c.max === undefined ? {} : { maxPacketSize: c.max }
      t.throws(
        () => decodeAll(parts, opts),
        { name: 'ProtocolError', code: c.code, offset: c.offset },
        `${c.name}, ${name} chunks`,
      )
    }
  }
  t.end()
})

void t.test('a decoder stays broken after an error', (t) => {
  const decoder = new PktLineDecoder()
  t.throws(() => decoder.push(Buffer.from('zzzz')), {
    code: 'ERR_PROTOCOL_BAD_LENGTH',
  })
  t.throws(() => decoder.push(Buffer.from('0000')), {
    code: 'ERR_PROTOCOL_BAD_LENGTH',
  })
  t.end()
})

void t.test('accepts exactly the largest packet', (t) => {
  const payload = Buffer.alloc(MAX_PACKET_SIZE - 4, 0x61)
  const input = Buffer.concat([Buffer.from('fff0'), payload])
  const packets = parsePackets(input)
  t.equal(packets.length, 1)
  t.equal(
    packets[0]?.kind === 'data' ? packets[0].payload.length : -1,
    MAX_PACKET_SIZE - 4,
  )
  // 1-byte chunks of a full-size packet must stay linear, not quadratic
  const decoder = new PktLineDecoder()
  let count = 0
  for (let i = 0; i < input.length; i++)
    count += decoder.push(input.subarray(i, i + 1)).length
  t.equal(count, 1)
  t.end()
})

void t.test('offset and pending', (t) => {
  const decoder = new PktLineDecoder()
  t.strictSame(show(decoder.push(Buffer.from('0009hello000'))), ['data:hello'])
  t.equal(decoder.offset, 9)
  t.equal(decoder.pending, 3)
  t.throws(
    () => {
      decoder.end()
    },
    { code: 'ERR_PROTOCOL_TRUNCATED', offset: 9 },
  )
  t.strictSame(show(decoder.push(Buffer.from('0'))), ['flush'])
  t.equal(decoder.offset, 13)
  t.equal(decoder.pending, 0)
  decoder.end()
  t.end()
})

void t.test('rejects bad options', (t) => {
  for (const maxPacketSize of [0, 3, 1.5, 70000, Number.NaN]) {
    t.throws(
      () => new PktLineDecoder({ maxPacketSize }),
      TypeError,
      `maxPacketSize ${maxPacketSize}`,
    )
  }
  t.end()
})

void t.test('real transcripts decode identically under any chunking', (t) => {
  const files = [
    'http-v0-clone/01-info-refs.res.bin',
    'http-v0-clone/02-git-upload-pack.req.bin',
    'http-v0-clone/02-git-upload-pack.res.bin',
    'http-v2-clone/01-info-refs.res.bin',
    'http-v2-clone/03-git-upload-pack.req.bin',
    'http-v2-clone/03-git-upload-pack.res.bin',
    'http-v2-features/03-git-upload-pack.res.bin',
    'ssh-v2-clone/out.bin',
    'ssh-v2-lsremote/in.bin',
  ]
  for (const file of files) {
    const input = fixture(file)
    const want = show(parsePackets(input))
    // re-encoding every packet gives back the same bytes: git writes lower-case hex
    const encoded = Buffer.concat(
      parsePackets(input).map((p) => {
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
      }),
    )
    t.ok(encoded.equals(input), `${file} re-encodes byte for byte`)
    for (const { name, parts } of chunkings(input)) {
      t.strictSame(show(decodeAll(parts)), want, `${file}, ${name} chunks`)
    }
  }
  t.end()
})

void t.test('raw mode: a raw pack after NAK (no side-band)', (t) => {
  const input = fixture('raw-v0-nosideband/res.bin')
  for (const { name, parts } of chunkings(input)) {
    const decoder = new PktLineDecoder({
      rawAfter: (p) => p.kind === 'data' && packetText(p.payload) === 'NAK',
    })
    const packets: Packet[] = []
    const raw: Buffer[] = []
    const isRaw = (): boolean => decoder.rawMode // push() flips it; a call keeps TypeScript from narrowing
    for (const part of parts) {
      if (isRaw()) {
        raw.push(part) // the caller forwards later chunks itself
        continue
      }
      packets.push(...decoder.push(part))
      if (isRaw()) raw.push(decoder.takeRest())
    }
    decoder.end() // never throws in raw mode
    t.strictSame(show(packets), ['data:NAK\n'], `${name}: one packet`)
    const pack = Buffer.concat(raw)
    t.equal(
      pack.subarray(0, 4).toString('latin1'),
      'PACK',
      `${name}: the rest starts with PACK`,
    )
    t.equal(pack.length, input.length - 8, `${name}: every byte after NAK`)
    t.equal(
      decoder.offset,
      input.length - raw.slice(1).reduce((n, b) => n + b.length, 0),
      `${name}: offset`,
    )
  }
  t.end()
})

void t.test('raw mode: receive-pack, a raw pack after the flush', (t) => {
  const input = Buffer.concat([
    pkt('old new refs/heads/main\0report-status\n'),
    FLUSH,
    Buffer.from('PACK\x00\x00\x00\x02'),
  ])
  const decoder = new PktLineDecoder({ rawAfter: (p) => p.kind === 'flush' })
  t.strictSame(show(decoder.push(input)), [
    'data:old new refs/heads/main\0report-status\n',
    'flush',
  ])
  t.equal(decoder.pending, 8)
  t.equal(decoder.takeRest().toString('latin1'), 'PACK\x00\x00\x00\x02')
  t.equal(decoder.pending, 0)
  t.equal(decoder.offset, input.length)
  const manual = new PktLineDecoder()
  t.strictSame(show(manual.push(Buffer.concat([FLUSH, DELIM]))), [
    'flush',
    'delim',
  ])
  manual.enterRawMode()
  t.strictSame(manual.push(Buffer.from('garbage')), [])
  t.equal(manual.takeRest().toString(), 'garbage')
  t.end()
})

void t.test('framer peek does not consume', (t) => {
  const framer = new PktLineFramer()
  framer.write(Buffer.from('00'))
  t.equal(framer.peek(4), null)
  framer.write(Buffer.from('08NAK\n'))
  t.equal(framer.peek(4)?.toString(), '0008')
  t.equal(framer.next()?.raw.toString(), '0008NAK\n')
  t.equal(framer.next(), null)
  t.end()
})

void t.test('encoders', (t) => {
  t.equal(encodePacket('hello\n').toString('latin1'), '000ahello\n')
  t.equal(
    encodePacket(new Uint8Array([1, 2])).toString('latin1'),
    '0006\x01\x02',
  )
  t.equal(encodePacket('').toString('latin1'), '0004')
  t.equal(
    encodePacket('é').toString('latin1'),
    '0006\xc3\xa9',
    'strings are UTF-8',
  )
  t.equal(
    encodePacket(Buffer.alloc(MAX_PACKET_SIZE - 4)).length,
    MAX_PACKET_SIZE,
  )
  t.throws(() => encodePacket(Buffer.alloc(MAX_PACKET_SIZE - 3)), RangeError)
  t.equal(encodeFlush().toString(), '0000')
  t.equal(encodeDelim().toString(), '0001')
  t.equal(encodeResponseEnd().toString(), '0002')
  t.equal(
    encodeError('upload-pack: not our ref').toString(),
    '0021ERR upload-pack: not our ref\n',
  )
  t.end()
})

void t.test('encodeSideband splits and round-trips', (t) => {
  const data = Buffer.alloc(200_000)
  for (let i = 0; i < data.length; i++) data[i] = i % 251
  const cases: { max?: number; packets: number; largest: number }[] = [
    { packets: 4, largest: MAX_PACKET_SIZE },
    { max: 1000, packets: Math.ceil(200_000 / 995), largest: 1000 },
  ]
  for (const c of cases) {
    const packets =
      c.max === undefined
        ? encodeSideband(1, data)
        : encodeSideband(2, data, c.max)
    t.equal(packets.length, c.packets, `max ${String(c.max)}: packet count`)
    t.equal(
      Math.max(...packets.map((p) => p.length)),
      c.largest,
      `max ${String(c.max)}: largest packet`,
    )
    const decoded = parsePackets(Buffer.concat(packets))
    const joined = Buffer.concat(
      decoded.map((p) => {
        if (p.kind !== 'data') throw new Error('not data')
        t.equal(p.payload[0], c.max === undefined ? 1 : 2)
        return p.payload.subarray(1)
      }),
    )
    t.ok(joined.equals(data), `max ${String(c.max)}: data round-trips`)
  }
  t.strictSame(encodeSideband(1, Buffer.alloc(0)), [], 'empty data: no packets')
  t.equal(
    Buffer.concat(encodeSideband(3, Buffer.from('fatal\n'))).toString('latin1'),
    '000b\x03fatal\n',
  )
  t.throws(() => encodeSideband(1, data, 5), TypeError)
  t.end()
})

void t.test('packetText and errorMessage', (t) => {
  const text: [string, string][] = [
    ['NAK\n', 'NAK'],
    ['NAK', 'NAK'],
    ['two\n\n', 'two\n'],
    ['', ''],
    ['\n', ''],
    ['caf\xc3\xa9\n', 'café'],
  ]
  for (const [input, want] of text)
    t.equal(
      packetText(Buffer.from(input, 'latin1')),
      want,
      JSON.stringify(input),
    )
  const errors: [string, string | null][] = [
    ['ERR upload-pack: not our ref\n', 'upload-pack: not our ref'],
    ['ERR \n', ''],
    ['ERR', null],
    ['ERRx', null],
    ['err lower case', null],
    ['NAK\n', null],
  ]
  for (const [input, want] of errors)
    t.equal(errorMessage(Buffer.from(input)), want, JSON.stringify(input))
  // the real thing: HTTP 200 with an ERR body, no trailing LF
  const [real] = parsePackets(
    fixture('http-v2-unknown/03-git-upload-pack.res.bin'),
  )
  t.equal(
    real?.kind === 'data' ? errorMessage(real.payload) : undefined,
    `upload-pack: not our ref ${'1234567890'.repeat(4)}`,
  )
  t.end()
})

void t.test('ProtocolError is what the decoder throws', (t) => {
  try {
    parsePackets(Buffer.from('0003'))
    t.fail('no throw')
  } catch (err) {
    t.ok(err instanceof ProtocolError)
    t.match(err, { statusCode: 400, expose: true })
  }
  t.end()
})
