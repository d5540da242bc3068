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
    }


/** Decide for a v0/v1 `POST git-upload-pack` body (or the client's side of an ssh v0 conversation). */
export function decideUploadPackV1(repo: string, req: UploadPackRequestV1): UploadPackDecision {
  if (req.wants.length === 0) return no('no wants')
  if (req.haves.length > 0) return no('fetch with haves')
  if (req.shallows.length > 0) return no('client is already shallow')
  if (req.deepenNot.length > 0) return no('deepen-not names a ref')
  if (req.deepenRelative) return no('deepen-relative')
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
  if (args.haves.length > 0) return no('fetch with haves')
  if (args.shallows.length > 0) return no('client is already shallow')
  if (args.deepenNot.length > 0) return no('deepen-not names a ref')
  if (args.deepenRelative) return no('deepen-relative')
  if (args.wantRefs.length > 0) return no('want-ref names refs')
  if (args.packfileUris !== null) return no('packfile-uris')
  if (args.sidebandAll) return no('sideband-all')
  if (args.unknown.length > 0) return no(`unknown fetch argument ${args.unknown[0]?.split(' ')[0] ?? ''}`)
  if (capabilities.some((c) => c.startsWith('server-option='))) return no('server-option')
  const objectFormat = objectFormatOf(capabilities)
  if (objectFormat === null) return no('unknown object-format')
  return {
    cacheable: true,
    family: 'v2',
    sideband: 'side-band-64k',
    objectFormat,
    expectPack: true,
    key: cacheKey({
      repo,
      family: 'v2',
      step: 'pack',
      objectFormat,
      wants: args.wants,
      sideband: 'side-band-64k',
      ofsDelta: args.ofsDelta,
      includeTag: args.includeTag,
      deepen: args.deepen,
      deepenSince: args.deepenSince,
      filter: args.filter,
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
