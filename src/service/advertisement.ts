/**
 * Advertisements as clients see them (DESIGN §2), for both fronts: the
 * upstream's, minus the capabilities that would send clients around the
 * proxy or make their requests uncacheable (ref-in-want, packfile-uris,
 * sideband-all, bundle-uri, promisor-remote); the version an advertisement
 * speaks, decided from the upstream's answer (servers may ignore
 * Git-Protocol); and their ref-cache keys. The one place that knows what an
 * advertisement looks like beyond protocol/.
 */
import { pipeline, Readable } from 'node:stream'
import { pipeline as pipelinePromise } from 'node:stream/promises'
import { UpstreamError } from '../errors.js'
import { advertisementKey, sshAdvertisementKey } from '../cache/policy.js'
import type { ProtocolVersion } from '../protocol/git-protocol-header.js'
import { PktLineFramer, packetText, parsePackets } from '../protocol/pkt-line.js'
import { createAdvertisementFilterV1 } from '../protocol/v1/advertisement.js'
import { filterCapabilityAdvertisementV2 } from '../protocol/v2/capability-advertisement.js'

/** v2 `fetch=` features the proxy removes, so clients send plain, cacheable requests. */
export const STRIPPED_FETCH_FEATURES: ReadonlySet<string> = new Set(['ref-in-want', 'packfile-uris', 'sideband-all'])
/** Capabilities that send clients to URLs around the proxy. */
export const STRIPPED_CAPABILITIES: ReadonlySet<string> = new Set(['bundle-uri', 'promisor-remote'])
/** v0/v1 advertisements carry capabilities as words: the same set, flattened. */
const STRIPPED_V1: ReadonlySet<string> = new Set([...STRIPPED_CAPABILITIES, ...STRIPPED_FETCH_FEATURES])

/** A v2 capability advertisement is a few hundred bytes; more is not one. */
const MAX_V2_ADVERTISEMENT = 1024 * 1024
const V2_START = Buffer.from('000eversion 2\n')

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
  const out = pipeline(rest, createAdvertisementFilterV1(STRIPPED_V1), () => {
    // Errors reach the consumer through the returned stream.
  })
  // Consumer gone while the upstream is silent: the generator's finally (and
  // so `rest`'s close) waits for the upstream's next chunk; release it here.
  out.once('close', () => {
    body.destroy()
  })
  return out
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

/** An upload-pack advertisement in the SSH form, whole up to its flush, filtered like HTTP's. */
export async function filterSshAdvertisement(bytes: Buffer): Promise<Buffer> {
  if (advertisedVersion(bytes) === 2) {
    return filterCapabilityAdvertisementV2(bytes, { fetchFeatures: STRIPPED_FETCH_FEATURES, capabilities: STRIPPED_CAPABILITIES })
  }
  const chunks: Buffer[] = []
  await pipelinePromise(Readable.from([bytes]), createAdvertisementFilterV1(STRIPPED_V1), async (source: AsyncIterable<Buffer>) => {
    for await (const c of source) chunks.push(c)
  })
  return Buffer.concat(chunks)
}

/** The protocol version an SSH-form advertisement speaks, from its first packet. */
export function advertisedVersion(bytes: Buffer): ProtocolVersion {
  const framer = new PktLineFramer()
  framer.write(bytes)
  let first
  try {
    first = framer.next()
  } catch {
    return 0
  }
  if (first === null || first.length < 4) return 0
  const text = packetText(first.raw.subarray(4))
  return text === 'version 2' ? 2 : text === 'version 1' ? 1 : 0
}

/** The `<oid> <ref>` lines of a v0/v1 advertisement (capabilities left out); empty for v2 or a malformed one. */
export function refLines(bytes: Buffer): string {
  if (advertisedVersion(bytes) === 2) return ''
  let packets
  try {
    packets = parsePackets(bytes)
  } catch {
    return ''
  }
  const lines: string[] = []
  for (const p of packets) {
    if (p.kind !== 'data') continue
    const text = packetText(p.payload)
    if (!text.startsWith('version ')) lines.push(text.split('\0')[0] ?? '')
  }
  return lines.join('\n')
}

/**
 * The ref-cache keys of advertisements, remembered: every poll asks for one
 * (hashing costs a measurable part of a cached poll). One per proxy.
 */
export class AdvertisementKeys {
  readonly #memo = new Map<string, string>()
  readonly #max: number

  constructor(max = 10_000) {
    this.#max = max
  }

  /** `GET info/refs?service=git-upload-pack` in `version`. */
  http(repo: string, version: ProtocolVersion): string {
    return this.#get(`h${version}${repo}`, () => advertisementKey(repo, version))
  }

  /** What upload-pack says first over SSH, in `version`. */
  ssh(repo: string, version: ProtocolVersion): string {
    return this.#get(`s${version}${repo}`, () => sshAdvertisementKey(repo, version))
  }

  #get(memo: string, make: () => string): string {
    let key = this.#memo.get(memo)
    if (key === undefined) {
      if (this.#memo.size >= this.#max) this.#memo.clear()
      key = make()
      this.#memo.set(memo, key)
    }
    return key
  }
}
