/**
 * The clone cache as a transport-free service: given one upload-pack
 * request (repository, protocol version, credential, the request body),
 * answer it from the cache, by a single-flight fill from the upstream, or
 * say that it must pass through. The HTTP and SSH fronts both call this.
 *
 * The front has proven the client's access first (service/access.ts,
 * DESIGN §3.1). Then:
 *   1. policy (pure): cacheable? key? A clone, or an incremental fetch
 *      (haves, already-shallow clients: each stateless request, negotiation
 *      rounds included, is a whole request with its own entry; see
 *      docs/protocol.md), the latter only with
 *      `scm-cache.upload-pack.fetch.enabled`.
 *   2. the store: hit, join, or miss (fill under the FillLimiter).
 */
import type { Log } from '../logger.js'
import { ProtocolError } from '../errors.js'
import { firstByte } from '../io/first-byte.js'
import { fillChecked, openOrPass, type CacheAnswer, type CacheRequestBase } from './answer.js'
import type { FillLimiter } from '../cache/fill-limiter.js'
import { decideFetchV2, decideUploadPackV1, type UploadPackDecision } from '../cache/policy.js'
import type { CacheStoreApi } from '../cache/store-api.js'
import { UploadPackResponseChecker } from '../protocol/upload-pack-response.js'
import { parseUploadPackRequestV1 } from '../protocol/v1/upload-pack-request.js'
import { parseCommandRequestV2, parseFetchArgsV2 } from '../protocol/v2/command-request.js'
import type { Settings } from '../settings.js'
import type { UploadPackSplit } from '../cache/upload-pack-split.js'

import { UPLOAD_PACK_RESULT } from '../upstream/http-git.js'

export { UPLOAD_PACK_RESULT } from '../upstream/http-git.js'

/** `fetchUpstream` runs under the fill limiter and resolves with the raw upload-pack result. */
export interface UploadPackRequest extends CacheRequestBase {
  version: 0 | 1 | 2
  /** Decoded pkt-line request (gzip already removed). */
  body: Buffer
}

/** A `body` is a 200 upload-pack result. */
export type UploadPackAnswer = CacheAnswer

export interface UploadPackServiceDeps {
  store: CacheStoreApi
  limiter: FillLimiter
  settings: Settings
  /** Whether new entries may be written now (the disk guard). */
  admit: () => boolean
  log: Log
  /** Counts each answer from the cache as a clone's or a fetch's (REST, metrics). */
  split?: UploadPackSplit
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

  /** Whether upload-pack answers may come from the cache for requests from `front` right now. */
  enabledFor(front: 'HTTP' | 'SSH'): boolean {
    return this.#d.settings.get('uploadPackEnabled') && this.#d.settings.cachingFor(front)
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
    if (decision.fetch && !settings.get('uploadPackFetchEnabled')) {
      store.recordBypass(req.repo, 'upload-pack')
      return { kind: 'pass', reason: 'fetch caching disabled' }
    }

    const answer = await openOrPass(store, this.#d.log, {
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
            negotiation: decision.negotiation,
            noDone: decision.noDone,
          })
          return fillChecked(req, checker, sink, signal, this.#d.log, { contentType: UPLOAD_PACK_RESULT })
        }),
    })
    if (answer.kind === 'body') this.#d.split?.record(req.repo, decision.fetch ? 'fetch' : 'clone', answer.how)
    return answer
  }

  /**
   * Only what the cache holds (outage mode, DESIGN §3.10): a committed entry
   * or a running fill whose first byte exists. Anything else (a request the
   * cache cannot parse or key, a miss, a fill that failed) is thrown as
   * `unavailable(what)`; nothing is asked of the upstream.
   */
  async serveCachedOnly(
    req: Omit<UploadPackRequest, 'fetchUpstream'>,
    unavailable: (what: string) => Error,
  ): Promise<Extract<UploadPackAnswer, { kind: 'body' }>> {
    let answer: UploadPackAnswer
    try {
      answer = await this.serve({ ...req, fetchUpstream: () => Promise.reject(unavailable('this pack')) })
    } catch (err) {
      if (err instanceof ProtocolError) throw unavailable('this request')
      throw err
    }
    if (answer.kind === 'pass' || answer.how === 'miss') {
      if (answer.kind === 'body') answer.body.stream.destroy()
      throw unavailable('this pack')
    }
    const err = await firstByte(answer.body.stream)
    if (err !== null) {
      answer.body.stream.destroy()
      throw unavailable('this pack')
    }
    return answer
  }
}
