/**
 * What clients see of an upload-pack advertisement: the upstream's, minus
 * the capabilities that would send them around the proxy or make their
 * requests uncacheable (ref-in-want, packfile-uris, sideband-all,
 * bundle-uri, promisor-remote). The version is decided from the upstream's
 * answer, not from what the client asked (servers may ignore Git-Protocol).
 */
import { pipeline, Readable } from 'node:stream'
import { UpstreamError } from '../errors.js'
import { STRIPPED_CAPABILITIES, STRIPPED_FETCH_FEATURES } from '../cache/policy.js'
import { createAdvertisementFilterV1 } from '../protocol/v1/advertisement.js'
import { filterCapabilityAdvertisementV2 } from '../protocol/v2/capability-advertisement.js'

/** A v2 capability advertisement is a few hundred bytes; more is not one. */
const MAX_V2_ADVERTISEMENT = 1024 * 1024
const V2_START = Buffer.from('000eversion 2\n')
/** v0/v1 advertisements carry capabilities as words: the same set, flattened. */
const STRIPPED_V1: ReadonlySet<string> = new Set([...STRIPPED_CAPABILITIES, ...STRIPPED_FETCH_FEATURES])

/** The filtered advertisement as a stream (errors of `body` surface as its errors). */
export async function filterAdvertisement(body: Readable): Promise<Readable> {
  const chunks: Buffer[] = []
  let size = 0
  const iterator = body[Symbol.asyncIterator]() as AsyncIterator<Buffer> // undici bodies yield Buffers
  let ended = false
  try {
    while (size < V2_START.length) {
      const next = await iterator.next()
      if (next.done === true) {
        ended = true
        break
      }
      chunks.push(next.value)
      size += next.value.length
    }
    const head = Buffer.concat(chunks)
    if (head.subarray(0, V2_START.length).equals(V2_START)) {
      while (!ended) {
        const next = await iterator.next()
        if (next.done === true) break
        chunks.push(next.value)
        size += next.value.length
        if (size > MAX_V2_ADVERTISEMENT) throw new UpstreamError('ERR_UPSTREAM_BAD_ANSWER', 'upstream v2 advertisement too large')
      }
      const whole = Buffer.concat(chunks)
      return Readable.from([
        filterCapabilityAdvertisementV2(whole, { fetchFeatures: STRIPPED_FETCH_FEATURES, capabilities: STRIPPED_CAPABILITIES }),
      ])
    }
  } catch (err) {
    body.destroy()
    if (err instanceof UpstreamError) throw err
    throw new UpstreamError('ERR_UPSTREAM_BROKEN', 'upstream closed the connection in the middle of its answer', { cause: err })
  }
  const rest = Readable.from(remaining(chunks, ended ? null : iterator))
  // Callback pipeline: returns the last stream and destroys all of them on error.
  return pipeline(rest, createAdvertisementFilterV1(STRIPPED_V1), () => {
    // Errors reach the consumer through the returned stream.
  })
}

async function* remaining(head: Buffer[], iterator: AsyncIterator<Buffer> | null): AsyncGenerator<Buffer> {
  try {
    yield* head
    if (iterator === null) return
    for (;;) {
      const next = await iterator.next()
      if (next.done === true) return
      yield next.value
    }
  } finally {
    // Consumer gone early (client hung up): release the upstream body too.
    await iterator?.return?.()
  }
}
