import t from 'tap'
import { ProtocolError } from '../../../src/errors.js'
import {
  LFS_ERR_INVALID,
  LFS_ERR_JSON,
  LFS_ERR_TOO_LARGE,
  isLfsOid,
  parseBatchRequest,
  parseBatchResponse,
  rewriteDownloadActions,
} from '../../../src/protocol/lfs-batch.js'

const OID = 'a'.repeat(64)
const OID2 = '0123456789abcdef'.repeat(4)

function bytes(value: unknown): Buffer {
  return Buffer.from(typeof value === 'string' ? value : JSON.stringify(value))
}

function errorCode(fn: () => unknown): string | null {
  try {
    fn()
    return null
  } catch (err) {
    return err instanceof ProtocolError ? err.code : `not a ProtocolError: ${String(err)}`
  }
}

void t.test('isLfsOid', (t) => {
  const cases: [unknown, boolean][] = [
    [OID, true],
    [OID2, true],
    ['A'.repeat(64), false],
    ['a'.repeat(63), false],
    ['a'.repeat(65), false],
    ['g'.repeat(64), false],
    [` ${'a'.repeat(63)}`, false],
    [`${'a'.repeat(64)}\n`, false],
    [42, false],
    [null, false],
  ]
  for (const [value, want] of cases) t.equal(isLfsOid(value), want, JSON.stringify(value))
  t.end()
})

void t.test('parseBatchRequest accepts what git-lfs sends', (t) => {
  const cases: { name: string; body: unknown; want: unknown }[] = [
    {
      name: 'git-lfs 3.3 download',
      body: {
        operation: 'download',
        objects: [{ oid: OID, size: 4096 }],
        transfers: ['lfs-standalone-file', 'basic', 'ssh'],
        ref: { name: 'refs/heads/main' },
        hash_algo: 'sha256',
      },
      want: {
        operation: 'download',
        transfers: ['lfs-standalone-file', 'basic', 'ssh'],
        ref: 'refs/heads/main',
        objects: [{ oid: OID, size: 4096 }],
        hashAlgo: 'sha256',
      },
    },
    {
      name: 'minimal upload: transfers default to basic, no ref',
      body: { operation: 'upload', objects: [{ oid: OID, size: 0 }, { oid: OID2, size: Number.MAX_SAFE_INTEGER }] },
      want: {
        operation: 'upload',
        transfers: ['basic'],
        ref: null,
        objects: [{ oid: OID, size: 0 }, { oid: OID2, size: Number.MAX_SAFE_INTEGER }],
        hashAlgo: 'sha256',
      },
    },
    {
      name: 'null ref and hash_algo, unknown fields ignored, exponent size',
      body: '{"operation":"download","ref":null,"hash_algo":null,"objects":[{"oid":"' + OID + '","size":1e3,"x":1}],"extra":true}',
      want: { operation: 'download', transfers: ['basic'], ref: null, objects: [{ oid: OID, size: 1000 }], hashAlgo: 'sha256' },
    },
    {
      name: 'no objects',
      body: { operation: 'download', objects: [] },
      want: { operation: 'download', transfers: ['basic'], ref: null, objects: [], hashAlgo: 'sha256' },
    },
  ]
  for (const c of cases) t.same(parseBatchRequest(bytes(c.body)), c.want, c.name)
  t.end()
})

void t.test('parseBatchRequest refuses malformed requests', (t) => {
  const good = { operation: 'download', objects: [{ oid: OID, size: 1 }] }
  const cases: { name: string; body: unknown; code: string }[] = [
    { name: 'empty body', body: '', code: LFS_ERR_JSON },
    { name: 'truncated JSON', body: '{"operation":"download",', code: LFS_ERR_JSON },
    { name: 'invalid UTF-8', body: Buffer.from([0x7b, 0xff, 0x7d]).toString('latin1'), code: LFS_ERR_JSON },
    { name: 'JSON array', body: [good], code: LFS_ERR_INVALID },
    { name: 'JSON string', body: '"download"', code: LFS_ERR_INVALID },
    { name: 'JSON null', body: 'null', code: LFS_ERR_INVALID },
    { name: 'missing operation', body: { objects: good.objects }, code: LFS_ERR_INVALID },
    { name: 'unknown operation', body: { ...good, operation: 'delete' }, code: LFS_ERR_INVALID },
    { name: 'operation in capitals', body: { ...good, operation: 'DOWNLOAD' }, code: LFS_ERR_INVALID },
    { name: 'missing objects', body: { operation: 'download' }, code: LFS_ERR_INVALID },
    { name: 'objects is an object', body: { ...good, objects: { oid: OID, size: 1 } }, code: LFS_ERR_INVALID },
    { name: 'object is a string', body: { ...good, objects: [OID] }, code: LFS_ERR_INVALID },
    { name: 'object is null', body: { ...good, objects: [null] }, code: LFS_ERR_INVALID },
    { name: 'missing oid', body: { ...good, objects: [{ size: 1 }] }, code: LFS_ERR_INVALID },
    { name: 'short oid', body: { ...good, objects: [{ oid: 'abc', size: 1 }] }, code: LFS_ERR_INVALID },
    { name: 'upper-case oid', body: { ...good, objects: [{ oid: OID.toUpperCase(), size: 1 }] }, code: LFS_ERR_INVALID },
    { name: 'sha1-length oid', body: { ...good, objects: [{ oid: 'a'.repeat(40), size: 1 }] }, code: LFS_ERR_INVALID },
    { name: 'traversal in oid', body: { ...good, objects: [{ oid: `../${'a'.repeat(61)}`, size: 1 }] }, code: LFS_ERR_INVALID },
    { name: 'numeric oid', body: { ...good, objects: [{ oid: 1234, size: 1 }] }, code: LFS_ERR_INVALID },
    { name: 'missing size', body: { ...good, objects: [{ oid: OID }] }, code: LFS_ERR_INVALID },
    { name: 'negative size', body: { ...good, objects: [{ oid: OID, size: -1 }] }, code: LFS_ERR_INVALID },
    { name: 'fractional size', body: { ...good, objects: [{ oid: OID, size: 1.5 }] }, code: LFS_ERR_INVALID },
    { name: 'size as string', body: { ...good, objects: [{ oid: OID, size: '1' }] }, code: LFS_ERR_INVALID },
    { name: 'unsafe size', body: { ...good, objects: [{ oid: OID, size: 2 ** 53 }] }, code: LFS_ERR_INVALID },
    { name: 'huge size', body: `{"operation":"download","objects":[{"oid":"${OID}","size":1e400}]}`, code: LFS_ERR_INVALID },
    { name: 'second object bad', body: { ...good, objects: [{ oid: OID, size: 1 }, { oid: OID, size: null }] }, code: LFS_ERR_INVALID },
    { name: 'transfers is a string', body: { ...good, transfers: 'basic' }, code: LFS_ERR_INVALID },
    { name: 'transfers has a number', body: { ...good, transfers: ['basic', 1] }, code: LFS_ERR_INVALID },
    { name: 'ref is a string', body: { ...good, ref: 'refs/heads/main' }, code: LFS_ERR_INVALID },
    { name: 'ref without name', body: { ...good, ref: {} }, code: LFS_ERR_INVALID },
    { name: 'hash_algo sha1', body: { ...good, hash_algo: 'sha1' }, code: LFS_ERR_INVALID },
    { name: 'hash_algo SHA256', body: { ...good, hash_algo: 'SHA256' }, code: LFS_ERR_INVALID },
  ]
  for (const c of cases) t.equal(errorCode(() => parseBatchRequest(bytes(c.body))), c.code, c.name)
  t.end()
})

void t.test('parseBatchRequest: the size limit comes before parsing', (t) => {
  const body = bytes({ operation: 'download', objects: [{ oid: OID, size: 1 }] })
  t.equal(errorCode(() => parseBatchRequest(body, body.length)), null, 'at the limit')
  t.equal(errorCode(() => parseBatchRequest(body, body.length - 1)), LFS_ERR_TOO_LARGE, 'one byte over')
  t.equal(errorCode(() => parseBatchRequest(Buffer.alloc(2 * 1024 * 1024, 0x20))), LFS_ERR_TOO_LARGE, 'default limit 1 MiB')
  const err = (() => {
    try {
      parseBatchRequest(bytes({ operation: 'download', objects: [{ oid: 'x', size: 1 }] }))
    } catch (e) {
      return e
    }
    return null
  })()
  t.ok(err instanceof ProtocolError)
  t.match((err as ProtocolError).message, /objects\[0\]\.oid must be 64 lowercase hex digits, got "x"/)
  t.equal((err as ProtocolError).statusCode, 422, 'an invalid batch: 422, from the error catalogue')
  t.end()
})

const HREF = 'https://lfs.example.com/objects/' + OID

/** An answer as GitHub-like servers give it: an href with its own header and an expiry. */
const UPSTREAM_ANSWER = {
  transfer: 'basic',
  objects: [
    {
      oid: OID,
      size: 10,
      authenticated: true,
      actions: { download: { href: HREF, header: { Authorization: 'RemoteAuth secret-token', 'X-Extra': 'y' }, expires_in: 3600 } },
      vendor_field: { kept: true },
    },
    { oid: OID2, size: 20, error: { code: 404, message: 'Object does not exist' } },
  ],
  hash_algo: 'sha256',
  message: 'kept too',
}

void t.test('parseBatchResponse', (t) => {
  const r = parseBatchResponse(bytes(UPSTREAM_ANSWER))
  t.equal(r.transfer, 'basic')
  t.equal(r.hashAlgo, 'sha256')
  t.same(
    r.objects.map((o) => ({ oid: o.oid, size: o.size, authenticated: o.authenticated, actions: o.actions, error: o.error })),
    [
      {
        oid: OID,
        size: 10,
        authenticated: true,
        actions: { download: { href: HREF, header: { Authorization: 'RemoteAuth secret-token', 'X-Extra': 'y' }, expiresIn: 3600 } },
        error: null,
      },
      { oid: OID2, size: 20, authenticated: false, actions: {}, error: { code: 404, message: 'Object does not exist' } },
    ],
  )
  const minimal = parseBatchResponse(bytes({ objects: [{ oid: OID, size: 1, actions: { download: { href: 'http://h/x', expires_at: '2026-11-10T15:29:07Z' } } }] }))
  t.equal(minimal.transfer, 'basic', 'transfer defaults to basic')
  t.same(minimal.objects[0]?.actions.download, { href: 'http://h/x', header: {}, expiresAt: '2026-11-10T15:29:07Z' })
  const other = parseBatchResponse(bytes({ transfer: 'basic', objects: [{ oid: OID, size: 1, actions: { custom: { anything: 1 } } }] }))
  t.same(other.objects[0]?.actions, {}, 'actions of other adapters are not interpreted')
  t.end()
})

void t.test('parseBatchResponse refuses what the proxy cannot rely on', (t) => {
  const obj = { oid: OID, size: 1 }
  const cases: { name: string; body: unknown; code: string }[] = [
    { name: 'not JSON', body: '<html>', code: LFS_ERR_JSON },
    { name: 'array', body: [], code: LFS_ERR_INVALID },
    { name: 'no objects', body: { transfer: 'basic' }, code: LFS_ERR_INVALID },
    { name: 'transfer is a number', body: { transfer: 1, objects: [] }, code: LFS_ERR_INVALID },
    { name: 'hash_algo is a number', body: { hash_algo: 256, objects: [] }, code: LFS_ERR_INVALID },
    { name: 'bad oid', body: { objects: [{ oid: 'zz', size: 1 }] }, code: LFS_ERR_INVALID },
    { name: 'bad size', body: { objects: [{ oid: OID, size: -5 }] }, code: LFS_ERR_INVALID },
    { name: 'authenticated is a string', body: { objects: [{ ...obj, authenticated: 'yes' }] }, code: LFS_ERR_INVALID },
    { name: 'actions is an array', body: { objects: [{ ...obj, actions: [] }] }, code: LFS_ERR_INVALID },
    { name: 'download without href', body: { objects: [{ ...obj, actions: { download: {} } }] }, code: LFS_ERR_INVALID },
    { name: 'relative href', body: { objects: [{ ...obj, actions: { download: { href: '/objects/x' } } }] }, code: LFS_ERR_INVALID },
    { name: 'file: href', body: { objects: [{ ...obj, actions: { download: { href: 'file:///etc/passwd' } } }] }, code: LFS_ERR_INVALID },
    { name: 'header value a number', body: { objects: [{ ...obj, actions: { download: { href: HREF, header: { A: 1 } } } }] }, code: LFS_ERR_INVALID },
    { name: 'header is an array', body: { objects: [{ ...obj, actions: { download: { href: HREF, header: ['A'] } } }] }, code: LFS_ERR_INVALID },
    { name: 'expires_in fractional', body: { objects: [{ ...obj, actions: { download: { href: HREF, expires_in: 1.5 } } }] }, code: LFS_ERR_INVALID },
    { name: 'expires_in too large', body: { objects: [{ ...obj, actions: { download: { href: HREF, expires_in: 2 ** 31 } } }] }, code: LFS_ERR_INVALID },
    { name: 'expires_at not a date', body: { objects: [{ ...obj, actions: { download: { href: HREF, expires_at: 'soon' } } }] }, code: LFS_ERR_INVALID },
    { name: 'error without code', body: { objects: [{ ...obj, error: { message: 'x' } }] }, code: LFS_ERR_INVALID },
    { name: 'upload action broken', body: { objects: [{ ...obj, actions: { upload: { href: 3 } } }] }, code: LFS_ERR_INVALID },
  ]
  for (const c of cases) t.equal(errorCode(() => parseBatchResponse(bytes(c.body))), c.code, c.name)
  t.equal(errorCode(() => parseBatchResponse(bytes(UPSTREAM_ANSWER), 10)), LFS_ERR_TOO_LARGE, 'limit')
  t.end()
})

void t.test('rewriteDownloadActions keeps the upstream href and headers out of the answer', (t) => {
  const response = parseBatchResponse(bytes(UPSTREAM_ANSWER))
  const snapshot = JSON.stringify(response)
  const { body, originals } = rewriteDownloadActions(response, (o) => `http://proxy/app.git/info/lfs/objects/${o.oid}?size=${o.size}`)
  t.same(originals, [
    { oid: OID, size: 10, action: { href: HREF, header: { Authorization: 'RemoteAuth secret-token', 'X-Extra': 'y' }, expiresIn: 3600 } },
  ])
  t.same(body, {
    transfer: 'basic',
    objects: [
      {
        oid: OID,
        size: 10,
        actions: { download: { href: `http://proxy/app.git/info/lfs/objects/${OID}?size=10`, expires_in: 3600 } },
        vendor_field: { kept: true },
      },
      { oid: OID2, size: 20, error: { code: 404, message: 'Object does not exist' } },
    ],
    hash_algo: 'sha256',
    message: 'kept too',
  })
  const text = JSON.stringify(body)
  t.notMatch(text, /secret-token|lfs\.example\.com/, 'nothing of the original action is left')
  t.notMatch(text, /authenticated/, 'the client authenticates to the proxy itself')
  t.equal(JSON.stringify(response), snapshot, 'the parsed response is not changed')
  t.end()
})

void t.test('rewriteDownloadActions: expiry and objects without a download', (t) => {
  const answer = {
    objects: [
      { oid: OID, size: 1, actions: { download: { href: HREF, expires_at: '2026-11-10T15:29:07Z' } } },
      { oid: OID2, size: 2, actions: { upload: { href: HREF }, verify: { href: HREF } } },
      { oid: OID2, size: 3, actions: { download: { href: HREF } } },
    ],
  }
  const proxyHref = (o: { oid: string }): string => `http://proxy/${o.oid}`
  const kept = rewriteDownloadActions(parseBatchResponse(bytes(answer)), proxyHref)
  t.same(kept.body['objects'], [
    { oid: OID, size: 1, actions: { download: { href: `http://proxy/${OID}`, expires_at: '2026-11-10T15:29:07Z' } } },
    answer.objects[1],
    { oid: OID2, size: 3, actions: { download: { href: `http://proxy/${OID2}` } } },
  ])
  t.same(kept.originals.map((o) => o.size), [1, 3])
  const own = rewriteDownloadActions(parseBatchResponse(bytes(answer)), proxyHref, { expiresIn: 300 })
  t.same(own.body['objects'], [
    { oid: OID, size: 1, actions: { download: { href: `http://proxy/${OID}`, expires_in: 300 } } },
    answer.objects[1],
    { oid: OID2, size: 3, actions: { download: { href: `http://proxy/${OID2}`, expires_in: 300 } } },
  ])
  t.end()
})

void t.test('rewriteDownloadActions: only some objects, expiry per action', (t) => {
  const answer = {
    objects: [
      { oid: OID, size: 1, authenticated: true, actions: { download: { href: HREF, header: { Authorization: 'RemoteAuth a' }, expires_in: 60 } } },
      { oid: OID2, size: 5000, authenticated: true, actions: { download: { href: HREF, header: { Authorization: 'RemoteAuth b' } } } },
    ],
  }
  const out = rewriteDownloadActions(parseBatchResponse(bytes(answer)), (o) => `http://proxy/${o.oid}`, {
    only: (o) => o.size < 1000,
    expiresIn: (o) => (o.action.expiresIn ?? 0) - 10,
  })
  t.same(out.body['objects'], [{ oid: OID, size: 1, actions: { download: { href: `http://proxy/${OID}`, expires_in: 50 } } }, answer.objects[1]], 'the other object is left as sent, header and all')
  t.same(out.originals.map((o) => o.oid), [OID])
  t.end()
})
