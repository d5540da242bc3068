/**
 * The upstream's own download actions for the LFS objects the proxy
 * rewrote to itself (DESIGN §2): for one (repository, credential, oid), the
 * href the upstream gave and the headers it asked for (its object
 * credential, never handed to the client), until the earlier of the
 * action's expiry and the grant's (auth.ttl).
 *
 * In memory only, bounded (LRU). The credential is kept only as a SHA-256
 * keyed with a secret made at start-up, as the auth memo does; the headers
 * are the upstream's object credentials and live no longer than their
 * action.
 */
import { hash, randomBytes } from 'node:crypto'
import { LRUCache } from 'lru-cache'
import type { RepoPath } from '../repository.js'
import type { Credential } from './credential.js'

export interface UpstreamDownload {
  /** The upstream's href, absolute. */
  href: string
  /** Exactly the headers to send with it. */
  headers: Readonly<Record<string, string>>
  size: number
  /** Epoch ms (on the injected clock) after which the action is not used. */
  until: number
}

export class LfsActions {
  readonly #secret = randomBytes(32).toString('hex')
  readonly #now: () => number
  readonly #map: LRUCache<string, UpstreamDownload>

  constructor(opts: { now?: () => number; max?: number } = {}) {
    this.#now = opts.now ?? Date.now
    this.#map = new LRUCache<string, UpstreamDownload>({ max: opts.max ?? 100_000 })
  }

  remember(repo: RepoPath, credential: Credential, oid: string, download: UpstreamDownload): void {
    this.#map.set(this.#id(repo, credential, oid), download)
  }

  /** The live action for (repo, credential, oid), or undefined. */
  get(repo: RepoPath, credential: Credential, oid: string): UpstreamDownload | undefined {
    const id = this.#id(repo, credential, oid)
    const found = this.#map.get(id)
    if (found === undefined) return undefined
    if (this.#now() < found.until) return found
    this.#map.delete(id)
    return undefined
  }

  clear(): void {
    this.#map.clear()
  }

  #id(repo: string, credential: Credential, oid: string): string {
    // Neither a repository path, an oid nor a header value can hold a NUL.
    return hash('sha256', `${this.#secret}\0${repo}\0${oid}\0${credential.id}`, 'base64url')
  }
}
