/**
 * The ref cache (DESIGN §2, kind `refs`): ref advertisements, v2 capability
 * advertisements and v2 `ls-refs` answers, kept for `scm-cache.refs.ttl`
 * seconds. Off by default: a ref answer goes stale with the next push, so
 * only pushes through the proxy, webhooks and the TTL bound staleness.
 *
 * Same rules as the clone cache: single flight (200 pollers on an expired
 * entry make one upstream request), served only to credentials the
 * upstream accepted for the repository within auth.ttl, and an entry is
 * committed only when the upstream's answer was a complete, well-formed
 * 200 without `ERR`.
 */
import type { Readable, Writable } from 'node:stream'
import { Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { CacheError } from '../errors.js'
import type { Log } from '../logger.js'
import type { CacheAnswer } from './answer.js'
import type { CacheStore, FillOutcome } from '../cache/store.js'
import { PktStreamChecker } from '../protocol/pkt-stream-check.js'
import type { RepoPath } from '../repository.js'
import type { Settings } from '../settings.js'
import type { UpstreamResponse } from '../upstream/http.js'

export interface RefsRequest {
  repo: RepoPath
  key: string
  front: 'HTTP' | 'SSH'
  /** As for upload-pack: null when the client may read the repository, else the refusal to relay. */
  authorize: () => Promise<UpstreamResponse | null>
  /** The upstream's answer body (already filtered for what clients may see), or a rejection. */
  fetchUpstream: (signal: AbortSignal) => Promise<Readable>
}

export type RefsAnswer = CacheAnswer

export interface RefsServiceDeps {
  store: CacheStore
  settings: Settings
  admit: () => boolean
  log: Log
}

export class RefsService {
  readonly #d: RefsServiceDeps

  constructor(deps: RefsServiceDeps) {
    this.#d = deps
  }

  /** Whether ref caching applies to requests from `front` right now. */
  enabledFor(front: 'HTTP' | 'SSH'): boolean {
    return this.#d.settings.get('refsEnabled') && this.#d.settings.cachingFor(front)
  }

  async serve(req: RefsRequest): Promise<RefsAnswer> {
    if (!this.enabledFor(req.front)) return { kind: 'pass', reason: 'refs caching disabled' }
    const refused = await req.authorize()
    if (refused !== null) return { kind: 'refused', response: refused }
    let result
    try {
      result = await this.#d.store.open({
        key: req.key,
        kind: 'refs',
        repo: req.repo,
        ttlMs: this.#d.settings.get('refsTtl') * 1000,
        admit: this.#d.admit(),
        produce: (sink, signal) => this.#fill(req, sink, signal),
      })
    } catch (err) {
      if (!(err instanceof CacheError)) throw err
      // The cache itself is unusable (its directory, its state): serve through.
      this.#d.log.warn({ repo: req.repo, err }, 'cache unusable: request passed through')
      return { kind: 'pass', reason: 'cache unusable' }
    }
    if (result.how === 'bypass') return { kind: 'pass', reason: 'cache not admitting new entries' }
    return { kind: 'body', how: result.how, body: result.body }
  }

  async #fill(req: RefsRequest, sink: Writable, signal: AbortSignal): Promise<FillOutcome> {
    const body = await req.fetchUpstream(signal)
    const checker = new PktStreamChecker()
    const check = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        checker.push(chunk)
        cb(null, chunk)
      },
    })
    await pipeline(body, check, sink, { signal })
    const verdict = checker.finish()
    if (!verdict.ok) {
      this.#d.log.warn({ repo: req.repo, reason: verdict.reason }, 'ref answer not cached')
      return { commit: false, reason: verdict.reason, deliver: true }
    }
    return { commit: true }
  }
}
