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
import { fillChecked, openOrPass, type AnswerChecker, type CacheAnswer, type CacheRequestBase } from './answer.js'
import type { CacheStoreApi } from '../cache/store-api.js'
import { memoryBody } from '../cache/body.js'
import { decideLsRefs } from '../cache/policy.js'
import { AdvertisementKeys } from './advertisement.js'
import type { CacheBody } from './answer.js'
import { AdvertisementChecker } from '../protocol/advertisement-check.js'
import type { ProtocolVersion } from '../protocol/git-protocol-header.js'
import { PktStreamChecker } from '../protocol/pkt-stream-check.js'
import type { Settings } from '../settings.js'
import type { RepoPath } from '../repository.js'

/** `fetchUpstream` resolves with the answer already filtered for what clients may see. */
export interface RefsRequest extends CacheRequestBase {
  key: string
  /**
   * What the answer must be to be stored: an advertisement (in its HTTP or
   * SSH form) spoken in exactly the version the key is for, or any
   * well-formed pkt-line answer (`ls-refs`).
   */
  expect: { kind: 'advertisement'; form: 'http' | 'ssh'; version: ProtocolVersion } | { kind: 'pkt-lines' }
}

export type RefsAnswer = CacheAnswer

export interface RefsServiceDeps {
  store: CacheStoreApi
  settings: Settings
  admit: () => boolean
  log: Log
}

export class RefsService {
  readonly #d: RefsServiceDeps
  /** The keys of advertisement entries, remembered. */
  readonly keys = new AdvertisementKeys()

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
  hotHit(repo: RepoPath, key: string, front: 'HTTP' | 'SSH'): CacheBody | undefined {
    if (!this.enabledFor(front)) return undefined
    const body = this.#d.store.hotHit(key, 'refs', repo, this.#d.settings.get('refsTtl') * 1000)
    return body === undefined ? undefined : memoryBody(body)
  }

  /** Whether a v2 `ls-refs` may come from the cache, and under which key (cache/policy.ts). */
  lsRefsDecision(repo: RepoPath, capabilities: string[], args: string[]): ReturnType<typeof decideLsRefs> {
    return decideLsRefs(repo, capabilities, args)
  }

  async serve(req: RefsRequest): Promise<RefsAnswer> {
    if (!this.enabledFor(req.front)) return { kind: 'pass', reason: 'refs caching disabled' }
    return openOrPass(this.#d.store, this.#d.log, {
      key: req.key,
      kind: 'refs',
      repo: req.repo,
      ttlMs: this.#d.settings.get('refsTtl') * 1000,
      admit: this.#d.admit(),
      produce: (sink, signal) => fillChecked(req, refsChecker(req.expect), sink, signal, this.#d.log),
    })
  }
}

/** The store rule for a ref answer (DESIGN §2): what `expect` says, passing every byte on. */
function refsChecker(expect: RefsRequest['expect']): AnswerChecker {
  if (expect.kind === 'pkt-lines') {
    const checker = new PktStreamChecker()
    return {
      push: (chunk) => {
        checker.push(chunk)
        return chunk
      },
      finish: () => checker.finish(),
    }
  }
  const checker = new AdvertisementChecker(expect.form)
  return {
    push: (chunk) => {
      checker.push(chunk)
      return chunk
    },
    finish: () => {
      const verdict = checker.finish()
      if (!verdict.ok) return verdict
      // Never store an answer under another version than the one spoken:
      // a v2 key must not hold the v0 answer of an upstream that ignored Git-Protocol.
      if (verdict.version !== expect.version) {
        return { ok: false, reason: `the upstream answered in protocol v${verdict.version} to a v${expect.version} request` }
      }
      return { ok: true }
    },
  }
}
