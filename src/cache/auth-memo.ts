/**
 * Which credentials the upstream accepted, for which repository, until when
 * (DESIGN §3.1). A credential is an opaque text (service/access.ts makes it
 * from the request and the endpoint; anonymous is a credential too). It is
 * kept only as a SHA-256
 * keyed with a secret made at start-up and never written anywhere, so
 * neither memory dumps of the map nor logs reveal it, and equal credentials
 * compare equal. (A secret prefix rather than an HMAC: nobody verifies these
 * digests, so length extension is moot, and the one-shot hash is 4x cheaper
 * on a path every poll takes.)
 */
import { hash, randomBytes } from 'node:crypto'
import { LRUCache } from 'lru-cache'

export class AuthMemo {
  readonly #secret = randomBytes(32).toString('hex')
  /**
   * credential id -> epoch ms (on the injected clock) at which the
   * acceptance runs out, and at which it was made (outage mode counts from
   * there, beyond the TTL: `acceptedWithin`)
   */
  readonly #accepted: LRUCache<string, { until: number; at: number }>
  readonly #ttlMs: number
  readonly #now: () => number
  readonly #pending = new Map<string, Promise<void>>()

  constructor(opts: { ttlMs: number; max?: number; now?: () => number }) {
    this.#now = opts.now ?? Date.now
    this.#ttlMs = opts.ttlMs
    this.#accepted = new LRUCache<string, { until: number; at: number }>({ max: opts.max ?? 100_000 })
  }

  /** Record that the upstream answered this credential with success for `repo`. */
  accept(repo: string, credential: string, ttlMs?: number): void {
    const now = this.#now()
    this.#accepted.set(this.#id(repo, credential), { until: now + (ttlMs ?? this.#ttlMs), at: now })
  }

  /**
   * True while the last acceptance on record is younger than `windowMs`,
   * whatever the TTL (outage mode, DESIGN §3.10). A refusal forgets it.
   */
  acceptedWithin(repo: string, credential: string, windowMs: number): boolean {
    const rec = this.#accepted.get(this.#id(repo, credential))
    return rec !== undefined && this.#now() < rec.at + windowMs
  }

  /** True while an acceptance younger than the TTL is on record. */
  isAccepted(repo: string, credential: string): boolean {
    return this.#live(this.#id(repo, credential))
  }

  /** Forget one credential for a repository (the upstream refused it). */
  reject(repo: string, credential: string): void {
    this.#accepted.delete(this.#id(repo, credential))
  }

  /**
   * Begin an upstream check of (repo, credential), so that concurrent
   * requests with the same credential wait for its verdict instead of each
   * asking the upstream. Returns the function that ends it (call it once
   * the verdict is recorded, either way), or null when a check is already
   * running: await `settled()` then. Ending twice is harmless.
   */
  beginCheck(repo: string, credential: string): (() => void) | null {
    const id = this.#id(repo, credential)
    if (this.#pending.has(id)) return null
    let end!: () => void // assigned synchronously by the Promise executor
    this.#pending.set(id, new Promise<void>((resolve) => (end = resolve)))
    let ended = false
    return () => {
      if (ended) return
      ended = true
      this.#pending.delete(id)
      end()
    }
  }

  /**
   * Whether (repo, credential) is accepted, after waiting for a check of it
   * that is running. One hash, whatever happens: this is on every poll.
   */
  async settled(repo: string, credential: string): Promise<boolean> {
    const id = this.#id(repo, credential)
    if (this.#live(id)) return true
    const running = this.#pending.get(id)
    if (running === undefined) return false
    await running
    return this.#live(id)
  }

  clear(): void {
    this.#accepted.clear()
  }

  /**
   * An acceptance on record that has not run out. One that has stays on
   * record (for `acceptedWithin`) until the LRU bound drops it.
   */
  #live(id: string): boolean {
    const rec = this.#accepted.get(id)
    return rec !== undefined && this.#now() < rec.until
  }

  #id(repo: string, credential: string): string {
    // Neither a repository path nor a header value can hold a NUL.
    return hash('sha256', `${this.#secret}\0${repo}\0${credential}`, 'base64url')
  }
}
