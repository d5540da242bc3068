/**
 * The smart-HTTP front: a transport only. It turns a Git HTTP request into
 * an `HttpGitRequest` (route, protocol version, credential, body), asks the
 * HttpGitService for the answer, and writes it: an HTTP status before the
 * first byte, a cut connection after it (DESIGN §3.5). It works on Node's
 * own request and response: bodies stream as they come.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { TLSSocket } from 'node:tls'
import { ProtocolError, toError } from '../errors.js'
import type { Log } from '../logger.js'
import { gitProtocolVersion } from '../protocol/git-protocol-header.js'
import { credentialOf } from '../service/credential.js'
import { classifyGitRequest, type GitRoute } from '../service/git-route.js'
import type { HttpAnswer, HttpGitRequest, HttpGitService } from '../service/http-git.js'
import { guardBody, type BodyPace } from './body-guard.js'
import { clientOfRequest, NO_TRUSTED_PROXIES, type TrustedProxies } from './forwarded.js'
import { acceptsGzip, GZIP_MIN_BYTES, GzipCopies } from './gzip-copy.js'
import { ClientGone, failResponse, sendWhole, streamResponse } from './http-response.js'

export interface GitHttpOptions {
  service: HttpGitService
  log: Log
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
  cache: 'hit' | 'miss' | 'join' | 'bypass' | 'stale'
  cmd: string
  status: number
  bytes: number
}

/**
 * The Git front on the raw Node request: the server hands Git requests
 * straight here, before fastify, which keeps the REST API, health and
 * metrics (a cached poll costs half as much without the framework's
 * per-request objects, hooks and routing, measured).
 */
export class GitHttpFront {
  readonly #opts: GitHttpOptions
  /** Gzip copies of hot answers, for clients that accept them. */
  readonly #gzip = new GzipCopies()
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
    const req: HttpGitRequest = {
      route,
      method: request.method === 'POST' || request.method === 'PUT' || request.method === 'HEAD' ? request.method : 'GET',
      headers: request.headers,
      search,
      version: gitProtocolVersion(request.headers['git-protocol']),
      credential: credentialOf({
        headers: request.headers,
        search,
        credentialHeaders: opts.credentialHeaders,
        tlsClientCertificate: hasClientCertificate(request),
      }),
      body: request,
      clientProto: client.clientProto,
      get signal() {
        return gone.signal
      },
    }
    const outcome: GitRequestOutcome = { cache: 'bypass', cmd: commandName(route), status: 0, bytes: 0 }
    const stopGuard =
      request.method === 'POST'
        ? guardBody(request, opts.bodyPace, (why) => {
            opts.log.info({ repo: route.repo, reason: why }, 'slow request body cut')
            if (!res.headersSent) res.writeHead(408, { 'content-type': 'text/plain; charset=utf-8', connection: 'close' }).end(`${why}\n`)
            request.socket.destroy()
          })
        : null
    let answer: HttpAnswer | null = null
    try {
      answer = await opts.service.answer(req)
      await this.#write(answer, request, res, gone.signal, outcome)
    } catch (err) {
      const e = toError(err)
      if (!gone.aborted) opts.log.warn({ err: e, repo: route.repo }, 'git request failed')
      failResponse(res, e)
    } finally {
      await answer?.finish?.().catch((err: unknown) => {
        opts.log.warn({ err, repo: route.repo }, 'finishing a git request failed')
      })
      this.#inFlight--
      stopGuard?.()
      const status = outcome.status || res.statusCode
      opts.onRequestDone?.({ ...outcome, status, proto: 'http' })
      opts.log.info(
        {
          repo: route.repo,
          proto: 'http',
          service: serviceName(route),
          cmd: outcome.cmd,
          version: req.version,
          cache: outcome.cache,
          status,
          bytes: outcome.bytes,
          ms: Math.round(performance.now() - started),
          ...client,
          aborted: gone.aborted || undefined,
        },
        'git request',
      )
    }
  }

  /** Writes `answer`; rejects (after cutting the connection) when it fails midway. */
  async #write(answer: HttpAnswer, request: IncomingMessage, res: ServerResponse, signal: AbortSignal, outcome: GitRequestOutcome): Promise<void> {
    if (answer.cmd !== undefined) outcome.cmd = answer.cmd
    outcome.cache = answer.cache ?? 'bypass'
    switch (answer.kind) {
      case 'refusal': {
        const { refusal } = answer
        outcome.status = refusal.status
        outcome.bytes = refusal.body.length
        const headers: Record<string, string | string[]> = { ...refusal.headers, 'content-length': String(refusal.body.length) }
        if (answer.closeConnection) headers['connection'] = 'close'
        res.writeHead(refusal.status, headers)
        res.end(refusal.body)
        return
      }
      case 'upstream':
        outcome.status = answer.status
        outcome.bytes = await streamResponse(res, answer.status, answer.headers, answer.body, signal)
        return
      case 'cached': {
        outcome.cache = answer.cache === 'stale' ? 'stale' : answer.how
        outcome.status = 200
        const whole = answer.body.whole()
        if (whole !== null) {
          // A small hot entry: one write, gzip-compressed when large and the client accepts it.
          const gz = whole.length >= GZIP_MIN_BYTES && acceptsGzip(request.headers['accept-encoding']) ? this.#gzip.copyOf(whole) : undefined
          outcome.bytes = (gz ?? whole).length
          sendWhole(res, 200, gz === undefined ? answer.headers : { ...answer.headers, 'content-encoding': 'gzip', vary: 'Accept-Encoding' }, gz ?? whole)
          return
        }
        res.writeHead(200, answer.headers)
        try {
          outcome.bytes = await answer.body.copyTo(res, signal, true)
        } catch (err) {
          res.destroy()
          throw err
        }
        return
      }
    }
  }
}

/** `/path?query` into its raw (still encoded) path and `?query` parts. */
export function splitRawUrl(raw: string): { pathname: string; search: string } {
  const q = raw.indexOf('?')
  return q === -1 ? { pathname: raw, search: '' } : { pathname: raw.slice(0, q), search: raw.slice(q) }
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
