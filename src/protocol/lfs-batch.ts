/**
 * The Git LFS batch API as plain data (git-lfs `docs/api/batch.md`,
 * `basic-transfers.md`): parse and check a batch request, parse a batch
 * response, and rewrite a response's download actions to other hrefs.
 *
 * Pure: no I/O. A request is read strictly because its objects become cache
 * grants: an oid is exactly 64 lowercase hex digits (SHA-256, the only
 * `hash_algo` git-lfs knows), a size a non-negative safe integer. A response
 * is read as strictly as the proxy relies on it and otherwise kept as sent:
 * fields this module does not know survive a rewrite.
 */
import { ProtocolError, type ErrorCode } from '../errors.js'

/** The media type of batch, verify and locks bodies. */
export const LFS_MEDIA_TYPE = 'application/vnd.git-lfs+json'

/** Body limit when the caller sets none: 100 objects (git-lfs's batch size) take about 12 KB. */
export const DEFAULT_BATCH_LIMIT = 1024 * 1024

/** A SHA-256 LFS object id: 64 lowercase hex digits. */
export type LfsOid = string & { readonly __brand: 'LfsOid' }

export type LfsOperation = 'download' | 'upload'

export interface LfsObjectSpec {
  oid: LfsOid
  size: number
}

export interface BatchRequest {
  operation: LfsOperation
  /** Transfer adapters the client offered; `['basic']` when it named none. */
  transfers: string[]
  /** `ref.name`, or null when the client sent no ref. */
  ref: string | null
  objects: LfsObjectSpec[]
  hashAlgo: 'sha256'
}

/** One action of a response object (`download`, `upload`, `verify`). */
export interface LfsAction {
  href: string
  header: Record<string, string>
  expiresIn?: number
  expiresAt?: string
}

export interface BatchResponseObject {
  oid: LfsOid
  size: number
  authenticated: boolean
  /** The basic transfer's actions; any other action stays only in `raw`. */
  actions: { download?: LfsAction; upload?: LfsAction; verify?: LfsAction }
  error: { code: number; message: string } | null
  /** The object as sent. */
  raw: Readonly<Record<string, unknown>>
}

export interface BatchResponse {
  transfer: string
  objects: BatchResponseObject[]
  hashAlgo: string
  /** The response as sent, for rewriting without losing fields. */
  raw: Readonly<Record<string, unknown>>
}

/** Error codes, so a caller can map them to statuses (400 unreadable, 413 too large, 422 invalid). */
export const LFS_ERR_TOO_LARGE = 'ERR_LFS_BATCH_TOO_LARGE' satisfies ErrorCode
export const LFS_ERR_JSON = 'ERR_LFS_BATCH_JSON' satisfies ErrorCode
export const LFS_ERR_INVALID = 'ERR_LFS_BATCH_INVALID' satisfies ErrorCode

const OID = /^[0-9a-f]{64}$/
const MAX_EXPIRES_IN = 2147483647

export function isLfsOid(value: unknown): value is LfsOid {
  return typeof value === 'string' && OID.test(value)
}

/** Parse a batch request body; throws ProtocolError on anything git-lfs would not send. */
export function parseBatchRequest(body: Uint8Array, maxBytes = DEFAULT_BATCH_LIMIT): BatchRequest {
  const top = parseJsonObject(body, maxBytes, 'batch request')
  const operation = top['operation']
  if (operation !== 'download' && operation !== 'upload') {
    throw invalid(`operation must be "download" or "upload", got ${describe(operation)}`)
  }
  const transfers = optionalStringArray(top['transfers'], 'transfers') ?? ['basic']
  const ref = parseRef(top['ref'])
  const hashAlgo = top['hash_algo']
  if (hashAlgo !== undefined && hashAlgo !== null && hashAlgo !== 'sha256') {
    throw invalid(`hash_algo ${describe(hashAlgo)} is not supported (only "sha256")`)
  }
  const list = top['objects']
  if (!Array.isArray(list)) throw invalid('objects must be an array')
  const objects = list.map((item: unknown, i) => parseObjectSpec(item, `objects[${i}]`))
  return { operation, transfers, ref, objects, hashAlgo: 'sha256' }
}

/** Parse a batch response body (HTTP 200) as the proxy needs it. */
export function parseBatchResponse(body: Uint8Array, maxBytes = DEFAULT_BATCH_LIMIT): BatchResponse {
  const raw = parseJsonObject(body, maxBytes, 'batch response')
  const transfer = raw['transfer'] ?? 'basic'
  if (typeof transfer !== 'string') throw invalid('transfer must be a string')
  const hashAlgo = raw['hash_algo'] ?? 'sha256'
  if (typeof hashAlgo !== 'string') throw invalid('hash_algo must be a string')
  const list = raw['objects']
  if (!Array.isArray(list)) throw invalid('objects must be an array')
  const objects = list.map((item: unknown, i) => parseResponseObject(item, `objects[${i}]`))
  return { transfer, objects, hashAlgo, raw }
}

/** What a rewrite took out of an answer: the upstream's own download action for one object. */
export interface OriginalDownload {
  oid: LfsOid
  size: number
  action: LfsAction
}

/**
 * Replace every object's `download` action with `{ href: proxyHref(object) }`
 * and return the original actions separately, so their hrefs and headers
 * (the upstream's object credentials) stay with the caller.
 *
 * The rewritten object loses `authenticated`: with no header of its own, the
 * client sends its own credential to the new href, as it did for the batch
 * call. Expiry is kept from the original unless `expiresIn` is given. Objects
 * without a download action (errors, uploads) are left as they are.
 */
export function rewriteDownloadActions(
  response: BatchResponse,
  proxyHref: (object: LfsObjectSpec) => string,
  opts: {
    /** Seconds, for every rewritten action or per action. */
    expiresIn?: number | ((original: OriginalDownload) => number)
    /** Objects to rewrite (default: every object with a download action); the others stay as sent. */
    only?: (object: BatchResponseObject) => boolean
  } = {},
): { body: Record<string, unknown>; originals: OriginalDownload[] } {
  const originals: OriginalDownload[] = []
  const objects = response.objects.map((object) => {
    const action = object.actions.download
    if (action === undefined || opts.only?.(object) === false) return object.raw
    const original = { oid: object.oid, size: object.size, action }
    originals.push(original)
    const download: Record<string, unknown> = { href: proxyHref({ oid: object.oid, size: object.size }) }
    if (typeof opts.expiresIn === 'function') download['expires_in'] = opts.expiresIn(original)
    else if (opts.expiresIn !== undefined) download['expires_in'] = opts.expiresIn
    else if (action.expiresIn !== undefined) download['expires_in'] = action.expiresIn
    else if (action.expiresAt !== undefined) download['expires_at'] = action.expiresAt
    const rest: Record<string, unknown> = { ...object.raw }
    delete rest['authenticated']
    // Checked by parseResponseObject: actions is an object when an action was found in it.
    const actions = rest['actions'] as Record<string, unknown>
    return { ...rest, actions: { ...actions, download } }
  })
  return { body: { ...response.raw, objects }, originals }
}

function parseJsonObject(body: Uint8Array, maxBytes: number, what: string): Record<string, unknown> {
  if (body.length > maxBytes) {
    throw new ProtocolError(LFS_ERR_TOO_LARGE, `${what} of ${body.length} bytes is over the limit of ${maxBytes}`)
  }
  let value: unknown
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(body))
  } catch (err) {
    throw new ProtocolError(LFS_ERR_JSON, `${what} is not JSON`, { cause: err })
  }
  if (!isRecord(value)) throw invalid(`${what} must be a JSON object`)
  return value
}

function parseObjectSpec(item: unknown, where: string): LfsObjectSpec {
  if (!isRecord(item)) throw invalid(`${where} must be an object`)
  const oid = item['oid']
  if (!isLfsOid(oid)) throw invalid(`${where}.oid must be 64 lowercase hex digits, got ${describe(oid)}`)
  const size = item['size']
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    throw invalid(`${where}.size must be a non-negative integer, got ${describe(size)}`)
  }
  return { oid, size }
}

function parseResponseObject(item: unknown, where: string): BatchResponseObject {
  const { oid, size } = parseObjectSpec(item, where)
  // parseObjectSpec checked that item is an object.
  const o = item as Record<string, unknown>
  const authenticated = o['authenticated'] ?? false
  if (typeof authenticated !== 'boolean') throw invalid(`${where}.authenticated must be a boolean`)
  const actions: BatchResponseObject['actions'] = {}
  const rawActions = o['actions']
  if (rawActions !== undefined && rawActions !== null) {
    if (!isRecord(rawActions)) throw invalid(`${where}.actions must be an object`)
    for (const name of ['download', 'upload', 'verify'] as const) {
      const value = rawActions[name]
      if (value !== undefined) actions[name] = parseAction(value, `${where}.actions.${name}`)
    }
  }
  let error: BatchResponseObject['error'] = null
  const rawError = o['error']
  if (rawError !== undefined && rawError !== null) {
    if (!isRecord(rawError) || typeof rawError['code'] !== 'number' || !Number.isInteger(rawError['code'])) {
      throw invalid(`${where}.error must be an object with an integer code`)
    }
    const message = rawError['message']
    error = { code: rawError['code'], message: typeof message === 'string' ? message : '' }
  }
  return { oid, size, authenticated, actions, error, raw: o }
}

function parseAction(value: unknown, where: string): LfsAction {
  if (!isRecord(value)) throw invalid(`${where} must be an object`)
  const href = value['href']
  if (typeof href !== 'string' || !isHttpUrl(href)) throw invalid(`${where}.href must be an http(s) URL`)
  const header: Record<string, string> = {}
  const rawHeader = value['header']
  if (rawHeader !== undefined && rawHeader !== null) {
    if (!isRecord(rawHeader)) throw invalid(`${where}.header must be an object`)
    for (const [name, v] of Object.entries(rawHeader)) {
      if (typeof v !== 'string') throw invalid(`${where}.header.${name} must be a string`)
      header[name] = v
    }
  }
  const action: LfsAction = { href, header }
  const expiresIn = value['expires_in']
  if (expiresIn !== undefined && expiresIn !== null) {
    if (typeof expiresIn !== 'number' || !Number.isInteger(expiresIn) || Math.abs(expiresIn) > MAX_EXPIRES_IN) {
      throw invalid(`${where}.expires_in must be a whole number of seconds`)
    }
    action.expiresIn = expiresIn
  }
  const expiresAt = value['expires_at']
  if (expiresAt !== undefined && expiresAt !== null) {
    if (typeof expiresAt !== 'string' || Number.isNaN(Date.parse(expiresAt))) {
      throw invalid(`${where}.expires_at must be an RFC 3339 timestamp`)
    }
    action.expiresAt = expiresAt
  }
  return action
}

function parseRef(value: unknown): string | null {
  if (value === undefined || value === null) return null
  if (!isRecord(value) || typeof value['name'] !== 'string') throw invalid('ref must be an object with a string name')
  return value['name']
}

function optionalStringArray(value: unknown, what: string): string[] | null {
  if (value === undefined || value === null) return null
  if (!Array.isArray(value) || !value.every((v: unknown): v is string => typeof v === 'string')) {
    throw invalid(`${what} must be an array of strings`)
  }
  return value
}

function isHttpUrl(text: string): boolean {
  try {
    const url = new URL(text)
    return url.protocol === 'http:' || url.protocol === 'https:'
  } catch {
    return false
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing'
  const text = JSON.stringify(value)
  return text.length > 80 ? `${text.slice(0, 80)}…` : text
}

function invalid(message: string): ProtocolError {
  return new ProtocolError(LFS_ERR_INVALID, `invalid LFS batch: ${message}`)
}
