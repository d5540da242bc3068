import fc from 'fast-check'
import t from 'tap'
import { parseUploadPackRequestV1 } from '../../../../src/protocol/v1/upload-pack-request.js'
import type { UploadPackRequestV1 } from '../../../../src/protocol/v1/upload-pack-request.js'
import {
  DELIM,
  FLUSH,
  RESPONSE_END,
  failsOnlyWithProtocolError,
  holds,
  oidArb,
  outcome,
  pkt,
} from '../fixtures/properties.js'
import { fixture } from '../fixtures/transcripts.js'

/** What a client asks for, before it is put on the wire. */
interface Request {
  wants: string[]
  capabilities: string[]
  shallows: string[]
  depth:
    | { kind: 'none' }
    | { kind: 'deepen'; depth: number }
    | { kind: 'since'; since: number | null; not: string[] }
  /** A `deepen-relative` line (the parser's leniency; git sends a capability). */
  relativeLine: boolean
  filter: string | null
  /** The haves, in flush-separated blocks. */
  haveBlocks: string[][]
  /** A flush after the last block, before `done` (ssh does, HTTP does not). */
  flushBeforeDone: boolean
  done: boolean
}

/** A line of the request, and whether git sends it with a trailing LF. */
interface Line {
  text: string
  lf: boolean
}

const CAPABILITIES = [
  'multi_ack',
  'multi_ack_detailed',
  'no-done',
  'side-band',
  'side-band-64k',
  'thin-pack',
  'ofs-delta',
  'no-progress',
  'include-tag',
  'shallow',
  'deepen-since',
  'deepen-not',
  'deepen-relative',
  'filter',
  'allow-tip-sha1-in-want',
  'allow-reachable-sha1-in-want',
  'object-format=sha1',
  'object-format=sha256',
  'agent=git/2.39.5',
]

const wordArb = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...CAPABILITIES) },
  { weight: 1, arbitrary: fc.stringMatching(/^[!-~]{1,20}$/) },
)
/** A value that runs to the end of the line: printable ASCII, spaces included. */
const valueArb = fc.stringMatching(/^[ -~]{1,30}$/)

/** A few object ids, and indexes into them, so that duplicates are common. */
const oidListArb = (min: number): fc.Arbitrary<string[]> =>
  fc
    .tuple(
      fc.array(oidArb, { minLength: 1, maxLength: 4 }),
      fc.array(fc.nat(), { minLength: min, maxLength: 8 }),
    )
    .map(([pool, picks]) => picks.map((i) => pool[i % pool.length] ?? ''))

const requestArb: fc.Arbitrary<Request> = fc.record({
  wants: oidListArb(1),
  capabilities: fc.array(wordArb, { maxLength: 10 }),
  shallows: fc.array(oidArb, { maxLength: 3 }),
  depth: fc.oneof(
    fc.record({ kind: fc.constant('none' as const) }),
    fc.record({
      kind: fc.constant('deepen' as const),
      depth: fc.oneof(
        fc.integer({ min: 1, max: 10 }),
        fc.integer({ min: 1, max: 2147483647 }),
      ),
    }),
    fc.record({
      kind: fc.constant('since' as const),
      since: fc.option(fc.maxSafeNat()),
      not: fc.array(valueArb, { maxLength: 3 }),
    }),
  ),
  relativeLine: fc.boolean(),
  filter: fc.option(
    fc.oneof(fc.constantFrom('blob:none', 'tree:0', 'blob:limit=1k'), valueArb),
  ),
  haveBlocks: fc.array(oidListArb(0), { maxLength: 4 }),
  flushBeforeDone: fc.boolean(),
  done: fc.boolean(),
})

/** The want section as git 2.39.5 writes it (fetch-pack.c: LF on want lines only). */
function wantSection(r: Request): Line[] {
  const lines: Line[] = r.wants.map((oid, i) => ({
    text:
      i === 0 && r.capabilities.length > 0
        ? `want ${oid} ${r.capabilities.join(' ')}`
        : `want ${oid}`,
    lf: true,
  }))
  for (const oid of r.shallows)
    lines.push({ text: `shallow ${oid}`, lf: false })
  switch (r.depth.kind) {
    case 'none':
      break
    case 'deepen':
      lines.push({ text: `deepen ${r.depth.depth}`, lf: false })
      break
    case 'since':
      if (r.depth.since !== null)
        lines.push({ text: `deepen-since ${r.depth.since}`, lf: false })
      for (const rev of r.depth.not)
        lines.push({ text: `deepen-not ${rev}`, lf: false })
      break
  }
  if (r.relativeLine) lines.push({ text: 'deepen-relative', lf: true })
  if (r.filter !== null) lines.push({ text: `filter ${r.filter}`, lf: false })
  return lines
}

function encodeLines(
  lines: Line[],
  lf: (i: number) => boolean = (i) => lines[i]?.lf ?? true,
): Buffer[] {
  return lines.map((l, i) => pkt(lf(i) ? `${l.text}\n` : l.text))
}

function haveSection(r: Request): Buffer[] {
  const out: Buffer[] = []
  r.haveBlocks.forEach((block, i) => {
    if (i > 0) out.push(FLUSH)
    for (const oid of block) out.push(pkt(`have ${oid}\n`))
  })
  if (r.haveBlocks.length > 0 && r.flushBeforeDone) out.push(FLUSH)
  if (r.done) out.push(pkt('done\n'))
  return out
}

function encodeRequest(
  r: Request,
  wants: Buffer[] = encodeLines(wantSection(r)),
): Buffer {
  return Buffer.concat([...wants, FLUSH, ...haveSection(r)])
}

function expected(r: Request): UploadPackRequestV1 {
  return {
    wants: r.wants,
    capabilities: r.capabilities,
    shallows: r.shallows,
    deepen: r.depth.kind === 'deepen' ? r.depth.depth : null,
    deepenSince: r.depth.kind === 'since' ? r.depth.since : null,
    deepenNot: r.depth.kind === 'since' ? r.depth.not : [],
    deepenRelative:
      r.relativeLine || r.capabilities.includes('deepen-relative'),
    filter: r.filter,
    haves: r.haveBlocks.flat(),
    done: r.done,
    flushesAfterWants: true,
    haveFlushes: Math.max(0, r.haveBlocks.length - 1) + (r.haveBlocks.length > 0 && r.flushBeforeDone ? 1 : 0),
  }
}

const same = (a: unknown, b: unknown): boolean =>
  fc.stringify(a) === fc.stringify(b)

void t.test('requests from a model parse back to the model', (t) => {
  holds(
    t,
    'as git sends them',
    fc.property(requestArb, (r) =>
      same(parseUploadPackRequestV1(encodeRequest(r)), expected(r)),
    ),
    { numRuns: 500 },
  )
  holds(
    t,
    'with or without the trailing LF on any line',
    fc.property(requestArb, fc.func(fc.boolean()), (r, lf) => {
      const wants = encodeLines(wantSection(r), (i) => lf(i))
      return same(
        parseUploadPackRequestV1(encodeRequest(r, wants)),
        expected(r),
      )
    }),
    { numRuns: 300 },
  )
  holds(
    t,
    'want-section lines in any order: lists keep the order they were sent in',
    fc.property(requestArb, fc.array(fc.nat()), (r, keys) => {
      const lines = wantSection(r)
        .map((line, i) => ({ line, key: keys[i] ?? i }))
        .sort((a, b) => a.key - b.key)
        .map(({ line }) => line)
      const values = (keyword: string): string[] =>
        lines
          .filter((l) => l.text.startsWith(`${keyword} `))
          .map((l) => l.text.split(' ')[1] ?? '')
      const want = {
        ...expected(r),
        wants: values('want'),
        shallows: values('shallow'),
        deepenNot: lines
          .filter((l) => l.text.startsWith('deepen-not '))
          .map((l) => l.text.slice('deepen-not '.length)),
      }
      return same(
        parseUploadPackRequestV1(encodeRequest(r, encodeLines(lines))),
        want,
      )
    }),
    { numRuns: 300 },
  )
  holds(
    t,
    'haves regrouped into any blocks give the same haves, duplicates kept',
    fc.property(requestArb, fc.array(fc.nat({ max: 3 })), (r, sizes) => {
      const haves = r.haveBlocks.flat()
      const blocks: string[][] = []
      let at = 0
      for (const size of sizes) {
        blocks.push(haves.slice(at, at + size))
        at += size
      }
      blocks.push(haves.slice(at))
      const regrouped = { ...r, haveBlocks: blocks }
      // Only the count of flushes between the blocks differs.
      return same(
        { ...parseUploadPackRequestV1(encodeRequest(regrouped)), haveFlushes: 0 },
        { ...expected(r), haveFlushes: 0 },
      )
    }),
    { numRuns: 300 },
  )
  holds(
    t,
    'capability words spread over several want lines are all kept, in order',
    fc.property(requestArb, fc.array(fc.nat()), (r, owners) => {
      // word i goes on the want line owners[i] (mod the number of wants)
      const words: string[][] = r.wants.map(() => [])
      r.capabilities.forEach((w, i) => {
        words[(owners[i] ?? 0) % r.wants.length]?.push(w)
      })
      const lines = wantSection({ ...r, capabilities: [] }).map((l, i) => {
        const extra = words[i] ?? []
        return i < r.wants.length && extra.length > 0
          ? { ...l, text: `${l.text} ${extra.join(' ')}` }
          : l
      })
      return same(
        parseUploadPackRequestV1(encodeRequest(r, encodeLines(lines))),
        { ...expected(r), capabilities: words.flat() },
      )
    }),
    { numRuns: 300 },
  )
  t.end()
})

void t.test('what the parser refuses', (t) => {
  const refused = (body: Buffer, offset?: number): boolean => {
    const r = outcome(body.length, () => parseUploadPackRequestV1(body))
    return (
      !r.ok &&
      r.code === 'ERR_PROTOCOL_BAD_REQUEST' &&
      (offset === undefined || r.offset === offset)
    )
  }
  holds(
    t,
    'deepen together with deepen-since or deepen-not',
    fc.property(
      requestArb,
      fc.integer({ min: 1, max: 2147483647 }),
      fc.oneof(
        fc.nat().map((n) => `deepen-since ${n}`),
        valueArb.map((v) => `deepen-not ${v}`),
      ),
      (r, depth, other) => {
        const lines = [
          ...wantSection({ ...r, depth: { kind: 'none' } }),
          { text: `deepen ${depth}`, lf: false },
          { text: other, lf: false },
        ]
        return refused(encodeRequest(r, encodeLines(lines)))
      },
    ),
    { numRuns: 300 },
  )
  holds(
    t,
    'a depth or a time that is not a canonical decimal in range, at the line',
    fc.property(
      requestArb,
      fc.oneof(
        fc.nat().map((n) => `0${n}`),
        fc.constantFrom('', '0', '+1', '-1', ' 1', '1 ', '0x10', '1e3', '1.0'),
        fc.bigInt({ min: 2147483648n, max: 2n ** 70n }).map(String),
      ),
      fc.boolean(),
      (r, value, since) => {
        if (
          since &&
          /^(?:0|[1-9][0-9]*)$/.test(value) &&
          Number.isSafeInteger(Number(value))
        )
          return true
        const wants = encodeLines(
          wantSection({ ...r, depth: { kind: 'none' } }),
        )
        const offset = wants.reduce((n, b) => n + b.length, 0)
        const bad = pkt(`${since ? 'deepen-since' : 'deepen'} ${value}`)
        return refused(encodeRequest(r, [...wants, bad]), offset)
      },
    ),
    { numRuns: 300 },
  )
  holds(
    t,
    'a malformed object id in a want, shallow or have line, at the line',
    fc.property(
      requestArb,
      fc.constantFrom('want', 'shallow', 'have'),
      fc.oneof(
        oidArb.map((o) => o.toUpperCase()).filter((o) => /[A-F]/.test(o)),
        oidArb.map((o) => o.slice(1)),
        oidArb.map((o) => `${o}0`),
        oidArb.map((o) => `${o.slice(1)}g`),
        fc.constantFrom('', 'HEAD', 'refs/heads/main'),
      ),
      (r, keyword, oid) => {
        const wants = encodeLines(wantSection(r))
        const bad = pkt(`${keyword} ${oid}\n`)
        if (keyword === 'have') {
          const before = Buffer.concat([...wants, FLUSH])
          return refused(Buffer.concat([before, bad]), before.length)
        }
        const before = Buffer.concat(wants)
        return refused(Buffer.concat([before, bad, FLUSH]), before.length)
      },
    ),
    { numRuns: 300 },
  )
  holds(
    t,
    'a second filter, a have before the flush, anything after done, a delim or response-end anywhere',
    fc.property(
      requestArb,
      fc.constantFrom('filter', 'have', 'after-done', 'delim', 'response-end'),
      fc.nat(),
      (r, kind, at) => {
        const wants = encodeLines(wantSection(r))
        switch (kind) {
          case 'filter':
            return refused(
              Buffer.concat([
                ...wants,
                pkt('filter blob:none'),
                pkt('filter tree:0'),
                FLUSH,
              ]),
            )
          case 'have':
            return refused(
              Buffer.concat([
                ...wants,
                pkt(`have ${r.wants[0] ?? ''}\n`),
                FLUSH,
              ]),
            )
          case 'after-done':
            return refused(
              Buffer.concat([
                encodeRequest({ ...r, done: true }),
                [FLUSH, pkt('done\n'), pkt('have x')][at % 3] ?? FLUSH,
              ]),
            )
          case 'delim':
          case 'response-end': {
            // at a packet boundary
            const frames = [...wants, FLUSH, ...haveSection(r)]
            const i = at % (frames.length + 1)
            const special = kind === 'delim' ? DELIM : RESPONSE_END
            const before = Buffer.concat(frames.slice(0, i))
            return refused(
              Buffer.concat([before, special, ...frames.slice(i)]),
              before.length,
            )
          }
        }
      },
    ),
    { numRuns: 300 },
  )
  t.end()
})

const captured = [
  'http-v0-clone/02',
  'http-v0-depth1/02',
  'http-v0-depth1/03',
  'http-v0-fetch/02',
  'http-v0-filter/02',
  'http-v0-since/02',
  'http-v0-ci/03',
  'http-v0-mirror/02',
].map((name) => fixture(`${name}-git-upload-pack.req.bin`))

void t.test('arbitrary input fails only with ProtocolError', (t) => {
  failsOnlyWithProtocolError(
    t,
    parseUploadPackRequestV1,
    requestArb.map((r) => encodeRequest(r)),
    captured,
  )
  t.end()
})
