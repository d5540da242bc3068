/**
 * The smart-HTTP front: turns Git HTTP requests into upstream requests (and,
 * with the cache, into cache lookups). It works on Node's own request and
 * response: bodies stream as they come, and nothing parses them on the way.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { TLSSocket } from 'node:tls'
import { ProtocolError, toError } from '../errors.js'
import type { Log } from '../logger.js'
import { gitProtocolVersion, type ProtocolVersion } from '../protocol/git-protocol-header.js'
import { credentialOf, type Credential } from '../service/credential.js'
import { forwardRequestHeaders, relayResponseHeaders, type HttpUpstream } from '../upstream/http.js'
import { guardBody, type BodyPace } from './body-guard.js'
import { classifyGitRequest, type GitRoute } from './git-route.js'
import { clientOfRequest, NO_TRUSTED_PROXIES, type TrustedProxies } from './forwarded.js'
import { ClientGone, failResponse, streamResponse } from './http-response.js'

export interface GitHttpOptions {
  upstream: HttpUpstream
  log: Log
  /** Cache-aware handling of a route; returns false when it did not take the request. */
  handlers?: GitRouteHandler
  /** Told of every finished Git request (the fields of its log line), for metrics. */
  onRequestDone?: (o: GitRequestOutcome & { proto: string }) => void
  /** `auth.credential-headers` (DESIGN §3.1). */
  credentialHeaders: readonly string[]
  /** Deadlines for request bodies (DESIGN §3.9). */
  bodyPace: BodyPace
  /** Balancers whose X-Forwarded-For/-Proto go into the log line. */
  trustedProxies?: TrustedProxies
}

/** What one Git request did: the fields of its log line (DESIGN §9). */
export interface GitRequestOutcome {
  cache: 'hit' | 'miss' | 'join' | 'bypass'
  cmd: string
  status: number
  bytes: number
}

export interface GitHttpContext {
  route: GitRoute
  request: IncomingMessage
  res: ServerResponse
  /** Fires when the client hangs up before its response finished; made on first use. */
  readonly signal: AbortSignal
  /** Protocol version asked for by the client's `Git-Protocol` header, read as git reads it (0 when absent). */
  version: ProtocolVersion
  /** The raw query string, with its `?` (or ''). */
  search: string
  /** Everything the upstream could authenticate this request by (DESIGN §3.1). */
  credential: Credential
  outcome: GitRequestOutcome
}

export type GitRouteHandler = (ctx: GitHttpContext) => Promise<boolean>

/**
 * The Git front on the raw Node request: the server hands Git requests
 * straight here, before fastify, which keeps the REST API, health and
 * metrics (a cached poll costs half as much without the framework's
 * per-request objects, hooks and routing, measured).
 */
export class GitHttpFront {
  readonly #opts: GitHttpOptions
  #closing = false
  #inFlight = 0

  constructor(opts: GitHttpOptions) {
    this.#opts = opts
  }

  /**
   * Take the request if it is a Git one (or a bad Git path, answered 400).
   * False leaves `req` untouched for the caller.
   */
  take(req: IncomingMessage, res: ServerResponse): boolean {
    const method = req.method ?? 'GET'
    if (method !== 'GET' && method !== 'HEAD' && method !== 'POST' && method !== 'PUT') return false
    // Split the raw URL by hand: WHATWG URL would resolve `..` before we could refuse it.
    const url = splitRawUrl(req.url ?? '/')
    let route: GitRoute | null
    try {
      route = classifyGitRequest(method, url.pathname, url.search)
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err
      this.#opts.log.warn({ err: { code: err.code, message: err.message }, path: url.pathname.slice(0, 200) }, 'bad git path')
      req.resume()
      res.writeHead(400, { 'content-type': 'text/plain; charset=utf-8' }).end(`${err.message}\n`)
      return true
    }
    if (route === null) return false
    if (this.#closing) {
      // As fastify's return503OnClosing does for its own routes.
      req.resume()
      res.writeHead(503, { 'content-type': 'text/plain; charset=utf-8', connection: 'close' }).end('proxy shutting down\n')
      return true
    }
    this.#serve(req, res, route, url.search).catch((err: unknown) => {
      this.#opts.log.error({ err, repo: route.repo }, 'git request handler failed')
      res.destroy()
    })
    return true
  }

  /** Git requests taken and not finished (their log line not written yet). */
  get inFlight(): number {
    return this.#inFlight
  }

  /** New requests get 503 from now on; those in flight go on. */
  close(): void {
    this.#closing = true
  }

  async #serve(request: IncomingMessage, res: ServerResponse, route: GitRoute, search: string): Promise<void> {
    const opts = this.#opts
    const started = performance.now()
    this.#inFlight++
    // Now: once the request is consumed its socket may be gone.
    const client = clientOfRequest(request, opts.trustedProxies ?? NO_TRUSTED_PROXIES)
    const gone = new ClientGone(res)
    const ctx: GitHttpContext = {
      route,
      request,
      res,
      get signal() {
        return gone.signal
      },
      version: gitProtocolVersion(request.headers['git-protocol']),
      search,
      credential: credentialOf({
        headers: request.headers,
        search,
        credentialHeaders: opts.credentialHeaders,
        tlsClientCertificate: hasClientCertificate(request),
      }),
      outcome: { cache: 'bypass', cmd: commandName(route), status: 0, bytes: 0 },
    }
    const stopGuard =
      request.method === 'POST'
        ? guardBody(request, opts.bodyPace, (why) => {
            opts.log.info({ repo: route.repo, reason: why }, 'slow request body cut')
            if (!res.headersSent) res.writeHead(408, { 'content-type': 'text/plain; charset=utf-8', connection: 'close' }).end(`${why}\n`)
            request.socket.destroy()
          })
        : null
    try {
      const taken = (await opts.handlers?.(ctx)) ?? false
      if (!taken) await passThrough(ctx, opts.upstream)
    } catch (err) {
      const e = toError(err)
      if (!gone.aborted) opts.log.warn({ err: e, repo: route.repo }, 'git request failed')
      failResponse(res, e)
    } finally {
      this.#inFlight--
      stopGuard?.()
      opts.onRequestDone?.({ ...ctx.outcome, status: ctx.outcome.status || res.statusCode, proto: 'http' })
      opts.log.info(
        {
          repo: route.repo,
          proto: 'http',
          service: serviceName(route),
          cmd: ctx.outcome.cmd,
          version: ctx.version,
          cache: ctx.outcome.cache,
          status: ctx.outcome.status || res.statusCode,
          bytes: ctx.outcome.bytes,
          ms: Math.round(performance.now() - started),
          ...client,
          aborted: gone.aborted || undefined,
        },
        'git request',
      )
    }
  }
}

/** Forward the request untouched and stream the answer back. */
export async function passThrough(
  ctx: GitHttpContext,
  upstream: HttpUpstream,
  body?: Buffer,
  /** Runs after the upstream's status is known, before anything reaches the client. */
  onResponse?: (status: number) => Promise<void>,
): Promise<void> {
  const { route, request } = ctx
  const sub = subPathOf(route)
  const method = request.method === 'POST' || request.method === 'PUT' || request.method === 'HEAD' ? request.method : 'GET'
  const headers = forwardRequestHeaders(request.headers)
  if (body !== undefined) {
    delete headers['transfer-encoding']
    headers['content-length'] = String(body.length)
  }
  const upstreamRes = await upstream.request({
    method,
    repo: route.repo,
    // The query string goes along on every request: an upstream may read credentials from it.
    subPath: sub + ctx.search,
    headers,
    body: method === 'POST' || method === 'PUT' ? (body ?? request) : null,
    signal: ctx.signal,
  })
  ctx.outcome.status = upstreamRes.statusCode
  if (onResponse !== undefined) {
    try {
      await onResponse(upstreamRes.statusCode)
    } catch (err) {
      upstreamRes.body.destroy()
      throw err
    }
  }
  ctx.outcome.bytes = await streamResponse(
    ctx.res,
    upstreamRes.statusCode,
    relayResponseHeaders(upstreamRes.headers),
    upstreamRes.body,
    ctx.signal,
  )
}

/** `/path?query` into its raw (still encoded) path and `?query` parts. */
export function splitRawUrl(raw: string): { pathname: string; search: string } {
  const q = raw.indexOf('?')
  return q === -1 ? { pathname: raw, search: '' } : { pathname: raw.slice(0, q), search: raw.slice(q) }
}

export function subPathOf(route: GitRoute): string {
  switch (route.endpoint.kind) {
    case 'advertisement':
      return 'info/refs'
    case 'rpc':
      return route.endpoint.service
    case 'dumb':
    case 'lfs':
      return route.endpoint.subPath
  }
}

function serviceName(route: GitRoute): string {
  return route.endpoint.kind === 'dumb' || route.endpoint.kind === 'lfs' ? route.endpoint.kind : route.endpoint.service
}

function commandName(route: GitRoute): string {
  switch (route.endpoint.kind) {
    case 'advertisement':
      return 'advertisement'
    case 'rpc':
      return route.endpoint.service === 'git-upload-pack' ? 'upload-pack' : 'receive-pack'
    case 'dumb':
      return 'dumb'
    case 'lfs':
      return 'lfs'
  }
}

/** Whether the client presented a TLS certificate (the proxy cannot key that credential). */
function hasClientCertificate(request: IncomingMessage): boolean {
  const socket = request.socket
  return socket instanceof TLSSocket && Object.keys(socket.getPeerCertificate()).length > 0
}
