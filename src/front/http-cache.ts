/**
 * The cache-aware handling of smart-HTTP routes, plugged into the HTTP
 * front. Upload-pack POSTs go to the UploadPackService; advertisements pass
 * through with the capabilities that would send clients around the proxy
 * removed, and teach the AuthMemo which credentials the upstream accepts;
 * pushes invalidate the repository.
 */
import { Readable } from 'node:stream'
import { ProtocolError, UpstreamError } from '../errors.js'
import type { Log } from '../logger.js'
import { STRIPPED_CAPABILITIES, STRIPPED_FETCH_FEATURES } from '../cache/policy.js'
import type { CacheStore } from '../cache/store.js'
import type { AuthMemo } from '../cache/auth-memo.js'
import { createAdvertisementFilterV1 } from '../protocol/v1/advertisement.js'
import { filterCapabilityAdvertisementV2 } from '../protocol/v2/capability-advertisement.js'
import { postUploadPack, UPLOAD_PACK_RESULT, type UploadPackService } from '../service/upload-pack.js'
import { forwardRequestHeaders, relayResponseHeaders, type HttpUpstream, type UpstreamResponse } from '../upstream/http.js'
import type { GitHttpContext, GitRouteHandler } from './http.js'
import { passThrough, splitRawUrl } from './http.js'
import { streamResponse } from './http-response.js'
import { readRequestBody } from './request-body.js'

/** Upload-pack requests larger than this are streamed through uncached. */
export const MAX_CACHEABLE_REQUEST = 32 * 1024 * 1024
const MAX_V2_ADVERTISEMENT = 1024 * 1024

export interface HttpCacheDeps {
  uploadPack: UploadPackService
  store: CacheStore
  authMemo: AuthMemo
  upstream: HttpUpstream
  log: Log
}

const RESULT_HEADERS: Record<string, string> = {
  'content-type': UPLOAD_PACK_RESULT,
  'cache-control': 'no-cache, max-age=0, must-revalidate',
  pragma: 'no-cache',
  expires: 'Fri, 01 Jan 1980 00:00:00 GMT',
}

export function createHttpCacheHandler(deps: HttpCacheDeps): GitRouteHandler {
  return async (ctx) => {
    const { endpoint } = ctx.route
    if (endpoint.kind === 'rpc' && endpoint.service === 'git-upload-pack') {
      await handleUploadPack(ctx, deps)
      return true
    }
    if (endpoint.kind === 'advertisement') {
      await handleAdvertisement(ctx, deps)
      return true
    }
    if (endpoint.kind === 'rpc' && endpoint.service === 'git-receive-pack') {
      await handleReceivePack(ctx, deps)
      return true
    }
    return false
  }
}

async function handleUploadPack(ctx: GitHttpContext, deps: HttpCacheDeps): Promise<void> {
  const { request } = ctx
  const read = await readRequestBody(request.raw, {
    limit: MAX_CACHEABLE_REQUEST,
    contentEncoding: header(request.headers['content-encoding']),
  })
  if (read.kind === 'too-large') {
    deps.store.recordBypass(ctx.route.repo, 'upload-pack')
    await passThroughStream(ctx, deps.upstream, Readable.from(concatStreams(read.head, read.rest)))
    return
  }
  const headers = forwardRequestHeaders(request.headers)
  const repo = ctx.route.repo
  let answer
  try {
    answer = await deps.uploadPack.serve({
      repo,
      version: ctx.version,
      body: read.decoded,
      front: 'HTTP',
      authorize: () => deps.uploadPack.authorizeHttp(repo, header(request.headers.authorization) ?? null, headers),
      fetchUpstream: (signal) => postUploadPack(deps.upstream, repo, headers, read.raw, signal),
    })
  } catch (err) {
    if (!(err instanceof ProtocolError)) throw err
    // Our parser refused the request: let the upstream, the authority on
    // its own protocol, answer it.
    deps.log.info({ repo: ctx.route.repo, err: { code: err.code, message: err.message } }, 'unparsed upload-pack request passed through')
    await passThrough(ctx, deps.upstream, read.raw)
    return
  }
  switch (answer.kind) {
    case 'pass':
      ctx.outcome.cache = 'bypass'
      await passThrough(ctx, deps.upstream, read.raw)
      return
    case 'refused':
      await relay(ctx, answer.response)
      return
    case 'body':
      ctx.outcome.cache = answer.how
      ctx.outcome.status = 200
      ctx.outcome.bytes = await streamResponse(ctx.res, 200, RESULT_HEADERS, answer.body, ctx.signal)
      return
  }
}

async function handleAdvertisement(ctx: GitHttpContext, deps: HttpCacheDeps): Promise<void> {
  const { route, request } = ctx
  const service = route.endpoint.kind === 'advertisement' ? route.endpoint.service : 'git-upload-pack'
  const url = splitRawUrl(request.url)
  const res = await deps.upstream.request({
    method: 'GET',
    repo: route.repo,
    subPath: `info/refs${url.search}`,
    headers: forwardRequestHeaders(request.headers),
    signal: ctx.signal,
  })
  const contentType = String(res.headers['content-type'] ?? '')
  if (res.statusCode !== 200 || service !== 'git-upload-pack' || contentType !== 'application/x-git-upload-pack-advertisement') {
    await relay(ctx, res)
    return
  }
  deps.authMemo.accept(route.repo, header(request.headers.authorization) ?? null)
  const headers = relayResponseHeaders(res.headers)
  delete headers['content-length']
  if (ctx.version === 2) {
    // A v2 capability advertisement is a few hundred bytes: read it whole
    // (bounded), decide from the answer whether the upstream spoke v2.
    let read
    try {
      read = await readRequestBody(res.body, { limit: MAX_V2_ADVERTISEMENT, contentEncoding: undefined })
    } catch (err) {
      throw new UpstreamError('ERR_UPSTREAM_BROKEN', 'upstream closed the connection in the middle of its answer', {
        cause: err,
      })
    }
    if (read.kind === 'complete') {
      const body = filterCapabilityAdvertisementV2(read.decoded, {
        fetchFeatures: STRIPPED_FETCH_FEATURES,
        capabilities: STRIPPED_CAPABILITIES,
      })
      if (body !== read.decoded) {
        ctx.outcome.status = 200
        ctx.outcome.bytes = await streamResponse(ctx.res, 200, headers, Readable.from([body]), ctx.signal)
        return
      }
      // Not a v2 answer: the upstream fell back to v0; filter it as such.
      ctx.outcome.status = 200
      ctx.outcome.bytes = await streamResponse(
        ctx.res,
        200,
        headers,
        Readable.from([body]),
        ctx.signal,
        [createAdvertisementFilterV1(STRIPPED_CAPABILITIES_V1)],
      )
      return
    }
    ctx.outcome.status = 200
    ctx.outcome.bytes = await streamResponse(ctx.res, 200, headers, Readable.from(concatStreams(read.head, read.rest)), ctx.signal)
    return
  }
  const filter = createAdvertisementFilterV1(STRIPPED_CAPABILITIES_V1)
  ctx.outcome.status = 200
  ctx.outcome.bytes = await streamResponse(ctx.res, 200, headers, res.body, ctx.signal, [filter])
}

/** v0/v1 advertisements carry capabilities as words: the same set, flattened. */
const STRIPPED_CAPABILITIES_V1: ReadonlySet<string> = new Set([...STRIPPED_CAPABILITIES, ...STRIPPED_FETCH_FEATURES])

async function handleReceivePack(ctx: GitHttpContext, deps: HttpCacheDeps): Promise<void> {
  const repo = ctx.route.repo
  try {
    await passThrough(ctx, deps.upstream, undefined, async (status) => {
      // Before the push's answer reaches the client (DESIGN §3.2).
      if (status === 200) await deps.store.invalidateRepo(repo)
    })
  } finally {
    // Again after it: a fill that started while the push ran is dropped too.
    if (ctx.outcome.status === 200) await deps.store.invalidateRepo(repo)
  }
}

/** Relay an upstream response (status, headers, body) to the client unchanged. */
async function relay(ctx: GitHttpContext, res: UpstreamResponse): Promise<void> {
  ctx.outcome.status = res.statusCode
  ctx.outcome.bytes = await streamResponse(ctx.res, res.statusCode, relayResponseHeaders(res.headers), res.body, ctx.signal)
}

async function passThroughStream(ctx: GitHttpContext, upstream: HttpUpstream, body: Readable): Promise<void> {
  const headers = forwardRequestHeaders(ctx.request.headers)
  delete headers['content-length']
  const res = await upstream.request({
    method: 'POST',
    repo: ctx.route.repo,
    subPath: 'git-upload-pack',
    headers,
    body,
    signal: ctx.signal,
  })
  await relay(ctx, res)
}

async function* concatStreams(head: Buffer, rest: AsyncIterable<unknown>): AsyncGenerator<Buffer> {
  yield head
  for await (const chunk of rest) yield chunk as Buffer // request and response streams yield Buffers
}

function header(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value
}
