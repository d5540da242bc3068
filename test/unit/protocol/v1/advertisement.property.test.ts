import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import fc from 'fast-check'
import t from 'tap'
import type { ProtocolError } from '../../../../src/errors.js'
import {
  createAdvertisementFilterV1,
  parseAdvertisementV1,
} from '../../../../src/protocol/v1/advertisement.js'
import type { AdvertisementV1 } from '../../../../src/protocol/v1/advertisement.js'
import {
  DELIM,
  FLUSH,
  chunkingArb,
  checkProtocolError,
  cut,
  garbageArb,
  holds,
  holdsAsync,
  mutate,
  mutationsArb,
  oidArb,
  outcome,
  pkt,
} from '../fixtures/properties.js'
import type { Chunking } from '../fixtures/properties.js'
import { fixture } from '../fixtures/transcripts.js'

/**
 * An advertisement as upload-pack builds it. Capability words are latin1
 * strings (one char per byte): the filter must keep any byte.
 */
interface Advertisement {
  service: boolean
  version: 0 | 1
  refs: { oid: string; name: string }[]
  capabilities: string[]
  shallows: string[]
}

const NAMES = [
  'multi_ack',
  'thin-pack',
  'side-band',
  'side-band-64k',
  'filter',
  'no-done',
  'symref',
  'agent',
  'object-format',
]
const capabilityArb = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...NAMES) },
  {
    weight: 2,
    arbitrary: fc
      .tuple(fc.constantFrom(...NAMES), fc.stringMatching(/^[!-~]{0,20}$/))
      .map(([n, v]) => `${n}=${v}`),
  },
  {
    // any bytes but space, NUL and LF
    weight: 1,
    arbitrary: fc
      .uint8Array({ minLength: 1, maxLength: 12 })
      .map((b) =>
        Buffer.from(
          b.filter((x) => x !== 0x20 && x !== 0 && x !== 0x0a),
        ).toString('latin1'),
      )
      .filter((s) => s !== ''),
  },
)

const advertisementArb: fc.Arbitrary<Advertisement> = fc.record({
  service: fc.boolean(),
  version: fc.constantFrom<0 | 1>(0, 1),
  refs: fc.array(
    fc.record(
      {
        oid: oidArb.filter((o) => !/^0+$/.test(o)),
        name: fc.oneof(
          fc.constantFrom(
            'HEAD',
            'refs/heads/main',
            'refs/tags/v1.0',
            'refs/tags/v1.0^{}',
          ),
          fc.stringMatching(/^refs\/[!-~]{1,30}$/),
        ),
      },
      { noNullPrototype: true },
    ),
    { maxLength: 6 },
  ),
  capabilities: fc.array(capabilityArb, { maxLength: 12 }),
  shallows: fc.array(oidArb, { maxLength: 2 }),
})

const ZERO = '0'.repeat(40)

function encode(
  a: Advertisement,
  capabilities: string[] = a.capabilities,
): Buffer {
  const [first, ...rest] =
    a.refs.length > 0 ? a.refs : [{ oid: ZERO, name: 'capabilities^{}' }]
  return Buffer.concat([
    ...(a.service ? [pkt('# service=git-upload-pack\n'), FLUSH] : []),
    ...(a.version === 1 ? [pkt('version 1\n')] : []),
    pkt(
      `${first?.oid ?? ''} ${first?.name ?? ''}\0${capabilities.join(' ')}\n`,
    ),
    ...rest.map((r) => pkt(`${r.oid} ${r.name}\n`)),
    ...a.shallows.map((oid) => pkt(`shallow ${oid}\n`)),
    FLUSH,
  ])
}

const utf8 = (latin1: string): string =>
  Buffer.from(latin1, 'latin1').toString('utf8')
const nameOf = (word: string): string => word.split('=')[0] ?? word

/** Runs the filter over `parts`; returns the output so far and the error, if any. */
async function runFilter(
  remove: ReadonlySet<string>,
  parts: Buffer[],
): Promise<{ out: Buffer; error: unknown }> {
  const out: Buffer[] = []
  let error: unknown = null
  try {
    await pipeline(
      Readable.from(parts),
      createAdvertisementFilterV1(remove),
      async (source: AsyncIterable<Buffer>) => {
        for await (const chunk of source) out.push(chunk)
      },
    )
  } catch (err) {
    error = err
  }
  return { out: Buffer.concat(out), error }
}

void t.test('advertisements from a model', async (t) => {
  holds(
    t,
    'parse back to the model',
    fc.property(advertisementArb, (a) => {
      const want: AdvertisementV1 = {
        version: a.version,
        service: a.service ? 'git-upload-pack' : null,
        refs: a.refs,
        capabilities: a.capabilities
          .map(utf8)
          .flatMap((w) => w.split(' '))
          .filter((w) => w !== ''),
        shallows: a.shallows,
      }
      return (
        fc.stringify(parseAdvertisementV1(encode(a))) === fc.stringify(want)
      )
    }),
    { numRuns: 500 },
  )
  await holdsAsync(
    t,
    'the filter removes exactly the named capabilities, under any chunking; what follows passes unchanged',
    fc.asyncProperty(
      advertisementArb,
      fc.subarray([...NAMES, 'unknown']),
      fc.uint8Array({ maxLength: 60 }),
      chunkingArb,
      async (a, names, after, chunking) => {
        const remove = new Set(names)
        const kept = a.capabilities.filter((w) => !remove.has(nameOf(w)))
        const tail = Buffer.from(after)
        const { out, error } = await runFilter(
          remove,
          cut(Buffer.concat([encode(a), tail]), chunking),
        )
        return (
          error === null && out.equals(Buffer.concat([encode(a, kept), tail]))
        )
      },
    ),
    { numRuns: 300 },
  )
  t.end()
})

const captured = [
  fixture('http-v0-clone/01-info-refs.res.bin'),
  fixture('http-v1-clone/01-info-refs.res.bin'),
  fixture('http-v2-clone/01-info-refs.res.bin'),
  fixture('ssh-v0-clone/out.bin').subarray(0, 2000),
]

void t.test('arbitrary input', async (t) => {
  const inputArb = fc.oneof(
    { weight: 2, arbitrary: garbageArb },
    {
      weight: 1,
      arbitrary: garbageArb.map((g) =>
        Buffer.concat([pkt('# service=git-upload-pack\n'), FLUSH, g]),
      ),
    },
    {
      weight: 1,
      arbitrary: garbageArb.map((g) => Buffer.concat([pkt('version 1\n'), g])),
    },
    {
      weight: 2,
      arbitrary: fc
        .tuple(advertisementArb, mutationsArb)
        .map(([a, m]) => mutate(encode(a), m)),
    },
    {
      weight: 2,
      arbitrary: fc
        .tuple(fc.constantFrom(...captured), mutationsArb)
        .map(([b, m]) => mutate(b, m)),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(advertisementArb, fc.constantFrom(DELIM, pkt('ERR x\n')))
        .map(([a, p]) => Buffer.concat([encode(a).subarray(0, -4), p, FLUSH])),
    },
  )
  holds(
    t,
    'the parser fails only with ProtocolError',
    fc.property(inputArb, (buf) => {
      outcome(buf.length, () => parseAdvertisementV1(buf))
    }),
    { numRuns: 1000 },
  )
  const filterRun = async (
    buf: Buffer,
    remove: ReadonlySet<string>,
    chunking: Chunking,
  ): Promise<{ out: Buffer; error: string | null }> => {
    const { out, error } = await runFilter(remove, cut(buf, chunking))
    if (error === null) return { out, error: null }
    checkProtocolError(error, buf.length)
    const e = error as ProtocolError // checkProtocolError throws for anything else
    return { out, error: `${e.code} at ${String(e.offset)}: ${e.message}` }
  }
  await holdsAsync(
    t,
    'the filter fails only with ProtocolError, the same whatever the chunking; removing nothing changes nothing',
    fc.asyncProperty(
      inputArb,
      fc.subarray(NAMES),
      chunkingArb,
      async (buf, names, chunking) => {
        const remove = new Set(names)
        const whole = await filterRun(buf, remove, { cuts: [] })
        const parts = await filterRun(buf, remove, chunking)
        // a failed run may have passed on more or fewer whole packets, depending on the chunks
        if (whole.error !== null) return parts.error === whole.error
        if (parts.error !== null || !parts.out.equals(whole.out)) return false
        const identity = await filterRun(buf, new Set(), chunking)
        return identity.error === null && identity.out.equals(buf)
      },
    ),
    { numRuns: 300 },
  )
  t.end()
})
