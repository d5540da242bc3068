/**
 * Upload-pack answers from the cache, split into clones and incremental
 * fetches (DESIGN §2), per repository: how many were hits, misses (a fill
 * started) and joins. The store counts all upload-pack answers together
 * (figures.ts); this adds the split for REST (`cloneHits`, `fetchHits`, ...)
 * and metrics without changing the store's own figures. In memory only,
 * like the store's counters.
 */

export type UploadPackWhat = 'clone' | 'fetch'
export type UploadPackHow = 'hit' | 'miss' | 'join'

export interface SplitFigures {
  cloneHits: number
  cloneMisses: number
  cloneJoins: number
  fetchHits: number
  fetchMisses: number
  fetchJoins: number
}

export function emptySplit(): SplitFigures {
  return { cloneHits: 0, cloneMisses: 0, cloneJoins: 0, fetchHits: 0, fetchMisses: 0, fetchJoins: 0 }
}

const FIELD: Record<UploadPackWhat, Record<UploadPackHow, keyof SplitFigures>> = {
  clone: { hit: 'cloneHits', miss: 'cloneMisses', join: 'cloneJoins' },
  fetch: { hit: 'fetchHits', miss: 'fetchMisses', join: 'fetchJoins' },
}

export function addSplit(a: SplitFigures, b: SplitFigures): SplitFigures {
  const out = emptySplit()
  for (const k of Object.keys(out) as (keyof SplitFigures)[]) out[k] = a[k] + b[k]
  return out
}

export class UploadPackSplit {
  readonly #repos = new Map<string, SplitFigures>()

  record(repo: string, what: UploadPackWhat, how: UploadPackHow): void {
    let s = this.#repos.get(repo)
    if (s === undefined) {
      s = emptySplit()
      this.#repos.set(repo, s)
    }
    s[FIELD[what][how]]++
  }

  /** The figures of `repo` (zeros when none). */
  of(repo: string): SplitFigures {
    const s = this.#repos.get(repo)
    return s === undefined ? emptySplit() : { ...s }
  }

  /** Copies of every repository's figures, and their sum. */
  snapshot(): { repos: Map<string, SplitFigures>; totals: SplitFigures } {
    const repos = new Map<string, SplitFigures>()
    let totals = emptySplit()
    for (const [repo, s] of this.#repos) {
      repos.set(repo, { ...s })
      totals = addSplit(totals, s)
    }
    return { repos, totals }
  }
}
