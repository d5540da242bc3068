/**
 * The cache-aware handling of smart-HTTP routes, plugged into the HTTP
 * front. Upload-pack POSTs go to the UploadPackService (or, for v2
 * `ls-refs`, the RefsService); advertisements pass through with the
 * capabilities that would send clients around the proxy removed, and prove
 * which credentials the upstream accepts; pushes invalidate the repository.
 *
 * DESIGN §3.1, in the order it is applied here: a request that nothing
 * could answer from the cache streams through unread. Otherwise the
 * client's credential is proven first (service/access.ts), and only then
 * is its body read (within the body-memory budget, §3.9) and parsed.
 */
import { pipeline as pipelineCallback, Readable, Transform, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { BusyError, ProtocolError, UpstreamError, UpstreamRefusedError } from '../errors.js'
import type { Log } from '../logger.js'
import { advertisementKey, decideLsRefs } from '../cache/policy.js'
import type { CacheStore } from '../cache/store.js'
import { WholeBody } from '../cache/entry-reader.js'
import { AdvertisementChecker } from '../protocol/advertisement-check.js'
import { parseCommandRequestV2 } from '../protocol/v2/command-request.js'
import type { RepoPath } from '../repository.js'
import type { Access, AccessScope } from '../service/access.js'
import type { CacheAnswer } from '../service/answer.js'
import type { RefsService } from '../service/refs.js'
import { postUploadPack, UPLOAD_PACK_RESULT, UpstreamStatusError, type UploadPackService } from '../service/upload-pack.js'
import { forwardRequestHeaders, isRefusal, refusalOf, relayResponseHeaders, type HttpUpstream, type UpstreamResponse } from '../upstream/http.js'
import type { GitHttpContext, GitRouteHandler } from './http.js'
import { passThrough } from './http.js'
import { firstByte, sendWhole, streamResponse } from './http-response.js'
import { filterAdvertisement } from './advertisement.js'
import { BodyLease, type BodyBudget } from './body-budget.js'
import { acceptsGzip, gzipCopy, GZIP_MIN_BYTES } from './gzip-copy.js'
import { readRequestBody } from './request-body.js'

/**
 * Upload-pack requests larger than this (as sent, or gunzipped) are
 * streamed through uncached: 160,000 wants. It also bounds what a gzip bomb
 * costs (DESIGN §3.9).
 */
export const MAX_CACHEABLE_REQUEST = 8 * 1024 * 1024

export interface HttpCacheDeps {
  uploadPack: UploadPackService
  refs: RefsService
  store: CacheStore
  access: Access
  upstream: HttpUpstream
  budget: BodyBudget
  log: Log
}

const NO_CACHE_HEADERS: Record<string, string> = {
  'cache-control': 'no-cache, max-age=0, must-revalidate',
  pragma: 'no-cache',
  expires: 'Fri, 01 Jan 1980 00:00:00 GMT',
}

const RESULT_HEADERS: Record<string, string> = { 'content-type': UPLOAD_PACK_RESULT, ...NO_CACHE_HEADERS }

const ADVERTISEMENT_HEADERS: Record<string, string> = {
  'content-type': 'application/x-git-upload-pack-advertisement',
  ...NO_CACHE_HEADERS,
}

export function createHttpCacheHandler(deps: HttpCacheDeps): GitRouteHandler {
  return async (ctx) => {
    const { endpoint } = ctx.route
    if (endpoint.kind === 'rpc' && endpoint.service === 'git-upload-pack') {
      await handleUploadPack(ctx, deps)
      return true
    }
    if (endpoint.kind === 'advertisement' && endpoint.service === 'git-upload-pack') {
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
  const { request, credential } = ctx
  const repo = ctx.route.repo
  const mayCache =
    credential.cacheable && (deps.uploadPack.enabledFor('HTTP') || (ctx.version === 2 && deps.refs.enabledFor('HTTP')))
  if (!mayCache) {
    await passThrough(ctx, deps.upstream)
    return
  }
  const verdict = await deps.access.checkUploadPack(repo, credential, header(request.headers['user-agent']), ctx.signal)
  if (verdict.kind === 'refused') {
    // The body was never read: close the connection rather than read it now.
    relayRefusal(ctx, verdict.refusal, true)
    return
  }
  if (verdict.kind === 'unproven') {
    await passThrough(ctx, deps.upstream)
    return
  }
  const lease = new BodyLease(deps.budget)
  try {
    const read = await readRequestBody(request, {
      limit: MAX_CACHEABLE_REQUEST,
      contentEncoding: header(request.headers['content-encoding']),
      lease,
      signal: ctx.signal,
    })
    if (read.kind === 'too-large') {
      deps.store.recordBypass(repo, 'upload-pack')
      await passThroughStream(ctx, deps.upstream, Readable.from(concatStreams(read.head, read.rest)))
      return
    }
    const forward = { repo, search: ctx.search, headers: forwardRequestHeaders(request.headers), body: read.raw }
    const fetchUpstream = (signal: AbortSignal): Promise<Readable> =>
      postUploadPack(deps.upstream, forward, signal).catch((err: unknown) => {
        if (err instanceof UpstreamRefusedError) deps.access.reject(repo, credential, 'upload-pack')
        throw err
      })
    const fallback = (): Promise<void> => passThrough(ctx, deps.upstream, read.raw)
    if (ctx.version === 2) {
      let cmd
      try {
        cmd = parseCommandRequestV2(read.decoded)
      } catch {
        cmd = null
      }
      if (cmd?.command === 'ls-refs') {
        ctx.outcome.cmd = 'ls-refs'
        const decision = decideLsRefs(repo, cmd.capabilities, cmd.args)
        if (!decision.cacheable || !deps.refs.enabledFor('HTTP')) {
          await fallback()
          return
        }
        if (sendHot(ctx, deps, decision.key, 'upload-pack', RESULT_HEADERS)) return
        const answer = await deps.refs.serve({ repo, key: decision.key, front: 'HTTP', expect: { kind: 'pkt-lines' }, fetchUpstream })
        await respond(ctx, deps, answer, RESULT_HEADERS, fallback)
        return
      }
      if (cmd?.command === 'fetch') ctx.outcome.cmd = 'fetch'
    }
    let answer
    try {
      answer = await deps.uploadPack.serve({ repo, version: ctx.version, body: read.decoded, front: 'HTTP', fetchUpstream })
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err
      // Our parser refused the request: let the upstream, the authority on
      // its own protocol, answer it.
      deps.log.info({ repo, err: { code: err.code, message: err.message } }, 'unparsed upload-pack request passed through')
      await fallback()
      return
    }
    await respond(ctx, deps, answer, RESULT_HEADERS, fallback)
  } finally {
    lease.release()
  }
}

/** Act on a cache service's answer: pass through, or send the body. */
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
    case 'body':
      await sendCached(ctx, deps, answer, headers, passThroughFallback)
      return
  }
}

/**
 * Send a cache answer (hit, miss or join). Nothing is sent before its first
 * byte exists: if the fill fails first, a refusal of the filling client's
 * credential reaches that client unchanged (a client that joined the fill
 * asks the upstream itself instead: its own credential decides), another
 * upstream failure (error status, busy) keeps its HTTP status, and a cache
 * fault (disk full, unwritable directory) degrades to `fallback`, the
 * request passed through (DESIGN §3.5). After the first byte a failure cuts
 * the connection.
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
    const refusal = findCause(err, (e) => e instanceof UpstreamRefusedError)
    if (refusal instanceof UpstreamRefusedError && answer.how === 'miss') {
      relayRefusal(ctx, refusal, false)
      return
    }
    const upstreamCause = refusal === null ? findCause(err, (e) => e instanceof UpstreamError || e instanceof BusyError) : null
    if (upstreamCause !== null) throw upstreamCause
    if (refusal === null) deps.log.warn({ repo: ctx.route.repo, err }, 'cache failed before the first byte: passing the request through')
    ctx.outcome.cache = 'bypass'
    await fallback()
    return
  }
  ctx.outcome.cache = answer.how
  ctx.outcome.status = 200
  ctx.outcome.bytes = await streamResponse(ctx.res, 200, headers, answer.body, ctx.signal)
}

/**
 * A cached ref answer's whole path: an entry in memory, for a credential
 * the upstream accepted in `scope` (DESIGN §3.1), sent in one write. False
 * when either is missing: the caller goes the long way.
 */
function sendHot(ctx: GitHttpContext, deps: HttpCacheDeps, key: string, scope: AccessScope, headers: Record<string, string>): boolean {
  const repo = ctx.route.repo
  if (!deps.access.isAccepted(repo, ctx.credential, scope)) return false
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

/** What a ref advertisement request needs to go upstream again. */
interface AdvertisementRequest {
  repo: RepoPath
  headers: Record<string, string>
}

async function handleAdvertisement(ctx: GitHttpContext, deps: HttpCacheDeps): Promise<void> {
  const { credential } = ctx
  const repo = ctx.route.repo
  const refsOn = credential.cacheable && deps.refs.enabledFor('HTTP')
  const key = advertisementKey(repo, ctx.version)
  if (refsOn && sendHot(ctx, deps, key, 'info-refs', ADVERTISEMENT_HEADERS)) return

  const req: AdvertisementRequest = { repo, headers: forwardRequestHeaders(ctx.request.headers) }
  // From the ref cache, for credentials already accepted. An unknown
  // credential goes upstream below: that request is its access check (and
  // concurrent requests with the same credential wait for its verdict).
  if (refsOn && (await deps.access.settled(repo, credential, 'info-refs'))) {
    const answer = await deps.refs.serve({
      repo,
      key,
      front: 'HTTP',
      expect: { kind: 'advertisement', form: 'http', version: ctx.version },
      fetchUpstream: async (signal) => {
        const res = await getAdvertisement(ctx, deps, req, signal)
        if (isRefusal(res.statusCode)) {
          deps.access.reject(repo, credential, 'info-refs')
          throw await refusalOf(res)
        }
        if (res.statusCode !== 200 || !isAdvertisement(res)) {
          res.body.resume()
          throw new UpstreamStatusError(res.statusCode, '')
        }
        return filterAdvertisement(res.body)
      },
    })
    if (answer.kind === 'body') {
      await sendCached(ctx, deps, answer, ADVERTISEMENT_HEADERS, () => advertiseFromUpstream(ctx, deps, req, null, false))
      return
    }
  }

  const endCheck = deps.access.beginCheck(repo, credential, 'info-refs')
  try {
    await advertiseFromUpstream(ctx, deps, req, endCheck, refsOn)
  } finally {
    endCheck?.()
  }
}

/**
 * The upstream's answer to this client's GET, which is also its
 * credential's access check: accepted once the answer has parsed whole as
 * an advertisement. `endCheck` releases the requests waiting on that check
 * once it is decided; with `useCache`, the answer fills the ref cache too,
 * so a poll costs the upstream one request per TTL.
 */
async function advertiseFromUpstream(
  ctx: GitHttpContext,
  deps: HttpCacheDeps,
  req: AdvertisementRequest,
  endCheck: (() => void) | null,
  useCache: boolean,
): Promise<void> {
  const { repo } = req
  const res = await getAdvertisement(ctx, deps, req, ctx.signal)
  if (res.statusCode !== 200 || !isAdvertisement(res)) {
    // A refusal reaches git unchanged; anything else (a sign-in page, a
    // redirect) proves nothing and is relayed as it is.
    if (isRefusal(res.statusCode)) deps.access.reject(repo, ctx.credential, 'info-refs')
    await relay(ctx, res)
    return
  }
  const proven = proveAdvertisement(await filterAdvertisement(res.body), () => {
    deps.access.accept(repo, ctx.credential, 'info-refs')
    endCheck?.()
  }, () => endCheck?.())
  if (useCache) {
    const answer = await deps.refs.serve({
      repo,
      key: advertisementKey(repo, ctx.version),
      front: 'HTTP',
      expect: { kind: 'advertisement', form: 'http', version: ctx.version },
      fetchUpstream: async () => proven,
    })
    if (answer.kind === 'body') {
      if (answer.how !== 'miss') {
        // Another fill answers this client: its own upstream answer is
        // still read through the check, so that its credential counts.
        void pipeline(proven, discard()).catch(() => undefined) // its failure only means no acceptance
      }
      await sendCached(ctx, deps, answer, ADVERTISEMENT_HEADERS, () => advertiseFromUpstream(ctx, deps, req, null, false))
      return
    }
  }
  const relayed = relayResponseHeaders(res.headers)
  delete relayed['content-length']
  ctx.outcome.status = 200
  ctx.outcome.bytes = await streamResponse(ctx.res, 200, relayed, proven, ctx.signal)
}

/**
 * `body` passed on unchanged; `onValid` once it has ended as a whole,
 * well-formed advertisement, `onDone` once it has ended any other way.
 */
function proveAdvertisement(body: Readable, onValid: () => void, onDone: () => void): Readable {
  const checker = new AdvertisementChecker('http')
  let settled = false
  const settle = (valid: boolean): void => {
    if (settled) return
    settled = true
    if (valid) onValid()
    else onDone()
  }
  const check = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      checker.push(chunk)
      cb(null, chunk)
    },
    flush(cb) {
      settle(checker.finish().ok)
      cb()
    },
  })
  check.once('close', () => {
    settle(false)
  })
  // Callback pipeline: returns the last stream and destroys both on error.
  return pipelineCallback(body, check, () => {
    // Errors reach the consumer through the returned stream.
  })
}

function discard(): Writable {
  return new Writable({
    write(_chunk, _enc, cb) {
      cb()
    },
  })
}

function getAdvertisement(ctx: GitHttpContext, deps: HttpCacheDeps, req: AdvertisementRequest, signal: AbortSignal): Promise<UpstreamResponse> {
  return deps.upstream.request({ method: 'GET', repo: req.repo, subPath: `info/refs${ctx.search}`, headers: req.headers, signal })
}

function isAdvertisement(res: UpstreamResponse): boolean {
  return String(res.headers['content-type'] ?? '') === 'application/x-git-upload-pack-advertisement'
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

/** The upstream's refusal, unchanged (WWW-Authenticate and body included). */
function relayRefusal(ctx: GitHttpContext, refusal: UpstreamRefusedError, closeConnection: boolean): void {
  ctx.outcome.status = refusal.status
  ctx.outcome.bytes = refusal.body.length
  const headers: Record<string, string | string[]> = { ...refusal.headers, 'content-length': String(refusal.body.length) }
  if (closeConnection) headers['connection'] = 'close'
  ctx.res.writeHead(refusal.status, headers)
  ctx.res.end(refusal.body)
}

async function passThroughStream(ctx: GitHttpContext, upstream: HttpUpstream, body: Readable): Promise<void> {
  const headers = forwardRequestHeaders(ctx.request.headers)
  delete headers['content-length']
  const res = await upstream.request({
    method: 'POST',
    repo: ctx.route.repo,
    subPath: `git-upload-pack${ctx.search}`,
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
