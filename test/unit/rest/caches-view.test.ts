import t from 'tap'
import type { KindStats, RepoStats } from '../../../src/cache/store.js'
import {
  ADMIN_DISABLED_REASON,
  cachesFigures,
  cachingState,
  isoSecond,
  parseRepoName,
  repositoriesFigures,
  repositoryFigures,
  reposNamed,
} from '../../../src/rest/caches-view.js'
import { RestError } from '../../../src/rest/errors.js'

function kind(over: Partial<KindStats> = {}): KindStats {
  return { entries: 0, size: 0, hits: 0, misses: 0, joins: 0, bypasses: 0, bytesServed: 0, lastHit: null, ...over }
}
function repo(up: Partial<KindStats> = {}, refs: Partial<KindStats> = {}): RepoStats {
  return { refs: kind(refs), uploadPack: kind(up), lfs: kind() }
}

void t.test('isoSecond', async (t) => {
  t.equal(isoSecond(null), null)
  t.equal(isoSecond(Date.UTC(2026, 10, 21, 14, 2, 11, 987)), '2026-11-21T14:02:11Z', 'milliseconds dropped, not rounded')
  t.equal(isoSecond(0), '1970-01-01T00:00:00Z')
})

void t.test('cachingState', async (t) => {
  const on = { protocols: ['HTTP', 'SSH'] as const, refsEnabled: false, uploadPackEnabled: true }
  const admitting = { admitting: true, reason: null }
  const low = { admitting: false, reason: 'free disk space 0.8 GiB is below the minimum 1.0 GiB' }
  t.same(cachingState(on, admitting), { enabled: true, disabledReason: null })
  t.same(cachingState({ ...on, uploadPackEnabled: false }, admitting), { enabled: false, disabledReason: ADMIN_DISABLED_REASON })
  t.same(cachingState({ ...on, uploadPackEnabled: false, refsEnabled: true }, admitting), { enabled: true, disabledReason: null })
  t.same(cachingState({ ...on, protocols: [] }, admitting), { enabled: false, disabledReason: ADMIN_DISABLED_REASON })
  t.same(cachingState(on, low), { enabled: false, disabledReason: low.reason })
  t.same(cachingState({ ...on, protocols: [] }, low), { enabled: false, disabledReason: ADMIN_DISABLED_REASON }, 'the administrator first')
  t.match(cachingState(on, { admitting: false, reason: null }), { enabled: false, disabledReason: /below the minimum/ })
})

void t.test('parseRepoName', async (t) => {
  t.same(parseRepoName('PROJ/app'), { projectKey: 'PROJ', repoSlug: 'app' })
  t.same(parseRepoName('group/sub/app'), { projectKey: 'group/sub', repoSlug: 'app' })
  t.same(parseRepoName('app'), { projectKey: '', repoSlug: 'app' }, 'a repository at the root')
  for (const bad of ['', '/PROJ/app', 'PROJ/app/', 'PROJ//app', 'PROJ/../app', './app', 'PROJ/..', 'a\\b/c', 'PROJ/a%2e', 'PROJ/\u0000', `P/${'x'.repeat(256)}`, 'x/'.repeat(600) + 'y']) {
    t.throws(() => parseRepoName(bad), RestError, JSON.stringify(bad.slice(0, 40)))
  }
  try {
    parseRepoName('PROJ/../app')
  } catch (err) {
    t.match(err, { statusCode: 400, expose: true, message: /malformed repository "PROJ\/..\/app"/ })
  }
})

void t.test('reposNamed and repositoryFigures', async (t) => {
  const stats = new Map<string, RepoStats>([
    ['PROJ/app.git', repo({ entries: 1, hits: 2, lastHit: 1000 })],
    ['PROJ/app', repo({ entries: 1, hits: 3, lastHit: 5000 }, { entries: 2 })],
    ['proj/app.git', repo({ entries: 4 })],
    ['scm/PROJ/lib.git', repo({ entries: 1 })],
    ['group/sub/app.git', repo({ entries: 7 })],
    ['top.git', repo({ entries: 1 })],
  ])
  t.same(reposNamed(stats.keys(), { projectKey: 'PROJ', repoSlug: 'app' }, ''), ['PROJ/app.git', 'PROJ/app'], 'exact matches only when there are some')
  t.same(reposNamed(stats.keys(), { projectKey: 'Proj', repoSlug: 'APP' }, ''), ['PROJ/app.git', 'PROJ/app', 'proj/app.git'], 'else any case')
  t.same(reposNamed(stats.keys(), { projectKey: 'PROJ', repoSlug: 'app' }, '', { anyCase: true }), ['PROJ/app.git', 'PROJ/app', 'proj/app.git'])
  t.same(reposNamed(stats.keys(), { projectKey: 'PROJ', repoSlug: 'lib' }, 'scm'), ['scm/PROJ/lib.git'], 'path prefix removed')
  t.same(reposNamed(stats.keys(), { projectKey: 'group', repoSlug: 'app' }, ''), [], 'a nested key must be whole')
  t.same(reposNamed(stats.keys(), { projectKey: '', repoSlug: 'top' }, ''), ['top.git'])

  t.match(repositoryFigures(stats, { projectKey: 'PROJ', repoSlug: 'app' }, ''), {
    projectKey: 'PROJ',
    repoSlug: 'app',
    uploadPack: { entries: 2, hits: 5, lastHit: '1970-01-01T00:00:05Z' },
    refs: { entries: 2 },
  }, 'store paths with one REST name add up')
  t.match(repositoryFigures(stats, { projectKey: 'group/sub', repoSlug: 'app' }, ''), { projectKey: 'group/sub', uploadPack: { entries: 7 } })
  t.equal(repositoryFigures(stats, { projectKey: 'NOPE', repoSlug: 'app' }, ''), null)
})

void t.test('repositoriesFigures and cachesFigures', async (t) => {
  const stats = new Map<string, RepoStats>([
    ['b/z.git', repo({ entries: 1 })],
    ['a/y.git', repo({ entries: 1 })],
    ['a/y', repo({ entries: 2 })],
    ['a/x.git', repo()],
  ])
  t.same(
    repositoriesFigures(stats, '').map((r) => [r.projectKey, r.repoSlug, r.uploadPack.entries]),
    [['a', 'x', 0], ['a', 'y', 3], ['b', 'z', 1]],
    'sorted, merged',
  )
  const figures = cachesFigures({
    switches: { protocols: ['HTTP'], refsEnabled: true, uploadPackEnabled: true },
    disk: { admitting: true, reason: null, freeSpace: 123, minimumFreeSpace: 45, checkedAt: 0 },
    maxSize: 6789,
    totals: repo({ entries: 4, lastHit: 2000 }),
    repos: stats,
    pathPrefix: '',
  })
  t.same(Object.keys(figures), ['enabled', 'disabledReason', 'freeSpace', 'minimumFreeSpace', 'maxSize', 'totals', 'repositories'])
  t.match(figures, { enabled: true, disabledReason: null, freeSpace: 123, minimumFreeSpace: 45, maxSize: 6789 })
  t.same(figures.totals.uploadPack, {
    entries: 4,
    size: 0,
    hits: 0,
    misses: 0,
    joins: 0,
    bypasses: 0,
    bytesServed: 0,
    lastHit: '1970-01-01T00:00:02Z',
    // the clone/fetch split (UploadPackSplit): zeros when none is given
    cloneHits: 0,
    cloneMisses: 0,
    cloneJoins: 0,
    fetchHits: 0,
    fetchMisses: 0,
    fetchJoins: 0,
  })
})
