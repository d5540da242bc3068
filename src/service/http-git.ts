/**
 * The service the smart-HTTP front calls: one Git HTTP request in, one
 * answer out, which the front writes. Everything between (cache or
 * upstream, access, fall-backs) is decided here; the front only turns a
 * connection into an `HttpGitRequest` and an `HttpAnswer` into bytes.
 *
 * - `POST git-upload-pack` goes to the UploadPackService (or, for v2
 *   `ls-refs`, the RefsService), after DESIGN §3.1 in this order: a request
 *   that nothing could answer from the cache streams through unread;
 *   otherwise the client's credential is proven first (access.ts), and only
 *   then is its body read (within the body-memory budget, §3.9) and parsed.
 * - `GET info/refs?service=git-upload-pack`: from the ref cache for a
 *   credential accepted in the `info-refs` scope, else the client's own
 *   upstream GET, which proves its access once its body has parsed whole as
 *   an advertisement (and fills the ref cache). Capabilities that would send
 *   clients around the proxy are removed (advertisement.ts).
 * - `POST git-receive-pack` passes through and invalidates the repository
 *   before the pusher sees its answer, and once more after it (§3.2).
 * - Everything else (dumb HTTP, receive-pack advertisements, the LFS API)
 *   streams through untouched.
 *
 * A cached answer is handed out only once its first byte exists: if the
 * fill fails first, a refusal of the filling client's credential reaches
 * that client unchanged (one that joined the fill asks the upstream itself:
 * its own credential decides), another upstream failure is thrown with its
 * status, and a cache fault (disk full, unwritable directory) degrades to
 * pass-through (§3.5).
 */
import type { IncomingHttpHeaders } from 'node:http'
import { pipeline as pipelineCallback, Readable, Transform, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { BusyError, findCause, ProtocolError, UpstreamError, UpstreamRefusedError } from '../errors.js'
import { httpGit, UPLOAD_PACK_ADVERTISEMENT } from '../upstream/http-git.js'
import type { Log } from '../logger.js'
import { firstByte } from '../io/first-byte.js'
import { AdvertisementChecker } from '../protocol/advertisement-check.js'
import type { ProtocolVersion } from '../protocol/git-protocol-header.js'
import { parseCommandRequestV2 } from '../protocol/v2/command-request.js'
import type { RepoPath } from '../repository.js'
import { forwardRequestHeaders, isRefusal, relayResponseHeaders, type HttpUpstream, type UpstreamResponse } from '../upstream/http.js'
import type { Access, AccessScope } from './access.js'
import { filterAdvertisement } from './advertisement.js'
import { withFinish, type CacheAnswer, type CacheBody } from './answer.js'
import { BodyLease, type BodyBudget } from './body-budget.js'
import type { Credential } from './credential.js'
import type { GitRoute } from './git-route.js'
import type { LfsService } from './lfs.js'
import type { Invalidation } from './invalidation.js'
import type { RefsService } from './refs.js'
import { readRequestBody, sentBody } from './request-body.js'
import { UPLOAD_PACK_RESULT, type UploadPackService } from './upload-pack.js'
import { isUnreachableStatus, Outage } from './outage.js'
import { progressMarker, withOutageProgress } from './outage-progress.js'
import { WholeBody } from '../cache/entry-reader.js'

/**
 * Upload-pack requests larger than this (as sent, or gunzipped) are
 * streamed through uncached: 160,000 wants. It also bounds what a gzip bomb
 * costs (DESIGN §3.9).
 */
export const MAX_CACHEABLE_REQUEST = 8 * 1024 * 1024

/** One Git HTTP request, as the front hands it over. */
export interface HttpGitRequest {
  route: GitRoute
  method: 'GET' | 'HEAD' | 'POST' | 'PUT'
  headers: IncomingHttpHeaders
  /** The raw query string, with its `?` (or ''). */
  search: string
  /** What the client's `Git-Protocol` asks for, read as git reads it. */
  version: ProtocolVersion
  credential: Credential
  /** The request body, unread. */
  body: Readable
  /** Fires when the client goes away. */
  signal: AbortSignal
  /** The scheme the client reached the proxy with (TLS, or a trusted balancer's X-Forwarded-Proto); default `http`. */
  clientProto?: 'http' | 'https'
}

/** `stale`: answered from the cache during an upstream outage (DESIGN §3.10). */
export type CacheOutcome = 'hit' | 'miss' | 'join' | 'bypass' | 'stale'

/** What the front writes back. `finish` (if any) runs once it has been written, or failed. */
export type HttpAnswer = (
  | {
      kind: 'cached'
      how: 'hit' | 'miss' | 'join'
      headers: Record<string, string>
      body: CacheBody
    }
  /** The upstream's answer, relayed (hop-by-hop headers already removed). */
  | { kind: 'upstream'; status: number; headers: Record<string, string | string[]>; body: Readable }
  /** The upstream's refusal of the credential, unchanged; with `closeConnection`, the request body was never read. */
  | { kind: 'refusal'; refusal: UpstreamRefusedError; closeConnection: boolean }
) & {
  /** `ls-refs` / `fetch` when the request was parsed as one. */
  cmd?: string
  /** The cache decided to go around (only for cacheable kinds of request). */
  cache?: CacheOutcome
  finish?: () => Promise<void>
}

export interface HttpGitDeps {
  uploadPack: UploadPackService
  refs: RefsService
  access: Access
  invalidation: Invalidation
  upstream: HttpUpstream
  budget: BodyBudget
  /** Git LFS downloads through the cache (lfs.ts); without it the LFS API passes through. */
  lfs?: LfsService
  /** Counts a cacheable request sent around the cache. */
  recordBypass: (repo: RepoPath) => void
  log: Log
  /** Outage mode and the upstream's reachability (outage.ts); absent: neither. */
  outage?: Outage
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

export class HttpGitService {
  readonly #d: HttpGitDeps

  constructor(deps: HttpGitDeps) {
    this.#d = deps
  }

  /**
   * The answer, with outage mode around it (DESIGN §3.10): an unreachable
   * upstream is remembered for a few seconds; with outage mode on, the
   * request is then answered from what the cache holds (`#outageAnswer`).
   */
  async answer(req: HttpGitRequest): Promise<HttpAnswer> {
    const outage = this.#d.outage
    if (outage === undefined) return this.#answer(req)
    // Reads skip a dead upstream for a few seconds; anything else (a push) tries it: it cannot be answered anyway, and its success ends the outage.
    const read = req.route.endpoint.kind !== 'dumb' && req.route.endpoint.kind !== 'lfs' && req.route.endpoint.service === 'git-upload-pack'
    if (outage.enabled && read && outage.remembersDown()) return this.#outageAnswer(req, outage)
    let answer: HttpAnswer
    try {
      answer = await this.#answer(req)
    } catch (err) {
      if (!Outage.isUnreachable(err)) throw err
      outage.down(err instanceof Error ? err.message : String(err))
      if (!outage.enabled) throw err
      return this.#outageAnswer(req, outage)
    }
    if (answer.kind === 'upstream' && isUnreachableStatus(answer.status)) {
      outage.down(`upstream answered ${answer.status}`)
      if (outage.enabled) {
        answer.body.destroy()
        await answer.finish?.()
        return this.#outageAnswer(req, outage)
      }
    } else if (answer.kind === 'upstream' || answer.kind === 'refusal') {
      outage.up()
    }
    return answer
  }

  async #answer(req: HttpGitRequest): Promise<HttpAnswer> {
    const { endpoint } = req.route
    if (endpoint.kind === 'rpc' && endpoint.service === 'git-upload-pack') return this.#uploadPack(req)
    if (endpoint.kind === 'advertisement' && endpoint.service === 'git-upload-pack') return this.#advertisement(req)
    if (endpoint.kind === 'rpc' && endpoint.service === 'git-receive-pack') return this.#receivePack(req)
    if (endpoint.kind === 'lfs' && this.#d.lfs !== undefined) {
      const answer = await this.#d.lfs.answer(req, (body) => this.#passThrough(req, body))
      if (answer !== null) return answer
    }
    return this.#passThrough(req)
  }

  // ---- upload-pack -----------------------------------------------------

  async #uploadPack(req: HttpGitRequest): Promise<HttpAnswer> {
    const { credential } = req
    const repo = req.route.repo
    const d = this.#d
    const mayCache = credential.cacheable && (d.uploadPack.enabledFor('HTTP') || (req.version === 2 && d.refs.enabledFor('HTTP')))
    if (!mayCache) return this.#passThrough(req)
    const verdict = await d.access.checkUploadPack(repo, credential, header(req.headers['user-agent']), req.signal)
    // The body was never read: close the connection rather than read it now.
    if (verdict.kind === 'refused') return { kind: 'refusal', refusal: verdict.refusal, closeConnection: true }
    if (verdict.kind === 'unproven') return this.#passThrough(req)

    const lease = new BodyLease(d.budget)
    const release = async (): Promise<void> => {
      lease.release()
    }
    try {
      const read = await readRequestBody(req.body, {
        limit: MAX_CACHEABLE_REQUEST,
        contentEncoding: header(req.headers['content-encoding']),
        lease,
        signal: req.signal,
      })
      if (read.kind === 'too-large') {
        d.recordBypass(repo)
        return withFinish(await this.#passThrough(req, sentBody(read)), release)
      }
      const git = httpGit(d.upstream, { repo, search: req.search, headers: forwardRequestHeaders(req.headers) })
      const fetchUpstream = (signal: AbortSignal): Promise<Readable> =>
        git.uploadPack(req.version, read.raw, signal).catch((err: unknown) => {
          if (err instanceof UpstreamRefusedError) d.access.reject(repo, credential, 'upload-pack')
          throw err
        })
      const fallback = (): Promise<HttpAnswer> => this.#passThrough(req, read.raw)
      let cmd: string | undefined
      if (req.version === 2) {
        const parsed = commandOf(read.decoded)
        if (parsed?.command === 'ls-refs') {
          const decision = d.refs.lsRefsDecision(repo, parsed.capabilities, parsed.args)
          if (!decision.cacheable) return withFinish({ ...(await fallback()), cmd: 'ls-refs' }, release)
          if (!d.refs.enabledFor('HTTP')) return withFinish({ ...this.#keepLastGood(repo, decision.key, await fallback()), cmd: 'ls-refs' }, release)
          const hot = this.#hot(req, decision.key, 'upload-pack', RESULT_HEADERS)
          if (hot !== null) return withFinish({ ...hot, cmd: 'ls-refs' }, release)
          const keepLsRefs = (signal: AbortSignal): Promise<Readable> =>
            fetchUpstream(signal).then((body) => this.#d.outage?.keep(repo, decision.key, body, endsWithFlush) ?? body)
          const answer = await d.refs.serve({ repo, key: decision.key, front: 'HTTP', expect: { kind: 'pkt-lines' }, fetchUpstream: keepLsRefs })
          return withFinish({ ...(await this.#fromCache(req, answer, RESULT_HEADERS, fallback)), cmd: 'ls-refs' }, release)
        }
        if (parsed?.command === 'fetch') cmd = 'fetch'
      }
      let answer
      try {
        answer = await d.uploadPack.serve({ repo, version: req.version, body: read.decoded, front: 'HTTP', fetchUpstream })
      } catch (err) {
        if (!(err instanceof ProtocolError)) throw err
        // Our parser refused the request: let the upstream, the authority on
        // its own protocol, answer it.
        d.log.info({ repo, err: { code: err.code, message: err.message } }, 'unparsed upload-pack request passed through')
        return withFinish({ ...(await fallback()), ...(cmd === undefined ? {} : { cmd }) }, release)
      }
      return withFinish({ ...(await this.#fromCache(req, answer, RESULT_HEADERS, fallback)), ...(cmd === undefined ? {} : { cmd }) }, release)
    } catch (err) {
      lease.release()
      throw err
    }
  }

  /**
   * A cache service's answer as an HttpAnswer: pass through, or the body
   * once its first byte exists (see the file header for the failures).
   */
  async #fromCache(
    req: HttpGitRequest,
    answer: CacheAnswer,
    headers: Record<string, string>,
    fallback: () => Promise<HttpAnswer>,
  ): Promise<HttpAnswer> {
    if (answer.kind === 'pass') return { ...(await fallback()), cache: 'bypass' }
    const body = answer.body
    if (body.whole() !== null) return { kind: 'cached', how: answer.how, headers, body }
    const err = await firstByte(body.stream)
    if (err === null) return { kind: 'cached', how: answer.how, headers, body }
    body.stream.destroy()
    const refusal = findCause(err, (e) => e instanceof UpstreamRefusedError)
    if (refusal instanceof UpstreamRefusedError && answer.how === 'miss') return { kind: 'refusal', refusal, closeConnection: false }
    const upstreamCause = refusal === null ? findCause(err, (e) => e instanceof UpstreamError || e instanceof BusyError) : null
    if (upstreamCause !== null) throw upstreamCause
    if (refusal === null) this.#d.log.warn({ repo: req.route.repo, err }, 'cache failed before the first byte: passing the request through')
    return { ...(await fallback()), cache: 'bypass' }
  }

  /**
   * A cached ref answer in memory, for a credential the upstream accepted in
   * `scope` (DESIGN §3.1): a cached poll's whole path, no await. Null when
   * either is missing.
   */
  #hot(req: HttpGitRequest, key: string, scope: AccessScope, headers: Record<string, string>): HttpAnswer | null {
    const repo = req.route.repo
    if (!this.#d.access.isAccepted(repo, req.credential, scope)) return null
    const body = this.#d.refs.hotHit(repo, key, 'HTTP')
    return body === undefined ? null : { kind: 'cached', how: 'hit', headers, body }
  }

  // ---- advertisements ------------------------------------------------------

  async #advertisement(req: HttpGitRequest): Promise<HttpAnswer> {
    const { credential } = req
    const d = this.#d
    const repo = req.route.repo
    const refsOn = credential.cacheable && d.refs.enabledFor('HTTP')
    const key = d.refs.keys.http(repo, req.version)
    if (refsOn) {
      const hot = this.#hot(req, key, 'info-refs', ADVERTISEMENT_HEADERS)
      if (hot !== null) return hot
    }
    // From the ref cache, for credentials already accepted. An unknown
    // credential goes upstream below: that request is its access check (and
    // concurrent requests with the same credential wait for its verdict).
    if (refsOn && (await d.access.settled(repo, credential, 'info-refs'))) {
      const answer = await d.refs.serve({
        repo,
        key,
        front: 'HTTP',
        expect: { kind: 'advertisement', form: 'http', version: req.version },
        fetchUpstream: async (signal) => {
          const git = httpGit(d.upstream, { repo, search: req.search, headers: forwardRequestHeaders(req.headers) })
          const body = await git.advertise(req.version, signal).catch((err: unknown) => {
            if (err instanceof UpstreamRefusedError) d.access.reject(repo, credential, 'info-refs')
            throw err
          })
          return this.#keep(repo, key, await filterAdvertisement(body))
        },
      })
      if (answer.kind === 'body') return this.#fromCache(req, answer, ADVERTISEMENT_HEADERS, () => this.#advertiseFromUpstream(req, null, false))
    }
    const endCheck = d.access.beginCheck(repo, credential, 'info-refs')
    try {
      return await this.#advertiseFromUpstream(req, endCheck, refsOn)
    } catch (err) {
      endCheck?.()
      throw err
    }
  }

  /**
   * The upstream's answer to this client's GET, which is also its
   * credential's access check: accepted once the answer has parsed whole as
   * an advertisement. `endCheck` releases the requests waiting on that check
   * once it is decided; with `useCache`, the answer fills the ref cache too,
   * so a poll costs the upstream one request per TTL.
   */
  async #advertiseFromUpstream(req: HttpGitRequest, endCheck: (() => void) | null, useCache: boolean): Promise<HttpAnswer> {
    const d = this.#d
    const repo = req.route.repo
    const res = await this.#getAdvertisement(req, req.signal)
    if (res.statusCode !== 200 || !isAdvertisement(res)) {
      // A refusal reaches git unchanged; anything else (a sign-in page, a
      // redirect) proves nothing and is relayed as it is.
      if (isRefusal(res.statusCode)) d.access.reject(repo, req.credential, 'info-refs')
      endCheck?.()
      return relayed(res)
    }
    const proven = proveAdvertisement(
      this.#keep(repo, d.refs.keys.http(repo, req.version), await filterAdvertisement(res.body)),
      () => {
        d.access.accept(repo, req.credential, 'info-refs')
        endCheck?.()
      },
      () => endCheck?.(),
    )
    if (useCache) {
      const answer = await d.refs.serve({
        repo,
        key: d.refs.keys.http(repo, req.version),
        front: 'HTTP',
        expect: { kind: 'advertisement', form: 'http', version: req.version },
        fetchUpstream: async () => proven,
      })
      if (answer.kind === 'body') {
        if (answer.how !== 'miss') {
          // Another fill answers this client: its own upstream answer is
          // still read through the check, so that its credential counts.
          void pipeline(proven, discard()).catch(() => undefined) // its failure only means no acceptance
        }
        return this.#fromCache(req, answer, ADVERTISEMENT_HEADERS, () => this.#advertiseFromUpstream(req, null, false))
      }
    }
    const headers = relayResponseHeaders(res.headers)
    delete headers['content-length']
    return { kind: 'upstream', status: 200, headers, body: proven }
  }

  // ---- outage mode (DESIGN §3.10) ------------------------------------------

  /** An advertisement body that is kept as the last good one once it has passed whole. */
  #keep(repo: RepoPath, key: string, body: Readable): Readable {
    return this.#d.outage?.keep(repo, key, body, isAdvertisementBytes) ?? body
  }

  /** A 200 ls-refs answer relayed from upstream, kept as the last good one once whole. */
  #keepLastGood(repo: RepoPath, key: string, answer: HttpAnswer): HttpAnswer {
    const outage = this.#d.outage
    if (outage === undefined || answer.kind !== 'upstream' || answer.status !== 200) return answer
    if (String(answer.headers['content-type'] ?? '') !== UPLOAD_PACK_RESULT) return answer
    return { ...answer, body: outage.keep(repo, key, answer.body, endsWithFlush) }
  }

  /**
   * The upstream is unreachable and outage mode is on: a credential the
   * upstream accepted for this endpoint within auth.outage-ttl (access.ts)
   * gets the last good advertisement or a cached pack; anything else, and
   * every push, gets the outage error (HTTP 503). Nothing is given to any
   * other credential.
   */
  async #outageAnswer(req: HttpGitRequest, outage: Outage): Promise<HttpAnswer> {
    const d = this.#d
    const { endpoint, repo } = req.route
    const { credential } = req
    if (endpoint.kind === 'advertisement' && endpoint.service === 'git-upload-pack') {
      if (!d.access.acceptedForOutage(repo, credential, 'info-refs', outage.outageTtlMs)) {
        if (d.access.signedInWithin(repo, credential, 'info-refs', outage.outageTtlMs)) return signInDuringOutage(outage)
        throw outage.error('this request')
      }
      const body = await outage.lastGood.load(repo, d.refs.keys.http(repo, req.version))
      if (body === null) throw outage.error('this advertisement')
      return this.#stale(repo, outage, body, ADVERTISEMENT_HEADERS)
    }
    if (!(endpoint.kind === 'rpc' && endpoint.service === 'git-upload-pack')) throw outage.error('this request')
    if (!d.access.acceptedForOutage(repo, credential, 'upload-pack', outage.outageTtlMs)) throw outage.error('this request')
    if (req.body.readableDidRead) throw outage.error('this request') // read for an upstream request already: not cached
    const lease = new BodyLease(d.budget)
    try {
      const read = await readRequestBody(req.body, {
        limit: MAX_CACHEABLE_REQUEST,
        contentEncoding: header(req.headers['content-encoding']),
        lease,
        signal: req.signal,
      })
      if (read.kind === 'too-large') throw outage.error('this request')
      if (req.version === 2) {
        const parsed = commandOf(read.decoded)
        if (parsed?.command === 'ls-refs') {
          const decision = d.refs.lsRefsDecision(repo, parsed.capabilities, parsed.args)
          const body = decision.cacheable ? await outage.lastGood.load(repo, decision.key) : null
          if (body === null) throw outage.error('this ls-refs request')
          return { ...this.#stale(repo, outage, body, RESULT_HEADERS), cmd: 'ls-refs' }
        }
      }
      const answer = await d.uploadPack.serveCachedOnly({ repo, version: req.version, body: read.decoded, front: 'HTTP' }, (what) => outage.error(what))
      outage.countAnswer()
      this.#logStale(repo)
      const marker = progressMarker(req.version, read.decoded)
      const body = marker === null ? answer.body : withOutageProgress(answer.body, marker)
      return { kind: 'cached', how: answer.how, headers: RESULT_HEADERS, body, cache: 'stale', ...(req.version === 2 ? { cmd: 'fetch' } : {}) }
    } finally {
      lease.release()
    }
  }

  #stale(repo: RepoPath, outage: Outage, body: Buffer, headers: Record<string, string>): HttpAnswer {
    outage.countAnswer()
    this.#logStale(repo)
    return { kind: 'cached', how: 'hit', headers, body: new WholeBody(body, () => undefined), cache: 'stale' }
  }

  #logStale(repo: RepoPath): void {
    this.#d.log.info({ repo }, 'answered from the cache during an upstream outage')
  }

  #getAdvertisement(req: HttpGitRequest, signal: AbortSignal): Promise<UpstreamResponse> {
    return this.#d.upstream.request({
      method: 'GET',
      repo: req.route.repo,
      subPath: `info/refs${req.search}`,
      headers: forwardRequestHeaders(req.headers),
      signal,
    })
  }

  // ---- pushes and everything else ------------------------------------------

  async #receivePack(req: HttpGitRequest): Promise<HttpAnswer> {
    const repo = req.route.repo
    const answer = await this.#passThrough(req)
    if (answer.kind !== 'upstream' || answer.status !== 200) return answer
    // Before the push's answer reaches the client (DESIGN §3.2), and again
    // after it: a fill that started while the push ran is dropped too.
    await this.#d.invalidation.repo(repo)
    return {
      ...answer,
      finish: async () => {
        await this.#d.invalidation.repo(repo)
      },
    }
  }

  /** The request to the upstream as it is (with `body` instead of the client's, when given); its answer as it is. */
  async #passThrough(req: HttpGitRequest, body?: Readable | Buffer): Promise<HttpAnswer> {
    const headers = forwardRequestHeaders(req.headers)
    if (Buffer.isBuffer(body)) {
      delete headers['transfer-encoding']
      headers['content-length'] = String(body.length)
    } else if (body !== undefined) {
      delete headers['content-length']
    }
    const hasBody = req.method === 'POST' || req.method === 'PUT'
    const res = await this.#d.upstream.request({
      method: req.method,
      repo: req.route.repo,
      // The query string goes along on every request: an upstream may read credentials from it.
      subPath: subPathOf(req.route) + req.search,
      headers,
      body: hasBody ? (body ?? req.body) : null,
      signal: req.signal,
    })
    return relayed(res)
  }
}

/**
 * Outage mode, an anonymous GET of a repository that signed-in clients
 * used: a 401 challenge, so that git retries with the credential of its URL
 * or credential helper (it sends none before a 401), which is then judged as
 * any other. A client with none prints the outage in the realm.
 */
function signInDuringOutage(outage: Outage): HttpAnswer {
  const text = `${outage.error('this request').message}; sign in to be answered from the cache\n`
  return {
    kind: 'upstream',
    status: 401,
    headers: {
      'www-authenticate': `Basic realm="scm-cache-proxy: upstream unreachable, answering from the cache"`,
      'content-type': 'text/plain; charset=utf-8',
      'content-length': String(Buffer.byteLength(text)),
    },
    body: Readable.from([Buffer.from(text)]),
  }
}

/** A v2 command request, or null when it does not parse (it then goes the way of anything unparsed). */
function commandOf(body: Buffer): ReturnType<typeof parseCommandRequestV2> | null {
  try {
    return parseCommandRequestV2(body)
  } catch {
    return null
  }
}

function relayed(res: UpstreamResponse): HttpAnswer {
  return { kind: 'upstream', status: res.statusCode, headers: relayResponseHeaders(res.headers), body: res.body }
}

/** The path below the repository that a route names. */
function subPathOf(route: GitRoute): string {
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

/** Whether `bytes` is one whole, well-formed smart-HTTP advertisement. */
function isAdvertisementBytes(bytes: Buffer): boolean {
  const checker = new AdvertisementChecker('http')
  checker.push(bytes)
  return checker.finish().ok
}

/** Whether a pkt-line answer ends with its flush (a whole v2 ls-refs answer). */
function endsWithFlush(bytes: Buffer): boolean {
  return bytes.length >= 4 && bytes.subarray(bytes.length - 4).toString('latin1') === '0000'
}

function discard(): Writable {
  return new Writable({
    write(_chunk, _enc, cb) {
      cb()
    },
  })
}

function isAdvertisement(res: UpstreamResponse): boolean {
  return String(res.headers['content-type'] ?? '') === UPLOAD_PACK_ADVERTISEMENT
}

function header(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value
}
