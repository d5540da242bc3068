import t from 'tap'
import { PktLineFramer, parsePackets } from '../../../src/protocol/pkt-line.js'
import {
  UploadPackResponseChecker,
  sidebandOf,
} from '../../../src/protocol/upload-pack-response.js'
import type { UploadPackResponseCheckerOptions } from '../../../src/protocol/upload-pack-response.js'
import {
  DELIM,
  FLUSH,
  channelOne,
  checkResponse as check,
  chunkings,
  fixture,
  pkt,
  repo,
  splitAfterFlush,
} from './fixtures/transcripts.js'

const V0: UploadPackResponseCheckerOptions = {
  protocol: 'v0',
  sideband: 'side-band-64k',
  expectPack: true,
}
const V2: UploadPackResponseCheckerOptions = {
  protocol: 'v2',
  sideband: 'none',
  expectPack: true,
}

const http = (name: string): Buffer =>
  fixture(`http-${name}-git-upload-pack.res.bin`)
/** The server's side of an ssh conversation after `n` flushes (advertisement, ls-refs answer). */
const ssh = (name: string, n: number): Buffer =>
  splitAfterFlush(fixture(`ssh-${name}/out.bin`), n)[1]

interface Case {
  name: string
  response: Buffer
  opts: UploadPackResponseCheckerOptions
  objects: number
  shallow?: string[]
  /** Whether the capture carries progress (channel 2) packets. */
  progress?: boolean
}

const captured: Case[] = [
  {
    name: 'v0 clone (progress)',
    response: http('v0-clone/02'),
    opts: V0,
    objects: 17,
    progress: true,
  },
  {
    name: 'v0 depth 1, preflight',
    response: http('v0-depth1/02'),
    opts: { ...V0, expectPack: false },
    objects: 0,
    shallow: [repo.main],
  },
  {
    name: 'v0 depth 1 (progress)',
    response: http('v0-depth1/03'),
    opts: V0,
    objects: 5,
    shallow: [repo.main],
    progress: true,
  },
  {
    name: 'v0 filter blob:none',
    response: http('v0-filter/02'),
    opts: V0,
    objects: 11,
  },
  {
    name: 'v0 lazy blob fetch',
    response: http('v0-filter/04'),
    opts: V0,
    objects: 3,
  },
  {
    name: 'v0 single branch',
    response: http('v0-branch/02'),
    opts: V0,
    objects: 10,
  },
  {
    name: 'v0 shallow-since, preflight',
    response: http('v0-since/02'),
    opts: { ...V0, expectPack: false },
    objects: 0,
    shallow: [repo.mainParent],
  },
  {
    name: 'v0 shallow-since',
    response: http('v0-since/03'),
    opts: V0,
    objects: 8,
    shallow: [repo.mainParent],
  },
  { name: 'v0 mirror', response: http('v0-mirror/02'), opts: V0, objects: 17 },
  {
    name: 'v0 fetch with haves (ACK common)',
    response: http('v0-fetch/02'),
    opts: V0,
    objects: 6,
  },
  {
    name: 'v0 CI fetch by id, preflight',
    response: http('v0-ci/02'),
    opts: { ...V0, expectPack: false },
    objects: 0,
    shallow: [repo.main],
  },
  {
    name: 'v0 CI fetch by id',
    response: http('v0-ci/03'),
    opts: V0,
    objects: 5,
    shallow: [repo.main],
  },
  {
    name: 'v0 CI fetch --no-tags',
    response: http('v0-ci-notags/03'),
    opts: V0,
    objects: 5,
    shallow: [repo.main],
  },
  { name: 'v1 clone', response: http('v1-clone/02'), opts: V0, objects: 17 },
  {
    name: 'v0 without side-band (raw pack)',
    response: fixture('raw-v0-nosideband/res.bin'),
    opts: { ...V0, sideband: 'none' },
    objects: 13,
  },
  {
    name: 'v0 side-band (1000-byte packets, progress)',
    response: fixture('raw-v0-sideband/res.bin'),
    opts: { ...V0, sideband: 'side-band' },
    objects: 13,
    progress: true,
  },
  {
    name: 'v0 clone over ssh',
    response: ssh('v0-clone', 1),
    opts: V0,
    objects: 17,
  },
  {
    name: 'v0 depth 1 over ssh',
    response: ssh('v0-depth1', 1),
    opts: V0,
    objects: 5,
    shallow: [repo.main],
  },
  {
    name: 'v0 fetch over ssh',
    response: ssh('v0-fetch', 1),
    opts: V0,
    objects: 6,
  },
  {
    name: 'v1 clone over ssh',
    response: ssh('v1-clone', 1),
    opts: V0,
    objects: 17,
  },
  {
    name: 'v2 clone (progress)',
    response: http('v2-clone/03'),
    opts: V2,
    objects: 17,
    progress: true,
  },
  {
    name: 'v2 depth 1 (progress)',
    response: http('v2-depth1/03'),
    opts: V2,
    objects: 5,
    shallow: [repo.main],
    progress: true,
  },
  {
    name: 'v2 shallow-since',
    response: http('v2-since/03'),
    opts: V2,
    objects: 8,
    shallow: [repo.mainParent],
  },
  {
    name: 'v2 filter blob:none',
    response: http('v2-filter/03'),
    opts: V2,
    objects: 11,
  },
  {
    name: 'v2 lazy blob fetch',
    response: http('v2-filter/05'),
    opts: V2,
    objects: 3,
  },
  {
    name: 'v2 single branch',
    response: http('v2-branch/03'),
    opts: V2,
    objects: 10,
  },
  { name: 'v2 mirror', response: http('v2-mirror/03'), opts: V2, objects: 17 },
  {
    name: 'v2 fetch with haves (acknowledgments)',
    response: http('v2-fetch/03'),
    opts: V2,
    objects: 6,
  },
  {
    name: 'v2 CI fetch by id',
    response: http('v2-ci/03'),
    opts: V2,
    objects: 5,
    shallow: [repo.main],
  },
  {
    name: 'v2 CI fetch --no-tags',
    response: http('v2-ci-notags/02'),
    opts: V2,
    objects: 5,
    shallow: [repo.main],
  },
  {
    name: 'v2 ref-in-want + sideband-all',
    response: http('v2-features/03'),
    opts: { ...V2, sidebandAll: true },
    objects: 17,
  },
  {
    name: 'v2 clone over ssh (progress after the pack)',
    response: ssh('v2-clone', 2),
    opts: V2,
    objects: 17,
    progress: true,
  },
  {
    name: 'v2 sha256 clone over ssh',
    response: ssh('v2-sha256-clone', 2),
    opts: { ...V2, objectFormat: 'sha256' },
    objects: 17,
  },
]

/** Channel-2 packets in the pack phase of a stored response (sideband-all responses excluded). */
function progressPackets(stored: Buffer): number {
  return parsePackets(stored).filter(
    (p) => p.kind === 'data' && p.payload[0] === 2,
  ).length
}

void t.test('captured responses pass, under any chunking', (t) => {
  for (const c of captured) {
    const want = {
      ok: true,
      packObjects: c.objects,
      shallow: c.shallow ?? [],
      unshallow: [],
    }
    const whole = check([c.response], c.opts)
    for (const { name, parts } of chunkings(c.response)) {
      const run = check(parts, c.opts)
      t.strictSame(run.result, want, `${c.name}, ${name}`)
      t.ok(
        run.stored.equals(whole.stored),
        `${c.name}, ${name}: same stored bytes as whole`,
      )
    }
    if (c.progress === true) {
      t.ok(
        whole.stored.length < c.response.length,
        `${c.name}: progress removed`,
      )
    } else {
      t.ok(
        whole.stored.equals(c.response),
        `${c.name}: stored unchanged (no progress)`,
      )
    }
    if (c.opts.sideband !== 'none' || c.opts.protocol === 'v2') {
      if (c.opts.sidebandAll !== true) {
        t.equal(
          progressPackets(whole.stored),
          0,
          `${c.name}: no channel 2 stored`,
        )
        t.ok(
          channelOne(whole.stored).equals(channelOne(c.response)),
          `${c.name}: same pack bytes`,
        )
      }
    }
    // a stored response is itself a valid response, stored unchanged
    const again = check([whole.stored], c.opts)
    t.strictSame(again.result, want, `${c.name}: stored bytes re-check`)
    t.ok(again.stored.equals(whole.stored), `${c.name}: storing is idempotent`)
  }
  t.end()
})

void t.test('progress removal keeps everything else byte-identical', (t) => {
  const response = http('v2-clone/03')
  const { stored } = check([response], V2)
  const framer = new PktLineFramer()
  framer.write(response)
  const kept: Buffer[] = []
  let removed = 0
  for (let f = framer.next(); f !== null; f = framer.next()) {
    if (f.length > 4 && f.raw[4] === 2) removed++
    else kept.push(f.raw)
  }
  t.ok(removed > 10, `the capture has progress (${removed} packets)`)
  t.ok(
    stored.equals(Buffer.concat(kept)),
    'stored = input minus channel-2 packets',
  )
  t.end()
})

/** Offset of the first data packet whose payload starts with `prefix`. */
function packetOffset(response: Buffer, prefix: string): number {
  const framer = new PktLineFramer()
  framer.write(response)
  for (let f = framer.next(); f !== null; f = framer.next()) {
    if (f.raw.subarray(4, 4 + prefix.length).toString('latin1') === prefix)
      return f.offset
  }
  throw new Error(`no packet starting with ${prefix}`)
}

/** Offset of the last pack byte (the end of the trailer): progress may follow the pack. */
function lastPackByte(response: Buffer): number {
  const framer = new PktLineFramer()
  framer.write(response)
  let last = -1
  for (let f = framer.next(); f !== null; f = framer.next()) {
    if (f.length > 5 && f.raw[4] === 1) last = f.offset + f.length - 1
  }
  return last
}

function insertAt(buf: Buffer, at: number, extra: Buffer): Buffer {
  return Buffer.concat([buf.subarray(0, at), extra, buf.subarray(at)])
}

function flipAt(buf: Buffer, at: number): Buffer {
  const copy = Buffer.from(buf)
  copy[at] = (copy[at] ?? 0) ^ 0x20
  return copy
}

const v0Clone = http('v0-clone/02')
const v0Pack = packetOffset(v0Clone, '\x01PACK')
const v0Depth = ssh('v0-depth1', 1)
const v2Clone = http('v2-clone/03')
const v2Pack = packetOffset(v2Clone, '\x01PACK')
const rawResponse = fixture('raw-v0-nosideband/res.bin')
const smallSideband = fixture('raw-v0-sideband/res.bin')
const KEEPALIVE = Buffer.from('0005\x01', 'latin1')

interface Mutation {
  name: string
  response: Buffer
  opts: UploadPackResponseCheckerOptions
  reason: RegExp
}

const truncations: Mutation[] = [
  ...[
    1,
    3,
    4,
    10,
    v0Pack + 3,
    v0Pack + 100,
    v0Clone.length - 5,
    v0Clone.length - 4,
    v0Clone.length - 1,
  ].map((n) => ({
    name: `v0 clone cut to ${n} bytes`,
    response: v0Clone.subarray(0, n),
    opts: V0,
    reason: /response ended before the final flush/,
  })),
  ...[1, 20, 70, v0Depth.length - 4].map((n) => ({
    name: `v0 depth 1 cut to ${n} bytes`,
    response: v0Depth.subarray(0, n),
    opts: V0,
    reason: /response ended before the final flush/,
  })),
  ...[2, 13, v2Pack, v2Pack + 9, v2Clone.length - 4, v2Clone.length - 2].map(
    (n) => ({
      name: `v2 clone cut to ${n} bytes`,
      response: v2Clone.subarray(0, n),
      opts: V2,
      reason: /response ended before the final flush/,
    }),
  ),
  {
    name: 'raw pack cut to NAK',
    response: rawResponse.subarray(0, 8),
    opts: { ...V0, sideband: 'none' },
    reason: /ended before the final flush/,
  },
  {
    name: 'raw pack cut inside the header',
    response: rawResponse.subarray(0, 15),
    opts: { ...V0, sideband: 'none' },
    reason: /pack truncated/,
  },
  {
    name: 'raw pack cut by 1 byte',
    response: rawResponse.subarray(0, -1),
    opts: { ...V0, sideband: 'none' },
    reason: /checksum mismatch/,
  },
  {
    name: 'v0 preflight cut before the flush',
    response: http('v0-depth1/02').subarray(0, 52),
    opts: { ...V0, expectPack: false },
    reason: /ended before the final flush/,
  },
]

const corruptions: Mutation[] = [
  {
    name: 'v0: flipped byte in the pack',
    response: flipAt(v0Clone, v0Pack + 40),
    opts: V0,
    reason: /pack checksum mismatch/,
  },
  {
    name: 'v0: flipped byte in the trailer',
    response: flipAt(v0Clone, lastPackByte(v0Clone)),
    opts: V0,
    reason: /pack checksum mismatch/,
  },
  {
    name: 'v2: flipped byte in the pack',
    response: flipAt(v2Clone, v2Pack + 100),
    opts: V2,
    reason: /pack checksum mismatch/,
  },
  {
    name: 'v0: flipped pack signature',
    response: flipAt(v0Clone, v0Pack + 5),
    opts: V0,
    reason: /bad pack signature/,
  },
  {
    name: 'raw: flipped byte in the pack',
    response: flipAt(rawResponse, 500),
    opts: { ...V0, sideband: 'none' },
    reason: /pack checksum mismatch/,
  },
  {
    name: 'sha256 pack checked as sha1',
    response: ssh('v2-sha256-clone', 2),
    opts: V2,
    reason: /packfile|checksum|unexpected line/,
  },
]

const errPacket = pkt('ERR upload-pack: not our ref\n')
const channel3 = pkt('\x03fatal: the remote end hung up\n')

const injected: Mutation[] = [
  {
    name: 'v0: ERR before NAK',
    response: insertAt(v0Clone, 0, errPacket),
    opts: V0,
    reason: /upstream sent ERR at offset 0: "upload-pack: not our ref"/,
  },
  {
    name: 'v0: ERR inside the pack',
    response: insertAt(v0Clone, v0Pack, errPacket),
    opts: V0,
    reason: /upstream sent ERR at offset \d+/,
  },
  {
    name: 'v0: ERR after the shallow list',
    response: insertAt(v0Depth, 56, errPacket),
    opts: V0,
    reason: /upstream sent ERR at offset 56/,
  },
  {
    name: 'v2: ERR in place of the response',
    response: http('v2-unknown/03'),
    opts: V2,
    reason: /ERR at offset 0: "upload-pack: not our ref 1234567890/,
  },
  {
    name: 'v0: real ERR',
    response: http('v0-unknown/02'),
    opts: V0,
    reason: /ERR at offset 0: "upload-pack: not our ref/,
  },
  {
    name: 'v2: ERR inside the pack',
    response: insertAt(v2Clone, v2Pack, errPacket),
    opts: V2,
    reason: /upstream sent ERR/,
  },
  {
    name: 'v0: channel 3',
    response: insertAt(v0Clone, v0Pack, channel3),
    opts: V0,
    reason:
      /fatal side-band message at offset \d+: "fatal: the remote end hung up"/,
  },
  {
    name: 'v2: channel 3',
    response: insertAt(v2Clone, v2Pack, channel3),
    opts: V2,
    reason: /fatal side-band message/,
  },
  {
    name: 'v2 sideband-all: channel 3 in a section',
    response: insertAt(http('v2-features/03'), 17, channel3),
    opts: { ...V2, sidebandAll: true },
    reason: /fatal side-band message/,
  },
  {
    name: 'v2 sideband-all: ERR on channel 1',
    response: insertAt(
      http('v2-features/03'),
      17,
      pkt('\x01ERR upload-pack: not our ref\n'),
    ),
    opts: { ...V2, sidebandAll: true },
    reason: /upstream sent ERR at offset 17: "upload-pack: not our ref"/,
  },
  {
    name: 'v0: channel 4',
    response: insertAt(v0Clone, v0Pack, pkt('\x04what')),
    opts: V0,
    reason: /bad side-band channel/,
  },
  {
    name: 'v0: empty packet in the pack',
    response: insertAt(v0Clone, v0Pack, Buffer.from('0004')),
    opts: V0,
    reason: /empty packet/,
  },
  {
    name: 'v0: delim in the pack',
    response: insertAt(v0Clone, v0Pack, DELIM),
    opts: V0,
    reason: /unexpected delim/,
  },
  {
    name: 'v2: delim in the pack',
    response: insertAt(v2Clone, v2Pack, DELIM),
    opts: V2,
    reason: /unexpected delim/,
  },
  {
    name: 'v2: response-end',
    response: insertAt(v2Clone, 0, Buffer.from('0002')),
    opts: V2,
    reason: /unexpected response-end/,
  },
  {
    name: 'v0: bytes after the final flush',
    response: Buffer.concat([v0Clone, Buffer.from('x')]),
    opts: V0,
    reason: /1 bytes after the final flush/,
  },
  {
    name: 'v0: a second flush',
    response: Buffer.concat([v0Clone, FLUSH]),
    opts: V0,
    reason: /bytes after the final flush at offset \d+/,
  },
  {
    name: 'v2: packet after the final flush',
    response: Buffer.concat([v2Clone, pkt('packfile\n')]),
    opts: V2,
    reason: /bytes after the final flush/,
  },
  {
    name: 'v0: bad length',
    response: insertAt(v0Clone, v0Pack, Buffer.from('zzzz')),
    opts: V0,
    reason: /malformed packet: invalid pkt-line length "zzzz"/,
  },
  {
    name: 'v0: 0003',
    response: insertAt(v0Clone, 8, Buffer.from('0003')),
    opts: V0,
    reason: /malformed packet/,
  },
  {
    name: 'v0: garbage line before NAK',
    response: insertAt(v0Clone, 0, pkt('hello\n')),
    opts: V0,
    reason: /unexpected line at offset 0 .*"hello"/,
  },
  {
    name: 'v0: bad ACK',
    response: insertAt(v0Clone, 0, pkt('ACK 1234\n')),
    opts: V0,
    reason: /unexpected line/,
  },
  {
    name: 'v0: ACK with unknown status',
    response: insertAt(v0Clone, 0, pkt(`ACK ${repo.main} maybe\n`)),
    opts: V0,
    reason: /unexpected line/,
  },
  {
    name: 'v0: bad shallow oid',
    response: insertAt(v0Depth, 0, pkt('shallow 123\n')),
    opts: V0,
    reason: /unexpected line/,
  },
  {
    name: 'v0: raw pack although side-band was asked for',
    response: rawResponse,
    opts: V0,
    reason: /malformed packet/,
  },
  {
    name: 'v0: side-band packet over 1000 bytes',
    response: v0Clone,
    opts: { ...V0, sideband: 'side-band' },
    reason: /side-band packet of \d+ bytes .* exceeds 1000/,
  },
  {
    name: 'v0 preflight: a pack follows the shallow list',
    response: v0Depth,
    opts: { ...V0, expectPack: false },
    reason: /bytes after the final flush/,
  },
  {
    name: 'v0 preflight: NAK instead of a shallow list',
    response: v0Clone,
    opts: { ...V0, expectPack: false },
    reason: /unexpected line at offset 0 .*"NAK"/,
  },
  {
    name: 'v2: unknown section',
    response: insertAt(v2Clone, 0, Buffer.concat([pkt('bogus\n'), DELIM])),
    opts: V2,
    reason: /unexpected line at offset 0 .*"bogus"/,
  },
  {
    name: 'v2: sections out of order',
    response: Buffer.concat([
      pkt('shallow-info\n'),
      pkt(`shallow ${repo.main}\n`),
      DELIM,
      pkt('acknowledgments\n'),
      pkt('NAK\n'),
      FLUSH,
    ]),
    opts: V2,
    reason: /section acknowledgments out of order/,
  },
  {
    name: 'v2: flush right after shallow-info',
    response: Buffer.concat([
      pkt('shallow-info\n'),
      pkt(`shallow ${repo.main}\n`),
      FLUSH,
    ]),
    opts: V2,
    reason: /flush after the shallow-info section/,
  },
  {
    name: 'v2: acknowledgments then delim without ready',
    response: Buffer.concat([
      pkt('acknowledgments\n'),
      pkt('NAK\n'),
      DELIM,
      pkt('packfile\n'),
      FLUSH,
    ]),
    opts: V2,
    reason: /without "ready"/,
  },
  {
    name: 'v2: only acknowledgments (not ready) when a pack is expected',
    response: Buffer.concat([pkt('acknowledgments\n'), pkt('NAK\n'), FLUSH]),
    opts: V2,
    reason: /response has no pack/,
  },
  {
    name: 'v2: lone flush when a pack is expected',
    response: FLUSH,
    opts: V2,
    reason: /response has no pack/,
  },
  {
    name: 'v2: empty body',
    response: Buffer.alloc(0),
    opts: V2,
    reason: /ended before the final flush/,
  },
  {
    name: 'v0: empty body',
    response: Buffer.alloc(0),
    opts: V0,
    reason: /ended before the final flush/,
  },
  {
    name: 'v2: packfile section without pack data',
    response: Buffer.concat([pkt('packfile\n'), FLUSH]),
    opts: V2,
    reason: /response has no pack/,
  },
  {
    name: 'v0: random garbage',
    response: Buffer.from('\x89PNG\r\n\x1a\n garbage'),
    opts: V0,
    reason: /malformed packet/,
  },
]

void t.test(
  'failures are reported with a precise reason, under any chunking',
  (t) => {
    for (const m of [...truncations, ...corruptions, ...injected]) {
      for (const { name, parts } of chunkings(m.response)) {
        const { result } = check(parts, m.opts)
        t.equal(result.ok, false, `${m.name}, ${name}: fails`)
        t.match(result, { reason: m.reason }, `${m.name}, ${name}: reason`)
      }
    }
    t.end()
  },
)

void t.test('keepalives are accepted and not stored', (t) => {
  const cases: {
    name: string
    response: Buffer
    with: Buffer
    opts: UploadPackResponseCheckerOptions
  }[] = [
    {
      name: 'v0: keepalives after NAK and between pack packets',
      response: check([v0Clone], V0).stored,
      with: insertAt(
        insertAt(v0Clone, v0Pack, Buffer.concat([KEEPALIVE, KEEPALIVE])),
        8,
        KEEPALIVE,
      ),
      opts: V0,
    },
    {
      name: 'v2: keepalives after packfile',
      response: http('v2-fetch/03'),
      with: insertAt(
        http('v2-fetch/03'),
        packetOffset(http('v2-fetch/03'), '\x01PACK'),
        Buffer.concat([KEEPALIVE, KEEPALIVE, KEEPALIVE, KEEPALIVE]),
      ),
      opts: V2,
    },
    {
      name: 'v2 sideband-all: 0005\\x02 and 0005\\x01 between section lines',
      response: http('v2-features/03'),
      with: insertAt(
        insertAt(http('v2-features/03'), 17, Buffer.from('0005\x02', 'latin1')),
        0,
        KEEPALIVE,
      ),
      opts: { ...V2, sidebandAll: true },
    },
    {
      name: 'v0 side-band (small): keepalive',
      response: check([smallSideband], { ...V0, sideband: 'side-band' }).stored,
      with: insertAt(smallSideband, 8, KEEPALIVE),
      opts: { ...V0, sideband: 'side-band' },
    },
  ]
  for (const c of cases) {
    for (const { name, parts } of chunkings(c.with)) {
      const run = check(parts, c.opts)
      t.equal(run.result.ok, true, `${c.name}, ${name}: ok`)
      t.ok(
        run.stored.equals(c.response),
        `${c.name}, ${name}: stored without the keepalives`,
      )
    }
  }
  t.end()
})

void t.test('hand-made v2 responses with every section', (t) => {
  const pack = channelOne(http('v2-fetch/03'))
  const full = Buffer.concat([
    pkt('acknowledgments\n'),
    pkt(`ACK ${repo.main}\n`),
    pkt('ready\n'),
    DELIM,
    pkt('shallow-info\n'),
    pkt(`shallow ${repo.main}\n`),
    pkt(`unshallow ${repo.first}\n`),
    DELIM,
    pkt('wanted-refs\n'),
    pkt(`${repo.main} refs/heads/main\n`),
    DELIM,
    pkt('packfile-uris\n'),
    pkt(`${'ab'.repeat(20)} https://cdn.example.com/pack.pack\n`),
    DELIM,
    pkt('packfile\n'),
    pkt(Buffer.concat([Buffer.of(1), pack])),
    FLUSH,
  ])
  t.strictSame(check([full], V2).result, {
    ok: true,
    packObjects: 6,
    shallow: [repo.main],
    unshallow: [repo.first],
  })
  const notReady = Buffer.concat([
    pkt('acknowledgments\n'),
    pkt('NAK\n'),
    FLUSH,
  ])
  t.strictSame(check([notReady], { ...V2, expectPack: false }).result, {
    ok: true,
    packObjects: 0,
    shallow: [],
    unshallow: [],
  })
  const badRef = Buffer.concat([
    pkt('wanted-refs\n'),
    pkt(`${repo.main}\n`),
    DELIM,
    pkt('packfile\n'),
    FLUSH,
  ])
  t.match(check([badRef], V2).result, { ok: false, reason: /unexpected line/ })
  t.end()
})

void t.test(
  'push never throws and passes input through after a failure',
  (t) => {
    const checker = new UploadPackResponseChecker(V0)
    const garbage = Buffer.from('zzzzzzzz')
    t.equal(
      checker.push(garbage),
      garbage,
      'failing chunk comes back unchanged',
    )
    const later = new Uint8Array([1, 2, 3])
    const out = checker.push(later)
    t.ok(
      Buffer.isBuffer(out) && out.equals(Buffer.from(later)),
      'later chunks come back unchanged',
    )
    t.match(checker.finish(), { ok: false, reason: /malformed packet/ })
    t.equal(checker.finish(), checker.finish(), 'finish is idempotent')
    const done = new UploadPackResponseChecker(V0)
    done.push(v0Clone)
    t.equal(done.finish().ok, true)
    t.ok(
      done.push(Buffer.from('x')).equals(Buffer.from('x')),
      'push after finish returns input',
    )
    t.equal(done.finish().ok, true, 'and does not change the result')
    t.end()
  },
)

void t.test('sidebandOf', (t) => {
  const cases: [string[], string][] = [
    [
      ['multi_ack_detailed', 'side-band-64k', 'side-band', 'thin-pack'],
      'side-band-64k',
    ],
    [['side-band', 'side-band-64k'], 'side-band-64k'],
    [['side-band', 'ofs-delta'], 'side-band'],
    [['ofs-delta'], 'none'],
    [[], 'none'],
    [['side-band-64kx'], 'none'],
  ]
  for (const [caps, want] of cases)
    t.equal(sidebandOf(caps), want, caps.join(' '))
  t.end()
})
