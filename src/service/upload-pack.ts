/**
 * The clone cache as a transport-free service: given one upload-pack
 * request (repository, protocol version, credential, the request body),
 * answer it from the cache, by a single-flight fill from the upstream, or
 * say that it must pass through. The HTTP and SSH fronts both call this.
 *
 * Order of checks for a cacheable request:
 *   1. policy (pure): cacheable? key?
 *   2. authorization (DESIGN §3.1): the credential must have been accepted
 *      upstream for this repository within auth.ttl, else it is checked
 *      upstream now and a refusal is relayed to the client unchanged;
 *   3. the store: hit, join, or miss (fill under the FillLimiter).
 */
import type { Readable } from 'node:stream'
import { UpstreamError } from '../errors.js'
import type { Log } from '../logger.js'
import { fillChecked, openOrPass, type CacheAnswer, type CacheRequestBase } from './answer.js'
import type { AuthMemo } from '../cache/auth-memo.js'
import type { FillLimiter } from '../cache/fill-limiter.js'
import { decideFetchV2, decideUploadPackV1, type UploadPackDecision } from '../cache/policy.js'
import type { CacheStore } from '../cache/store.js'
import { UploadPackResponseChecker } from '../protocol/upload-pack-response.js'
import { parseUploadPackRequestV1 } from '../protocol/v1/upload-pack-request.js'
import { parseCommandRequestV2, parseFetchArgsV2 } from '../protocol/v2/command-request.js'
import type { RepoPath } from '../repository.js'
import type { Settings } from '../settings.js'
import type { HttpUpstream, UpstreamResponse } from '../upstream/http.js'

export const UPLOAD_PACK_RESULT = 'application/x-git-upload-pack-result'

/** `fetchUpstream` runs under the fill limiter and resolves with the raw upload-pack result. */
export interface UploadPackRequest extends CacheRequestBase {
  version: 0 | 1 | 2
  /** Decoded pkt-line request (gzip already removed). */
  body: Buffer
}

/** A `body` is a 200 upload-pack result. */
export type UploadPackAnswer = CacheAnswer

export interface UploadPackServiceDeps {
  store: CacheStore
  limiter: FillLimiter
  authMemo: AuthMemo
  upstream: HttpUpstream
  settings: Settings
  /** Whether new entries may be written now (the disk guard). */
  admit: () => boolean
  log: Log
}

/** The upstream answered a fill with something other than a 200 upload-pack result. */
export class UpstreamStatusError extends UpstreamError {
  constructor(readonly status: number, detail: string) {
    super('ERR_UPSTREAM_STATUS', `upstream answered ${status}${detail === '' ? '' : `: ${detail}`}`, {
      statusCode: status >= 400 && status < 600 ? status : 502,
    })
  }
}

export class UploadPackService {
  readonly #d: UploadPackServiceDeps

  constructor(deps: UploadPackServiceDeps) {
    this.#d = deps
  }

  /** The policy decision for a request (exported for tests and logs). */
  decide(req: UploadPackRequest): UploadPackDecision | { cacheable: false; reason: string } {
    if (req.version === 2) {
      const cmd = parseCommandRequestV2(req.body)
      if (cmd === null) return { cacheable: false, reason: 'empty request' }
      if (cmd.command !== 'fetch') return { cacheable: false, reason: `command ${cmd.command}` }
      return decideFetchV2(req.repo, cmd.capabilities, parseFetchArgsV2(cmd.args))
    }
    return decideUploadPackV1(req.repo, parseUploadPackRequestV1(req.body))
  }

  async serve(req: UploadPackRequest): Promise<UploadPackAnswer> {
    const { settings, store } = this.#d
    if (!settings.get('uploadPackEnabled')) return { kind: 'pass', reason: 'upload-pack caching disabled' }
    if (!settings.cachingFor(req.front)) return { kind: 'pass', reason: `caching disabled for ${req.front}` }
    const decision = this.decide(req)
    if (!decision.cacheable) {
      store.recordBypass(req.repo, 'upload-pack')
      return { kind: 'pass', reason: decision.reason }
    }

    const refused = await req.authorize()
    if (refused !== null) return { kind: 'refused', response: refused }

    return openOrPass(store, this.#d.log, {
      key: decision.key,
      kind: 'upload-pack',
      repo: req.repo,
      ttlMs: settings.get('uploadPackTtl') * 1000,
      admit: this.#d.admit(),
      produce: (sink, signal) =>
        this.#d.limiter.run(req.repo, () => {
          const checker = new UploadPackResponseChecker({
            protocol: decision.family,
            sideband: decision.sideband,
            expectPack: decision.expectPack,
            objectFormat: decision.objectFormat,
          })
          return fillChecked(req, checker, sink, signal, this.#d.log, { contentType: UPLOAD_PACK_RESULT })
        }),
    })
  }

  /**
   * The HTTP credential check: null when `credential` (an Authorization
   * header value, or null for anonymous) may read `repo`, known from the
   * memo or checked upstream now; otherwise the upstream's refusal, to relay
   * unchanged (its body unread).
   */
  async authorizeHttp(
    repo: RepoPath,
    credential: string | null,
    headers: Record<string, string>,
  ): Promise<UpstreamResponse | null> {
    const { authMemo } = this.#d
    if (await authMemo.settled(repo, credential)) return null
    const end = authMemo.beginCheck(repo, credential)
    try {
      return await this.#probe(repo, credential, headers)
    } finally {
      end?.()
    }
  }

  async #probe(repo: RepoPath, credential: string | null, headers: Record<string, string>): Promise<UpstreamResponse | null> {
    const { authMemo, upstream } = this.#d
    // The cheapest request that proves read access: a v2 capability
    // advertisement lists no refs.
    const probeHeaders: Record<string, string> = { 'git-protocol': 'version=2' }
    for (const name of ['authorization', 'cookie', 'user-agent']) {
      const value = headers[name]
      if (value !== undefined) probeHeaders[name] = value
    }
    const res = await upstream.request({
      method: 'GET',
      repo,
      subPath: 'info/refs?service=git-upload-pack',
      headers: probeHeaders,
    })
    if (res.statusCode === 200) {
      res.body.resume()
      authMemo.accept(repo, credential)
      return null
    }
    this.#d.log.info({ repo, status: res.statusCode }, 'upstream refused the credential for a cached request')
    return res
  }
}

/**
 * The HTTP upstream's half of a fill: POST the client's request body and
 * return the 200 upload-pack result body, or throw UpstreamStatusError.
 */
export async function postUploadPack(
  upstream: HttpUpstream,
  repo: RepoPath,
  headers: Record<string, string>,
  body: Buffer,
  signal: AbortSignal,
): Promise<Readable> {
  const sent: Record<string, string> = { ...headers, 'content-length': String(body.length) }
  delete sent['transfer-encoding']
  const res = await upstream.request({ method: 'POST', repo, subPath: 'git-upload-pack', headers: sent, body, signal })
  const contentType = String(res.headers['content-type'] ?? '')
  if (res.statusCode !== 200 || contentType !== UPLOAD_PACK_RESULT) {
    const detail = await readSome(res.body, 512)
    throw new UpstreamStatusError(res.statusCode, detail.trim())
  }
  return res.body
}

async function readSome(body: Readable, limit: number): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  try {
    for await (const chunk of body) {
      const buf = chunk as Buffer // undici bodies yield Buffers
      chunks.push(buf)
      size += buf.length
      if (size >= limit) break
    }
  } catch {
    // The detail is best effort.
  } finally {
    body.destroy()
  }
  return Buffer.concat(chunks).subarray(0, limit).toString('utf8').replace(/[^\x20-\x7e\n]/g, '?')
}
