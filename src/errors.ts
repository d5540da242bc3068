/**
 * The proxy's error hierarchy. Every error carries a stable `code`
 * (`ERR_<AREA>_<WHAT>`), the HTTP status it maps to at the HTTP edge, and
 * `expose`: whether its message is safe to show a client.
 */
export class ProxyError extends Error {
  readonly code: string
  readonly statusCode: number
  readonly expose: boolean

  constructor(
    code: string,
    message: string,
    opts: { statusCode?: number; expose?: boolean; cause?: unknown } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause })
    this.name = new.target.name
    this.code = code
    this.statusCode = opts.statusCode ?? 500
    this.expose = opts.expose ?? false
  }
}

/** Invalid configuration: start-up stops with this message. */
export class ConfigError extends ProxyError {
  constructor(message: string, opts: { cause?: unknown } = {}) {
    super('ERR_CONFIG_INVALID', message, { ...opts, statusCode: 500, expose: false })
  }
}

/** The client sent something malformed. `offset` is the byte offset in the input, when known. */
export class ProtocolError extends ProxyError {
  readonly offset: number | undefined

  constructor(code: string, message: string, opts: { offset?: number; cause?: unknown } = {}) {
    super(code, message, { statusCode: 400, expose: true, cause: opts.cause })
    this.offset = opts.offset
  }
}

/** The upstream failed, timed out, refused, or answered something unusable. */
export class UpstreamError extends ProxyError {
  constructor(
    code: string,
    message: string,
    opts: { statusCode?: number; cause?: unknown } = {},
  ) {
    super(code, message, { statusCode: opts.statusCode ?? 502, expose: true, cause: opts.cause })
  }
}

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
    super('ERR_CACHE_BUSY', message, { statusCode: 503, expose: true })
  }
}

/** A cache fault. Logged; the request falls back to pass-through where it still can. */
export class CacheError extends ProxyError {
  constructor(code: string, message: string, opts: { cause?: unknown } = {}) {
    super(code, message, { statusCode: 500, expose: false, cause: opts.cause })
  }
}

/** `err` as an Error, for code that caught an `unknown`. */
export function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err))
}
