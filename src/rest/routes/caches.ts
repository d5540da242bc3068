/**
 * `/caches` (DESIGN §6): what the caches hold and do, overall and per
 * repository, and clearing them. A repository is `{projectKey}/{repoSlug}`;
 * nested project keys hold slashes (`/caches/group/sub/app`), served by a
 * wildcard route beside the documented two-segment one.
 */
import type { FastifyRequest } from 'fastify'
import type { DiskGuard } from '../../cache/disk-guard.js'
import type { OutageStatus } from '../../service/outage.js'
import type { CacheStoreApi } from '../../cache/store-api.js'
import type { UploadPackSplit } from '../../cache/upload-pack-split.js'
import type { Config } from '../../config/load.js'
import type { Log } from '../../logger.js'
import type { Settings } from '../../settings.js'
import {
  CachesFigures,
  RepositoryFigures,
  cachesFigures,
  parseRepoName,
  repositoryFigures,
  reposNamed,
  shownName,
  type RestRepoName,
} from '../caches-view.js'
import { errorSchema, notFound } from '../errors.js'
import { RepoParams, RepoPathParams } from '../params.js'
import { ERROR_RESPONSES, NoContent } from '../responses.js'
import type { CallerOf, RestApp } from '../types.js'

export interface CachesRouteDeps {
  settings: Settings
  store: CacheStoreApi
  disk: DiskGuard
  config: Config
  log: Log
  callerOf: CallerOf
  outage?: () => OutageStatus
  /** The clone/fetch split of upload-pack answers. */
  split?: UploadPackSplit
}

const NOT_FOUND = errorSchema('the cache knows no such repository')

export function registerCachesRoutes(app: RestApp, deps: CachesRouteDeps): void {
  const { settings, store, disk, config, log, callerOf, outage, split } = deps
  const pathPrefix = config.upstream.pathPrefix
  const tags = ['caches']

  app.get(
    '/caches',
    {
      schema: {
        tags,
        summary: 'Whether caching is enabled, free space, and the figures of the refs and upload-pack caches, overall and per repository',
        response: { 200: CachesFigures, ...ERROR_RESPONSES },
      },
    },
    async () => {
      const stats = store.stats()
      return cachesFigures({
        switches: {
          protocols: settings.get('protocols'),
          refsEnabled: settings.get('refsEnabled'),
          uploadPackEnabled: settings.get('uploadPackEnabled'),
        },
        disk: disk.status(),
        maxSize: config.cache.maxSize,
        totals: stats.totals,
        repos: stats.repos,
        pathPrefix,
        ...(outage === undefined ? {} : { outage: outage() }),
        ...(split === undefined ? {} : { split: split.snapshot() }),
      })
    },
  )

  app.delete(
    '/caches',
    { schema: { tags, summary: 'Clear every cache entry', response: { 204: NoContent, ...ERROR_RESPONSES } } },
    async (request, reply) => {
      const entries = countEntries(store)
      await store.clear()
      log.info({ action: 'clear caches', entries, by: callerOf(request) }, 'all caches cleared through REST')
      return reply.code(204).send(null)
    },
  )

  const showOne = (name: RestRepoName): RepositoryFigures => {
    const figures = repositoryFigures(store.stats().repos, name, pathPrefix, split?.snapshot().repos)
    if (figures === null) throw notFound(`the cache knows no repository ${shownName(name)}`)
    return figures
  }

  const clearOne = async (name: RestRepoName, request: FastifyRequest): Promise<void> => {
    const repos = reposNamed(store.stats().repos.keys(), name, pathPrefix, { anyCase: true })
    let entries = 0
    for (const repo of repos) entries += await store.invalidateRepo(repo)
    log.info(
      { action: 'clear repository caches', repository: shownName(name), repos: repos.slice(0, 10), entries, by: callerOf(request) },
      'repository caches cleared through REST',
    )
  }

  const oneSchema = {
    tags,
    summary: 'The figures of one repository',
    response: { 200: RepositoryFigures, ...ERROR_RESPONSES, 404: NOT_FOUND },
  }
  const clearSchema = {
    tags,
    summary: 'Clear the refs and upload-pack caches of one repository (e.g. after a force-push that removed a secret)',
    response: { 204: NoContent, ...ERROR_RESPONSES },
  }

  app.get('/caches/:projectKey/:repoSlug', { schema: { ...oneSchema, params: RepoParams } }, async (request) =>
    showOne(parseRepoName(`${request.params.projectKey}/${request.params.repoSlug}`)),
  )
  app.get('/caches/*', { schema: { ...oneSchema, params: RepoPathParams, hide: true } }, async (request) =>
    showOne(parseRepoName(request.params['*'])),
  )
  app.delete('/caches/:projectKey/:repoSlug', { schema: { ...clearSchema, params: RepoParams } }, async (request, reply) => {
    await clearOne(parseRepoName(`${request.params.projectKey}/${request.params.repoSlug}`), request)
    return reply.code(204).send(null)
  })
  app.delete('/caches/*', { schema: { ...clearSchema, params: RepoPathParams, hide: true } }, async (request, reply) => {
    await clearOne(parseRepoName(request.params['*']), request)
    return reply.code(204).send(null)
  })
}

function countEntries(store: CacheStoreApi): number {
  const t = store.stats().totals
  return t.refs.entries + t.uploadPack.entries + t.lfs.entries
}
