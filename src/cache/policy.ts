/**
 * Cache policy (DESIGN §2, git-protocol-notes §5): is an upload-pack request
 * cacheable, under which key, and what must its response look like. Pure:
 * no disk, no network, no config beyond its arguments.
 */
import { hash } from 'node:crypto'
import type { UploadPackRequestV1 } from '../protocol/v1/upload-pack-request.js'
import type { FetchArgsV2 } from '../protocol/v2/command-request.js'
import { sidebandOf, type Sideband } from '../protocol/upload-pack-response.js'

/** v0 and v1 request bodies are identical and share entries; v2 is apart. */
export type ProtocolFamily = 'v0' | 'v2'

export type UploadPackDecision =
  | { cacheable: false; reason: string }
  | {
      cacheable: true
      key: string
      family: ProtocolFamily
      sideband: Sideband
      objectFormat: 'sha1' | 'sha256'
      /** false for the first step of v0/v1's depth exchange over HTTP: the answer is only the shallow list. */
      expectPack: boolean
      /** An incremental fetch (haves, or an already-shallow client), keyed by `fetchCacheKey`. */
      fetch: boolean
      /**
       * A negotiation round (haves without `done`): the answer may end after
       * the acknowledgments, without a pack (UploadPackResponseChecker's
       * `negotiation` option).
       */
      negotiation: boolean
      /** v0/v1 `no-done`: a `ready` in a negotiation round is followed by the pack. */
      noDone: boolean
    }


/** Decide for a v0/v1 `POST git-upload-pack` body (or the client's side of an ssh v0 conversation). */
export function decideUploadPackV1(repo: string, req: UploadPackRequestV1): UploadPackDecision {
  if (req.wants.length === 0) return no('no wants')
  if (isFetchV1(req)) return decideFetchV1(repo, req)
  if (req.deepenNot.length > 0) return no('deepen-not names a ref')
  const hasDepth = req.deepen !== null || req.deepenSince !== null
  if (!req.done && !hasDepth) return no('negotiation without done')
  const objectFormat = objectFormatOf(req.capabilities)
  if (objectFormat === null) return no('unknown object-format')
  const sideband = sidebandOf(req.capabilities)
  const caps = new Set(req.capabilities.map((c) => c.split('=')[0]))
  const expectPack = req.done
  return {
    cacheable: true,
    family: 'v0',
    sideband,
    objectFormat,
    expectPack,
    fetch: false,
    negotiation: false,
    noDone: false,
    key: cacheKey({
      repo,
      family: 'v0',
      step: expectPack ? 'pack' : 'shallow-list',
      objectFormat,
      wants: req.wants,
      sideband,
      ofsDelta: caps.has('ofs-delta'),
      includeTag: caps.has('include-tag'),
      deepen: req.deepen,
      deepenSince: req.deepenSince,
      filter: req.filter,
    }),
  }
}

/** Decide for a v2 `command=fetch` request. */
export function decideFetchV2(repo: string, capabilities: string[], args: FetchArgsV2): UploadPackDecision {
  if (args.wants.length === 0) return no('no wants')
  if (args.deepenNot.length > 0) return no('deepen-not names a ref')
  if (args.wantRefs.length > 0) return no('want-ref names refs')
  if (args.packfileUris !== null) return no('packfile-uris')
  if (args.sidebandAll) return no('sideband-all')
  if (args.unknown.length > 0) return no(`unknown fetch argument ${args.unknown[0]?.split(' ')[0] ?? ''}`)
  if (capabilities.some((c) => c.startsWith('server-option='))) return no('server-option')
  const objectFormat = objectFormatOf(capabilities)
  if (objectFormat === null) return no('unknown object-format')
  const parts = {
    repo,
    family: 'v2' as const,
    step: 'pack' as const,
    objectFormat,
    wants: args.wants,
    sideband: 'side-band-64k' as const,
    ofsDelta: args.ofsDelta,
    includeTag: args.includeTag,
    deepen: args.deepen,
    deepenSince: args.deepenSince,
    filter: args.filter,
  }
  const fetch = args.haves.length > 0 || args.shallows.length > 0 || args.deepenRelative
  // With haves and without `done`, the answer is the acknowledgments, and
  // the pack only if they end in `ready` (upload_pack_v2, send_acks).
  const negotiation = args.haves.length > 0 && !args.done
  return {
    cacheable: true,
    family: 'v2',
    sideband: 'side-band-64k',
    objectFormat,
    expectPack: true,
    fetch,
    negotiation,
    noDone: false,
    key: fetch
      ? fetchCacheKey({
          ...parts,
          step: negotiation ? 'negotiation' : 'pack',
          deepenRelative: args.deepenRelative,
          haves: args.haves,
          shallows: args.shallows,
          thinPack: args.thinPack,
          multiAck: null,
          noDone: null,
          done: args.done,
          waitForDone: args.waitForDone,
        })
      : cacheKey(parts),
  }
}

/**
 * An incremental fetch (DESIGN §2): haves, or an already-shallow client
 * (`shallow` lines; `deepen-relative` only means something with them).
 */
function isFetchV1(req: UploadPackRequestV1): boolean {
  return req.haves.length > 0 || req.shallows.length > 0 || req.deepenRelative
}

/** The multi-ack mode a v0/v1 request chose (upload-pack: `multi_ack_detailed` wins). */
export function multiAckOf(capabilities: string[]): MultiAck {
  if (capabilities.includes('multi_ack_detailed')) return 'multi_ack_detailed'
  if (capabilities.includes('multi_ack')) return 'multi_ack'
  return 'none'
}

export type MultiAck = 'none' | 'multi_ack' | 'multi_ack_detailed'

/**
 * A v0/v1 fetch, one stateless request of it (docs/protocol.md):
 * - haves then `done`: the last ACK and the pack;
 * - haves then one flush: a negotiation round, answered with ACK lines and
 *   a final NAK (with `no-done`, after `ready`, the pack too); needs a
 *   multi-ack mode, or nothing marks the end of the answer;
 * - no haves and no `done` (a shallow client's first POST): the shallow list.
 */
function decideFetchV1(repo: string, req: UploadPackRequestV1): UploadPackDecision {
  if (req.deepenNot.length > 0) return no('deepen-not names a ref')
  const objectFormat = objectFormatOf(req.capabilities)
  if (objectFormat === null) return no('unknown object-format')
  const multiAck = multiAckOf(req.capabilities)
  const haves = req.haves.length > 0
  let step: FetchStep
  if (req.done) {
    // A flush before `done` ends a stateless request there.
    if (req.haveFlushes > 0) return no('flush before done')
    step = 'pack'
  } else if (haves) {
    if (req.haveFlushes !== 1) return no(req.haveFlushes === 0 ? 'haves without a closing flush' : 'more than one negotiation round')
    if (multiAck === 'none') return no('negotiation without multi_ack')
    step = 'negotiation'
  } else {
    if (req.haveFlushes > 0) return no('flush after the want list')
    step = 'shallow-list'
  }
  const sideband = sidebandOf(req.capabilities)
  const caps = new Set(req.capabilities.map((c) => c.split('=')[0]))
  const noDone = caps.has('no-done')
  return {
    cacheable: true,
    family: 'v0',
    sideband,
    objectFormat,
    expectPack: step !== 'shallow-list',
    fetch: true,
    negotiation: step === 'negotiation',
    noDone,
    key: fetchCacheKey({
      repo,
      family: 'v0',
      step,
      objectFormat,
      wants: req.wants,
      sideband,
      ofsDelta: caps.has('ofs-delta'),
      includeTag: caps.has('include-tag'),
      deepen: req.deepen,
      deepenSince: req.deepenSince,
      deepenRelative: req.deepenRelative,
      filter: req.filter,
      haves: req.haves,
      shallows: req.shallows,
      thinPack: caps.has('thin-pack'),
      multiAck,
      noDone,
      done: req.done,
      waitForDone: null,
    }),
  }
}

interface KeyParts {
  repo: string
  family: ProtocolFamily
  step: 'pack' | 'shallow-list'
  objectFormat: 'sha1' | 'sha256'
  wants: string[]
  sideband: Sideband
  ofsDelta: boolean
  includeTag: boolean
  deepen: number | null
  deepenSince: number | null
  filter: string | null
}

/**
 * SHA-256 over exactly the elements that change the response bytes, each
 * named, in a fixed order; wants as a sorted, de-duplicated set. Anything
 * else the client sent (agent, session-id, thin-pack, multi_ack*, no-done,
 * no-progress, argument order) is left out on purpose.
 */
export function cacheKey(p: KeyParts): string {
  const wants = [...new Set(p.wants)].sort()
  return hashKey([
    'upload-pack/1',
    p.repo,
    p.family,
    p.step,
    p.objectFormat,
    p.sideband,
    p.ofsDelta,
    p.includeTag,
    p.deepen,
    p.deepenSince,
    p.filter,
    wants,
  ])
}

export type FetchStep = 'pack' | 'shallow-list' | 'negotiation'

export interface FetchKeyParts extends Omit<KeyParts, 'step'> {
  step: FetchStep
  deepenRelative: boolean
  haves: string[]
  shallows: string[]
  thinPack: boolean
  /** v0/v1 only (null for v2). */
  multiAck: MultiAck | null
  /** v0/v1 only (null for v2). */
  noDone: boolean | null
  done: boolean
  /** v2 only (null for v0/v1). */
  waitForDone: boolean | null
}

/**
 * The key of an incremental fetch (DESIGN §2, docs/protocol.md): a clone's
 * elements plus the sorted, de-duplicated sets of haves and shallow lines,
 * and what changes the answer once haves are present (`thin-pack`, the
 * multi-ack mode, `no-done`, `done`, `wait-for-done`, `deepen-relative`).
 * Its own prefix: it never equals a clone key.
 */
export function fetchCacheKey(p: FetchKeyParts): string {
  const set = (ids: string[]): string[] => [...new Set(ids)].sort()
  return hashKey([
    'upload-pack-fetch/1',
    p.repo,
    p.family,
    p.step,
    p.objectFormat,
    p.sideband,
    p.ofsDelta,
    p.includeTag,
    p.deepen,
    p.deepenSince,
    p.deepenRelative,
    p.filter,
    set(p.wants),
    set(p.haves),
    set(p.shallows),
    p.thinPack,
    p.multiAck,
    p.noDone,
    p.done,
    p.waitForDone,
  ])
}

function objectFormatOf(capabilities: string[]): 'sha1' | 'sha256' | null {
  const cap = capabilities.find((c) => c.startsWith('object-format='))
  if (cap === undefined) return 'sha1'
  const value = cap.slice('object-format='.length)
  return value === 'sha1' || value === 'sha256' ? value : null
}

function no(reason: string): UploadPackDecision {
  return { cacheable: false, reason }
}

/**
 * Ref entries (DESIGN §2, kind `refs`). The advertisement of
 * `GET info/refs?service=git-upload-pack`, apart per protocol version (v1
 * adds a `version 1` line; v2 answers with capabilities only).
 */
export function advertisementKey(repo: string, version: 0 | 1 | 2): string {
  return hashKey(['refs/1', repo, 'advertisement', `v${version}`, 'git-upload-pack'])
}

/**
 * The SSH initial advertisement: apart from HTTP's, whose v0/v1 body starts
 * with a `# service=` section the SSH one lacks.
 */
export function sshAdvertisementKey(repo: string, version: 0 | 1 | 2): string {
  return hashKey(['refs/1', repo, 'ssh-advertisement', `v${version}`])
}

/**
 * A v2 `ls-refs` request: cacheable unless it carries server options
 * (opaque, they reach the server's hooks); keyed by its sorted, de-duplicated
 * arguments, so prefix order does not matter.
 */
export function decideLsRefs(
  repo: string,
  capabilities: string[],
  args: string[],
): { cacheable: true; key: string } | { cacheable: false; reason: string } {
  if (capabilities.some((c) => c.startsWith('server-option='))) return { cacheable: false, reason: 'server-option' }
  const objectFormat = objectFormatOf(capabilities)
  if (objectFormat === null) return { cacheable: false, reason: 'unknown object-format' }
  const sorted = [...new Set(args.map((a) => a.replace(/\n$/, '')))].sort()
  return { cacheable: true, key: hashKey(['refs/1', repo, 'ls-refs', objectFormat, sorted]) }
}

function hashKey(parts: unknown[]): string {
  return hash('sha256', JSON.stringify(parts), 'hex')
}
