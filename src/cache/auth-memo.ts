/**
 * Which credentials the upstream accepted, for which repository, until when
 * (DESIGN §3.1). A credential is the client's `Authorization` header value,
 * or none (anonymous is a credential too). It is kept only as an HMAC under
 * a key made at start-up and never written anywhere, so neither memory dumps
 * of the map nor logs reveal it, and equal credentials compare equal.
 */
import { createHmac, randomBytes } from 'node:crypto'
import { LRUCache } from 'lru-cache'

export class AuthMemo {
  readonly #key = randomBytes(32)
  readonly #accepted: LRUCache<string, number>
  readonly #now: () => number

  constructor(opts: { ttlMs: number; max?: number; now?: () => number }) {
    this.#now = opts.now ?? Date.now
    this.#accepted = new LRUCache<string, number>({ max: opts.max ?? 100_000, ttl: opts.ttlMs, ttlAutopurge: false })
  }

  /** Record that the upstream answered this credential with success for `repo`. */
  accept(repo: string, credential: string | null, ttlMs?: number): void {
    this.#accepted.set(this.#id(repo, credential), this.#now(), ttlMs === undefined ? {} : { ttl: ttlMs })
  }

  /** True while an acceptance younger than the TTL is on record. */
  isAccepted(repo: string, credential: string | null): boolean {
    return this.#accepted.get(this.#id(repo, credential)) !== undefined
  }

  /** Forget one credential for a repository (the upstream refused it). */
  reject(repo: string, credential: string | null): void {
    this.#accepted.delete(this.#id(repo, credential))
  }

  clear(): void {
    this.#accepted.clear()
  }

  #id(repo: string, credential: string | null): string {
    return createHmac('sha256', this.#key)
      .update(repo)
      .update('\0')
      .update(credential ?? '\0anonymous')
      .digest('base64url')
  }
}
