/**
 * Read a (small) Git request body whole, for parsing: upload-pack requests
 * are a few KB up to a few MB (25,000 wants ≈ 1.25 MB). Bodies over the
 * limit are not read: the caller streams them through uncached. gzip bodies
 * (git sends them over 1 KB) are decoded with the same limit on the output,
 * so a gzip bomb costs at most `limit` bytes.
 */
import type { Readable } from 'node:stream'
import { createGunzip } from 'node:zlib'
import { ProtocolError } from '../errors.js'

export type BodyRead =
  /** `raw` is what the client sent (to forward as is), `decoded` the plain pkt-lines. */
  | { kind: 'complete'; raw: Buffer; decoded: Buffer }
  /** Too large: `head` was consumed already and must be sent before `rest`. */
  | { kind: 'too-large'; head: Buffer; rest: Readable }

export async function readRequestBody(
  stream: Readable,
  opts: { limit: number; contentEncoding: string | undefined },
): Promise<BodyRead> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of stream) {
    const buf = chunk as Buffer // request streams without an encoding yield Buffers
    chunks.push(buf)
    size += buf.length
    if (size > opts.limit) {
      stream.pause()
      return { kind: 'too-large', head: Buffer.concat(chunks), rest: stream }
    }
  }
  const raw = Buffer.concat(chunks)
  const encoding = (opts.contentEncoding ?? '').trim().toLowerCase()
  if (encoding === '' || encoding === 'identity') return { kind: 'complete', raw, decoded: raw }
  if (encoding === 'gzip' || encoding === 'x-gzip') {
    return { kind: 'complete', raw, decoded: await gunzipLimited(raw, opts.limit) }
  }
  throw new ProtocolError('ERR_PROTOCOL_BAD_ENCODING', `unsupported Content-Encoding ${JSON.stringify(encoding.slice(0, 40))}`)
}

async function gunzipLimited(raw: Buffer, limit: number): Promise<Buffer> {
  const gunzip = createGunzip()
  const out: Buffer[] = []
  let size = 0
  gunzip.end(raw)
  try {
    for await (const chunk of gunzip) {
      const buf = chunk as Buffer // zlib streams yield Buffers
      size += buf.length
      if (size > limit) {
        gunzip.destroy()
        throw new ProtocolError('ERR_PROTOCOL_TOO_LARGE', `gzip request body expands beyond ${limit} bytes`)
      }
      out.push(buf)
    }
  } catch (err) {
    if (err instanceof ProtocolError) throw err
    throw new ProtocolError('ERR_PROTOCOL_BAD_GZIP', 'request body is not valid gzip', { cause: err })
  }
  return Buffer.concat(out)
}
