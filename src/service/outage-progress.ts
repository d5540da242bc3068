/**
 * The progress line a client sees when its pack comes from the cache during
 * an upstream outage (DESIGN §3.10): one side-band channel 2 packet,
 * "answered from the cache during an upstream outage", put right after the
 * line that starts the pack's side-band stream (`NAK` in v0/v1, `packfile`
 * in v2). Only for a client that asked for progress (no `no-progress`) and
 * speaks side-band; cached bodies hold no progress of their own.
 */
import { Transform, type Readable, type Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { CacheBody } from '../cache/store-api.js'
import { memoryBody } from '../cache/body.js'
import { encodeSideband } from '../protocol/pkt-line.js'
import { parseUploadPackRequestV1 } from '../protocol/v1/upload-pack-request.js'
import { parseCommandRequestV2, parseFetchArgsV2 } from '../protocol/v2/command-request.js'

export const OUTAGE_PROGRESS = 'answered from the cache during an upstream outage\n'

/** How far into the answer the marker line is looked for. */
const SCAN_LIMIT = 64 * 1024

/** The marker after which the progress packet goes, or null when the client wants none. */
export function progressMarker(version: 0 | 1 | 2, decoded: Buffer): string | null {
  try {
    if (version === 2) {
      const cmd = parseCommandRequestV2(decoded)
      if (cmd?.command !== 'fetch' || parseFetchArgsV2(cmd.args).noProgress) return null
      return 'packfile\n'
    }
    const caps = parseUploadPackRequestV1(decoded).capabilities
    if (caps.includes('no-progress') || !(caps.includes('side-band') || caps.includes('side-band-64k'))) return null
    return 'NAK\n'
  } catch {
    return null
  }
}

/** `body` with the progress packet after the first pkt-line whose payload is `marker`. */
export function withOutageProgress(body: CacheBody, marker: string): CacheBody {
  const packet = Buffer.concat(encodeSideband(2, Buffer.from(OUTAGE_PROGRESS, 'utf8'), 1000))
  const want = Buffer.from(marker, 'latin1')
  let head: Buffer | null = Buffer.alloc(0)
  const insert = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      if (head === null) {
        cb(null, chunk)
        return
      }
      head = Buffer.concat([head, chunk])
      let at = 0
      while (at + 4 <= head.length) {
        const len = Number.parseInt(head.toString('latin1', at, at + 4), 16)
        if (!Number.isInteger(len) || (len > 0 && len < 4)) break // not pkt-lines as expected: leave it
        const size = len === 0 || len === 1 || len === 2 ? 4 : len
        if (at + size > head.length) break
        if (size > 4 && head.subarray(at + 4, at + size).equals(want)) {
          const out = Buffer.concat([head.subarray(0, at + size), packet, head.subarray(at + size)])
          head = null
          cb(null, out)
          return
        }
        at += size
      }
      if (head.length > SCAN_LIMIT || at + 4 > SCAN_LIMIT) {
        const out = head
        head = null
        cb(null, out)
        return
      }
      cb()
    },
    flush(cb) {
      cb(null, head !== null && head.length > 0 ? head : null)
    },
  })
  const stream: Readable = body.stream.pipe(insert)
  body.stream.on('error', (err) => insert.destroy(err))
  return {
    stream,
    whole: () => null,
    copyTo: async (dest: Writable, signal: AbortSignal, end: boolean) => {
      let bytes = 0
      stream.on('data', (c: Buffer) => (bytes += c.length))
      try {
        await pipeline(stream, dest, { signal, end })
      } catch (err) {
        body.stream.destroy()
        throw err
      }
      return bytes
    },
  }
}

/** A kept answer (a last good ls-refs) as a body. */
export function keptBody(buf: Buffer): CacheBody {
  return memoryBody(buf)
}
