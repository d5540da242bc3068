import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import t from 'tap'
import { PktLineFramer } from '../../../../src/protocol/pkt-line.js'
import {
  createAdvertisementFilterV1,
  parseAdvertisementV1,
} from '../../../../src/protocol/v1/advertisement.js'
import {
  FLUSH,
  chunkings,
  fixture,
  pkt,
  repo,
  splitAfterFlush,
} from '../fixtures/transcripts.js'

async function filter(remove: string[], parts: Buffer[]): Promise<Buffer> {
  const out: Buffer[] = []
  await pipeline(
    Readable.from(parts),
    createAdvertisementFilterV1(new Set(remove)),
    async (source: AsyncIterable<Buffer>) => {
      for await (const chunk of source) out.push(chunk)
    },
  )
  return Buffer.concat(out)
}

/** Raw packets of a buffer (the tail after the last complete packet is dropped). */
function frames(buf: Buffer): Buffer[] {
  const framer = new PktLineFramer()
  framer.write(buf)
  const out: Buffer[] = []
  for (let f = framer.next(); f !== null; f = framer.next())
    out.push(Buffer.from(f.raw))
  return out
}

const v0Http = fixture('http-v0-clone/01-info-refs.res.bin')
const v1Http = fixture('http-v1-clone/01-info-refs.res.bin')
const v2Http = fixture('http-v2-clone/01-info-refs.res.bin')
const v0Ssh = fixture('ssh-v0-clone/out.bin') // advertisement, then the whole upload-pack response
const v1Ssh = fixture('ssh-v1-clone/out.bin')

const REFS = [
  { oid: repo.main, name: 'HEAD' },
  { oid: repo.feature, name: 'refs/heads/feature' },
  { oid: repo.main, name: 'refs/heads/main' },
  { oid: repo.tagV02, name: 'refs/tags/v0.2' },
  { oid: repo.tagV02Peeled, name: 'refs/tags/v0.2^{}' },
]
/** The capability list upload-pack 2.39.5 sends (HTTP adds no-done; the repository allows filter and any sha1). */
const caps = (transport: 'http' | 'ssh'): string[] => [
  'multi_ack',
  'thin-pack',
  'side-band',
  'side-band-64k',
  'ofs-delta',
  'shallow',
  'deepen-since',
  'deepen-not',
  'deepen-relative',
  'no-progress',
  'include-tag',
  'multi_ack_detailed',
  'allow-tip-sha1-in-want',
  'allow-reachable-sha1-in-want',
  ...(transport === 'http' ? ['no-done'] : []),
  'symref=HEAD:refs/heads/main',
  'filter',
  'object-format=sha1',
  'agent=git/2.39.5',
]

void t.test('parses real advertisements', (t) => {
  const cases = [
    {
      name: 'v0 over HTTP',
      body: v0Http,
      version: 0,
      service: 'git-upload-pack',
      transport: 'http' as const,
    },
    {
      name: 'v1 over HTTP',
      body: v1Http,
      version: 1,
      service: 'git-upload-pack',
      transport: 'http' as const,
    },
    {
      name: 'v0 over ssh',
      body: splitAfterFlush(v0Ssh, 1)[0],
      version: 0,
      service: null,
      transport: 'ssh' as const,
    },
    {
      name: 'v1 over ssh',
      body: splitAfterFlush(v1Ssh, 1)[0],
      version: 1,
      service: null,
      transport: 'ssh' as const,
    },
  ]
  for (const c of cases) {
    t.strictSame(
      parseAdvertisementV1(c.body),
      {
        version: c.version,
        service: c.service,
        refs: REFS,
        capabilities: caps(c.transport),
        shallows: [],
      },
      c.name,
    )
  }
  t.end()
})

void t.test('parses hand-made advertisements', (t) => {
  const zero = '0'.repeat(40)
  const empty = Buffer.concat([
    pkt(`${zero} capabilities^{}\0multi_ack agent=git/2.39.5\n`),
    FLUSH,
  ])
  t.strictSame(
    parseAdvertisementV1(empty),
    {
      version: 0,
      service: null,
      refs: [],
      capabilities: ['multi_ack', 'agent=git/2.39.5'],
      shallows: [],
    },
    'empty repository',
  )
  const shallow = Buffer.concat([
    pkt(`${repo.main} HEAD\0shallow\n`),
    pkt(`shallow ${repo.first}\n`),
    FLUSH,
  ])
  t.strictSame(
    parseAdvertisementV1(shallow).shallows,
    [repo.first],
    'shallow server repository',
  )
  const receive = Buffer.concat([
    pkt('# service=git-receive-pack\n'),
    FLUSH,
    pkt(`${repo.main} refs/heads/main\0report-status\n`),
    FLUSH,
  ])
  t.match(parseAdvertisementV1(receive), {
    service: 'git-receive-pack',
    refs: [{ name: 'refs/heads/main' }],
  })
  t.strictSame(parseAdvertisementV1(FLUSH).refs, [], 'no refs at all')
  t.end()
})

void t.test('rejects what is not a v0/v1 advertisement', (t) => {
  const cases: {
    name: string
    body: Buffer
    message: RegExp
    code?: string
  }[] = [
    {
      name: 'v2',
      body: v2Http,
      message: /not a v0\/v1 advertisement: "version 2"/,
    },
    {
      name: 'ERR',
      body: pkt('ERR access denied\n'),
      message: /the server sent ERR: access denied/,
    },
    {
      name: 'no flush after # service',
      body: Buffer.concat([
        pkt('# service=git-upload-pack\n'),
        pkt(`${repo.main} HEAD\n`),
        FLUSH,
      ]),
      message: /no flush after the # service line/,
    },
    {
      name: 'no final flush',
      body: v0Http.subarray(0, -4),
      message: /does not end with a flush/,
    },
    {
      name: 'data after the final flush',
      body: v0Ssh,
      message: /data after the final flush/,
    },
    {
      name: 'bad oid',
      body: Buffer.concat([pkt('1234 HEAD\n'), FLUSH]),
      message: /bad ref line "1234 HEAD"/,
    },
    {
      name: 'no ref name',
      body: Buffer.concat([pkt(`${repo.main}\n`), FLUSH]),
      message: /bad ref line/,
    },
    {
      name: 'NUL on a later line',
      body: Buffer.concat([
        pkt(`${repo.main} HEAD\n`),
        pkt(`${repo.main} main\0x\n`),
        FLUSH,
      ]),
      message: /bad ref line/,
    },
    {
      name: 'bad shallow',
      body: Buffer.concat([
        pkt(`${repo.main} HEAD\n`),
        pkt('shallow x\n'),
        FLUSH,
      ]),
      message: /bad shallow line/,
    },
    {
      name: 'delim in the list',
      body: Buffer.concat([
        pkt(`${repo.main} HEAD\n`),
        Buffer.from('0001'),
        FLUSH,
      ]),
      message: /unexpected delim packet/,
    },
    {
      name: 'truncated packet',
      body: v0Http.subarray(0, 100),
      message: /ended inside a pkt-line/,
      code: 'ERR_PROTOCOL_TRUNCATED',
    },
  ]
  for (const c of cases) {
    t.throws(
      () => parseAdvertisementV1(c.body),
      {
        name: 'ProtocolError',
        code: c.code ?? 'ERR_PROTOCOL_BAD_ADVERTISEMENT',
        message: c.message,
      },
      c.name,
    )
  }
  t.end()
})

void t.test(
  'the filter rewrites only the capability list, under any chunking',
  async (t) => {
    const remove = [
      'filter',
      'allow-tip-sha1-in-want',
      'allow-reachable-sha1-in-want',
      'symref',
      'agent',
      'no-such-cap',
    ]
    const kept = (transport: 'http' | 'ssh'): string[] =>
      caps(transport).filter(
        (c) =>
          ![
            'filter',
            'allow-tip-sha1-in-want',
            'allow-reachable-sha1-in-want',
          ].includes(c) &&
          !c.startsWith('symref=') &&
          !c.startsWith('agent='),
      )
    const cases = [
      {
        name: 'v0 over HTTP',
        body: v0Http,
        firstRef: 2,
        transport: 'http' as const,
        advertisement: v0Http,
      },
      {
        name: 'v1 over HTTP',
        body: v1Http,
        firstRef: 3,
        transport: 'http' as const,
        advertisement: v1Http,
      },
      // over ssh the response follows on the same stream: it must pass untouched
      {
        name: 'v0 over ssh, whole stream',
        body: v0Ssh,
        firstRef: 0,
        transport: 'ssh' as const,
        advertisement: splitAfterFlush(v0Ssh, 1)[0],
      },
      {
        name: 'v1 over ssh, whole stream',
        body: v1Ssh,
        firstRef: 1,
        transport: 'ssh' as const,
        advertisement: splitAfterFlush(v1Ssh, 1)[0],
      },
    ]
    for (const c of cases) {
      const whole = await filter(remove, [c.body])
      for (const { name, parts } of chunkings(c.body)) {
        t.ok(
          (await filter(remove, parts)).equals(whole),
          `${c.name}, ${name} chunks = whole buffer`,
        )
      }
      // exactly one packet differs: the first ref line
      const before = frames(c.body)
      const after = frames(whole)
      t.equal(after.length, before.length, `${c.name}: same packet count`)
      before.forEach((raw, i) => {
        if (i !== c.firstRef) {
          t.ok(after[i]?.equals(raw), `${c.name}: packet ${i} unchanged`)
        }
      })
      t.ok(
        whole
          .subarray(whole.length - (c.body.length - c.advertisement.length))
          .equals(c.body.subarray(c.advertisement.length)),
        `${c.name}: everything after the advertisement unchanged`,
      )
      const parsed = parseAdvertisementV1(
        whole.subarray(
          0,
          whole.length - (c.body.length - c.advertisement.length),
        ),
      )
      t.strictSame(
        parsed.capabilities,
        kept(c.transport),
        `${c.name}: capabilities removed`,
      )
      t.strictSame(parsed.refs, REFS, `${c.name}: refs unchanged`)
    }
    t.end()
  },
)

void t.test('the filter leaves other input alone', async (t) => {
  const cases = [
    { name: 'nothing to remove', body: v0Http, remove: ['bundle-uri'] },
    { name: 'empty set', body: v1Http, remove: [] },
    {
      name: 'v2 advertisement',
      body: v2Http,
      remove: ['agent', 'fetch', 'ls-refs'],
    },
    {
      name: 'v2 over ssh, whole stream',
      body: fixture('ssh-v2-clone/out.bin'),
      remove: ['agent'],
    },
    {
      name: 'ERR',
      body: Buffer.concat([pkt('ERR access denied\n'), pkt('0000garbage')]),
      remove: ['agent'],
    },
    {
      name: 'first ref without capabilities',
      body: Buffer.concat([pkt(`${repo.main} HEAD\n`), FLUSH]),
      remove: ['agent'],
    },
    { name: 'empty', body: Buffer.alloc(0), remove: ['agent'] },
  ]
  for (const c of cases) {
    for (const { name, parts } of chunkings(c.body)) {
      t.ok((await filter(c.remove, parts)).equals(c.body), `${c.name}, ${name}`)
    }
  }
  t.end()
})

void t.test(
  'the filter keeps odd spacing and a line without LF byte-exact',
  async (t) => {
    const body = Buffer.concat([
      pkt(`${repo.main} HEAD\0a  filter b=1 c\xff`),
      FLUSH,
    ])
    const out = await filter(['filter'], [body])
    t.equal(
      out.toString('latin1'),
      Buffer.concat([pkt(`${repo.main} HEAD\0a b=1 c\xff`), FLUSH]).toString(
        'latin1',
      ),
    )
    const all = await filter(['a', 'b', 'c\xff', 'filter'], [body])
    t.equal(
      all.toString('latin1'),
      Buffer.concat([pkt(`${repo.main} HEAD\0`), FLUSH]).toString('latin1'),
    )
    t.end()
  },
)

void t.test('the filter buffers no more than the current packet', (t) => {
  const tr = createAdvertisementFilterV1(new Set(['filter']))
  const service = pkt('# service=git-upload-pack\n')
  tr.write(service.subarray(0, 10))
  t.equal(tr.read(), null, 'partial packet held back')
  tr.write(service.subarray(10))
  // a Transform in byte mode reads Buffers
  const released = tr.read() as Buffer | null
  t.ok(released?.equals(service), 'complete packet released at once')
  tr.destroy()
  t.end()
})

void t.test('the filter errors on malformed and truncated input', async (t) => {
  await t.rejects(filter(['filter'], [Buffer.from('zzzz')]), {
    name: 'ProtocolError',
    code: 'ERR_PROTOCOL_BAD_LENGTH',
  })
  await t.rejects(filter(['filter'], [v0Http.subarray(0, 100)]), {
    name: 'ProtocolError',
    code: 'ERR_PROTOCOL_TRUNCATED',
  })
  await t.rejects(filter(['filter'], [Buffer.from('0003')]), {
    code: 'ERR_PROTOCOL_BAD_LENGTH',
  })
  // once the first ref line has passed, what follows is not parsed
  t.ok(
    (await filter(['filter'], [Buffer.concat([v0Http, Buffer.from('zz')])]))
      .subarray(-2)
      .equals(Buffer.from('zz')),
  )
  t.end()
})
