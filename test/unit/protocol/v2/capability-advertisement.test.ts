import t from 'tap'
import {
  filterCapabilityAdvertisementV2,
  parseCapabilityAdvertisementV2,
} from '../../../../src/protocol/v2/capability-advertisement.js'
import type { CapabilityRemovalV2 } from '../../../../src/protocol/v2/capability-advertisement.js'
import {
  DELIM,
  FLUSH,
  fixture,
  pkt,
  splitAfterFlush,
} from '../fixtures/transcripts.js'

const plain = fixture('http-v2-clone/01-info-refs.res.bin')
const features = fixture('http-v2-features/01-info-refs.res.bin')
const sha256 = splitAfterFlush(fixture('ssh-v2-sha256-clone/out.bin'), 1)[0]

const REMOVE: CapabilityRemovalV2 = {
  fetchFeatures: new Set(['ref-in-want', 'sideband-all', 'packfile-uris']),
  capabilities: new Set(['bundle-uri', 'promisor-remote']),
}
const NOTHING: CapabilityRemovalV2 = {
  fetchFeatures: new Set(),
  capabilities: new Set(),
}

/** What a newer server could send: bundle-uri, promisor-remote and packfile-uris, no LF on some lines. */
const newer = Buffer.concat([
  pkt('version 2\n'),
  pkt('agent=git/2.47.0\n'),
  pkt('ls-refs=unborn\n'),
  pkt(
    'fetch=shallow wait-for-done filter packfile-uris ref-in-want sideband-all\n',
  ),
  pkt('server-option\n'),
  pkt('object-format=sha1\n'),
  pkt('object-info'),
  pkt('bundle-uri\n'),
  pkt('promisor-remote=origin,https://example.com/promisor\n'),
  FLUSH,
])
const newerFiltered = Buffer.concat([
  pkt('version 2\n'),
  pkt('agent=git/2.47.0\n'),
  pkt('ls-refs=unborn\n'),
  pkt('fetch=shallow wait-for-done filter\n'),
  pkt('server-option\n'),
  pkt('object-format=sha1\n'),
  pkt('object-info'),
  FLUSH,
])

void t.test('parses real advertisements', (t) => {
  t.strictSame(
    parseCapabilityAdvertisementV2(plain).capabilities,
    new Map<string, string | null>([
      ['agent', 'git/2.39.5'],
      ['ls-refs', 'unborn'],
      ['fetch', 'shallow wait-for-done filter'],
      ['server-option', null],
      ['object-format', 'sha1'],
      ['object-info', null],
    ]),
  )
  t.equal(
    parseCapabilityAdvertisementV2(features).capabilities.get('fetch'),
    'shallow wait-for-done filter ref-in-want sideband-all',
  )
  t.equal(
    parseCapabilityAdvertisementV2(sha256).capabilities.get('object-format'),
    'sha256',
  )
  t.equal(
    parseCapabilityAdvertisementV2(sha256).capabilities.get('fetch'),
    'shallow wait-for-done',
    'no filter: not allowed there',
  )
  t.end()
})

void t.test('rejects what is not a v2 advertisement', (t) => {
  const cases: { name: string; body: Buffer; code: string; message: RegExp }[] =
    [
      {
        name: 'v0',
        body: fixture('http-v0-clone/01-info-refs.res.bin'),
        code: 'ERR_PROTOCOL_BAD_ADVERTISEMENT',
        message: /not a v2 capability advertisement/,
      },
      {
        name: 'empty',
        body: Buffer.alloc(0),
        code: 'ERR_PROTOCOL_BAD_ADVERTISEMENT',
        message: /not a v2/,
      },
      {
        name: 'version 1',
        body: Buffer.concat([pkt('version 1\n'), FLUSH]),
        code: 'ERR_PROTOCOL_BAD_ADVERTISEMENT',
        message: /not a v2/,
      },
      {
        name: 'truncated',
        body: plain.subarray(0, -4),
        code: 'ERR_PROTOCOL_TRUNCATED',
        message: /does not end with a flush/,
      },
      {
        name: 'cut inside a packet',
        body: plain.subarray(0, 40),
        code: 'ERR_PROTOCOL_TRUNCATED',
        message: /does not end with a flush/,
      },
      {
        name: 'delim inside',
        body: Buffer.concat([pkt('version 2\n'), DELIM, FLUSH]),
        code: 'ERR_PROTOCOL_BAD_ADVERTISEMENT',
        message: /unexpected special packet/,
      },
      {
        name: 'data after the flush',
        body: Buffer.concat([plain, pkt('x')]),
        code: 'ERR_PROTOCOL_BAD_ADVERTISEMENT',
        message: /data after the final flush at offset 154/,
      },
      {
        name: 'bad length',
        body: Buffer.concat([pkt('version 2\n'), Buffer.from('zzzz')]),
        code: 'ERR_PROTOCOL_BAD_LENGTH',
        message: /invalid pkt-line length/,
      },
    ]
  for (const c of cases) {
    t.throws(
      () => parseCapabilityAdvertisementV2(c.body),
      { name: 'ProtocolError', code: c.code, message: c.message },
      c.name,
    )
  }
  t.end()
})

void t.test('filters', (t) => {
  const cases: {
    name: string
    body: Buffer
    remove: CapabilityRemovalV2
    want: Buffer
  }[] = [
    {
      name: 'ref-in-want and sideband-all removed: byte-identical to the plain server',
      body: features,
      remove: REMOVE,
      want: plain,
    },
    {
      name: 'a newer server',
      body: newer,
      remove: REMOVE,
      want: newerFiltered,
    },
    {
      name: 'every fetch feature removed',
      body: Buffer.concat([
        pkt('version 2\n'),
        pkt('fetch=shallow filter\n'),
        FLUSH,
      ]),
      remove: {
        fetchFeatures: new Set(['shallow', 'filter']),
        capabilities: new Set(),
      },
      want: Buffer.concat([pkt('version 2\n'), pkt('fetch\n'), FLUSH]),
    },
    {
      name: 'fetch without LF keeps having none',
      body: Buffer.concat([
        pkt('version 2\n'),
        pkt('fetch=shallow sideband-all'),
        FLUSH,
      ]),
      remove: REMOVE,
      want: Buffer.concat([pkt('version 2\n'), pkt('fetch=shallow'), FLUSH]),
    },
    {
      name: 'whole fetch line removed by key',
      body: plain,
      remove: {
        fetchFeatures: new Set(),
        capabilities: new Set(['fetch', 'object-info']),
      },
      want: Buffer.concat([
        pkt('version 2\n'),
        pkt('agent=git/2.39.5\n'),
        pkt('ls-refs=unborn\n'),
        pkt('server-option\n'),
        pkt('object-format=sha1\n'),
        FLUSH,
      ]),
    },
    {
      name: 'over ssh: what follows the advertisement is kept',
      body: Buffer.concat([features, pkt('trailing\n')]),
      remove: REMOVE,
      want: Buffer.concat([plain, pkt('trailing\n')]),
    },
  ]
  for (const c of cases) {
    const out = filterCapabilityAdvertisementV2(c.body, c.remove)
    t.equal(out.toString('latin1'), c.want.toString('latin1'), c.name)
  }
  t.end()
})

void t.test('unchanged input comes back as the same Buffer', (t) => {
  const cases: { name: string; body: Buffer; remove: CapabilityRemovalV2 }[] = [
    { name: 'nothing advertised that is removed', body: plain, remove: REMOVE },
    { name: 'empty removal sets', body: features, remove: NOTHING },
    {
      name: 'ssh stream, nothing removed',
      body: fixture('ssh-v2-clone/out.bin'),
      remove: REMOVE,
    },
    {
      name: 'v0 advertisement',
      body: fixture('http-v0-clone/01-info-refs.res.bin'),
      remove: REMOVE,
    },
    {
      name: 'v1 advertisement',
      body: fixture('http-v1-clone/01-info-refs.res.bin'),
      remove: REMOVE,
    },
    { name: 'empty body', body: Buffer.alloc(0), remove: REMOVE },
    {
      name: 'garbage',
      body: Buffer.from('<html>Not Found</html>'),
      remove: REMOVE,
    },
    { name: 'ERR', body: pkt('ERR no such repository\n'), remove: REMOVE },
    {
      name: 'cut before the first packet ends',
      body: plain.subarray(0, 6),
      remove: REMOVE,
    },
  ]
  for (const c of cases)
    t.equal(filterCapabilityAdvertisementV2(c.body, c.remove), c.body, c.name)
  t.end()
})

void t.test('filter errors on a malformed v2 advertisement', (t) => {
  t.throws(
    () => filterCapabilityAdvertisementV2(features.subarray(0, -4), REMOVE),
    { code: 'ERR_PROTOCOL_TRUNCATED' },
  )
  t.throws(
    () =>
      filterCapabilityAdvertisementV2(
        Buffer.concat([pkt('version 2\n'), Buffer.from('0003')]),
        REMOVE,
      ),
    { code: 'ERR_PROTOCOL_BAD_LENGTH' },
  )
  t.end()
})

void t.test('the fetch= rewrite keeps other features byte for byte', (t) => {
  const remove: CapabilityRemovalV2 = {
    fetchFeatures: new Set(['ref-in-want']),
    capabilities: new Set(),
  }
  // found by the property test: a kept feature with a byte that is not UTF-8
  // came back as U+FFFD (ef bf bd)
  const latin1 = (s: string): Buffer => Buffer.from(s, 'latin1')
  const body = Buffer.concat([
    pkt('version 2\n'),
    pkt(latin1('fetch=a\xe9 ref-in-want\n')),
    FLUSH,
  ])
  t.equal(
    filterCapabilityAdvertisementV2(body, remove).toString('hex'),
    Buffer.concat([
      pkt('version 2\n'),
      pkt(latin1('fetch=a\xe9\n')),
      FLUSH,
    ]).toString('hex'),
    'a non-UTF-8 byte stays one byte',
  )
  // ...and 21837 such bytes grew to 65517, past the packet limit: encodePacket
  // threw a RangeError where the caller expects only ProtocolError
  const long = Buffer.concat([
    pkt('version 2\n'),
    pkt(
      Buffer.concat([
        latin1('fetch='),
        Buffer.alloc(21837, 0x80),
        latin1(' ref-in-want\n'),
      ]),
    ),
    FLUSH,
  ])
  const out = filterCapabilityAdvertisementV2(long, remove)
  t.equal(
    out.length,
    long.length - ' ref-in-want'.length,
    'the line only shrinks',
  )
  t.end()
})
