/**
 * Reading a Git request body whole (src/service/request-body.ts): plain and
 * gzip bodies up to the limit come back complete; larger ones, as sent or
 * once gunzipped, come back as `too-large` with nothing lost; broken gzip
 * and unknown encodings are protocol errors; every byte held is taken from
 * the request's lease, and a budget that runs out or an abort ends the read.
 */
import { PassThrough, Readable } from 'node:stream'
import { buffer } from 'node:stream/consumers'
import { gzipSync } from 'node:zlib'
import t from 'tap'
import { BusyError, ProtocolError } from '../../../src/errors.js'
import { BodyBudget, BodyLease } from '../../../src/service/body-budget.js'
import { readRequestBody, type BodyRead } from '../../../src/service/request-body.js'

// The budget's wait timer is unref'd: keep the process alive while a test waits on it.
const alive = setInterval(() => undefined, 1000)
t.teardown(() => {
  clearInterval(alive)
})

/** A request-like stream yielding `chunks` as they are. */
const streamOf = (chunks: Buffer[]): Readable => Readable.from(chunks, { objectMode: false })

/** `n` bytes of pkt-line-ish text (compresses well, as real want lists do). */
const body = (n: number): Buffer => Buffer.from('0032want 0123456789abcdef0123456789abcdef01234567\n'.repeat(Math.ceil(n / 50)).slice(0, n))

/** Splits `buf` into chunks of `size` bytes. */
const chunked = (buf: Buffer, size: number): Buffer[] => {
  const out: Buffer[] = []
  for (let i = 0; i < buf.length; i += size) out.push(buf.subarray(i, i + size))
  return out
}

const budgetOf = (limit = 1 << 20): { budget: BodyBudget; lease: BodyLease } => {
  const budget = new BodyBudget({ limit, waitMs: 50 })
  return { budget, lease: new BodyLease(budget) }
}

/** What a `too-large` read forwards: the consumed head, then the rest of the stream. */
async function forwarded(read: BodyRead): Promise<Buffer> {
  if (read.kind !== 'too-large') throw new Error(`expected too-large, got ${read.kind}`)
  return Buffer.concat([read.head, await buffer(read.rest)])
}

void t.test('plain bodies up to the limit: complete, raw and decoded the same bytes', async (t) => {
  const cases: { name: string; body: Buffer; chunk: number; limit: number; encoding: string | undefined }[] = [
    { name: 'empty', body: Buffer.alloc(0), chunk: 1, limit: 100, encoding: undefined },
    { name: 'one chunk', body: body(80), chunk: 1000, limit: 100, encoding: undefined },
    { name: 'many small chunks', body: body(100), chunk: 7, limit: 100, encoding: undefined },
    { name: 'exactly the limit', body: body(100), chunk: 30, limit: 100, encoding: undefined },
    { name: 'Content-Encoding: identity', body: body(50), chunk: 50, limit: 100, encoding: 'identity' },
    { name: 'identity, other case and padded', body: body(50), chunk: 50, limit: 100, encoding: ' IDENTITY ' },
    { name: 'an empty Content-Encoding', body: body(50), chunk: 50, limit: 100, encoding: '' },
  ]
  for (const c of cases) {
    const { budget, lease } = budgetOf()
    const read = await readRequestBody(streamOf(chunked(c.body, c.chunk)), { limit: c.limit, contentEncoding: c.encoding, lease })
    t.equal(read.kind, 'complete', c.name)
    if (read.kind !== 'complete') continue
    t.ok(read.raw.equals(c.body), `${c.name}: raw is what was sent`)
    t.ok(read.decoded.equals(c.body), `${c.name}: decoded is the same`)
    t.equal(lease.held, c.body.length, `${c.name}: every byte held is on the lease`)
    t.equal(budget.used, c.body.length, `${c.name}: and on the budget`)
  }
})

void t.test('larger than the limit as sent: too-large, the head consumed, nothing lost', async (t) => {
  const cases: { name: string; size: number; chunk: number; limit: number; encoding?: string }[] = [
    { name: 'one byte over, one chunk', size: 101, chunk: 200, limit: 100 },
    { name: 'one byte over, small chunks', size: 101, chunk: 10, limit: 100 },
    { name: 'far over', size: 10_000, chunk: 64, limit: 100 },
    { name: 'a zero limit and one byte', size: 1, chunk: 1, limit: 0 },
    // The limit applies to what was sent, before any decoding.
    { name: 'a gzip body too large as sent', size: 5000, chunk: 100, limit: 100, encoding: 'gzip' },
    { name: 'an unknown encoding too large as sent', size: 5000, chunk: 100, limit: 100, encoding: 'br' },
  ]
  for (const c of cases) {
    const sent = c.encoding === 'gzip' ? gzipSync(body(c.size), { level: 0 }) : body(c.size)
    const { lease } = budgetOf()
    const stream = streamOf(chunked(sent, c.chunk))
    const read = await readRequestBody(stream, { limit: c.limit, contentEncoding: c.encoding, lease })
    t.equal(read.kind, 'too-large', c.name)
    if (read.kind !== 'too-large') continue
    t.ok(read.head.length > c.limit, `${c.name}: the head is what was read, past the limit`)
    t.ok(read.head.length <= c.limit + c.chunk, `${c.name}: and not more than one chunk past it`)
    t.ok(stream.isPaused(), `${c.name}: the rest is left unread for the caller`)
    t.ok(lease.held <= c.limit, `${c.name}: at most the limit taken from the budget (${lease.held})`)
    t.ok((await forwarded(read)).equals(sent), `${c.name}: head + rest is exactly what was sent`)
  }
})

void t.test('gzip bodies: decoded up to the limit, raw forwarded as sent', async (t) => {
  const cases: { name: string; plain: Buffer; encoding: string; chunk: number; limit: number }[] = [
    { name: 'gzip', plain: body(3000), encoding: 'gzip', chunk: 1 << 16, limit: 4000 },
    { name: 'x-gzip', plain: body(3000), encoding: 'x-gzip', chunk: 1 << 16, limit: 4000 },
    { name: 'GZip, padded', plain: body(3000), encoding: ' GZip\t', chunk: 1 << 16, limit: 4000 },
    { name: 'sent in 3-byte chunks', plain: body(3000), encoding: 'gzip', chunk: 3, limit: 4000 },
    { name: 'decoded exactly the limit', plain: body(4000), encoding: 'gzip', chunk: 100, limit: 4000 },
    { name: 'an empty gzip stream', plain: Buffer.alloc(0), encoding: 'gzip', chunk: 100, limit: 4000 },
  ]
  for (const c of cases) {
    const sent = gzipSync(c.plain)
    const { lease } = budgetOf()
    const read = await readRequestBody(streamOf(chunked(sent, c.chunk)), { limit: c.limit, contentEncoding: c.encoding, lease })
    t.equal(read.kind, 'complete', c.name)
    if (read.kind !== 'complete') continue
    t.ok(read.raw.equals(sent), `${c.name}: raw is the gzip bytes as sent`)
    t.ok(read.decoded.equals(c.plain), `${c.name}: decoded is the plain body`)
    t.equal(lease.held, sent.length + c.plain.length, `${c.name}: raw and decoded bytes both on the lease`)
  }
})

void t.test('gzip that expands past the limit (a gzip bomb): too-large, decoding stops, the raw body forwarded', async (t) => {
  const cases: { name: string; plain: number; limit: number }[] = [
    { name: 'one byte past', plain: 4001, limit: 4000 },
    { name: 'a bomb: 8 MiB of zeros', plain: 8 << 20, limit: 64 * 1024 },
  ]
  for (const c of cases) {
    const sent = gzipSync(Buffer.alloc(c.plain))
    t.ok(sent.length <= c.limit, `${c.name}: small as sent (${sent.length} bytes)`)
    const { lease } = budgetOf(1 << 20)
    const read = await readRequestBody(streamOf([sent]), { limit: c.limit, contentEncoding: 'gzip', lease })
    t.equal(read.kind, 'too-large', c.name)
    if (read.kind !== 'too-large') continue
    t.ok(read.head.equals(sent), `${c.name}: the head is the whole raw body`)
    t.equal((await buffer(read.rest)).length, 0, `${c.name}: the rest is empty (the stream had ended)`)
    t.ok(lease.held <= sent.length + c.limit, `${c.name}: no more than the limit of decoded bytes held (${lease.held})`)
  }
})

void t.test('broken gzip: ERR_PROTOCOL_BAD_GZIP (400)', async (t) => {
  const good = gzipSync(body(2000))
  const flipped = Buffer.from(good)
  flipped[flipped.length - 6] = (flipped[flipped.length - 6] ?? 0) ^ 0xff // in the CRC32 trailer
  const cases: { name: string; sent: Buffer }[] = [
    { name: 'not gzip at all', sent: Buffer.from('0032want 0123456789abcdef0123456789abcdef01234567\n') },
    { name: 'cut after the header', sent: good.subarray(0, 10) },
    { name: 'cut in the middle', sent: good.subarray(0, Math.floor(good.length / 2)) },
    { name: 'the trailer missing', sent: good.subarray(0, good.length - 8) },
    { name: 'a wrong CRC', sent: flipped },
    { name: 'the gzip magic only', sent: Buffer.from([0x1f, 0x8b]) },
  ]
  for (const c of cases) {
    const { budget, lease } = budgetOf()
    const err = await readRequestBody(streamOf([c.sent]), { limit: 1 << 20, contentEncoding: 'gzip', lease }).then(
      () => null,
      (e: unknown) => e,
    )
    t.ok(err instanceof ProtocolError, `${c.name}: a ProtocolError`)
    t.match(err, { code: 'ERR_PROTOCOL_BAD_GZIP', message: 'request body is not valid gzip' }, c.name)
    t.ok(lease.held <= budget.used, `${c.name}: what was held stays on the lease for the caller to release`)
    lease.release()
    t.equal(budget.used, 0, `${c.name}: and comes back with it`)
  }
  await t.test('an empty body sent as gzip', async (t) => {
    const { lease } = budgetOf()
    await t.rejects(readRequestBody(streamOf([]), { limit: 100, contentEncoding: 'gzip', lease }), { code: 'ERR_PROTOCOL_BAD_GZIP' })
  })
})

void t.test('unsupported encodings: ERR_PROTOCOL_BAD_ENCODING (415), named but cut to 40 characters', async (t) => {
  const cases: { name: string; encoding: string; want: string }[] = [
    { name: 'deflate', encoding: 'deflate', want: 'unsupported Content-Encoding "deflate"' },
    { name: 'br', encoding: 'br', want: 'unsupported Content-Encoding "br"' },
    { name: 'two codings', encoding: 'gzip, identity', want: 'unsupported Content-Encoding "gzip, identity"' },
    { name: 'lower-cased in the message', encoding: 'ZSTD', want: 'unsupported Content-Encoding "zstd"' },
    { name: 'long', encoding: 'x'.repeat(500), want: `unsupported Content-Encoding "${'x'.repeat(40)}"` },
    { name: 'control characters quoted', encoding: 'a\u0001b', want: 'unsupported Content-Encoding "a\\u0001b"' },
  ]
  for (const c of cases) {
    const { lease } = budgetOf()
    const err = await readRequestBody(streamOf([body(20)]), { limit: 100, contentEncoding: c.encoding, lease }).then(
      () => null,
      (e: unknown) => e,
    )
    t.ok(err instanceof ProtocolError, `${c.name}: a ProtocolError`)
    t.match(err, { code: 'ERR_PROTOCOL_BAD_ENCODING' }, c.name)
    t.equal(err instanceof Error ? err.message : '', c.want, `${c.name}: message`)
  }
})

void t.test('the budget runs out: the read fails with BusyError', async (t) => {
  const cases: { name: string; sent: () => Buffer; encoding: string | undefined; budget: number }[] = [
    { name: 'raw bytes past the budget', sent: () => body(3000), encoding: undefined, budget: 1000 },
    // Within the budget as sent; the gunzipped bytes are taken too.
    { name: 'gunzipped bytes past the budget', sent: () => gzipSync(body(60_000)), encoding: 'gzip', budget: 20_000 },
  ]
  for (const c of cases) {
    const budget = new BodyBudget({ limit: c.budget, waitMs: 30 })
    const lease = new BodyLease(budget)
    const sent = c.sent()
    const stream = streamOf(chunked(sent, 500))
    const err = await readRequestBody(stream, { limit: 1 << 20, contentEncoding: c.encoding, lease }).then(
      () => null,
      (e: unknown) => e,
    )
    t.ok(err instanceof BusyError, `${c.name}: BusyError (503)`)
    t.ok(stream.destroyed, `${c.name}: the request stream is dropped, not left half read`)
    t.ok(lease.held <= c.budget, `${c.name}: the lease never holds more than the budget`)
    lease.release()
    t.equal(budget.used, 0, `${c.name}: all of it comes back`)
  }
})

void t.test('abort: a read waiting for the budget rejects with the signal reason', async (t) => {
  const budget = new BodyBudget({ limit: 100, waitMs: 60_000 })
  const other = new BodyLease(budget)
  await other.take(100)
  const lease = new BodyLease(budget)
  const abort = new AbortController()
  const stream = streamOf([body(50)])
  const read = readRequestBody(stream, { limit: 1000, contentEncoding: undefined, lease, signal: abort.signal })
  setImmediate(() => {
    abort.abort(new Error('client gone'))
  })
  await t.rejects(read, { message: 'client gone' })
  t.equal(lease.held, 0, 'nothing was granted to the aborted read')
  t.ok(stream.destroyed, 'the request stream is dropped')
  other.release()
  t.equal(budget.used, 0)
})

void t.test('the client stream fails midway: the read rejects with its error', async (t) => {
  const cases: { name: string; encoding: string | undefined }[] = [
    { name: 'plain', encoding: undefined },
    { name: 'gzip', encoding: 'gzip' },
  ]
  for (const c of cases) {
    const { lease } = budgetOf()
    const stream = new PassThrough()
    const read = readRequestBody(stream, { limit: 1 << 20, contentEncoding: c.encoding, lease })
    stream.write(c.encoding === 'gzip' ? gzipSync(body(100)).subarray(0, 20) : body(100))
    setImmediate(() => stream.destroy(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' })))
    await t.rejects(read, { message: 'socket hang up', code: 'ECONNRESET' }, `${c.name}: not taken for a gzip error`)
  }
})
