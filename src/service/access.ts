/**
 * The authorization rule of DESIGN §3.1, in one place, for both fronts:
 * a cached answer goes only to a credential the upstream accepted for that
 * repository, within auth.ttl, at the very endpoint the answer stands for.
 *
 * Access is proven only by a real Git answer, and only to what answered
 * (each is a scope of its own: an acceptance in one scope opens no other):
 *
 * | scope         | what it opens                                  | proven by                                             |
 * |---------------|------------------------------------------------|-------------------------------------------------------|
 * | `info-refs`   | cached ref advertisements (`GET info/refs`)    | the client's own GET: 200, the advertisement type, a body that parses as one (the HTTP front reports it) |
 * | `upload-pack` | cached upload-pack answers: packs, `ls-refs`   | git's probe `POST git-upload-pack` `0000`: 200 and `application/x-git-upload-pack-result` |
 * | `ssh`         | cached answers over the SSH front              | the upstream's SSH advertisement to the proxy's own key |
 * | `lfs`         | cached LFS objects                             | the upstream's batch answer                           |
 *
 * A 401/403 refuses the credential: the caller relays that answer unchanged.
 * Anything else (a 200 HTML sign-in page, a redirect, a 5xx) proves nothing:
 * the request passes through untouched. Concurrent requests with the same
 * credential wait for one check instead of each asking the upstream.
 */
import { LRUCache } from 'lru-cache'
import type { Log } from '../logger.js'
import type { AuthMemo } from '../cache/auth-memo.js'
import type { RepoPath } from '../repository.js'
import { isRefusal, refusalOf, type HttpUpstream } from '../upstream/http.js'
import type { UpstreamRefusedError } from '../errors.js'
import type { Credential } from './credential.js'

export type AccessScope = 'info-refs' | 'upload-pack' | 'ssh' | 'lfs'

export type AccessVerdict =
  | { kind: 'accepted' }
  /** The upstream refused the credential: relay this answer to the client. */
  | { kind: 'refused'; refusal: UpstreamRefusedError }
  /** Nothing proven: the request must pass through untouched. */
  | { kind: 'unproven'; reason: string }

const ACCEPTED: AccessVerdict = Object.freeze({ kind: 'accepted' })
const UPLOAD_PACK_RESULT = 'application/x-git-upload-pack-result'

export interface AccessDeps {
  memo: AuthMemo
  /** Where LFS grants (oid, repository, credential) are kept; default `memo`. Apart, so that many objects do not push out acceptances. */
  lfsMemo?: AuthMemo
  upstream: HttpUpstream
  log: Log
  /** The clock of `signedInWithin` (the memo's own clock counts the rest). */
  now?: () => number
}

export class Access {
  readonly #d: AccessDeps
  /** repository + scope -> when a credential that is not anonymous was last accepted there (outage mode's sign-in prompt). */
  readonly #signedIn = new LRUCache<string, number>({ max: 100_000 })
  readonly #now: () => number

  constructor(deps: AccessDeps) {
    this.#d = deps
    this.#now = deps.now ?? Date.now
  }

  /** Accepted within auth.ttl, known now (no waiting): a cached poll's path. */
  isAccepted(repo: RepoPath, credential: Credential, scope: AccessScope): boolean {
    return credential.cacheable && this.#d.memo.isAccepted(repo, idOf(credential, scope))
  }

  /** Accepted, after waiting for a check of the same credential that is running. */
  async settled(repo: RepoPath, credential: Credential, scope: AccessScope): Promise<boolean> {
    return credential.cacheable && (await this.#d.memo.settled(repo, idOf(credential, scope)))
  }

  /**
   * Begin a check that the caller makes itself (the GET of an
   * advertisement is its own check): concurrent requests with the same
   * credential wait in `settled()` until the returned function is called.
   * Null when a check is running already.
   */
  beginCheck(repo: RepoPath, credential: Credential, scope: AccessScope): (() => void) | null {
    return this.#d.memo.beginCheck(repo, idOf(credential, scope))
  }

  /** The upstream gave a real Git answer to this credential in this scope. */
  accept(repo: RepoPath, credential: Credential, scope: AccessScope): void {
    if (!credential.cacheable) return
    this.#d.memo.accept(repo, idOf(credential, scope))
    if (!credential.anonymous) this.#signedIn.set(`${scope}\0${repo}`, this.#now())
  }

  /**
   * Outage mode: should an anonymous request be asked to sign in? True when
   * some credential (not anonymous) was accepted for `repo` in `scope`
   * within `windowMs`: git sends the credential of its URL or its helper
   * only after a 401, so without one such a client would never be answered.
   * Which credential that was is not known here, nor needed: the request
   * that follows is judged on its own.
   */
  signedInWithin(repo: RepoPath, credential: Credential, scope: AccessScope, windowMs: number): boolean {
    if (!credential.anonymous) return false
    const at = this.#signedIn.get(`${scope}\0${repo}`)
    return at !== undefined && this.#now() < at + windowMs
  }

  /**
   * Outage mode (DESIGN §3.10): the upstream cannot be reached; was this
   * credential accepted in `scope` within `windowMs` (auth.outage-ttl)?
   * Only such a credential may be answered from the cache; a refusal on
   * record, an unknown or an unkeyable credential may not.
   */
  acceptedForOutage(repo: RepoPath, credential: Credential, scope: AccessScope, windowMs: number): boolean {
    return credential.cacheable && this.#d.memo.acceptedWithin(repo, idOf(credential, scope), windowMs)
  }

  /** The upstream refused this credential in this scope. */
  reject(repo: RepoPath, credential: Credential, scope: AccessScope): void {
    this.#d.memo.reject(repo, idOf(credential, scope))
  }

  /**
   * The upstream's batch answer granted `credential` the download of
   * object `oid` in `repo` (scope `lfs`): remembered within auth.ttl, or
   * `ttlMs` when shorter. A grant opens that one object in that one
   * repository only.
   */
  grantLfs(repo: RepoPath, credential: Credential, oid: string, ttlMs?: number): void {
    if (credential.cacheable) this.#lfsMemo.accept(repo, lfsIdOf(credential, oid), ttlMs)
  }

  /** Whether a grant of `grantLfs` is on record and live. */
  isLfsGranted(repo: RepoPath, credential: Credential, oid: string): boolean {
    return credential.cacheable && this.#lfsMemo.isAccepted(repo, lfsIdOf(credential, oid))
  }

  /** The upstream refused this credential a batch naming `oid` in `repo`: its grant ends now. */
  revokeLfs(repo: RepoPath, credential: Credential, oid: string): void {
    this.#lfsMemo.reject(repo, lfsIdOf(credential, oid))
  }

  get #lfsMemo(): AuthMemo {
    return this.#d.lfsMemo ?? this.#d.memo
  }

  /**
   * May `credential` be answered from the cache at `repo`'s upload-pack
   * endpoint? From the memo, else by git's own probe. Nothing of the
   * client's request body is needed (nor read) for this.
   */
  async checkUploadPack(repo: RepoPath, credential: Credential, userAgent: string | undefined, signal?: AbortSignal): Promise<AccessVerdict> {
    if (!credential.cacheable) return { kind: 'unproven', reason: 'a credential the proxy cannot key' }
    for (;;) {
      if (await this.settled(repo, credential, 'upload-pack')) return ACCEPTED
      const end = this.beginCheck(repo, credential, 'upload-pack')
      if (end === null) continue // another request's check just started: wait for it
      try {
        return await this.#probe(repo, credential, userAgent, signal)
      } finally {
        end()
      }
    }
  }

  async #probe(repo: RepoPath, credential: Credential, userAgent: string | undefined, signal?: AbortSignal): Promise<AccessVerdict> {
    const res = await this.#d.upstream.probeUploadPack(repo, credential, userAgent, signal)
    const type = String(res.headers['content-type'] ?? '')
    if (res.statusCode === 200 && type === UPLOAD_PACK_RESULT) {
      res.body.resume() // a probe's answer is a few bytes: let it drain
      this.accept(repo, credential, 'upload-pack')
      return ACCEPTED
    }
    if (isRefusal(res.statusCode)) {
      this.reject(repo, credential, 'upload-pack')
      this.#d.log.info({ repo, status: res.statusCode }, 'upstream refused the credential for a cacheable request')
      return { kind: 'refused', refusal: await refusalOf(res) }
    }
    res.body.resume() // a probe's answer is a few bytes: let it drain
    const reason = `the upstream answered the access check with ${res.statusCode} ${type === '' ? '(no content type)' : type}`
    this.#d.log.info({ repo, status: res.statusCode, contentType: type.slice(0, 80) }, 'access not proven: request passed through')
    return { kind: 'unproven', reason }
  }
}

/** The memo's name for an LFS grant: the object is part of what was granted. */
function lfsIdOf(credential: Credential, oid: string): string {
  return `lfs\0${oid}\0${credential.id}`
}

/** The memo's name for (credential, scope): the scope is part of what was proven. */
function idOf(credential: Credential, scope: AccessScope): string {
  return `${scope}\0${credential.id}`
}
