/**
 * The smart-HTTP front: an encapsulated fastify plugin that turns Git HTTP
 * requests into upstream requests (and, with the cache, into cache lookups).
 * Request bodies are never parsed by fastify: a catch-all content-type
 * parser leaves the raw stream to the handler.
 */
import type { ServerResponse } from 'node:http'
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import { ProtocolError, toError } from '../errors.js'
import type { Log } from '../logger.js'
import { forwardRequestHeaders, relayResponseHeaders, type HttpUpstream } from '../upstream/http.js'
import { classifyGitRequest, type GitRoute } from './git-route.js'
import { clientGoneSignal, failResponse, streamResponse } from './http-response.js'

export interface GitHttpOptions {
  upstream: HttpUpstream
  log: Log
  /** Cache-aware handling of a route; returns false when it did not take the request. */
  handlers?: GitRouteHandler
  /** Told of every finished Git request (the fields of its log line), for metrics. */
  onRequestDone?: (o: GitRequestOutcome & { proto: string }) => void
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
  request: FastifyRequest
  res: ServerResponse
  signal: AbortSignal
  /** Protocol version asked for by the client's `Git-Protocol` header (0 when absent). */
  version: 0 | 1 | 2
  outcome: GitRequestOutcome
}

export type GitRouteHandler = (ctx: GitHttpContext) => Promise<boolean>

export const gitHttpPlugin: FastifyPluginAsync<GitHttpOptions> = async (app, opts) => {
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', (_req, _payload, done) => {
    done(null, undefined)
  })

  const handler = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const started = performance.now()
    // Split the raw URL by hand: WHATWG URL would resolve `..` before we could refuse it.
    const url = splitRawUrl(request.url)
    let route: GitRoute | null
    try {
      route = classifyGitRequest(request.method, url.pathname, url.search)
    } catch (err) {
      if (err instanceof ProtocolError) {
        opts.log.warn({ err: { code: err.code, message: err.message }, path: url.pathname.slice(0, 200) }, 'bad git path')
        request.raw.resume()
        await reply.code(400).type('text/plain; charset=utf-8').send(`${err.message}\n`)
        return
      }
      throw err
    }
    if (route === null) {
      request.raw.resume()
      await reply.code(404).type('text/plain; charset=utf-8').send('not a Git repository path\n')
      return
    }

    reply.hijack()
    const res = reply.raw
    const ctx: GitHttpContext = {
      route,
      request,
      res,
      signal: clientGoneSignal(res),
      version: protocolVersion(request.headers['git-protocol']),
      outcome: { cache: 'bypass', cmd: commandName(route), status: 0, bytes: 0 },
    }
    try {
      const taken = (await opts.handlers?.(ctx)) ?? false
      if (!taken) await passThrough(ctx, opts.upstream)
    } catch (err) {
      const e = toError(err)
      if (!ctx.signal.aborted) opts.log.warn({ err: e, repo: route.repo }, 'git request failed')
      failResponse(res, e)
    } finally {
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
          aborted: ctx.signal.aborted || undefined,
        },
        'git request',
      )
    }
  }

  app.route({ method: ['GET', 'HEAD', 'POST'], url: '/*', handler })
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
  const url = splitRawUrl(request.url)
  const sub = route.endpoint.kind === 'dumb' ? route.endpoint.subPath : subPathOf(route)
  const method = request.method === 'POST' ? 'POST' : request.method === 'HEAD' ? 'HEAD' : 'GET'
  const headers = forwardRequestHeaders(request.headers)
  if (body !== undefined) {
    delete headers['transfer-encoding']
    headers['content-length'] = String(body.length)
  }
  const upstreamRes = await upstream.request({
    method,
    repo: route.repo,
    subPath: sub + (route.endpoint.kind === 'advertisement' ? url.search : ''),
    headers,
    body: method === 'POST' ? (body ?? request.raw) : null,
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
      return route.endpoint.subPath
  }
}

function serviceName(route: GitRoute): string {
  return route.endpoint.kind === 'dumb' ? 'dumb' : route.endpoint.service
}

function commandName(route: GitRoute): string {
  switch (route.endpoint.kind) {
    case 'advertisement':
      return 'advertisement'
    case 'rpc':
      return route.endpoint.service === 'git-upload-pack' ? 'upload-pack' : 'receive-pack'
    case 'dumb':
      return 'dumb'
  }
}

/** `Git-Protocol: version=2` (possibly among other `key=value` pairs joined by `:`). */
export function protocolVersion(header: string | string[] | undefined): 0 | 1 | 2 {
  const text = Array.isArray(header) ? header.join(':') : (header ?? '')
  let version: 0 | 1 | 2 = 0
  for (const part of text.split(':')) {
    const m = /^\s*version=(\d+)\s*$/.exec(part)
    if (m?.[1] === '2') version = 2
    else if (m?.[1] === '1' && version < 1) version = 1
  }
  return version
}
