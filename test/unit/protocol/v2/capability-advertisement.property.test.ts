import fc from 'fast-check'
import t from 'tap'
import {
  filterCapabilityAdvertisementV2,
  parseCapabilityAdvertisementV2,
} from '../../../../src/protocol/v2/capability-advertisement.js'
import type { CapabilityRemovalV2 } from '../../../../src/protocol/v2/capability-advertisement.js'
import {
  MAX_PAYLOAD_SIZE,
  PktLineFramer,
  packetText,
} from '../../../../src/protocol/pkt-line.js'
import {
  DELIM,
  FLUSH,
  RESPONSE_END,
  garbageArb,
  holds,
  mutate,
  mutationsArb,
  outcome,
  pkt,
} from '../fixtures/properties.js'
import { fixture } from '../fixtures/transcripts.js'

/**
 * Capability lines are modelled as latin1 strings, one character per byte,
 * so that values can hold any byte (invalid UTF-8 included).
 */
interface Capability {
  key: string
  value: string | null
  lf: boolean
}

const KEYS = [
  'agent',
  'ls-refs',
  'fetch',
  'server-option',
  'object-format',
  'session-id',
  'object-info',
  'bundle-uri',
  'promisor-remote',
]
const FEATURES = [
  'shallow',
  'wait-for-done',
  'filter',
  'ref-in-want',
  'sideband-all',
  'packfile-uris',
]

/** Bytes without LF (as latin1), ending in anything but LF. */
const bytesArb = (
  unit: fc.Arbitrary<number>,
  maxLength: number,
): fc.Arbitrary<string> =>
  fc.array(unit, { maxLength }).map((b) => Buffer.from(b).toString('latin1'))
const anyByte = fc.integer({ min: 0, max: 255 }).filter((b) => b !== 0x0a)
const wordByte = anyByte.filter((b) => b !== 0x20)

/** A fetch= value: known features, and words of any bytes; now and then one long word. */
const fetchValueArb: fc.Arbitrary<string> = fc
  .array(
    fc.oneof(
      { weight: 4, arbitrary: fc.constantFrom(...FEATURES) },
      { weight: 2, arbitrary: bytesArb(wordByte, 8) },
      {
        weight: 1,
        arbitrary: fc
          .tuple(wordByte, fc.integer({ min: 1, max: 30000 }))
          .map(([b, n]) => Buffer.alloc(n, b).toString('latin1')),
      },
    ),
    { maxLength: 8 },
  )
  .map((words) => words.join(' '))
  .filter((v) => v.length <= MAX_PAYLOAD_SIZE - 8)

const capabilityArb: fc.Arbitrary<Capability> = fc.oneof(
  fc.record({
    key: fc.constant('fetch'),
    value: fetchValueArb.map((v): string | null => v),
    lf: fc.boolean(),
  }),
  fc.record({
    key: fc.oneof(
      fc.constantFrom(...KEYS),
      fc.stringMatching(/^[!-<>-~]{1,15}$/),
    ),
    value: fc.option(
      fc.oneof(fc.stringMatching(/^[ -~]{0,30}$/), bytesArb(anyByte, 30)),
    ),
    lf: fc.boolean(),
  }),
)

const advertisementArb = fc.uniqueArray(capabilityArb, {
  selector: (c) => c.key,
  maxLength: 10,
})

const capabilityLine = (c: Capability): string =>
  (c.value === null ? c.key : `${c.key}=${c.value}`) + (c.lf ? '\n' : '')

const encode = (caps: Capability[], after: Buffer = Buffer.alloc(0)): Buffer =>
  Buffer.concat([
    pkt('version 2\n'),
    ...caps.map((c) => pkt(capabilityLine(c))),
    FLUSH,
    after,
  ])

const utf8 = (latin1: string): string =>
  Buffer.from(latin1, 'latin1').toString('utf8')

const removalArb: fc.Arbitrary<CapabilityRemovalV2> = fc.record({
  fetchFeatures: fc.subarray([...FEATURES, 'unknown']).map((s) => new Set(s)),
  capabilities: fc.subarray([...KEYS, 'unknown']).map((s) => new Set(s)),
})

/** The filter's answer, line by line: drop removed keys, rewrite fetch= without removed features. */
function filtered(
  caps: Capability[],
  remove: CapabilityRemovalV2,
): Capability[] {
  return caps
    .filter((c) => !remove.capabilities.has(c.key))
    .map((c) => {
      if (c.key !== 'fetch' || c.value === null) return c
      const features = c.value.split(' ')
      const kept = features.filter((f) => !remove.fetchFeatures.has(f))
      if (kept.length === features.length) return c
      const words = kept.filter((f) => f !== '')
      return { ...c, value: words.length > 0 ? words.join(' ') : null }
    })
}

void t.test('advertisements from a model', (t) => {
  holds(
    t,
    'parse back to the model (values decoded as UTF-8)',
    fc.property(advertisementArb, (caps) => {
      const got = parseCapabilityAdvertisementV2(encode(caps)).capabilities
      const want = new Map(
        caps.map((c) => [c.key, c.value === null ? null : utf8(c.value)]),
      )
      return fc.stringify([...got]) === fc.stringify([...want])
    }),
    { numRuns: 300 },
  )
  holds(
    t,
    'a key given twice: the last value wins',
    fc.property(
      advertisementArb,
      fc.nat(),
      fc.stringMatching(/^[ -~]{0,20}$/),
      (caps, at, value) => {
        const first = caps[at % Math.max(caps.length, 1)]
        if (first === undefined) return true
        const twice = [...caps, { key: first.key, value, lf: true }]
        return (
          parseCapabilityAdvertisementV2(encode(twice)).capabilities.get(
            first.key,
          ) === value
        )
      },
    ),
    { numRuns: 200 },
  )
  holds(
    t,
    'the filter removes exactly what it is told, every other byte kept, and what follows the flush',
    fc.property(
      advertisementArb,
      removalArb,
      fc.uint8Array({ maxLength: 40 }),
      (caps, remove, tail) => {
        const body = encode(caps, Buffer.from(tail))
        const out = filterCapabilityAdvertisementV2(body, remove)
        const want = encode(filtered(caps, remove), Buffer.from(tail))
        if (!out.equals(want)) return false
        // nothing removed: the very same Buffer
        return !want.equals(body) || out === body
      },
    ),
    { numRuns: 500 },
  )
  holds(
    t,
    'filtering twice is filtering once',
    fc.property(advertisementArb, removalArb, (caps, remove) => {
      const once = filterCapabilityAdvertisementV2(encode(caps), remove)
      return filterCapabilityAdvertisementV2(once, remove) === once
    }),
    { numRuns: 300 },
  )
  holds(
    t,
    'a special packet in the list: the parser refuses it at its offset, the filter passes it on',
    fc.property(
      advertisementArb,
      fc.constantFrom(DELIM, RESPONSE_END),
      fc.nat(),
      (caps, special, at) => {
        const frames = [
          pkt('version 2\n'),
          ...caps.map((c) => pkt(capabilityLine(c))),
        ]
        const i = 1 + (at % frames.length)
        const before = Buffer.concat(frames.slice(0, i))
        const body = Buffer.concat([before, special, ...frames.slice(i), FLUSH])
        const r = outcome(body.length, () =>
          parseCapabilityAdvertisementV2(body),
        )
        const nothing = {
          fetchFeatures: new Set<string>(),
          capabilities: new Set<string>(),
        }
        return (
          !r.ok &&
          r.code === 'ERR_PROTOCOL_BAD_ADVERTISEMENT' &&
          r.offset === before.length &&
          filterCapabilityAdvertisementV2(body, nothing) === body
        )
      },
    ),
    { numRuns: 200 },
  )
  t.end()
})

const captured = [
  fixture('http-v2-clone/01-info-refs.res.bin'),
  fixture('http-v2-features/01-info-refs.res.bin'),
]
const REMOVE: CapabilityRemovalV2 = {
  fetchFeatures: new Set(['ref-in-want', 'sideband-all', 'packfile-uris']),
  capabilities: new Set(['bundle-uri', 'promisor-remote']),
}

function startsWithVersion2(buf: Buffer): boolean {
  const framer = new PktLineFramer()
  framer.write(buf)
  const first = outcome(buf.length, () => framer.next())
  return (
    first.ok &&
    first.value !== null &&
    first.value.length > 4 &&
    packetText(first.value.raw.subarray(4)) === 'version 2'
  )
}

void t.test('arbitrary input fails only with ProtocolError', (t) => {
  const both = (buf: Buffer): boolean => {
    outcome(buf.length, () => parseCapabilityAdvertisementV2(buf))
    const f = outcome(buf.length, () =>
      filterCapabilityAdvertisementV2(buf, REMOVE),
    )
    // input that does not start with `version 2` comes back untouched
    return startsWithVersion2(buf) || (f.ok && f.value === buf)
  }
  holds(t, 'garbage', fc.property(garbageArb, both), { numRuns: 1000 })
  holds(
    t,
    'garbage after a version 2 line',
    fc.property(garbageArb, (g) =>
      both(Buffer.concat([pkt('version 2\n'), g])),
    ),
    { numRuns: 1000 },
  )
  holds(
    t,
    'mutated model and captured advertisements',
    fc.property(
      fc.oneof(
        advertisementArb.map((caps) => encode(caps)),
        fc.constantFrom(...captured),
      ),
      mutationsArb,
      (body, mutations) => both(mutate(body, mutations)),
    ),
    { numRuns: 500 },
  )
  t.end()
})
