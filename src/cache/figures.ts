/**
 * The store's figures: per repository and kind, the committed entries and
 * their bytes on disk, and the counters of what `open()` did (hits, misses,
 * joins, bypasses) and of the bytes served from the cache.
 *
 * `bytesServed` counts bytes delivered by hit readers only (bytes from the
 * cache, not from an upstream fill). `open()` counts its own hits, misses,
 * joins and bypasses; `recordBypass` is for requests the caller sends
 * around the store without calling open(). `entries` and `size` follow the
 * index: up when a record enters it, down when it leaves.
 *
 * The counters are mutable records handed to their owners (a hit reader
 * adds to `bytesServed` when it closes); `snapshot()` gives copies.
 */
import type { EntryKind } from './entry-file.js'

export interface KindStats {
  entries: number
  /** bytes on disk of committed entries */
  size: number
  hits: number
  misses: number
  joins: number
  bypasses: number
  bytesServed: number
  /** epoch ms */
  lastHit: number | null
}

export interface RepoStats {
  refs: KindStats
  uploadPack: KindStats
  /** Git LFS objects; an object's entry counts for the repository whose grant filled it. */
  lfs: KindStats
}

export interface StoreStats {
  repos: Map<string, RepoStats>
  totals: RepoStats
  /** fills whose produce() has not settled yet, doomed ones included */
  fillsInFlight: number
  evictions: number
}

export function emptyKindStats(): KindStats {
  return { entries: 0, size: 0, hits: 0, misses: 0, joins: 0, bypasses: 0, bytesServed: 0, lastHit: null }
}

function kindField(kind: EntryKind): keyof RepoStats {
  return kind === 'refs' ? 'refs' : kind === 'lfs' ? 'lfs' : 'uploadPack'
}

export class Figures {
  readonly #repos = new Map<string, RepoStats>()

  /** The live counters of `repo` and `kind` (created on first use). */
  counters(repo: string, kind: EntryKind): KindStats {
    let s = this.#repos.get(repo)
    if (s === undefined) {
      s = { refs: emptyKindStats(), uploadPack: emptyKindStats(), lfs: emptyKindStats() }
      this.#repos.set(repo, s)
    }
    return s[kindField(kind)]
  }

  /** Counts a hit served now. */
  hit(repo: string, kind: EntryKind, now: number): KindStats {
    const counters = this.counters(repo, kind)
    counters.hits++
    counters.lastHit = now
    return counters
  }

  /** A copy of every counter, with the totals over all repositories. */
  snapshot(fillsInFlight: number, evictions: number): StoreStats {
    const repos = new Map<string, RepoStats>()
    const totals: RepoStats = { refs: emptyKindStats(), uploadPack: emptyKindStats(), lfs: emptyKindStats() }
    for (const [repo, s] of this.#repos) {
      repos.set(repo, { refs: { ...s.refs }, uploadPack: { ...s.uploadPack }, lfs: { ...s.lfs } })
      for (const field of ['refs', 'uploadPack', 'lfs'] as const) {
        const t = totals[field]
        const k = s[field]
        t.entries += k.entries
        t.size += k.size
        t.hits += k.hits
        t.misses += k.misses
        t.joins += k.joins
        t.bypasses += k.bypasses
        t.bytesServed += k.bytesServed
        if (k.lastHit !== null && (t.lastHit === null || k.lastHit > t.lastHit)) t.lastHit = k.lastHit
      }
    }
    return { repos, totals, fillsInFlight, evictions }
  }
}
