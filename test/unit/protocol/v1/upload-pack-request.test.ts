import t from 'tap'
import { parseUploadPackRequestV1 } from '../../../../src/protocol/v1/upload-pack-request.js'
import type { UploadPackRequestV1 } from '../../../../src/protocol/v1/upload-pack-request.js'
import { DELIM, FLUSH, fixture, pkt, repo } from '../fixtures/transcripts.js'

const EMPTY: UploadPackRequestV1 = {
  wants: [],
  capabilities: [],
  shallows: [],
  deepen: null,
  deepenSince: null,
  deepenNot: [],
  deepenRelative: false,
  filter: null,
  haves: [],
  done: false,
  flushesAfterWants: false,
  haveFlushes: 0,
}

/** What git 2.39.5 put after the first want: over HTTP (`no-done`) and over ssh. */
const caps = (
  extra: string[],
  transport: 'http' | 'ssh' = 'http',
): string[] => [
  'multi_ack_detailed',
  ...(transport === 'http' ? ['no-done'] : []),
  'side-band-64k',
  'thin-pack',
  ...extra,
  'deepen-since',
  'deepen-not',
  'agent=git/2.39.5',
]

const http = (name: string): Buffer =>
  fixture(`http-${name}-git-upload-pack.req.bin`)
const clonedRefs = [repo.feature, repo.main, repo.tagV02]

void t.test('parses the requests real git sent', (t) => {
  const cases: {
    name: string
    body: Buffer
    want: Partial<UploadPackRequestV1>
  }[] = [
    {
      name: 'v0 clone over HTTP (--progress): each ref once, HEAD folded into main',
      body: http('v0-clone/02'),
      want: { wants: clonedRefs, capabilities: caps(['ofs-delta']) },
    },
    {
      name: 'v0 depth 1 preflight (no done)',
      body: http('v0-depth1/02'),
      want: {
        wants: [repo.main],
        capabilities: caps(['include-tag', 'ofs-delta']),
        deepen: 1,
        done: false,
      },
    },
    {
      name: 'v0 depth 1 with done',
      body: http('v0-depth1/03'),
      want: {
        wants: [repo.main],
        capabilities: caps(['include-tag', 'ofs-delta']),
        deepen: 1,
      },
    },
    {
      name: 'v0 shallow-since',
      body: http('v0-since/03'),
      want: {
        wants: [repo.main],
        capabilities: caps(['no-progress', 'include-tag', 'ofs-delta']),
        deepenSince: Date.parse('2024-01-04T00:00:00Z') / 1000,
      },
    },
    {
      name: 'v0 filter: the filter capability comes after agent=',
      body: http('v0-filter/02'),
      want: {
        wants: clonedRefs,
        capabilities: [...caps(['no-progress', 'ofs-delta']), 'filter'],
        filter: 'blob:none',
      },
    },
    {
      name: 'v0 fetch with haves (no flush before done)',
      body: http('v0-fetch/02'),
      want: {
        wants: [repo.nextMain],
        capabilities: caps(['no-progress', 'ofs-delta']),
        haves: [repo.main, repo.mainParent, repo.feature],
      },
    },
    {
      name: 'v0 CI fetch by id',
      body: http('v0-ci/03'),
      want: {
        wants: [repo.main],
        capabilities: caps(['no-progress', 'include-tag', 'ofs-delta']),
        deepen: 1,
      },
    },
    {
      name: 'v0 CI fetch by id, --no-tags',
      body: http('v0-ci-notags/03'),
      want: {
        wants: [repo.main],
        capabilities: caps(['no-progress', 'ofs-delta']),
        deepen: 1,
      },
    },
    {
      name: 'v1 clone over HTTP: the same body as v0',
      body: http('v1-clone/02'),
      want: {
        wants: clonedRefs,
        capabilities: caps(['no-progress', 'ofs-delta']),
      },
    },
    {
      name: 'v0 clone over ssh: HEAD and main both wanted, no no-done',
      body: fixture('ssh-v0-clone/in.bin'),
      want: {
        wants: [repo.main, ...clonedRefs],
        capabilities: caps(['no-progress', 'ofs-delta'], 'ssh'),
      },
    },
    {
      name: 'v1 clone over ssh',
      body: fixture('ssh-v1-clone/in.bin'),
      want: {
        wants: [repo.main, ...clonedRefs],
        capabilities: caps(['no-progress', 'ofs-delta'], 'ssh'),
      },
    },
    {
      name: 'v0 depth 1 over ssh: wants, deepen, flush, then done after the shallow list',
      body: fixture('ssh-v0-depth1/in.bin'),
      want: {
        wants: [repo.main, repo.main],
        capabilities: caps(['no-progress', 'include-tag', 'ofs-delta'], 'ssh'),
        deepen: 1,
      },
    },
    {
      name: 'v0 fetch over ssh',
      body: fixture('ssh-v0-fetch/in.bin'),
      want: {
        wants: [repo.nextMain],
        capabilities: caps(['no-progress', 'ofs-delta'], 'ssh'),
        haves: [repo.main, repo.mainParent, repo.feature],
      },
    },
    {
      name: 'unknown object',
      body: http('v0-unknown/02'),
      want: {
        wants: ['1234567890'.repeat(4)],
        capabilities: caps(['no-progress', 'ofs-delta']),
      },
    },
    {
      name: 'hand-made request without side-band',
      body: fixture('raw-v0-nosideband/req.bin'),
      want: {
        wants: [repo.main],
        capabilities: [
          'multi_ack_detailed',
          'no-done',
          'thin-pack',
          'ofs-delta',
          'agent=git/2.39.5',
        ],
      },
    },
  ]
  for (const c of cases) {
    const got = parseUploadPackRequestV1(c.body)
    // the fields named in the case must be exactly equal; the others have their defaults
    t.strictSame(
      got,
      { ...EMPTY, flushesAfterWants: true, done: true, ...c.want },
      c.name,
    )
  }
  t.end()
})

void t.test(
  'empty body and lone flush (probe, ls-remote) have no wants',
  (t) => {
    t.strictSame(parseUploadPackRequestV1(Buffer.alloc(0)), EMPTY)
    t.strictSame(parseUploadPackRequestV1(FLUSH), {
      ...EMPTY,
      flushesAfterWants: true,
    })
    t.end()
  },
)

void t.test('hand-made requests', (t) => {
  const sha256 = 'ab'.repeat(32)
  const cases: { name: string; body: Buffer; want: UploadPackRequestV1 }[] = [
    {
      name: 'every line kind, haves in blocks',
      body: Buffer.concat([
        pkt(`want ${repo.main} side-band-64k  deepen-relative ofs-delta\n`),
        pkt(`want ${repo.feature}\n`),
        pkt(`shallow ${repo.first}\n`),
        pkt('deepen-not refs/tags/v0.2\n'),
        pkt('deepen-since 1704326400'),
        pkt('filter tree:0\n'),
        FLUSH,
        pkt(`have ${repo.mainParent}\n`),
        FLUSH,
        pkt(`have ${repo.first}\n`),
        pkt(`have ${repo.first}\n`),
        FLUSH,
        pkt('done\n'),
      ]),
      want: {
        ...EMPTY,
        wants: [repo.main, repo.feature],
        capabilities: ['side-band-64k', 'deepen-relative', 'ofs-delta'],
        shallows: [repo.first],
        deepenSince: 1704326400,
        deepenNot: ['refs/tags/v0.2'],
        deepenRelative: true,
        filter: 'tree:0',
        haves: [repo.mainParent, repo.first, repo.first],
        done: true,
        flushesAfterWants: true,
        haveFlushes: 2,
      },
    },
    {
      name: 'capability words on a later want line are kept',
      body: Buffer.concat([
        pkt(`want ${repo.main} ofs-delta\n`),
        pkt(`want ${repo.feature} no-progress\n`),
        FLUSH,
      ]),
      want: {
        ...EMPTY,
        wants: [repo.main, repo.feature],
        capabilities: ['ofs-delta', 'no-progress'],
        flushesAfterWants: true,
      },
    },
    {
      name: 'sha256 object ids',
      body: Buffer.concat([
        pkt(`want ${sha256} object-format=sha256\n`),
        FLUSH,
        pkt(`have ${sha256}\n`),
        FLUSH,
      ]),
      want: {
        ...EMPTY,
        wants: [sha256],
        capabilities: ['object-format=sha256'],
        haves: [sha256],
        flushesAfterWants: true,
        haveFlushes: 1,
      },
    },
    {
      name: 'body cut after the wants (no flush)',
      body: pkt(`want ${repo.main}\n`),
      want: { ...EMPTY, wants: [repo.main] },
    },
    {
      name: 'deepen-relative as a line, largest depth',
      body: Buffer.concat([
        pkt(`want ${repo.main}\n`),
        pkt('deepen 2147483647\n'),
        pkt('deepen-relative\n'),
        FLUSH,
      ]),
      want: {
        ...EMPTY,
        wants: [repo.main],
        deepen: 2147483647,
        deepenRelative: true,
        flushesAfterWants: true,
      },
    },
  ]
  for (const c of cases)
    t.strictSame(parseUploadPackRequestV1(c.body), c.want, c.name)
  t.end()
})

void t.test(
  'malformed requests are ProtocolErrors naming the line and its offset',
  (t) => {
    const want = pkt(`want ${repo.main}\n`) // 50 bytes
    const long = `want ${'x'.repeat(300)}`
    const cases: {
      name: string
      body: Buffer
      code?: string
      message: RegExp
      offset?: number
    }[] = [
      {
        name: 'upper-case oid',
        body: pkt(`want ${repo.main.toUpperCase()}\n`),
        message: /bad object id in want line at offset 0: "want [0-9A-F]{40}"/,
        offset: 0,
      },
      {
        name: '39-digit oid',
        body: pkt(`want ${repo.main.slice(1)}\n`),
        message: /bad object id/,
      },
      {
        name: 'oid glued to a capability',
        body: pkt(`want ${repo.main}\0side-band\n`),
        message: /bad object id/,
      },
      {
        name: 'want without oid',
        body: pkt('want \n'),
        message: /bad object id/,
      },
      {
        name: 'bad shallow',
        body: Buffer.concat([want, pkt('shallow nope\n')]),
        message: /bad object id in shallow line at offset 50/,
        offset: 50,
      },
      {
        name: 'bad have',
        body: Buffer.concat([want, FLUSH, pkt('have 12\n')]),
        message: /bad object id in have line at offset 54/,
        offset: 54,
      },
      {
        name: 'unknown line',
        body: Buffer.concat([want, pkt('frobnicate\n')]),
        message: /unexpected line in the want list at offset 50: "frobnicate"/,
      },
      {
        name: 'unknown line among haves',
        body: Buffer.concat([want, FLUSH, pkt(`want ${repo.main}\n`)]),
        message: /unexpected line in the have list/,
      },
      {
        name: 'have before the flush',
        body: Buffer.concat([want, pkt(`have ${repo.main}\n`)]),
        message: /have\/done before the flush/,
      },
      {
        name: 'done before the flush',
        body: Buffer.concat([want, pkt('done\n')]),
        message: /have\/done before the flush/,
      },
      {
        name: 'data after done',
        body: Buffer.concat([want, FLUSH, pkt('done\n'), pkt('done\n')]),
        message: /data after "done" at offset 63/,
      },
      {
        name: 'flush after done',
        body: Buffer.concat([want, FLUSH, pkt('done\n'), FLUSH]),
        message: /data after "done"/,
      },
      {
        name: 'data after an empty want list',
        body: Buffer.concat([FLUSH, pkt('done\n')]),
        message: /data after an empty want list at offset 4/,
      },
      {
        name: 'delim',
        body: Buffer.concat([want, DELIM]),
        message: /unexpected delim packet at offset 50/,
      },
      {
        name: 'response-end',
        body: Buffer.concat([want, Buffer.from('0002')]),
        message: /unexpected response-end packet/,
      },
      {
        name: 'deepen 0',
        body: Buffer.concat([want, pkt('deepen 0')]),
        message: /bad deepen line at offset 50: "deepen 0"/,
      },
      {
        name: 'deepen 010 (octal to upload-pack)',
        body: Buffer.concat([want, pkt('deepen 010')]),
        message: /bad deepen line/,
      },
      {
        name: 'deepen 0x10',
        body: Buffer.concat([want, pkt('deepen 0x10')]),
        message: /bad deepen line/,
      },
      {
        name: 'deepen -1',
        body: Buffer.concat([want, pkt('deepen -1')]),
        message: /bad deepen line/,
      },
      {
        name: 'deepen 2^31 (int overflow upstream)',
        body: Buffer.concat([want, pkt('deepen 2147483648')]),
        message: /bad deepen line/,
      },
      {
        name: 'deepen with a space',
        body: Buffer.concat([want, pkt('deepen  1')]),
        message: /bad deepen line/,
      },
      {
        name: 'deepen-since not a number',
        body: Buffer.concat([want, pkt('deepen-since yesterday')]),
        message: /bad deepen-since line/,
      },
      {
        name: 'deepen-since too large',
        body: Buffer.concat([want, pkt('deepen-since 99999999999999999999')]),
        message: /bad deepen-since line/,
      },
      {
        name: 'empty deepen-not',
        body: Buffer.concat([want, pkt('deepen-not ')]),
        message: /bad deepen-not line/,
      },
      {
        name: 'empty filter',
        body: Buffer.concat([want, pkt('filter ')]),
        message: /bad filter line/,
      },
      {
        name: 'second filter',
        body: Buffer.concat([
          want,
          pkt('filter blob:none'),
          pkt('filter tree:0'),
        ]),
        message: /second filter line at offset 70/,
      },
      {
        name: 'deepen with deepen-since',
        body: Buffer.concat([
          want,
          pkt('deepen 1'),
          pkt('deepen-since 5'),
          FLUSH,
        ]),
        message: /cannot be used together/,
      },
      {
        name: 'deepen with deepen-not',
        body: Buffer.concat([
          want,
          pkt('deepen-not main'),
          pkt('deepen 3'),
          FLUSH,
        ]),
        message: /cannot be used together/,
      },
      {
        name: 'long line is cut to 100 characters',
        body: pkt(long),
        message: new RegExp(`"${long.slice(0, 100)}…"$`),
      },
      {
        name: 'truncated packet',
        body: Buffer.concat([want, Buffer.from('0032want')]),
        code: 'ERR_PROTOCOL_TRUNCATED',
        message: /ended inside a pkt-line at offset 50/,
        offset: 50,
      },
      {
        name: 'bad pkt length',
        body: Buffer.concat([want, Buffer.from('wxyz')]),
        code: 'ERR_PROTOCOL_BAD_LENGTH',
        message: /invalid pkt-line length/,
        offset: 50,
      },
    ]
    for (const c of cases) {
      const wanted = {
        name: 'ProtocolError',
        code: c.code ?? 'ERR_PROTOCOL_BAD_REQUEST',
        message: c.message,
        ...(c.offset === undefined ? {} : { offset: c.offset }),
      }
      t.throws(() => parseUploadPackRequestV1(c.body), wanted, c.name)
    }
    t.end()
  },
)
