import fc from 'fast-check'
import t from 'tap'
import {
  parseCommandRequestV2,
  parseFetchArgsV2,
  parseLsRefsArgsV2,
  serverOptions,
} from '../../../../src/protocol/v2/command-request.js'
import type {
  CommandRequestV2,
  FetchArgsV2,
  LsRefsArgsV2,
} from '../../../../src/protocol/v2/command-request.js'
import {
  DELIM,
  FLUSH,
  RESPONSE_END,
  garbageArb,
  grammarTextArb,
  failsOnlyWithProtocolError,
  holds,
  oidArb,
  outcome,
  pkt,
} from '../fixtures/properties.js'
import { fixture } from '../fixtures/transcripts.js'

const same = (a: unknown, b: unknown): boolean =>
  fc.stringify(a) === fc.stringify(b)

/** A data packet of a UTF-8 line. */
const line = (text: string): Buffer => pkt(Buffer.from(text, 'utf8'))

/** Any non-empty line of well-formed text that does not end in LF (the parser strips one). */
const textArb = fc
  .oneof(
    {
      weight: 3,
      arbitrary: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 30 }),
    },
    { weight: 1, arbitrary: grammarTextArb },
  )
  .filter((s) => s !== '' && !s.endsWith('\n'))

interface Request {
  command: string
  capabilities: string[]
  /** Where the command= line goes among the capability lines. */
  commandAt: number
  /** The 0001 before the arguments; git leaves it out when there are none. */
  delim: boolean
  args: string[]
}

const requestArb: fc.Arbitrary<Request> = fc
  .record({
    command: fc.oneof(
      fc.constantFrom('fetch', 'ls-refs', 'object-info', 'bundle-uri'),
      textArb,
    ),
    capabilities: fc.array(
      fc
        .oneof(
          fc.constantFrom(
            'agent=git/2.39.5',
            'object-format=sha1',
            'object-format=sha256',
            'session-id=abc',
          ),
          textArb.map((s) => `server-option=${s}`),
          textArb,
        )
        .filter((c) => !c.startsWith('command=')),
      { maxLength: 6 },
    ),
    commandAt: fc.nat(),
    delim: fc.boolean(),
    args: fc.array(textArb, { maxLength: 8 }),
  })
  .map((r) => ({ ...r, delim: r.delim || r.args.length > 0 }))

/** The request's packets; `lf(i)` says whether line `i` gets a trailing LF. */
function requestFrames(r: Request, lf: (i: number) => boolean): Buffer[] {
  const caps = [...r.capabilities]
  caps.splice(r.commandAt % (caps.length + 1), 0, `command=${r.command}`)
  let i = 0
  const enc = (text: string): Buffer => line(lf(i++) ? `${text}\n` : text)
  return [
    ...caps.map(enc),
    ...(r.delim ? [DELIM] : []),
    ...r.args.map(enc),
    FLUSH,
  ]
}

const expected = (r: Request): CommandRequestV2 => ({
  command: r.command,
  capabilities: r.capabilities,
  args: r.args,
})

void t.test('command requests from a model parse back to the model', (t) => {
  holds(
    t,
    'command= anywhere among the capabilities, LF or not on any line',
    fc.property(requestArb, fc.func(fc.boolean()), (r, lf) => {
      const got = parseCommandRequestV2(Buffer.concat(requestFrames(r, lf)))
      return (
        same(got, expected(r)) &&
        same(
          serverOptions(got?.capabilities ?? []),
          r.capabilities
            .filter((c) => c.startsWith('server-option='))
            .map((c) => c.slice(14)),
        )
      )
    }),
    { numRuns: 500 },
  )
  t.equal(
    parseCommandRequestV2(Buffer.alloc(0)),
    null,
    'empty body: end of session',
  )
  t.equal(parseCommandRequestV2(FLUSH), null, 'lone flush: end of session')
  t.end()
})

void t.test('what the command parser refuses', (t) => {
  const refused = (body: Buffer, code: string, offset?: number): boolean => {
    const r = outcome(body.length, () => parseCommandRequestV2(body))
    return (
      !r.ok && r.code === code && (offset === undefined || r.offset === offset)
    )
  }
  const frames = (r: Request): Buffer[] => requestFrames(r, () => true)
  const BAD = 'ERR_PROTOCOL_BAD_REQUEST'
  holds(
    t,
    'no command=, or a second one (at that line)',
    fc.property(requestArb, textArb, fc.nat(), (r, second, at) => {
      const f = frames(r)
      const caps = f.slice(0, r.capabilities.length + 1)
      const cmdIndex = r.commandAt % caps.length
      const without = [...f.slice(0, cmdIndex), ...f.slice(cmdIndex + 1)]
      const i = at % (r.capabilities.length + 2)
      const twice = [...f.slice(0, i), line(`command=${second}`), ...f.slice(i)]
      const secondAt = Buffer.concat(
        twice.slice(0, Math.max(i, cmdIndex + (i <= cmdIndex ? 1 : 0))),
      ).length
      const noCommand =
        r.capabilities.length === 0 && !r.delim
          ? parseCommandRequestV2(Buffer.concat(without)) === null // a lone flush
          : refused(Buffer.concat(without), BAD)
      return noCommand && refused(Buffer.concat(twice), BAD, secondAt)
    }),
    { numRuns: 300 },
  )
  holds(
    t,
    'an empty line, an empty command, a second delim or a response-end, at that packet',
    fc.property(
      requestArb,
      fc.constantFrom('empty', 'lf', 'command=', 'delim', 'response-end'),
      fc.nat(),
      (r, kind, at) => {
        const f = frames(r)
        const delimIndex = r.capabilities.length + 1
        // the packet goes before frame i, for i from `from` to `to`
        let from = 0
        let to = f.length - 1
        if (kind === 'delim') {
          if (!r.delim) return true
          from = delimIndex + 1
        }
        // among the capabilities it is a second command; after the delim an ordinary argument
        if (kind === 'command=' && r.delim) to = delimIndex
        const bad = {
          empty: line(''),
          lf: line('\n'),
          'command=': line('command='),
          delim: DELIM,
          'response-end': RESPONSE_END,
        }[kind]
        const i = from + (at % (to - from + 1))
        const before = Buffer.concat(f.slice(0, i))
        return refused(
          Buffer.concat([before, bad, ...f.slice(i)]),
          BAD,
          before.length,
        )
      },
    ),
    { numRuns: 500 },
  )
  holds(
    t,
    'no final flush is ERR_PROTOCOL_TRUNCATED; anything after it is refused, at or after the flush',
    fc.property(
      requestArb,
      garbageArb.filter((g) => g.length > 0),
      (r, after) => {
        const body = Buffer.concat(frames(r))
        const cutOff = body.subarray(0, body.length - 4)
        const r2 = outcome(body.length + after.length, () =>
          parseCommandRequestV2(Buffer.concat([body, after])),
        )
        return (
          refused(cutOff, 'ERR_PROTOCOL_TRUNCATED') &&
          !r2.ok &&
          // a packet after the flush, or a malformed one, or one cut off: all at or after the flush
          (r2.offset ?? 0) >= body.length
        )
      },
    ),
    { numRuns: 300 },
  )
  t.end()
})

interface Fetch {
  wants: string[]
  haves: string[]
  shallows: string[]
  depth:
    | { kind: 'none' }
    | { kind: 'deepen'; depth: number }
    | { kind: 'since'; since: number | null; not: string[] }
  filter: string | null
  wantRefs: string[]
  flags: string[]
  packfileUris: string | null
  unknown: string[]
}

const FLAGS = [
  'done',
  'thin-pack',
  'ofs-delta',
  'no-progress',
  'include-tag',
  'sideband-all',
  'wait-for-done',
  'deepen-relative',
]
const KEYWORDS = [
  'want',
  'have',
  'shallow',
  'deepen',
  'deepen-since',
  'deepen-not',
  'filter',
  'want-ref',
  'packfile-uris',
]
const valueArb = fc.stringMatching(/^[ -~]{1,30}$/)

const fetchArb: fc.Arbitrary<Fetch> = fc.record({
  wants: fc.array(fc.oneof(oidArb, fc.constant('1'.repeat(40))), {
    maxLength: 6,
  }),
  haves: fc.array(fc.oneof(oidArb, fc.constant('2'.repeat(40))), {
    maxLength: 6,
  }),
  shallows: fc.array(oidArb, { maxLength: 3 }),
  depth: fc.oneof(
    fc.record({ kind: fc.constant('none' as const) }),
    fc.record({
      kind: fc.constant('deepen' as const),
      depth: fc.integer({ min: 1, max: 2147483647 }),
    }),
    fc.record({
      kind: fc.constant('since' as const),
      since: fc.option(fc.maxSafeNat()),
      not: fc.array(valueArb, { maxLength: 3 }),
    }),
  ),
  filter: fc.option(valueArb),
  wantRefs: fc.array(
    fc.oneof(fc.constantFrom('refs/heads/main', 'HEAD'), valueArb),
    { maxLength: 3 },
  ),
  flags: fc.subarray(FLAGS),
  packfileUris: fc.option(
    fc.oneof(fc.constantFrom('https', 'https,file'), valueArb),
  ),
  unknown: fc.array(
    textArb.filter((s) => {
      const space = s.indexOf(' ')
      return (
        !FLAGS.includes(s) &&
        (space < 0 || !KEYWORDS.includes(s.slice(0, space)))
      )
    }),
    { maxLength: 3 },
  ),
})

/** The argument lines git would send for `f` (fetch-pack.c order). */
function fetchLines(f: Fetch): string[] {
  const lines = f.flags.filter((x) => x !== 'done')
  for (const oid of f.shallows) lines.push(`shallow ${oid}`)
  switch (f.depth.kind) {
    case 'none':
      break
    case 'deepen':
      lines.push(`deepen ${f.depth.depth}`)
      break
    case 'since':
      if (f.depth.since !== null) lines.push(`deepen-since ${f.depth.since}`)
      for (const rev of f.depth.not) lines.push(`deepen-not ${rev}`)
  }
  if (f.filter !== null) lines.push(`filter ${f.filter}`)
  if (f.packfileUris !== null) lines.push(`packfile-uris ${f.packfileUris}`)
  for (const ref of f.wantRefs) lines.push(`want-ref ${ref}`)
  for (const oid of f.wants) lines.push(`want ${oid}`)
  for (const oid of f.haves) lines.push(`have ${oid}`)
  lines.push(...f.unknown)
  if (f.flags.includes('done')) lines.push('done')
  return lines
}

/** What parseFetchArgsV2 should return for `lines`, given that they came from `f`. */
function fetchExpected(f: Fetch, lines: string[]): FetchArgsV2 {
  const values = (keyword: string): string[] =>
    lines
      .filter((l) => l.startsWith(`${keyword} `))
      .map((l) => l.slice(keyword.length + 1))
  const flag = (name: string): boolean => f.flags.includes(name)
  return {
    wants: values('want'),
    haves: values('have'),
    shallows: values('shallow'),
    deepen: f.depth.kind === 'deepen' ? f.depth.depth : null,
    deepenSince: f.depth.kind === 'since' ? f.depth.since : null,
    deepenNot: values('deepen-not'),
    deepenRelative: flag('deepen-relative'),
    filter: f.filter,
    wantRefs: values('want-ref'),
    done: flag('done'),
    thinPack: flag('thin-pack'),
    ofsDelta: flag('ofs-delta'),
    noProgress: flag('no-progress'),
    includeTag: flag('include-tag'),
    sidebandAll: flag('sideband-all'),
    waitForDone: flag('wait-for-done'),
    packfileUris: f.packfileUris,
    unknown: lines.filter((l) => f.unknown.includes(l)),
  }
}

const shuffle = <T>(items: T[], keys: number[]): T[] =>
  items
    .map((item, i) => ({ item, key: keys[i] ?? i }))
    .sort((a, b) => a.key - b.key)
    .map(({ item }) => item)

void t.test('fetch arguments from a model parse back to the model', (t) => {
  holds(
    t,
    'a whole command=fetch request, as git sends it',
    fc.property(fetchArb, (f) => {
      const lines = fetchLines(f)
      const body = Buffer.concat([
        line('command=fetch'),
        line('agent=git/2.39.5\n'),
        line('object-format=sha1'),
        DELIM,
        ...lines.map((l) => line(`${l}\n`)),
        FLUSH,
      ])
      const req = parseCommandRequestV2(body)
      return (
        req !== null &&
        same(parseFetchArgsV2(req.args), fetchExpected(f, lines))
      )
    }),
    { numRuns: 500 },
  )
  holds(
    t,
    'argument order only decides the order within each list',
    fc.property(fetchArb, fc.array(fc.nat()), (f, keys) => {
      const lines = shuffle(fetchLines(f), keys)
      return same(parseFetchArgsV2(lines), fetchExpected(f, lines))
    }),
    { numRuns: 500 },
  )
  t.end()
})

void t.test('what the fetch argument parser refuses', (t) => {
  const refused = (lines: string[]): boolean => {
    const r = outcome(0, () => parseFetchArgsV2(lines))
    return !r.ok && r.code === 'ERR_PROTOCOL_BAD_REQUEST'
  }
  const badOid = fc.oneof(
    oidArb.map((o) => o.toUpperCase()).filter((o) => /[A-F]/.test(o)),
    oidArb.map((o) => o.slice(1)),
    oidArb.map((o) => `${o} `),
    fc.constantFrom('', 'HEAD', `${'a'.repeat(40)}\0`),
  )
  const badValue = fc.oneof(
    fc.nat().map((n) => `0${n}`),
    fc.constantFrom('', '+1', '-1', ' 1', '1 ', '0x10', '1e3'),
    fc.bigInt({ min: 2n ** 53n, max: 2n ** 70n }).map(String),
  )
  holds(
    t,
    'a malformed known argument anywhere among good ones',
    fc.property(
      fetchArb,
      fc.oneof(
        fc
          .tuple(fc.constantFrom('want', 'have', 'shallow'), badOid)
          .map(([k, v]) => `${k} ${v}`),
        badValue.map((v) => `deepen ${v}`),
        fc.constantFrom('deepen 0', 'deepen 2147483648'),
        badValue.map((v) => `deepen-since ${v}`),
        fc.constantFrom('deepen-not ', 'filter ', 'want-ref '),
      ),
      fc.nat(),
      (f, bad, at) => {
        const lines = fetchLines(f)
        const i = at % (lines.length + 1)
        return refused([...lines.slice(0, i), bad, ...lines.slice(i)])
      },
    ),
    { numRuns: 500 },
  )
  holds(
    t,
    'a second filter; deepen with deepen-since or deepen-not',
    fc.property(
      fetchArb,
      valueArb,
      fc.integer({ min: 1, max: 2147483647 }),
      fc.oneof(
        fc.maxSafeNat().map((n) => `deepen-since ${n}`),
        valueArb.map((v) => `deepen-not ${v}`),
      ),
      fc.array(fc.nat()),
      (f, filter, depth, other, keys) =>
        refused(
          shuffle(
            [...fetchLines({ ...f, filter: 'blob:none' }), `filter ${filter}`],
            keys,
          ),
        ) &&
        refused(
          shuffle(
            [
              ...fetchLines({ ...f, depth: { kind: 'none' } }),
              `deepen ${depth}`,
              other,
            ],
            keys,
          ),
        ),
    ),
    { numRuns: 300 },
  )
  t.end()
})

void t.test('ls-refs arguments', (t) => {
  interface LsRefs {
    flags: string[]
    prefixes: string[]
    unknown: string[]
  }
  const lsRefsArb: fc.Arbitrary<LsRefs> = fc.record({
    flags: fc.subarray(['symrefs', 'peel', 'unborn']),
    prefixes: fc.array(
      fc.oneof(
        fc.constantFrom('HEAD', 'refs/heads/', 'refs/tags/', ''),
        textArb,
      ),
      { maxLength: 4 },
    ),
    unknown: fc.array(
      textArb.filter(
        (s) =>
          !['symrefs', 'peel', 'unborn'].includes(s) &&
          !s.startsWith('ref-prefix '),
      ),
      { maxLength: 3 },
    ),
  })
  holds(
    t,
    'any order: flags set, prefixes and unknown lines in the order sent',
    fc.property(lsRefsArb, fc.array(fc.nat()), (m, keys) => {
      const lines = shuffle(
        [...m.flags, ...m.prefixes.map((p) => `ref-prefix ${p}`), ...m.unknown],
        keys,
      )
      const want: LsRefsArgsV2 = {
        symrefs: m.flags.includes('symrefs'),
        peel: m.flags.includes('peel'),
        unborn: m.flags.includes('unborn'),
        refPrefixes: lines
          .filter((l) => l.startsWith('ref-prefix '))
          .map((l) => l.slice(11)),
        unknown: lines.filter((l) => m.unknown.includes(l)),
      }
      return same(parseLsRefsArgsV2(lines), want)
    }),
    { numRuns: 300 },
  )
  holds(
    t,
    'never throws',
    fc.property(fc.array(fc.oneof(grammarTextArb, fc.string())), (lines) => {
      parseLsRefsArgsV2(lines)
    }),
    { numRuns: 300 },
  )
  t.end()
})

const captured = [
  'http-v2-clone/02',
  'http-v2-clone/03',
  'http-v2-depth1/03',
  'http-v2-fetch/03',
  'http-v2-filter/03',
  'http-v2-since/03',
  'http-v2-features/03',
].map((name) => fixture(`${name}-git-upload-pack.req.bin`))

void t.test('arbitrary input fails only with ProtocolError', (t) => {
  /** Parses a request, and its arguments as fetch and as ls-refs. */
  const parseAll = (buf: Buffer): void => {
    const req = parseCommandRequestV2(buf)
    if (req === null) return
    parseLsRefsArgsV2(req.args)
    parseFetchArgsV2(req.args)
  }
  failsOnlyWithProtocolError(
    t,
    parseAll,
    fc
      .tuple(requestArb, fc.func(fc.boolean()))
      .map(([r, lf]) => Buffer.concat(requestFrames(r, lf))),
    captured,
  )
  holds(
    t,
    'fetch arguments made of grammar words',
    fc.property(
      fc.array(fc.oneof(grammarTextArb, fc.string()), { maxLength: 12 }),
      (lines) => {
        outcome(0, () => parseFetchArgsV2(lines))
      },
    ),
    { numRuns: 1000 },
  )
  t.end()
})
