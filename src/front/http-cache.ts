/**
 * The cache-aware handling of smart-HTTP routes, plugged into the HTTP
 * front. Upload-pack POSTs go to the UploadPackService; advertisements pass
 * through with the capabilities that would send clients around the proxy
 * removed, and teach the AuthMemo which credentials the upstream accepts;
 * pushes invalidate the repository.
 */
import { Readable } from 'node:stream'
import { BusyError, ProtocolError, UpstreamError } from '../errors.js'
import type { Log } from '../logger.js'
import { advertisementKey, decideLsRefs } from '../cache/policy.js'
import type { CacheStore } from '../cache/store.js'
import type { AuthMemo } from '../cache/auth-memo.js'
import { WholeBody } from '../cache/entry-reader.js'
import { parseCommandRequestV2 } from '../protocol/v2/command-request.js'
import type { RepoPath } from '../repository.js'
import type { CacheAnswer } from '../service/answer.js'
import type { RefsService } from '../service/refs.js'
import { postUploadPack, UPLOAD_PACK_RESULT, UpstreamStatusError, type UploadPackService } from '../service/upload-pack.js'
import { forwardRequestHeaders, relayResponseHeaders, type HttpUpstream, type UpstreamResponse } from '../upstream/http.js'
import type { GitHttpContext, GitRouteHandler } from './http.js'
import { passThrough, splitRawUrl } from './http.js'
import { firstByte, sendWhole, streamResponse } from './http-response.js'
import { filterAdvertisement } from './advertisement.js'
import { acceptsGzip, gzipCopy, GZIP_MIN_BYTES } from './gzip-copy.js'
import { readRequestBody } from './request-body.js'

/** Upload-pack requests larger than this are streamed through uncached. */
export const MAX_CACHEABLE_REQUEST = 32 * 1024 * 1024

export interface HttpCacheDeps {
  uploadPack: UploadPackService
  refs: RefsService
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
  const read = await readRequestBody(request, {
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
  if (ctx.version === 2) {
    let cmd
    try {
      cmd = parseCommandRequestV2(read.decoded)
    } catch {
      cmd = null
    }
    if (cmd?.command === 'ls-refs') {
      ctx.outcome.cmd = 'ls-refs'
      await handleLsRefs(ctx, deps, read, cmd.capabilities, cmd.args)
      return
    }
    if (cmd?.command === 'fetch') ctx.outcome.cmd = 'fetch'
  }
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
  await respond(ctx, deps, answer, RESULT_HEADERS, () => passThrough(ctx, deps.upstream, read.raw))
}

/** Act on a cache service's answer: pass through, relay a refusal, or send the body. */
async function respond(
  ctx: GitHttpContext,
  deps: HttpCacheDeps,
  answer: CacheAnswer,
  headers: Record<string, string>,
  passThroughFallback: () => Promise<void>,
): Promise<void> {
  switch (answer.kind) {
    case 'pass':
      ctx.outcome.cache = 'bypass'
      await passThroughFallback()
      return
    case 'refused':
      await relay(ctx, answer.response)
      return
    case 'body':
      await sendCached(ctx, deps, answer, headers, passThroughFallback)
      return
  }
}

/**
 * Send a cache answer (hit, miss or join). Nothing is sent before its first
 * byte exists: if the fill fails first, an upstream failure (refusal,
 * error status, busy) keeps its HTTP status, while a cache fault (disk full,
 * unwritable directory) degrades to `fallback`, the request passed through
 * (DESIGN §3.5). After the first byte a failure cuts the connection.
 */
async function sendCached(
  ctx: GitHttpContext,
  deps: HttpCacheDeps,
  answer: { how: 'hit' | 'miss' | 'join'; body: Readable },
  headers: Record<string, string>,
  fallback: () => Promise<void>,
): Promise<void> {
  if (answer.body instanceof WholeBody) {
    // A small hot entry: one write, no stream per request.
    sendInMemory(ctx, answer.how, headers, answer.body.takeWhole())
    return
  }
  const err = await firstByte(answer.body)
  if (err !== null) {
    answer.body.destroy()
    const upstreamCause = findCause(err, (e) => e instanceof UpstreamError || e instanceof BusyError)
    if (upstreamCause !== null) throw upstreamCause
    deps.log.warn({ repo: ctx.route.repo, err }, 'cache failed before the first byte: passing the request through')
    ctx.outcome.cache = 'bypass'
    await fallback()
    return
  }
  ctx.outcome.cache = answer.how
  ctx.outcome.status = 200
  ctx.outcome.bytes = await streamResponse(ctx.res, 200, headers, answer.body, ctx.signal)
}

/**
 * A cached poll's whole path: a ref entry in memory, for a credential the
 * upstream accepted (DESIGN §3.1), sent in one write. False when either is
 * missing: the caller goes the long way.
 */
function sendHot(ctx: GitHttpContext, deps: HttpCacheDeps, key: string, credential: string | null, headers: Record<string, string>): boolean {
  const repo = ctx.route.repo
  if (!deps.authMemo.isAccepted(repo, credential)) return false
  const body = deps.refs.hotHit(repo, key, 'HTTP')
  if (body === undefined) return false
  sendInMemory(ctx, 'hit', headers, body)
  return true
}

/** A cached answer held in memory, in one write: gzip-compressed when large and the client accepts it. */
function sendInMemory(ctx: GitHttpContext, how: 'hit' | 'miss' | 'join', headers: Record<string, string>, body: Buffer): void {
  ctx.outcome.cache = how
  ctx.outcome.status = 200
  const gz = body.length >= GZIP_MIN_BYTES && acceptsGzip(ctx.request.headers['accept-encoding']) ? gzipCopy(body) : undefined
  ctx.outcome.bytes = (gz ?? body).length
  sendWhole(ctx.res, 200, gz === undefined ? headers : { ...headers, 'content-encoding': 'gzip', vary: 'Accept-Encoding' }, gz ?? body)
}

function findCause(err: unknown, match: (e: Error) => boolean): Error | null {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (match(e)) return e
  }
  return null
}

async function handleAdvertisement(ctx: GitHttpContext, deps: HttpCacheDeps): Promise<void> {
  const { route, request } = ctx
  const repo = route.repo
  const service = route.endpoint.kind === 'advertisement' ? route.endpoint.service : 'git-upload-pack'
  const credential = header(request.headers.authorization) ?? null
  const refsOn = service === 'git-upload-pack' && deps.refs.enabledFor('HTTP')
  const key = refsOn ? advertisementKey(repo, ctx.version) : ''
  if (refsOn && sendHot(ctx, deps, key, credential, ADVERTISEMENT_HEADERS)) return

  const search = splitRawUrl(request.url ?? '/').search
  const headers = forwardRequestHeaders(request.headers)
  // From the ref cache, for credentials already accepted. An unknown
  // credential goes upstream below: that request is its authorization check
  // (and concurrent requests with the same credential wait for its verdict).
  if (refsOn && (await deps.authMemo.settled(repo, credential))) {
    const answer = await deps.refs.serve({
      repo,
      key,
      front: 'HTTP',
      authorize: async () => null,
      fetchUpstream: async (signal) => {
        const res = await getAdvertisement(deps.upstream, repo, search, headers, signal)
        if (res.statusCode !== 200 || !isAdvertisement(res)) {
          res.body.resume()
          throw new UpstreamStatusError(res.statusCode, '')
        }
        return filterAdvertisement(res.body)
      },
    })
    if (answer.kind === 'body') {
      await sendCached(ctx, deps, answer, ADVERTISEMENT_HEADERS, () => advertiseFromUpstream(ctx, deps, { repo, service, search, headers, credential }, null, false))
      return
    }
    if (answer.kind === 'refused') {
      await relay(ctx, answer.response)
      return
    }
  }

  const endCheck = deps.authMemo.beginCheck(repo, credential)
  try {
    await advertiseFromUpstream(ctx, deps, { repo, service, search, headers, credential }, endCheck)
  } finally {
    endCheck?.()
  }
}

/**
 * The upstream's answer to this client's GET, which is also its credential's
 * authorization check. `endCheck` releases the requests waiting on that
 * check: it runs once the answer filled (or joined) the ref cache, so they
 * find the entry instead of asking the upstream again.
 */
async function advertiseFromUpstream(
  ctx: GitHttpContext,
  deps: HttpCacheDeps,
  req: { repo: RepoPath; service: string; search: string; headers: Record<string, string>; credential: string | null },
  endCheck: (() => void) | null,
  useCache = true,
): Promise<void> {
  const { repo } = req
  const res = await getAdvertisement(deps.upstream, repo, req.search, req.headers, ctx.signal)
  if (res.statusCode !== 200 || req.service !== 'git-upload-pack' || !isAdvertisement(res)) {
    await relay(ctx, res)
    return
  }
  deps.authMemo.accept(repo, req.credential)
  const filtered = await filterAdvertisement(res.body)
  if (useCache && deps.refs.enabledFor('HTTP')) {
    // This answer was the credential's authorization check; let it fill the
    // ref cache too, so a poll costs the upstream one request per TTL.
    const answer = await deps.refs.serve({
      repo,
      key: advertisementKey(repo, ctx.version),
      front: 'HTTP',
      authorize: async () => null,
      fetchUpstream: async () => filtered,
    })
    endCheck?.()
    if (answer.kind === 'body') {
      // A hit or a join never read `filtered`: release the upstream answer.
      answer.body.once('close', () => filtered.destroy())
      await sendCached(ctx, deps, answer, ADVERTISEMENT_HEADERS, () =>
        advertiseFromUpstream(ctx, deps, req, null, false),
      )
      return
    }
  }
  endCheck?.()
  const relayed = relayResponseHeaders(res.headers)
  delete relayed['content-length']
  ctx.outcome.status = 200
  ctx.outcome.bytes = await streamResponse(ctx.res, 200, relayed, filtered, ctx.signal)
}

function getAdvertisement(
  upstream: HttpUpstream,
  repo: RepoPath,
  search: string,
  headers: Record<string, string>,
  signal: AbortSignal,
): Promise<UpstreamResponse> {
  return upstream.request({ method: 'GET', repo, subPath: `info/refs${search}`, headers, signal })
}

function isAdvertisement(res: UpstreamResponse): boolean {
  return String(res.headers['content-type'] ?? '') === 'application/x-git-upload-pack-advertisement'
}

const ADVERTISEMENT_HEADERS: Record<string, string> = {
  'content-type': 'application/x-git-upload-pack-advertisement',
  'cache-control': 'no-cache, max-age=0, must-revalidate',
  pragma: 'no-cache',
  expires: 'Fri, 01 Jan 1980 00:00:00 GMT',
}

/** A v2 `ls-refs` POST: from the ref cache when enabled and cacheable, else through. */
async function handleLsRefs(
  ctx: GitHttpContext,
  deps: HttpCacheDeps,
  read: { raw: Buffer },
  capabilities: string[],
  args: string[],
): Promise<void> {
  const repo = ctx.route.repo
  const decision = decideLsRefs(repo, capabilities, args)
  if (!decision.cacheable || !deps.refs.enabledFor('HTTP')) {
    await passThrough(ctx, deps.upstream, read.raw)
    return
  }
  const credential = header(ctx.request.headers.authorization) ?? null
  if (sendHot(ctx, deps, decision.key, credential, RESULT_HEADERS)) return
  const headers = forwardRequestHeaders(ctx.request.headers)
  const answer = await deps.refs.serve({
    repo,
    key: decision.key,
    front: 'HTTP',
    authorize: () => deps.uploadPack.authorizeHttp(repo, credential, headers),
    fetchUpstream: (signal) => postUploadPack(deps.upstream, repo, headers, read.raw, signal),
  })
  await respond(ctx, deps, answer, RESULT_HEADERS, () => passThrough(ctx, deps.upstream, read.raw))
}

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
