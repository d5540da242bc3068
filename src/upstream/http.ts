/**
 * The HTTP upstream: every request the proxy makes to the real Git server
 * goes through here (undici). Bodies stream both ways; nothing is buffered.
 */
import type { IncomingHttpHeaders } from 'node:http'
import type { Readable } from 'node:stream'
import { Agent, errors as undiciErrors, type Dispatcher } from 'undici'
import { UpstreamError, UpstreamRefusedError } from '../errors.js'
import { encodeRepoPath, type RepoPath } from '../repository.js'
import { rewriteLocation } from './redirect.js'

/** Headers never forwarded in either direction (RFC 9110 §7.6.1 hop-by-hop, plus ones we own). */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
  'expect',
  'http2-settings',
])

export interface UpstreamRequest {
  method: 'GET' | 'POST' | 'PUT' | 'HEAD'
  repo: RepoPath
  /** Path below the repository, with query string: `info/refs?service=git-upload-pack`. */
  subPath: string
  headers: Record<string, string>
  body?: Readable | Buffer | null
  signal?: AbortSignal
}

export interface UpstreamResponse {
  statusCode: number
  headers: Record<string, string | string[]>
  body: Readable
}

export interface HttpUpstreamOptions {
  baseUrl: URL
  /** Milliseconds to wait for response headers. */
  headersTimeoutMs?: number
  /**
   * `upstream.connect-timeout` in ms: to connect, and to receive response
   * headers (sets `headersTimeoutMs` too, unless given). Past it the
   * upstream counts as unreachable.
   */
  connectTimeoutMs?: number
  /** Milliseconds the body may stay idle (upload-pack can think for minutes before the pack). */
  bodyTimeoutMs?: number
  connections?: number
  /** PEM text of the CAs that sign the upstream's HTTPS certificate (`upstream.http.ca`); unset: the system's. */
  ca?: string
  /** Told of every response (method, status, seconds to headers), for metrics. */
  observe?: (method: string, status: number, seconds: number) => void
}

export class HttpUpstream {
  readonly baseUrl: URL
  readonly #agent: Agent
  readonly #basePath: string
  readonly #observe: ((method: string, status: number, seconds: number) => void) | undefined
  readonly #connectTimeoutMs: number | undefined

  constructor(opts: HttpUpstreamOptions) {
    this.baseUrl = opts.baseUrl
    this.#basePath = opts.baseUrl.pathname.replace(/\/+$/, '')
    this.#observe = opts.observe
    this.#connectTimeoutMs = opts.connectTimeoutMs
    const connect = {
      ...(opts.ca === undefined ? {} : { ca: opts.ca }),
      ...(opts.connectTimeoutMs === undefined ? {} : { timeout: opts.connectTimeoutMs }),
    }
    this.#agent = new Agent({
      headersTimeout: opts.headersTimeoutMs ?? opts.connectTimeoutMs ?? 300_000,
      bodyTimeout: opts.bodyTimeoutMs ?? 600_000,
      connections: opts.connections ?? 256,
      keepAliveTimeout: 30_000,
      ...(Object.keys(connect).length === 0 ? {} : { connect }),
    })
  }

  /** The upstream URL of a repository endpoint, for logs and redirects. */
  urlFor(repo: RepoPath, subPath: string): string {
    return `${this.baseUrl.origin}${this.#basePath}/${encodeRepoPath(repo)}/${subPath}`
  }

  /**
   * Send one request. Rejects with UpstreamError (502 unreachable, 504
   * timeout) when no response arrives; any response, 4xx/5xx included, is
   * returned for the caller to relay. The caller owns `body` and must
   * consume or destroy it.
   */
  async request(req: UpstreamRequest): Promise<UpstreamResponse> {
    const opts: Dispatcher.RequestOptions = {
      origin: this.baseUrl.origin,
      path: `${this.#basePath}/${encodeRepoPath(req.repo)}/${req.subPath}`,
      method: req.method,
      headers: req.headers,
      body: req.body ?? null,
      signal: req.signal ?? null,
    }
    const started = performance.now()
    try {
      const res = await this.#agent.request(opts)
      this.#observe?.(req.method, res.statusCode, (performance.now() - started) / 1000)
      const headers = flattenHeaders(res.headers)
      const location = headers['location']
      if (typeof location === 'string') {
        headers['location'] = rewriteLocation(location, new URL(opts.path, this.baseUrl.origin), this.baseUrl)
      }
      return { statusCode: res.statusCode, headers, body: res.body }
    } catch (err) {
      throw mapUpstreamError(err, this.baseUrl.origin, this.#connectTimeoutMs)
    }
  }

  /**
   * git's own credential check (remote-curl's probe before a large body):
   * `POST git-upload-pack` with the body `0000`, carrying only the headers
   * and query string given. A 200 `application/x-git-upload-pack-result`
   * answer proves read access to the repository's upload-pack endpoint.
   */
  async probeUploadPack(
    repo: RepoPath,
    credential: { headers: Readonly<Record<string, string>>; query: string },
    userAgent: string | undefined,
    signal?: AbortSignal,
  ): Promise<UpstreamResponse> {
    return this.request({
      method: 'POST',
      repo,
      subPath: `git-upload-pack${credential.query}`,
      headers: {
        ...credential.headers,
        'content-type': 'application/x-git-upload-pack-request',
        accept: 'application/x-git-upload-pack-result',
        'content-length': '4',
        ...(userAgent === undefined ? {} : { 'user-agent': userAgent }),
      },
      body: Buffer.from('0000'),
      ...(signal === undefined ? {} : { signal }),
    })
  }

  /**
   * GET an absolute http(s) URL the upstream handed out (a Git LFS action's
   * href, which may name another host, such as object storage), with
   * exactly `headers`. Same agent, CAs and error mapping as `request`.
   */
  async fetchUrl(href: string, headers: Record<string, string>, signal?: AbortSignal): Promise<UpstreamResponse> {
    const url = new URL(href)
    const started = performance.now()
    try {
      const res = await this.#agent.request({
        origin: url.origin,
        path: `${url.pathname}${url.search}`,
        method: 'GET',
        headers,
        signal: signal ?? null,
      })
      this.#observe?.('GET', res.statusCode, (performance.now() - started) / 1000)
      return { statusCode: res.statusCode, headers: flattenHeaders(res.headers), body: res.body }
    } catch (err) {
      throw mapUpstreamError(err, url.origin)
    }
  }

  /** Whether the upstream answers HTTP at all (any status counts), within `timeoutMs`. */
  async ping(timeoutMs = 5000): Promise<boolean> {
    try {
      const res = await this.#agent.request({
        origin: this.baseUrl.origin,
        path: `${this.#basePath}/`,
        method: 'GET',
        signal: AbortSignal.timeout(timeoutMs),
      })
      await res.body.dump()
      return true
    } catch {
      return false
    }
  }

  async close(): Promise<void> {
    await this.#agent.close()
  }
}

/** Map an undici failure to an UpstreamError with the original as `cause`. */
export function mapUpstreamError(err: unknown, origin: string, connectTimeoutMs?: number): UpstreamError {
  if (err instanceof UpstreamError) return err
  if (err instanceof undiciErrors.HeadersTimeoutError && connectTimeoutMs !== undefined) {
    // An upstream that accepts connections but never answers (DESIGN §3.10).
    const within = `${connectTimeoutMs / 1000} s (upstream.connect-timeout)`
    return new UpstreamError('ERR_UPSTREAM_TIMEOUT', `upstream ${origin} unreachable: no response headers within ${within}`, { cause: err })
  }
  const timedOut =
    err instanceof undiciErrors.HeadersTimeoutError ||
    err instanceof undiciErrors.BodyTimeoutError ||
    (err instanceof Error && err.name === 'TimeoutError') // AbortSignal.timeout()
  if (timedOut) return new UpstreamError('ERR_UPSTREAM_TIMEOUT', `upstream ${origin} timed out`, { cause: err })
  if (err instanceof Error && err.name === 'AbortError') {
    return new UpstreamError('ERR_UPSTREAM_ABORTED', 'request aborted', { cause: err })
  }
  const code = err instanceof Error && 'code' in err ? String(err.code) : 'unknown'
  return new UpstreamError('ERR_UPSTREAM_UNAVAILABLE', `upstream ${origin} unreachable (${code})`, { cause: err })
}

/** Client request headers to forward upstream: everything but hop-by-hop and Accept-Encoding. */
export function forwardRequestHeaders(headers: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {}
  const connectionListed = listedInConnection(headers['connection'])
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue
    const lower = name.toLowerCase()
    if (HOP_BY_HOP.has(lower) || connectionListed.has(lower)) continue
    // The proxy parses and stores response bodies: ask for them uncompressed.
    if (lower === 'accept-encoding') continue
    out[lower] = Array.isArray(value) ? value.join(', ') : value
  }
  return out
}

/** Upstream response headers to relay to the client. */
export function relayResponseHeaders(headers: Record<string, string | string[]>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  const connectionListed = listedInConnection(headers['connection'])
  for (const [name, value] of Object.entries(headers)) {
    const lower = name.toLowerCase()
    if (HOP_BY_HOP.has(lower) || connectionListed.has(lower)) continue
    out[lower] = value
  }
  return out
}

function listedInConnection(value: string | string[] | undefined): Set<string> {
  if (value === undefined) return new Set()
  const text = Array.isArray(value) ? value.join(',') : value
  return new Set(text.split(',').map((s) => s.trim().toLowerCase()).filter((s) => s !== ''))
}

function flattenHeaders(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined) out[name] = value
  }
  return out
}

/** Largest refusal body kept for the clients it is relayed to. */
const REFUSAL_BODY_MAX = 64 * 1024

/** Whether an upstream status refuses the credential (as opposed to proving nothing). */
export function isRefusal(status: number): boolean {
  return status === 401 || status === 403
}

/**
 * A 401/403 answer read whole (bounded) into an UpstreamRefusedError, so that
 * it can be relayed unchanged to every client it concerns. Consumes `res`.
 */
export async function refusalOf(res: UpstreamResponse): Promise<UpstreamRefusedError> {
  const chunks: Buffer[] = []
  let size = 0
  try {
    for await (const chunk of res.body) {
      const buf = chunk as Buffer // undici bodies yield Buffers
      if (size + buf.length > REFUSAL_BODY_MAX) {
        chunks.push(buf.subarray(0, REFUSAL_BODY_MAX - size))
        break
      }
      chunks.push(buf)
      size += buf.length
    }
  } catch {
    // What arrived is what is relayed.
  } finally {
    res.body.destroy()
  }
  const headers = relayResponseHeaders(res.headers)
  delete headers['content-length']
  return new UpstreamRefusedError(res.statusCode, headers, Buffer.concat(chunks))
}
