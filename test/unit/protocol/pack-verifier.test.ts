import t from 'tap'
import { PackVerifier } from '../../../src/protocol/pack-verifier.js'
import {
  channelOne,
  chunkings,
  fixture,
  splitAfterFlush,
  syntheticPack as synthetic,
} from './fixtures/transcripts.js'

function verify(
  parts: Buffer[],
  format: 'sha1' | 'sha256' = 'sha1',
): ReturnType<PackVerifier['finish']> {
  const v = new PackVerifier(format)
  for (const part of parts) v.update(part)
  return v.finish()
}

const sha1Pack = channelOne(fixture('http-v0-clone/02-git-upload-pack.res.bin'))
const rawPack = fixture('raw-v0-nosideband/res.bin').subarray(8) // after 0008NAK\n
const sha256Pack = channelOne(
  splitAfterFlush(fixture('ssh-v2-sha256-clone/out.bin'), 2)[1],
)

function withByte(buf: Buffer, at: number, value: number): Buffer {
  const copy = Buffer.from(buf)
  copy[at] = value
  return copy
}

void t.test('real packs verify under any chunking', (t) => {
  const cases = [
    {
      name: 'sha1 pack from a side-band response',
      pack: sha1Pack,
      format: 'sha1' as const,
      objects: 17,
    },
    {
      name: 'raw pack after NAK',
      pack: rawPack,
      format: 'sha1' as const,
      objects: 13,
    },
    {
      name: 'sha256 pack',
      pack: sha256Pack,
      format: 'sha256' as const,
      objects: 17,
    },
  ]
  for (const c of cases) {
    for (const { name, parts } of chunkings(c.pack)) {
      t.strictSame(
        verify(parts, c.format),
        { ok: true, objects: c.objects, bytes: c.pack.length },
        `${c.name}, ${name}`,
      )
    }
  }
  t.end()
})

void t.test('bad packs are reported', (t) => {
  const cases: {
    name: string
    pack: Buffer
    format?: 'sha1' | 'sha256'
    reason: RegExp
  }[] = [
    {
      name: 'flipped byte in an object',
      pack: withByte(sha1Pack, 40, (sha1Pack[40] ?? 0) ^ 0xff),
      reason: /checksum mismatch/,
    },
    {
      name: 'flipped byte in the trailer',
      pack: withByte(sha1Pack, sha1Pack.length - 1, (sha1Pack.at(-1) ?? 0) ^ 1),
      reason: /checksum mismatch/,
    },
    {
      name: 'flipped object count',
      pack: withByte(sha1Pack, 11, 99),
      reason: /checksum mismatch/,
    },
    {
      name: 'truncated by one byte',
      pack: sha1Pack.subarray(0, -1),
      reason: /checksum mismatch/,
    },
    {
      name: 'truncated to the header',
      pack: sha1Pack.subarray(0, 12),
      reason: /pack truncated: 12 bytes/,
    },
    { name: 'empty', pack: Buffer.alloc(0), reason: /pack truncated: 0 bytes/ },
    {
      name: 'extra byte after the trailer',
      pack: Buffer.concat([sha1Pack, Buffer.of(0)]),
      reason: /checksum mismatch/,
    },
    {
      name: 'bad signature',
      pack: withByte(sha1Pack, 0, 0x4b),
      reason: /bad pack signature "4b41434b"/,
    },
    {
      name: 'version 4',
      pack: withByte(sha1Pack, 7, 4),
      reason: /unsupported pack version 4/,
    },
    {
      name: 'sha256 pack checked as sha1',
      pack: sha256Pack,
      reason: /checksum mismatch/,
    },
    {
      name: 'sha1 pack checked as sha256',
      pack: sha1Pack,
      format: 'sha256',
      reason: /checksum mismatch/,
    },
  ]
  for (const c of cases) {
    for (const { name, parts } of chunkings(c.pack)) {
      const result = verify(parts, c.format)
      t.equal(result.ok, false, `${c.name}, ${name}`)
      t.match(result, { reason: c.reason }, `${c.name}, ${name}: reason`)
    }
  }
  t.end()
})

void t.test('version 3 and an empty pack are fine', (t) => {
  t.strictSame(verify([synthetic(3, 0)]), { ok: true, objects: 0, bytes: 32 })
  t.strictSame(verify(chunkings(synthetic(2, 0))[1]?.parts ?? []), {
    ok: true,
    objects: 0,
    bytes: 32,
  })
  t.end()
})

void t.test('a bad header is known before the end', (t) => {
  const v = new PackVerifier()
  v.update(Buffer.from('PAC'))
  t.equal(v.failure, null)
  t.equal(v.objects, null)
  v.update(Buffer.from('K\x00\x00\x00\x07'))
  t.equal(v.failure, null)
  v.update(Buffer.from('\x00\x00\x00\x05'))
  t.equal(v.failure, 'unsupported pack version 7')
  const good = new PackVerifier()
  good.update(sha1Pack.subarray(0, 12))
  t.equal(good.objects, 17)
  t.equal(good.bytes, 12)
  t.end()
})
