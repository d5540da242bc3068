/**
 * The figures of `GET /caches` (DESIGN §6), built from the store's
 * statistics, the effective settings and the disk guard's state. Pure: the
 * route passes the snapshots in. Also maps the REST name of a repository
 * (`{projectKey}/{repoSlug}`) back to the store's repository paths.
 */
import type { FromSchema, JSONSchema } from 'json-schema-to-ts'
import type { DiskStatus } from '../cache/disk-guard.js'
import type { OutageStatus } from '../service/outage.js'
import type { KindStats, RepoStats } from '../cache/store.js'
import type { Protocol } from '../config/load.js'
import { projectAndSlug, toRepoPath, type RepoPath } from '../repository.js'
import { badValue } from './errors.js'
import { addSplit, emptySplit, type SplitFigures } from '../cache/upload-pack-split.js'

const Count = { type: 'integer', minimum: 0 } as const satisfies JSONSchema

export const KindFigures = {
  type: 'object',
  required: ['entries', 'size', 'hits', 'misses', 'joins', 'bypasses', 'bytesServed', 'lastHit'],
  properties: {
    entries: { type: 'integer', minimum: 0, description: 'committed entries' },
    size: { type: 'integer', minimum: 0, description: 'bytes on disk of the committed entries' },
    hits: { type: 'integer', minimum: 0, description: 'requests answered from a committed entry' },
    misses: { type: 'integer', minimum: 0, description: 'requests that filled a new entry from upstream' },
    joins: { type: 'integer', minimum: 0, description: 'requests that streamed a fill already in flight' },
    bypasses: { type: 'integer', minimum: 0, description: 'cacheable requests sent around the cache' },
    bytesServed: { type: 'integer', minimum: 0, description: 'bytes delivered from the cache' },
    lastHit: {
      anyOf: [{ type: 'string', format: 'date-time' }, { type: 'null' }],
      description: 'time of the last hit, ISO 8601 UTC to the second, or null',
    },
  },
  additionalProperties: false,
} as const satisfies JSONSchema
export type KindFigures = FromSchema<typeof KindFigures>

/** The upload-pack figures, with the answers from the cache split into clones and incremental fetches. */
export const UploadPackFigures = {
  type: 'object',
  required: [...KindFigures.required, 'cloneHits', 'cloneMisses', 'cloneJoins', 'fetchHits', 'fetchMisses', 'fetchJoins'],
  properties: {
    ...KindFigures.properties,
    cloneHits: { type: 'integer', minimum: 0, description: 'hits of clone entries (wants, no haves)' },
    cloneMisses: { type: 'integer', minimum: 0, description: 'misses of clone entries' },
    cloneJoins: { type: 'integer', minimum: 0, description: 'joins of clone fills' },
    fetchHits: { type: 'integer', minimum: 0, description: 'hits of incremental-fetch entries (haves or shallow lines; each negotiation round counts)' },
    fetchMisses: { type: 'integer', minimum: 0, description: 'misses of incremental-fetch entries' },
    fetchJoins: { type: 'integer', minimum: 0, description: 'joins of incremental-fetch fills' },
  },
  additionalProperties: false,
} as const satisfies JSONSchema
export type UploadPackFigures = FromSchema<typeof UploadPackFigures>

export const RepositoryFigures = {
  type: 'object',
  required: ['projectKey', 'repoSlug', 'refs', 'uploadPack', 'lfs'],
  properties: {
    projectKey: { type: 'string', description: 'every path segment before the last (slashes included), path prefix removed' },
    repoSlug: { type: 'string', description: 'the last path segment without .git' },
    refs: KindFigures,
    uploadPack: UploadPackFigures,
    lfs: KindFigures,
  },
  additionalProperties: false,
} as const satisfies JSONSchema
export type RepositoryFigures = FromSchema<typeof RepositoryFigures>

export const CachesFigures = {
  type: 'object',
  required: ['enabled', 'disabledReason', 'freeSpace', 'minimumFreeSpace', 'maxSize', 'totals', 'repositories'],
  properties: {
    enabled: { type: 'boolean', description: 'whether new entries may be written and served' },
    disabledReason: { anyOf: [{ type: 'string' }, { type: 'null' }], description: 'why not, as a sentence; null when enabled' },
    freeSpace: { anyOf: [Count, { type: 'null' }], description: 'bytes free under cache.dir at the last check' },
    minimumFreeSpace: { type: 'integer', minimum: 0, description: 'scm-cache.minimum.free.space in bytes' },
    maxSize: { type: 'integer', minimum: 0, description: 'scm-cache.max.size in bytes; 0: no cap' },
    totals: {
      type: 'object',
      required: ['refs', 'uploadPack', 'lfs'],
      properties: { refs: KindFigures, uploadPack: UploadPackFigures, lfs: KindFigures },
      additionalProperties: false,
    },
    repositories: { type: 'array', items: RepositoryFigures },
    outage: {
      type: 'object',
      description: 'outage mode (DESIGN §3.10): whether it is on, whether the upstream answers, and the answers given from the cache while it did not',
      required: ['enabled', 'upstreamReachable', 'since', 'reason', 'answers'],
      properties: {
        enabled: { type: 'boolean', description: 'scm-cache.outage.enabled' },
        upstreamReachable: { type: 'boolean', description: 'false from the first failed upstream request until one succeeds' },
        since: { anyOf: [{ type: 'string', format: 'date-time' }, { type: 'null' }], description: 'start of the current outage, ISO 8601 UTC; null when reachable' },
        reason: { anyOf: [{ type: 'string' }, { type: 'null' }], description: 'the failure that started it' },
        answers: { type: 'integer', minimum: 0, description: 'requests answered from the cache during outages' },
      },
      additionalProperties: false,
    },
  },
  additionalProperties: false,
} as const satisfies JSONSchema
export type CachesFigures = FromSchema<typeof CachesFigures>

export const ADMIN_DISABLED_REASON = 'caching disabled by an administrator'

export interface CachingSwitches {
  protocols: readonly Protocol[]
  refsEnabled: boolean
  uploadPackEnabled: boolean
}

/**
 * Caching is off when an administrator switched off both kinds or every
 * front, or while the disk guard refuses new entries; the first reason wins.
 */
export function cachingState(
  switches: CachingSwitches,
  disk: Pick<DiskStatus, 'admitting' | 'reason'>,
): { enabled: boolean; disabledReason: string | null } {
  if ((!switches.refsEnabled && !switches.uploadPackEnabled) || switches.protocols.length === 0) {
    return { enabled: false, disabledReason: ADMIN_DISABLED_REASON }
  }
  if (!disk.admitting) return { enabled: false, disabledReason: disk.reason ?? 'free disk space is below the minimum' }
  return { enabled: true, disabledReason: null }
}

/** `2026-11-21T14:02:11Z`: ISO 8601 in UTC, whole seconds; null stays null. */
export function isoSecond(epochMs: number | null): string | null {
  if (epochMs === null) return null
  return new Date(epochMs).toISOString().replace(/\.\d{3}Z$/, 'Z')
}

export function kindFigures(k: KindStats): KindFigures {
  return {
    entries: k.entries,
    size: k.size,
    hits: k.hits,
    misses: k.misses,
    joins: k.joins,
    bypasses: k.bypasses,
    bytesServed: k.bytesServed,
    lastHit: isoSecond(k.lastHit),
  }
}

function uploadPackFigures(k: KindStats, split: SplitFigures | undefined): UploadPackFigures {
  return { ...kindFigures(k), ...(split ?? emptySplit()) }
}

/** The REST name of a store repository path. */
export function restName(repo: string, pathPrefix: string): { projectKey: string; repoSlug: string } {
  return projectAndSlug(repo as RepoPath, pathPrefix) // store repositories were validated RepoPaths when cached
}

/**
 * One element per REST name, sorted by projectKey then repoSlug. Store paths
 * that share a REST name (`PROJ/app.git` and `PROJ/app`) are added up.
 */
export function repositoriesFigures(
  repos: ReadonlyMap<string, RepoStats>,
  pathPrefix: string,
  split: ReadonlyMap<string, SplitFigures> = new Map(),
): RepositoryFigures[] {
  const byName = new Map<string, { projectKey: string; repoSlug: string; stats: RepoStats; split: SplitFigures }>()
  for (const [repo, stats] of repos) {
    const name = restName(repo, pathPrefix)
    const id = `${name.projectKey}/${name.repoSlug}`
    const seen = byName.get(id)
    const own = split.get(repo) ?? emptySplit()
    byName.set(id, {
      ...name,
      stats: seen === undefined ? stats : addRepoStats(seen.stats, stats),
      split: seen === undefined ? own : addSplit(seen.split, own),
    })
  }
  return [...byName.values()]
    .sort((a, b) => compare(a.projectKey, b.projectKey) || compare(a.repoSlug, b.repoSlug))
    .map(({ projectKey, repoSlug, stats, split: own }) => ({
      projectKey,
      repoSlug,
      refs: kindFigures(stats.refs),
      uploadPack: uploadPackFigures(stats.uploadPack, own),
      lfs: kindFigures(stats.lfs),
    }))
}

export interface CachesInputs {
  switches: CachingSwitches
  disk: DiskStatus
  maxSize: number
  totals: RepoStats
  repos: ReadonlyMap<string, RepoStats>
  pathPrefix: string
  outage?: OutageStatus
  /** The clone/fetch split (UploadPackSplit); zeros when absent. */
  split?: { repos: ReadonlyMap<string, SplitFigures>; totals: SplitFigures }
}

export function cachesFigures(input: CachesInputs): CachesFigures {
  return {
    ...cachingState(input.switches, input.disk),
    freeSpace: input.disk.freeSpace,
    minimumFreeSpace: input.disk.minimumFreeSpace,
    maxSize: input.maxSize,
    totals: { refs: kindFigures(input.totals.refs), uploadPack: uploadPackFigures(input.totals.uploadPack, input.split?.totals), lfs: kindFigures(input.totals.lfs) },
    repositories: repositoriesFigures(input.repos, input.pathPrefix, input.split?.repos),
    ...(input.outage === undefined ? {} : { outage: { ...input.outage, since: isoSecond(input.outage.since) } }),
  }
}

export interface RestRepoName {
  projectKey: string
  repoSlug: string
}

/**
 * Splits the part of `/caches/...` after `/caches/` (already percent-decoded
 * by the router) into projectKey and repoSlug: the last segment is the slug,
 * the segments before it the project key, slashes included. A single
 * segment names a repository at the upstream's root (empty projectKey).
 * Refuses what could never name a repository: empty, `.` or `..` segments,
 * control characters, backslashes, `%`, absurd lengths.
 */
export function parseRepoName(raw: string): RestRepoName {
  if (raw === '') throw badValue('a repository is named /caches/{projectKey}/{repoSlug}')
  // toRepoPath forgives leading slashes; here one would be an empty project key segment.
  let problem = raw.startsWith('/') ? 'repository path contains an empty, "." or ".." segment' : null
  if (problem === null) {
    try {
      toRepoPath(raw)
    } catch (err) {
      problem = err instanceof Error ? err.message : 'invalid repository path'
    }
  }
  if (problem !== null) throw badValue(`malformed repository ${JSON.stringify(raw.slice(0, 200))}: ${problem}`)
  const segs = raw.split('/')
  const repoSlug = segs.pop() ?? ''
  return { projectKey: segs.join('/'), repoSlug }
}

/** `PROJ/app`, or `app` for a repository at the upstream's root. */
export function shownName(name: RestRepoName): string {
  return name.projectKey === '' ? name.repoSlug : `${name.projectKey}/${name.repoSlug}`
}

/**
 * The store repositories a REST name stands for. Exact matches; when there
 * are none, matches ignoring case (Bitbucket's project keys are upper case
 * in the UI but often lower case in clone URLs). With `anyCase`, both.
 */
export function reposNamed(
  repos: Iterable<string>,
  name: RestRepoName,
  pathPrefix: string,
  opts: { anyCase?: boolean } = {},
): string[] {
  const exact: string[] = []
  const folded: string[] = []
  const key = name.projectKey.toLowerCase()
  const slug = name.repoSlug.toLowerCase()
  for (const repo of repos) {
    const n = restName(repo, pathPrefix)
    if (n.projectKey === name.projectKey && n.repoSlug === name.repoSlug) exact.push(repo)
    else if (n.projectKey.toLowerCase() === key && n.repoSlug.toLowerCase() === slug) folded.push(repo)
  }
  if (opts.anyCase === true) return [...exact, ...folded]
  return exact.length > 0 ? exact : folded
}

/** The figures of one REST repository, adding up every store path it stands for; null if none. */
export function repositoryFigures(
  repos: ReadonlyMap<string, RepoStats>,
  name: RestRepoName,
  pathPrefix: string,
  split: ReadonlyMap<string, SplitFigures> = new Map(),
): RepositoryFigures | null {
  const matches = reposNamed(repos.keys(), name, pathPrefix)
  let sum: RepoStats | null = null
  let splitSum = emptySplit()
  for (const repo of matches) {
    const s = repos.get(repo)
    if (s !== undefined) sum = sum === null ? s : addRepoStats(sum, s)
    splitSum = addSplit(splitSum, split.get(repo) ?? emptySplit())
  }
  const first = matches[0]
  if (sum === null || first === undefined) return null
  return { ...restName(first, pathPrefix), refs: kindFigures(sum.refs), uploadPack: uploadPackFigures(sum.uploadPack, splitSum), lfs: kindFigures(sum.lfs) }
}

function addRepoStats(a: RepoStats, b: RepoStats): RepoStats {
  return { refs: addKindStats(a.refs, b.refs), uploadPack: addKindStats(a.uploadPack, b.uploadPack), lfs: addKindStats(a.lfs, b.lfs) }
}

function addKindStats(a: KindStats, b: KindStats): KindStats {
  return {
    entries: a.entries + b.entries,
    size: a.size + b.size,
    hits: a.hits + b.hits,
    misses: a.misses + b.misses,
    joins: a.joins + b.joins,
    bypasses: a.bypasses + b.bypasses,
    bytesServed: a.bytesServed + b.bytesServed,
    lastHit: a.lastHit === null ? b.lastHit : b.lastHit === null ? a.lastHit : Math.max(a.lastHit, b.lastHit),
  }
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}
