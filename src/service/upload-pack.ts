/**
 * The clone cache as a transport-free service: given one upload-pack
 * request (repository, protocol version, credential, the request body),
 * answer it from the cache, by a single-flight fill from the upstream, or
 * say that it must pass through. The HTTP and SSH fronts both call this.
 *
 * The front has proven the client's access first (service/access.ts,
 * DESIGN §3.1). Then:
 *   1. policy (pure): cacheable? key?
 *   2. the store: hit, join, or miss (fill under the FillLimiter).
 */
import type { Readable } from 'node:stream'
import { UpstreamError } from '../errors.js'
import type { Log } from '../logger.js'
import { fillChecked, openOrPass, type CacheAnswer, type CacheRequestBase } from './answer.js'
import type { FillLimiter } from '../cache/fill-limiter.js'
import { decideFetchV2, decideUploadPackV1, type UploadPackDecision } from '../cache/policy.js'
import type { CacheStore } from '../cache/store.js'
import { UploadPackResponseChecker } from '../protocol/upload-pack-response.js'
import { parseUploadPackRequestV1 } from '../protocol/v1/upload-pack-request.js'
import { parseCommandRequestV2, parseFetchArgsV2 } from '../protocol/v2/command-request.js'
import type { RepoPath } from '../repository.js'
import type { Settings } from '../settings.js'
import { isRefusal, refusalOf, type HttpUpstream } from '../upstream/http.js'

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
}

/**
 * The HTTP upstream's half of a fill: POST the client's request body and
 * return the 200 upload-pack result body, or throw UpstreamRefusedError
 * (401/403) or UpstreamStatusError (anything else).
 */
export async function postUploadPack(
  upstream: HttpUpstream,
  req: { repo: RepoPath; search: string; headers: Record<string, string>; body: Buffer },
  signal: AbortSignal,
): Promise<Readable> {
  const sent: Record<string, string> = { ...req.headers, 'content-length': String(req.body.length) }
  delete sent['transfer-encoding']
  const res = await upstream.request({ method: 'POST', repo: req.repo, subPath: `git-upload-pack${req.search}`, headers: sent, body: req.body, signal })
  const contentType = String(res.headers['content-type'] ?? '')
  // A refusal during a fill (a password changed within auth.ttl) reaches
  // the client unchanged, WWW-Authenticate included.
  if (isRefusal(res.statusCode)) throw await refusalOf(res)
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
