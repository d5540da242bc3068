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
import type { Log } from '../logger.js'
import { fillChecked, openOrPass, type CacheAnswer, type CacheRequestBase } from './answer.js'
import type { CacheStore } from '../cache/store.js'
import { PktStreamChecker } from '../protocol/pkt-stream-check.js'
import type { Settings } from '../settings.js'
import type { RepoPath } from '../repository.js'

/** `fetchUpstream` resolves with the answer already filtered for what clients may see. */
export interface RefsRequest extends CacheRequestBase {
  key: string
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

  /**
   * The cached answer for `key` when it is in memory, else undefined (then
   * `serve()`). The caller has checked the credential (DESIGN §3.1).
   */
  hotHit(repo: RepoPath, key: string, front: 'HTTP' | 'SSH'): Buffer | undefined {
    if (!this.enabledFor(front)) return undefined
    return this.#d.store.hotHit(key, 'refs', repo, this.#d.settings.get('refsTtl') * 1000)
  }

  async serve(req: RefsRequest): Promise<RefsAnswer> {
    if (!this.enabledFor(req.front)) return { kind: 'pass', reason: 'refs caching disabled' }
    const refused = await req.authorize()
    if (refused !== null) return { kind: 'refused', response: refused }
    return openOrPass(this.#d.store, this.#d.log, {
      key: req.key,
      kind: 'refs',
      repo: req.repo,
      ttlMs: this.#d.settings.get('refsTtl') * 1000,
      admit: this.#d.admit(),
      produce: (sink, signal) => {
        const checker = new PktStreamChecker()
        const passing = {
          push: (chunk: Buffer): Buffer => {
            checker.push(chunk)
            return chunk
          },
          finish: () => checker.finish(),
        }
        return fillChecked(req, passing, sink, signal, this.#d.log)
      },
    })
  }
}
