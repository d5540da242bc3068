/**
 * Git LFS downloads through the cache (DESIGN §2, §3.1): the batch answer
 * is the authorization.
 *
 * - `POST <repo>/info/lfs/objects/batch` with `operation: download` goes to
 *   the upstream with the client's request as sent (its credential
 *   included). In a 200 answer, each object the upstream grants (it has a
 *   `download` action) and that is not larger than
 *   `scm-cache.lfs.max.object.size` gets a proxy href,
 *   `<origin>/<repo>/info/lfs/objects/cache/<oid>` (plus the batch URL's
 *   query string, which may carry the credential); the action's header (the
 *   upstream's object credential) leaves the answer and is kept here with
 *   its href (lfs-actions.ts), and a grant for (oid, repository, credential)
 *   is recorded within auth.ttl (access.ts, scope `lfs`). Everything else
 *   of the answer is relayed as sent. Any other answer, a body that does not
 *   parse, an upload batch: relayed untouched.
 * - `GET <repo>/info/lfs/objects/cache/<oid>`: for a granted (oid,
 *   repository, credential), the object from the store (kind `lfs`, keyed
 *   by the oid alone: one copy for every repository), or a single-flight
 *   fill from the remembered upstream href whose bytes are checked against
 *   the oid and size before the last chunk is released (a mismatch is never
 *   stored, and the transfer fails: an error status, or a cut connection).
 *   Not granted: 401 asking for Basic credentials (git-lfs retries with its
 *   credential), never the bytes.
 *
 * The batch bodies (request and answer) are read whole within the
 * body-memory budget (DESIGN §3.9), up to `BATCH_LIMIT` each; larger ones
 * pass through as sent.
 */
import { createHash } from 'node:crypto'
import { pipeline as pipelineCallback, Readable, Transform, type Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { BusyError, CacheError, findCause, ProtocolError, UpstreamError, UpstreamStatusError } from '../errors.js'
import { firstByte } from '../io/first-byte.js'
import type { Log } from '../logger.js'
import type { FillLimiter } from '../cache/fill-limiter.js'
import type { CacheStoreApi, FillOutcome, OpenResult } from '../cache/store-api.js'
import { LFS_MEDIA_TYPE, parseBatchRequest, parseBatchResponse, rewriteDownloadActions, type BatchRequest, type BatchResponse, type LfsAction } from '../protocol/lfs-batch.js'
import { encodeRepoPath } from '../repository.js'
import type { Settings } from '../settings.js'
import { forwardRequestHeaders, isRefusal, relayResponseHeaders, type HttpUpstream, type UpstreamResponse } from '../upstream/http.js'
import type { Access } from './access.js'
import { withFinish } from './answer.js'
import { BodyLease, type BodyBudget } from './body-budget.js'
import type { HttpAnswer, HttpGitRequest } from './http-git.js'
import type { LfsActions, UpstreamDownload } from './lfs-actions.js'
import { readRequestBody, sentBody } from './request-body.js'

/** Largest batch request or answer read whole: git-lfs sends 100 objects a batch (about 12 KB, answers about 60 KB). */
export const BATCH_LIMIT = 4 * 1024 * 1024

const BATCH_PATH = 'info/lfs/objects/batch'
const OBJECT_PATH = /^info\/lfs\/objects\/cache\/([0-9a-f]{64})$/
const HOST = /^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/
const CHALLENGE = 'Basic realm="Git LFS", charset="UTF-8"'

export interface LfsServiceDeps {
  store: CacheStoreApi
  limiter: FillLimiter
  settings: Settings
  access: Access
  actions: LfsActions
  upstream: HttpUpstream
  budget: BodyBudget
  /** Whether new entries may be written now (the disk guard). */
  admit: () => boolean
  /** `scm-cache.lfs.enabled` */
  enabled: boolean
  /** `scm-cache.lfs.max.object.size` */
  maxObjectSize: number
  /** `auth.ttl` in ms: how long a grant lasts. */
  authTtlMs: number
  now: () => number
  log: Log
}

/** Relays the client's request upstream as it is (with `body` instead of the client's, when given). */
export type PassThrough = (body?: Readable | Buffer) => Promise<HttpAnswer>

/** The store key of an LFS object: its oid alone, apart from every other kind's keys. */
export function lfsKey(oid: string): string {
  return createHash('sha256').update(`lfs\0${oid}`).digest('hex')
}

export class LfsService {
  readonly #d: LfsServiceDeps

  constructor(deps: LfsServiceDeps) {
    this.#d = deps
  }

  /** The answer to an LFS API request, or null: not one this service handles (pass it through). */
  async answer(req: HttpGitRequest, passThrough: PassThrough): Promise<HttpAnswer | null> {
    if (req.route.endpoint.kind !== 'lfs') return null
    const sub = req.route.endpoint.subPath
    if (sub === BATCH_PATH && req.method === 'POST') return this.#batch(req, passThrough)
    const object = OBJECT_PATH.exec(sub)
    if (object?.[1] !== undefined && (req.method === 'GET' || req.method === 'HEAD')) return this.#object(req, object[1])
    return null
  }

  // ---- batch -------------------------------------------------------------------

  async #batch(req: HttpGitRequest, passThrough: PassThrough): Promise<HttpAnswer> {
    const d = this.#d
    const origin = originOf(req)
    if (!d.enabled || !req.credential.cacheable || !d.settings.cachingFor('HTTP') || origin === null) return passThrough()
    const lease = new BodyLease(d.budget)
    const release = (answer: HttpAnswer): HttpAnswer => withFinish(answer, () => {
      lease.release()
    })
    try {
      const read = await readRequestBody(req.body, { limit: BATCH_LIMIT, contentEncoding: undefined, lease, signal: req.signal })
      if (read.kind === 'too-large') return release(await passThrough(sentBody(read)))
      let batch: BatchRequest | null
      try {
        batch = parseBatchRequest(read.raw, BATCH_LIMIT)
      } catch (err) {
        if (!(err instanceof ProtocolError)) throw err
        batch = null // the upstream, the authority on its API, answers it
      }
      if (batch?.operation !== 'download') return release(await passThrough(read.raw))
      const headers = forwardRequestHeaders(req.headers)
      delete headers['transfer-encoding']
      headers['content-length'] = String(read.raw.length)
      const res = await d.upstream.request({
        method: 'POST',
        repo: req.route.repo,
        subPath: BATCH_PATH + req.search,
        headers,
        body: read.raw,
        signal: req.signal,
      })
      if (isRefusal(res.statusCode)) {
        // The upstream no longer grants these objects to this credential: neither does the proxy.
        for (const o of batch.objects) this.#d.access.revokeLfs(req.route.repo, req.credential, o.oid)
      }
      return release(await this.#batchAnswer(req, origin, res, lease))
    } catch (err) {
      lease.release()
      throw err
    }
  }

  /** The upstream's answer to a download batch, its granted objects rewritten to the proxy. */
  async #batchAnswer(req: HttpGitRequest, origin: string, res: UpstreamResponse, lease: BodyLease): Promise<HttpAnswer> {
    const d = this.#d
    const headers = relayResponseHeaders(res.headers)
    const encoding = String(res.headers['content-encoding'] ?? 'identity').toLowerCase()
    if (res.statusCode !== 200 || !isJson(res.headers['content-type']) || encoding !== 'identity') {
      return { kind: 'upstream', status: res.statusCode, headers, body: res.body }
    }
    const read = await readRequestBody(res.body, { limit: BATCH_LIMIT, contentEncoding: undefined, lease, signal: req.signal })
    if (read.kind === 'too-large') return { kind: 'upstream', status: 200, headers, body: sentBody(read) }
    let parsed: BatchResponse
    try {
      parsed = parseBatchResponse(read.raw, BATCH_LIMIT)
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err
      d.log.info({ repo: req.route.repo, err: { code: err.code, message: err.message } }, 'LFS batch answer not understood: relayed as sent')
      return { kind: 'upstream', status: 200, headers, body: Readable.from([read.raw]) }
    }
    if (parsed.transfer !== 'basic') return { kind: 'upstream', status: 200, headers, body: Readable.from([read.raw]) }

    const now = d.now()
    const grantUntil = now + d.authTtlMs
    const repo = req.route.repo
    const base = `${origin}/${encodeRepoPath(repo)}/info/lfs/objects/cache/`
    const { body, originals } = rewriteDownloadActions(parsed, (o) => `${base}${o.oid}${req.search}`, {
      only: (o) => o.error === null && o.size <= d.maxObjectSize && o.actions.download !== undefined && actionUntil(o.actions.download, now) > now + 1000,
      expiresIn: (o) => Math.max(1, Math.floor((Math.min(actionUntil(o.action, now), grantUntil) - now) / 1000)),
    })
    const upstreamOrigin = d.upstream.baseUrl.origin
    for (const o of originals) {
      const sent = parsed.objects.find((p) => p.oid === o.oid)
      const download: UpstreamDownload = {
        href: o.action.href,
        headers: objectHeaders(o.action, sent?.authenticated ?? false, req, upstreamOrigin),
        size: o.size,
        until: Math.min(actionUntil(o.action, now), grantUntil),
      }
      d.actions.remember(repo, req.credential, o.oid, download)
      d.access.grantLfs(repo, req.credential, o.oid)
    }
    const out = Buffer.from(JSON.stringify(body))
    delete headers['content-length']
    headers['content-length'] = String(out.length)
    if (originals.length > 0) d.log.debug({ repo, objects: originals.length }, 'LFS batch: downloads rewritten to the proxy')
    return { kind: 'upstream', status: 200, headers, body: Readable.from([out]), cmd: 'lfs-batch' }
  }

  // ---- objects -------------------------------------------------------------------

  async #object(req: HttpGitRequest, oid: string): Promise<HttpAnswer> {
    const d = this.#d
    const repo = req.route.repo
    const download = d.access.isLfsGranted(repo, req.credential, oid) ? d.actions.get(repo, req.credential, oid) : undefined
    if (download === undefined) return notGranted()
    const headers = objectResponseHeaders(download.size)
    if (req.method === 'HEAD') return { kind: 'upstream', status: 200, headers, body: Readable.from([]), cmd: 'lfs-object' }
    if (!d.enabled || !d.settings.cachingFor('HTTP')) return this.#direct(req, oid, download)
    let opened: OpenResult
    try {
      opened = await d.store.open({
        key: lfsKey(oid),
        kind: 'lfs',
        repo,
        ttlMs: d.settings.get('uploadPackTtl') * 1000,
        admit: d.admit(),
        produce: (sink, signal) => d.limiter.run(repo, () => this.#fill(oid, download, sink, signal)),
      })
    } catch (err) {
      if (!(err instanceof CacheError)) throw err
      d.log.warn({ repo, err }, 'cache unusable: LFS object passed through')
      return this.#direct(req, oid, download)
    }
    if (opened.how === 'bypass') return this.#direct(req, oid, download)
    const size = opened.info?.['size']
    const answerHeaders = size === undefined ? headers : objectResponseHeaders(Number(size))
    const body = opened.body
    if (body.whole() === null) {
      const err = await firstByte(body.stream)
      if (err !== null) {
        body.stream.destroy()
        const cause = findCause(err, (e) => e instanceof UpstreamError || e instanceof BusyError)
        if (cause !== null) throw cause
        throw err
      }
    }
    return { kind: 'cached', how: opened.how, headers: answerHeaders, body, cmd: 'lfs-object' }
  }

  /** The fill: the upstream's object, checked against its oid and size, into the store. */
  async #fill(oid: string, download: UpstreamDownload, sink: Writable, signal: AbortSignal): Promise<FillOutcome> {
    const res = await this.#fetch(download, signal)
    await pipeline(res.body, new ObjectCheck(oid, download.size), sink, { signal })
    return { commit: true, info: { size: String(download.size) } }
  }

  /** Without the store (caching off, the disk guard pausing, the cache unusable): the object streamed through, still checked. */
  async #direct(req: HttpGitRequest, oid: string, download: UpstreamDownload): Promise<HttpAnswer> {
    const res = await this.#fetch(download, req.signal)
    // Callback pipeline: returns the check and destroys both on error (which reaches the client as a cut).
    const body = pipelineCallback(res.body, new ObjectCheck(oid, download.size), () => undefined)
    return { kind: 'upstream', status: 200, headers: objectResponseHeaders(download.size), body, cache: 'bypass', cmd: 'lfs-object' }
  }

  async #fetch(download: UpstreamDownload, signal: AbortSignal): Promise<UpstreamResponse> {
    const res = await this.#d.upstream.fetchUrl(download.href, { ...download.headers }, signal)
    if (res.statusCode !== 200) {
      res.body.on('error', () => undefined) // undici reports its own abort as an error: nobody reads this body
      res.body.destroy()
      throw new UpstreamStatusError(res.statusCode, 'LFS object download')
    }
    return res
  }
}

/**
 * Passes an object's bytes on while checking them: more than `size` bytes
 * fail at once; the last chunk is held back until the whole object is
 * known to have `size` bytes and SHA-256 `oid`, so a client never receives
 * a whole wrong object (it gets an error or a short body).
 */
export class ObjectCheck extends Transform {
  readonly #oid: string
  readonly #size: number
  readonly #hash = createHash('sha256')
  #bytes = 0
  #held: Buffer | null = null

  constructor(oid: string, size: number) {
    super()
    this.#oid = oid
    this.#size = size
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null, data?: Buffer) => void): void {
    this.#bytes += chunk.length
    if (this.#bytes > this.#size) {
      cb(mismatch(`more than the ${this.#size} bytes of LFS object ${this.#oid}`))
      return
    }
    this.#hash.update(chunk)
    const held = this.#held
    this.#held = chunk
    if (held === null) cb()
    else cb(null, held)
  }

  override _flush(cb: (err?: Error | null, data?: Buffer) => void): void {
    if (this.#bytes !== this.#size) {
      cb(mismatch(`LFS object ${this.#oid} ended after ${this.#bytes} of its ${this.#size} bytes`))
      return
    }
    const actual = this.#hash.digest('hex')
    if (actual !== this.#oid) {
      cb(mismatch(`LFS object ${this.#oid} arrived with SHA-256 ${actual}`))
      return
    }
    if (this.#held === null) cb()
    else cb(null, this.#held)
  }
}

function mismatch(message: string): UpstreamError {
  return new UpstreamError('ERR_LFS_OBJECT_MISMATCH', message)
}

/**
 * The headers for the upstream's href: those the action names; with none
 * and no `authenticated` flag, git-lfs would send the client's own
 * credential, which the proxy then sends too, but only to the upstream's
 * own origin (never to a third party such as object storage).
 */
function objectHeaders(action: LfsAction, authenticated: boolean, req: HttpGitRequest, upstreamOrigin: string): Record<string, string> {
  if (Object.keys(action.header).length > 0 || authenticated) return { ...action.header }
  // parseAction checked that the href is an http(s) URL.
  return new URL(action.href).origin === upstreamOrigin ? { ...req.credential.headers } : {}
}

/** Epoch ms at which an action runs out (the earlier of `expires_at` and `expires_in`); Infinity without either. */
function actionUntil(action: LfsAction, now: number): number {
  let until = Number.POSITIVE_INFINITY
  if (action.expiresIn !== undefined) until = Math.min(until, now + action.expiresIn * 1000)
  if (action.expiresAt !== undefined) until = Math.min(until, Date.parse(action.expiresAt))
  return until
}

/** `<proto>://<host>` the client reached the proxy under, or null when its Host header is unusable. */
function originOf(req: HttpGitRequest): string | null {
  const host = req.headers.host
  if (host === undefined || !HOST.test(host)) return null
  return `${req.clientProto ?? 'http'}://${host}`
}

function objectResponseHeaders(size: number): Record<string, string> {
  return { 'content-type': 'application/octet-stream', 'content-length': String(size), 'cache-control': 'no-store' }
}

/** 401 for an object the upstream did not grant to this credential in this repository (or no longer does). */
function notGranted(): HttpAnswer {
  const body = Buffer.from(JSON.stringify({ message: 'this object was not granted to this credential in this repository: ask the batch API first' }))
  return {
    kind: 'upstream',
    status: 401,
    headers: {
      'content-type': LFS_MEDIA_TYPE,
      'content-length': String(body.length),
      'www-authenticate': CHALLENGE,
      'lfs-authenticate': CHALLENGE,
    },
    body: Readable.from([body]),
    cmd: 'lfs-object',
  }
}

function isJson(type: string | string[] | undefined): boolean {
  const t = String(type ?? '').split(';')[0]?.trim().toLowerCase()
  return t === LFS_MEDIA_TYPE || t === 'application/json'
}

