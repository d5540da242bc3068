/**
 * The proxy's errors. Every error carries a stable `code`
 * (`ERR_<AREA>_<WHAT>`), defined once in the catalogue below with the HTTP
 * status it maps to at the HTTP edge and `expose`: whether its message is
 * safe to show a client. A few errors carry a status of their own (the
 * upstream's, relayed).
 */

interface CatalogueEntry {
  readonly status: number
  readonly expose: boolean
  readonly meaning: string
}

const entry = (status: number, expose: boolean, meaning: string): CatalogueEntry => ({ status, expose, meaning })

/** Every error code, its status and whether its message may reach a client. */
export const ERRORS = {
  ERR_CONFIG_INVALID: entry(500, false, 'invalid configuration: start-up stops'),

  ERR_PROTOCOL_BAD_LENGTH: entry(400, true, 'a pkt-line length that is not four hex digits, or 0003'),
  ERR_PROTOCOL_TOO_LONG: entry(400, true, 'a pkt-line or section longer than allowed'),
  ERR_PROTOCOL_TOO_LARGE: entry(413, true, 'a request body larger than allowed'),
  ERR_PROTOCOL_TRUNCATED: entry(400, true, 'input that ends inside a pkt-line or before a flush'),
  ERR_PROTOCOL_BAD_REQUEST: entry(400, true, 'an upload-pack request that is not one'),
  ERR_PROTOCOL_BAD_ADVERTISEMENT: entry(400, true, 'an advertisement that is not one'),
  ERR_PROTOCOL_BAD_PATH: entry(400, true, 'a repository path that is refused (.., encodings, length)'),
  ERR_PROTOCOL_BAD_SERVICE: entry(400, true, 'an unknown or repeated service= parameter'),
  ERR_PROTOCOL_BAD_GZIP: entry(400, true, 'a gzip request body that does not decode'),
  ERR_PROTOCOL_BAD_ENCODING: entry(415, true, 'an unsupported Content-Encoding'),
  ERR_LFS_BATCH_TOO_LARGE: entry(413, true, 'an LFS batch request larger than allowed'),
  ERR_LFS_BATCH_JSON: entry(400, true, 'an LFS batch body that is not JSON'),
  ERR_LFS_BATCH_INVALID: entry(422, true, 'an LFS batch body that is not a valid batch'),
  ERR_LFS_OBJECT_MISMATCH: entry(502, true, 'an LFS object from the upstream whose bytes do not match its oid or size (never stored)'),

  ERR_UPSTREAM_UNAVAILABLE: entry(502, true, 'the upstream cannot be reached'),
  ERR_UPSTREAM_TIMEOUT: entry(504, true, 'the upstream did not answer in time'),
  ERR_UPSTREAM_ABORTED: entry(502, true, 'the request to the upstream was abandoned (the client left, or shutdown)'),
  ERR_UPSTREAM_BROKEN: entry(502, true, 'the upstream cut its answer short'),
  ERR_UPSTREAM_BAD_ANSWER: entry(502, true, 'the upstream answered something that is not a Git answer'),
  ERR_UPSTREAM_STATUS: entry(502, true, 'the upstream answered with an unexpected status (its own status is relayed)'),
  ERR_UPSTREAM_REFUSED: entry(401, true, "the upstream refused the client's credential (its answer is relayed)"),
  ERR_UPSTREAM_SSH: entry(502, true, 'the SSH upstream failed (its exit status and stderr are in the message)'),
  ERR_UPSTREAM_SSH_HOSTKEY: entry(502, true, "the SSH upstream's host key is unknown or changed"),
  ERR_UPSTREAM_OUTAGE: entry(503, true, 'the upstream is unreachable and the cache cannot answer this request (outage mode)'),
  ERR_UPSTREAM_CLOSED: entry(502, true, 'the SSH upstream is shut down'),

  ERR_CACHE_BUSY: entry(503, true, 'too many fills waiting, or request bodies held: retry later'),
  ERR_CACHE_FILL_FAILED: entry(500, false, 'a cache fill failed (the cause says why)'),
  ERR_CACHE_WRITE_FAILED: entry(500, false, 'a write of a cache file failed mid-fill (the fill relays from memory, not cached)'),
  ERR_CACHE_READ_FAILED: entry(500, false, 'reading a cache file failed'),
  ERR_CACHE_ENTRY_TRUNCATED: entry(500, false, 'a cache file is shorter than its entry'),
  ERR_CACHE_ENTRY_CORRUPT: entry(500, false, 'a cache file that is not a whole entry'),
  ERR_CACHE_BAD_KEY: entry(500, false, 'a cache key that is not a SHA-256'),
  ERR_CACHE_STATE: entry(500, false, 'the cache store used before init() or twice'),
  ERR_CACHE_CLOSED: entry(500, false, 'the cache store is closed'),

  ERR_REST_NOT_FOUND: entry(404, true, 'no such REST resource'),
  ERR_REST_BAD_VALUE: entry(400, true, 'a REST value that is not allowed'),

  ERR_EMBEDDED_LFS_REFUSED: entry(400, true, "the embedded upstream's LFS server refused a request (its own status)"),
} as const satisfies Record<string, CatalogueEntry>

export type ErrorCode = keyof typeof ERRORS

export class ProxyError extends Error {
  readonly code: ErrorCode
  readonly statusCode: number
  readonly expose: boolean

  /** `statusCode` overrides the catalogue's only for errors that relay another party's status. */
  constructor(code: ErrorCode, message: string, opts: { statusCode?: number; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause })
    this.name = new.target.name
    this.code = code
    this.statusCode = opts.statusCode ?? ERRORS[code].status
    this.expose = ERRORS[code].expose
  }
}

/** Invalid configuration: start-up stops with this message. */
export class ConfigError extends ProxyError {
  constructor(message: string, opts: { cause?: unknown } = {}) {
    super('ERR_CONFIG_INVALID', message, opts)
  }
}

/** The client sent something malformed. `offset` is the byte offset in the input, when known. */
export class ProtocolError extends ProxyError {
  readonly offset: number | undefined

  constructor(code: ErrorCode, message: string, opts: { offset?: number; cause?: unknown } = {}) {
    super(code, message, { cause: opts.cause })
    this.offset = opts.offset
  }
}

/** The upstream failed, timed out, refused, or answered something unusable. */
export class UpstreamError extends ProxyError {}

/** The upstream answered a request with something other than the Git answer expected. */
export class UpstreamStatusError extends UpstreamError {
  readonly status: number

  constructor(status: number, detail: string) {
    super('ERR_UPSTREAM_STATUS', `upstream answered ${status}${detail === '' ? '' : `: ${detail}`}`, {
      statusCode: status >= 400 && status < 600 ? status : 502,
    })
    this.status = status
  }
}

/**
 * The upstream refused the client's credential (401/403). Its answer is
 * kept (status, headers, a bounded body) so that every client it concerns
 * gets it unchanged, `WWW-Authenticate` included (DESIGN §3.1).
 */
export class UpstreamRefusedError extends UpstreamError {
  readonly status: number
  readonly headers: Readonly<Record<string, string | string[]>>
  readonly body: Buffer

  constructor(status: number, headers: Record<string, string | string[]>, body: Buffer) {
    super('ERR_UPSTREAM_REFUSED', `upstream answered ${status}`, { statusCode: status })
    this.status = status
    this.headers = headers
    this.body = body
  }
}

/** Too many fills waiting: the client should retry later. */
export class BusyError extends ProxyError {
  constructor(message: string) {
    super('ERR_CACHE_BUSY', message)
  }
}

/** A cache fault. Logged; the request falls back to pass-through where it still can. */
export class CacheError extends ProxyError {}

/** `err` as an Error, for code that caught an `unknown`. */
export function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err))
}

/** The first error in `err`'s chain of causes (itself included, five deep at most) that `match` picks. */
export function findCause(err: unknown, match: (e: Error) => boolean): Error | null {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (match(e)) return e
  }
  return null
}
