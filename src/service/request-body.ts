/**
 * Read a (small) Git request body whole, for parsing: upload-pack requests
 * are a few KB up to a few MB (25,000 wants ≈ 1.25 MB). Called only once the
 * client's credential was accepted (DESIGN §3.1: nothing is buffered or
 * decompressed before that). Every byte held, raw and gunzipped, is taken
 * from the request's share of the body-memory budget (§3.9). Bodies over
 * the limit are not read further: the caller streams them through uncached.
 * A gzip body that expands beyond the limit is not decoded further either
 * (a gzip bomb costs at most `limit` bytes): it too passes through as sent.
 */
import { Readable } from 'node:stream'
import { createGunzip } from 'node:zlib'
import { ProtocolError } from '../errors.js'
import type { BodyLease } from './body-budget.js'

export type BodyRead =
  /** `raw` is what the client sent (to forward as is), `decoded` the plain pkt-lines. */
  | { kind: 'complete'; raw: Buffer; decoded: Buffer }
  /** Too large to cache: `head` was consumed already and must be sent before `rest`. */
  | { kind: 'too-large'; head: Buffer; rest: Readable }

export interface BodyReadOptions {
  limit: number
  contentEncoding: string | undefined
  lease: BodyLease
  signal?: AbortSignal
}

export async function readRequestBody(stream: Readable, opts: BodyReadOptions): Promise<BodyRead> {
  const chunks: Buffer[] = []
  let size = 0
  try {
    // Not destroyed when the loop is left early: the caller forwards a too-large body's rest.
    for await (const chunk of stream.iterator({ destroyOnReturn: false })) {
      const buf = chunk as Buffer // request streams without an encoding yield Buffers
      chunks.push(buf)
      size += buf.length
      if (size > opts.limit) {
        stream.pause()
        return { kind: 'too-large', head: Buffer.concat(chunks), rest: stream }
      }
      await opts.lease.take(buf.length, opts.signal)
    }
  } catch (err) {
    // As before: a read that fails (budget, abort) drops the request.
    stream.destroy()
    throw err
  }
  const raw = Buffer.concat(chunks)
  const encoding = (opts.contentEncoding ?? '').trim().toLowerCase()
  if (encoding === '' || encoding === 'identity') return { kind: 'complete', raw, decoded: raw }
  if (encoding === 'gzip' || encoding === 'x-gzip') {
    const decoded = await gunzipLimited(raw, opts)
    // Expanding beyond the limit: forwarded as sent (the stream has ended).
    return decoded === null ? { kind: 'too-large', head: raw, rest: stream } : { kind: 'complete', raw, decoded }
  }
  throw new ProtocolError('ERR_PROTOCOL_BAD_ENCODING', `unsupported Content-Encoding ${JSON.stringify(encoding.slice(0, 40))}`)
}

/** The gunzipped body, or null when it expands beyond the limit. */
async function gunzipLimited(raw: Buffer, opts: BodyReadOptions): Promise<Buffer | null> {
  const gunzip = createGunzip()
  const out: Buffer[] = []
  let size = 0
  gunzip.end(raw)
  try {
    for await (const chunk of gunzip) {
      const buf = chunk as Buffer // zlib streams yield Buffers
      size += buf.length
      if (size > opts.limit) {
        gunzip.destroy()
        return null
      }
      await opts.lease.take(buf.length, opts.signal)
      out.push(buf)
    }
  } catch (err) {
    gunzip.destroy()
    if (err instanceof ProtocolError || !isZlibError(err)) throw err
    throw new ProtocolError('ERR_PROTOCOL_BAD_GZIP', 'request body is not valid gzip', { cause: err })
  }
  return Buffer.concat(out)
}

function isZlibError(err: unknown): boolean {
  return err instanceof Error && 'code' in err && typeof err.code === 'string' && err.code.startsWith('Z_')
}

/** A too-large body as one stream again, as the client sent it: what was read, then the rest. */
export function sentBody(read: { head: Buffer; rest: Readable }): Readable {
  return Readable.from(prepended(read.head, read.rest))
}

async function* prepended(head: Buffer, rest: AsyncIterable<unknown>): AsyncGenerator<Buffer> {
  yield head
  for await (const chunk of rest) yield chunk as Buffer // request and response streams yield Buffers
}
