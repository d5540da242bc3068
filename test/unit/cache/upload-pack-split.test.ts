/**
 * The clone/fetch split of upload-pack answers (src/cache/upload-pack-split.ts)
 * and how GET /caches shows it (cloneHits, fetchHits, ... beside the store's
 * own upload-pack figures, which stay as they were).
 */
import t from 'tap'
import type { KindStats, RepoStats } from '../../../src/cache/store.js'
import { UploadPackSplit, emptySplit } from '../../../src/cache/upload-pack-split.js'
import { cachesFigures, repositoriesFigures, repositoryFigures } from '../../../src/rest/caches-view.js'

const kind = (over: Partial<KindStats> = {}): KindStats => ({
  entries: 0, size: 0, hits: 0, misses: 0, joins: 0, bypasses: 0, bytesServed: 0, lastHit: null, ...over,
})
const repo = (hits: number): RepoStats => ({ refs: kind(), uploadPack: kind({ hits }), lfs: kind() })

void t.test('record and snapshot', async (t) => {
  const split = new UploadPackSplit()
  t.same(split.of('a/x.git'), emptySplit(), 'unknown repository: zeros')
  split.record('a/x.git', 'clone', 'miss')
  split.record('a/x.git', 'clone', 'hit')
  split.record('a/x.git', 'fetch', 'miss')
  split.record('a/x.git', 'fetch', 'join')
  split.record('a/x.git', 'fetch', 'join')
  split.record('b/y.git', 'fetch', 'hit')
  t.same(split.of('a/x.git'), { cloneHits: 1, cloneMisses: 1, cloneJoins: 0, fetchHits: 0, fetchMisses: 1, fetchJoins: 2 })
  const snap = split.snapshot()
  t.same(snap.totals, { cloneHits: 1, cloneMisses: 1, cloneJoins: 0, fetchHits: 1, fetchMisses: 1, fetchJoins: 2 })
  split.record('b/y.git', 'fetch', 'hit')
  t.equal(snap.repos.get('b/y.git')?.fetchHits, 1, 'a snapshot is a copy')
})

void t.test('REST figures carry the split per repository and in the totals', async (t) => {
  const split = new UploadPackSplit()
  split.record('a/y.git', 'fetch', 'hit')
  split.record('a/y', 'fetch', 'hit')
  split.record('a/y', 'clone', 'hit')
  const stats = new Map<string, RepoStats>([['a/y.git', repo(2)], ['a/y', repo(1)], ['b/z.git', repo(0)]])
  const snap = split.snapshot()
  const all = repositoriesFigures(stats, '', snap.repos)
  t.match(all[0], { repoSlug: 'y', uploadPack: { hits: 3, cloneHits: 1, fetchHits: 2 } }, 'paths with one REST name add up')
  t.match(all[1], { repoSlug: 'z', uploadPack: { hits: 0, cloneHits: 0, fetchHits: 0 } })
  t.match(repositoryFigures(stats, { projectKey: 'a', repoSlug: 'y' }, '', snap.repos), { uploadPack: { cloneHits: 1, fetchHits: 2 } })
  const figures = cachesFigures({
    switches: { protocols: ['HTTP'], refsEnabled: false, uploadPackEnabled: true },
    disk: { admitting: true, reason: null, freeSpace: 1, minimumFreeSpace: 0, checkedAt: null },
    maxSize: 0,
    totals: repo(3),
    repos: stats,
    pathPrefix: '',
    split: snap,
  })
  t.match(figures.totals.uploadPack, { hits: 3, cloneHits: 1, fetchHits: 2, fetchMisses: 0 })
})
