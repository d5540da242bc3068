/**
 * Assemble and start a proxy from a validated Config: the upstream (the
 * configured one, or the embedded `git http-backend`), the cache, the HTTP
 * front. Used by src/server.ts and by the tests, so both run the same code.
 */
import { access, constants } from 'node:fs/promises'
import path from 'node:path'
import type { AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'
import { buildApp } from './app.js'
import type { Config } from './config/load.js'
import type { Log } from './logger.js'
import { ensureDemoRepository, startEmbeddedUpstream, type EmbeddedUpstream } from './upstream/embedded.js'
import { HttpUpstream } from './upstream/http.js'
import { AuthMemo } from './cache/auth-memo.js'
import { Access } from './service/access.js'
import { Invalidation } from './service/invalidation.js'
import { BodyBudget } from './service/body-budget.js'
import { DEFAULT_BODY_WINDOW_MS, DEFAULT_MIN_BODY_BYTES } from './front/body-guard.js'
import { FillLimiter } from './cache/fill-limiter.js'
import { CacheStore } from './cache/store.js'
import type { CacheStoreApi } from './cache/store-api.js'
import { NoopStore } from './cache/noop-store.js'
import { HttpGitService } from './service/http-git.js'
import { webhookPlugin } from './front/webhook.js'
import { RefsService } from './service/refs.js'
import { UploadPackService } from './service/upload-pack.js'
import { UploadPackSplit } from './cache/upload-pack-split.js'
import { LfsService } from './service/lfs.js'
import { LfsActions } from './service/lfs-actions.js'
import { SETTINGS_FILE_NAME, Settings, SettingsFile, toFileContent } from './settings.js'
import { restPlugin } from './rest/index.js'
import { DiskGuard } from './cache/disk-guard.js'
import { CacheError } from './errors.js'
import { LastGood } from './cache/last-good.js'
import { Outage } from './service/outage.js'
import { Metrics } from './metrics.js'
import type { SshFront } from './front/ssh.js'
import { readCaFile, readTlsFiles, reloadTls } from './front/tls.js'
import { TrustedProxies } from './front/forwarded.js'
import { DrainState } from './drain.js'

export interface RunningProxy {
  /** `http://host:port` (`https://` with TLS) the HTTP front listens on. */
  readonly url: string
  readonly upstreamUrl: string
  /** Set when the embedded upstream runs: the demo repository's path. */
  readonly demoRepo: string | null
  readonly app: FastifyInstance
  readonly store: CacheStoreApi
  readonly settings: Settings
  readonly disk: DiskGuard
  /** `ssh://host:port` the SSH front listens on; null when no SSH upstream is configured. */
  readonly sshUrl: string | null
  /** Git requests (HTTP and SSH) taken and not finished: their log line is not written yet. */
  requestsInFlight(): number
  /** `/readyz` fails from now on, all else is served as before (src/drain.ts). */
  beginDrain(): void
  /** Re-read the TLS certificate and key for new connections; false when the front has no TLS. */
  reloadTls(): Promise<boolean>
  close(): Promise<void>
}

export const REST_PREFIX = '/rest/scm-cache/latest'

/** Bounds on upstream fills (DESIGN §3.7): per repository, in total, and the wait queue. */
const FILL_LIMITS = { maxTotal: 32, maxPerRepo: 8, maxQueue: 1000, queueTimeoutMs: 120_000 }

/** Where the embedded upstream keeps its repositories: `repos` beside `cache.dir`. */
export function embeddedRepoRoot(config: Config): string {
  return path.join(path.dirname(config.cacheDir), 'repos')
}

/** What the composition root (or a test) injects beside the config. */
export interface ProxyOptions {
  /**
   * Wall clock, epoch ms: every TTL (cache entries, accepted credentials) is
   * measured on it. Tests move it instead of sleeping; defaults to Date.now.
   */
  now?: () => number
  /**
   * The slow-body rule (DESIGN §3.9): a body is cut when fewer than
   * `minBytes` arrive in `windowMs` (30 KiB in 30 s). Tests shorten it.
   */
  bodyRate?: { minBytes: number; windowMs: number }
}

export async function startProxy(config: Config, log: Log, options: ProxyOptions = {}): Promise<RunningProxy> {
  const now = options.now ?? Date.now
  let embedded: EmbeddedUpstream | null = null
  let demoRepo: string | null = null
  let upstreamUrl: URL
  if (config.upstream.httpUrl === null) {
    const root = embeddedRepoRoot(config)
    demoRepo = await ensureDemoRepository(root)
    embedded = await startEmbeddedUpstream({ root, log: log.child({ component: 'embedded-upstream' }) })
    upstreamUrl = new URL(embedded.url)
    log.info({ root, url: embedded.url }, 'embedded upstream started (no upstream.http.url configured)')
  } else {
    upstreamUrl = config.upstream.httpUrl
  }

  const tlsFiles = config.proxy.httpTls
  const tls = tlsFiles === null ? undefined : await readTlsFiles(tlsFiles)
  const ca = config.upstream.httpCa === null ? undefined : await readCaFile(config.upstream.httpCa)
  const drain = new DrainState()
  const metrics = new Metrics()
  const upstream = new HttpUpstream({
    baseUrl: upstreamUrl,
    connectTimeoutMs: config.upstream.connectTimeout * 1000,
    ...(ca === undefined ? {} : { ca }),
    observe: (method, status, seconds) => {
      metrics.observeUpstream(method, status, seconds)
    },
  })
  const settings = new Settings(config)
  const persistence = new SettingsFile({ file: path.join(config.cacheDir, SETTINGS_FILE_NAME), log: log.child({ component: 'settings' }) })
  settings.replaceOverrides(await persistence.load())
  if (Object.keys(settings.overrides()).length > 0) {
    log.info({ overrides: toFileContent(settings.overrides()).overrides }, 'settings changed through REST apply over the configured values')
  }
  const disk = new DiskGuard({
    dir: config.cacheDir,
    minimumFreeSpace: config.cache.minimumFreeSpace,
    intervalMs: config.cache.diskCheckInterval * 1000,
    log: log.child({ component: 'disk' }),
  })
  const diskStore = new CacheStore({
    dir: config.cacheDir,
    log: log.child({ component: 'cache' }),
    maxSize: config.cache.maxSize,
    now,
    onFillError: (err) => {
      if (DiskGuard.isNoSpace(err)) disk.reportNoSpace()
      else if (err instanceof CacheError && err.code === 'ERR_CACHE_WRITE_FAILED') disk.reportWriteFailure(err)
    },
  })
  let store: CacheStoreApi = diskStore
  try {
    await diskStore.init()
  } catch (err) {
    // DESIGN §3.5: the cache never breaks Git. Serve everything through,
    // and let REST and /readyz say why nothing is cached.
    log.error({ err, dir: config.cacheDir }, 'cache disabled: the cache directory is unusable')
    store = new NoopStore()
    disk.disable(`cache directory ${config.cacheDir} is unusable: ${err instanceof Error ? err.message : String(err)}`)
  }
  await disk.start()
  const access = new Access({
    memo: new AuthMemo({ ttlMs: config.authTtl * 1000, now }),
    // LFS grants are per object: their own memo, so that they never push out other acceptances.
    lfsMemo: new AuthMemo({ ttlMs: config.authTtl * 1000, now, max: 200_000 }),
    upstream,
    log: log.child({ component: 'access' }),
    now,
  })
  const budget = new BodyBudget({ limit: config.proxy.httpBodyMemory })
  const limiter = new FillLimiter(FILL_LIMITS)
  metrics.attach({ store, limiter, disk })
  const registry = metrics.registry
  const split = new UploadPackSplit()
  metrics.attachSplit(split)
  const uploadPack = new UploadPackService({
    store,
    limiter,
    settings,
    admit: () => disk.admit(),
    log: log.child({ component: 'upload-pack' }),
    split,
  })
  const invalidation = new Invalidation(store)
  const refs = new RefsService({ store, settings, admit: () => disk.admit(), log: log.child({ component: 'refs' }) })
  const lastGood = new LastGood(config.cacheDir, log.child({ component: 'last-good' }))
  await lastGood.init().catch((err: unknown) => {
    log.warn({ err }, 'cannot keep last good advertisements: outage mode has nothing to answer with')
  })
  const outage = new Outage({
    enabled: config.cache.outageEnabled,
    outageTtlMs: config.authOutageTtl * 1000,
    lastGood,
    now,
    upstreamName: upstreamUrl.origin,
    log: log.child({ component: 'outage' }),
  })
  metrics.attachOutage(outage)
  const lfs = new LfsService({
    store,
    limiter,
    settings,
    access,
    actions: new LfsActions({ now }),
    upstream,
    budget,
    admit: () => disk.admit(),
    enabled: config.cache.lfsEnabled,
    maxObjectSize: config.cache.lfsMaxObjectSize,
    authTtlMs: config.authTtl * 1000,
    now,
    log: log.child({ component: 'lfs' }),
  })
  const git = new HttpGitService({
    outage,
    uploadPack,
    refs,
    access,
    invalidation,
    upstream,
    budget,
    lfs,
    recordBypass: (repo) => {
      store.recordBypass(repo, 'upload-pack')
    },
    log: log.child({ component: 'http' }),
  })
  const idleTimeoutMs = config.proxy.httpIdleTimeout * 1000
  const sweeper = setInterval(() => {
    store
      // LFS objects share the packs' TTL (DESIGN §2).
      .sweepExpired((kind) => (kind === 'refs' ? settings.get('refsTtl') : settings.get('uploadPackTtl')) * 1000)
      .catch((err: unknown) => {
        log.warn({ err }, 'expiry sweep failed')
      })
  }, config.cache.expiryCheckInterval * 1000)
  sweeper.unref()

  const { app, gitRequestsInFlight } = await buildApp({
    log,
    git,
    limits: {
      idleTimeoutMs,
      maxConnections: config.proxy.httpMaxConnections,
      bodyPace: {
        idleMs: idleTimeoutMs,
        minBytes: options.bodyRate?.minBytes ?? DEFAULT_MIN_BODY_BYTES,
        windowMs: options.bodyRate?.windowMs ?? DEFAULT_BODY_WINDOW_MS,
      },
    },
    credentialHeaders: config.credentialHeaders,
    onRequestDone: (o) => {
      metrics.observeRequest(o)
    },
    metrics: async () => ({ contentType: registry.contentType, body: await registry.metrics() }),
    ready: async () => drain.problem() ?? (await readiness(upstream, config.cacheDir, outage)),
    readyDetails: () => ({ outage: outage.status() }),
    ...(tls === undefined ? {} : { tls }),
    trustedProxies: new TrustedProxies(config.proxy.trustedProxies),
    register: async (app) => {
      await app.register(webhookPlugin, {
        prefix: REST_PREFIX,
        secret: config.webhookSecret,
        invalidation,
        budget,
        upstreamBasePath: upstreamUrl.pathname,
        pathPrefix: config.upstream.pathPrefix,
        log: log.child({ component: 'webhook' }),
      })
      // --- REST API (src/rest/) ---
      await app.register(restPlugin, {
        prefix: REST_PREFIX,
        settings,
        store,
        disk,
        config,
        persistence,
        outage: () => outage.status(),
        log: log.child({ component: 'rest' }),
        split,
      })
      // --- end REST API ---
    },
  })
  app.addHook('onClose', async () => {
    disk.stop()
    clearInterval(sweeper)
    await store.close()
    await lastGood.close()
    await upstream.close()
    await embedded?.close()
  })

  try {
    await app.listen({ host: config.proxy.httpHost, port: config.proxy.httpPort })
  } catch (err) {
    await app.close()
    throw err
  }
  // --- SSH front (src/front/ssh.ts), started when upstream.ssh.url is set ---
  let sshFront: SshFront | null = null
  if (config.upstream.sshUrl !== null) {
    const sshLog = log.child({ component: 'ssh' })
    try {
      // Loaded only when SSH is configured: ssh2 costs ~5 MB of memory.
      const [{ startSshFront }, { loadHostKey }, { SshUpstream }, { SshGit }] = await Promise.all([
        import('./front/ssh.js'),
        import('./front/ssh-host-key.js'),
        import('./upstream/ssh.js'),
        import('./upstream/ssh-git.js'),
      ])
      sshFront = await startSshFront({
        host: config.proxy.sshHost,
        port: config.proxy.sshPort,
        hostKey: await loadHostKey(config.proxy.sshHostKey, config.cacheDir, sshLog),
        authorizedKeysFile: config.proxy.sshAuthorizedKeys,
        pathPrefix: config.upstream.pathPrefix,
        allowPush: config.proxy.sshAllowPush,
        // Its own reachability (the SSH upstream is another service); the same last good copies.
        outage: new Outage({
          enabled: config.cache.outageEnabled,
          outageTtlMs: config.authOutageTtl * 1000,
          lastGood,
          now,
          upstreamName: `${config.upstream.sshUrl.protocol}//${config.upstream.sshUrl.host}`,
          log: log.child({ component: 'outage', front: 'SSH' }),
        }),
        upstream: new SshGit(
          new SshUpstream({
            url: config.upstream.sshUrl,
            keyFile: config.upstream.sshKey,
            knownHostsFile: config.upstream.sshKnownHosts,
            connectTimeoutMs: config.upstream.connectTimeout * 1000,
            log: log.child({ component: 'ssh-upstream' }),
          }),
        ),
        uploadPack,
        refs,
        invalidation,
        access,
        idleTimeoutMs,
        maxConnections: config.proxy.httpMaxConnections,
        log: sshLog,
        onRequestDone: (o) => {
          metrics.observeRequest(o)
        },
      })
    } catch (err) {
      await app.close()
      throw err
    }
  }
  // --- end SSH front ---

  const addr = app.server.address() as AddressInfo // listening on TCP: address() is an AddressInfo
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address
  return {
    url: `${tls === undefined ? 'http' : 'https'}://${host}:${addr.port}`,
    upstreamUrl: upstreamUrl.toString().replace(/\/$/, ''),
    demoRepo,
    app,
    store,
    settings,
    disk,
    sshUrl: sshFront?.url ?? null,
    requestsInFlight: () => gitRequestsInFlight() + (sshFront?.inFlight() ?? 0),
    beginDrain: () => {
      drain.begin()
    },
    reloadTls: async () => {
      if (tlsFiles === null) return false
      await reloadTls(app.server, tlsFiles)
      return true
    },
    close: async () => {
      await sshFront?.close()
      await app.close()
    },
  }
}

/** `GET /readyz`: the upstream answers and the cache directory is writable. */
async function readiness(upstream: HttpUpstream, cacheDir: string, outage: Outage): Promise<string | null> {
  if (!(await upstream.ping())) {
    const why = `upstream ${upstream.baseUrl.origin} is not reachable`
    // Outage mode (DESIGN §3.10): a node that answers from its cache stays ready.
    if (!outage.enabled) return why
    outage.down(why)
  }
  try {
    await access(cacheDir, constants.W_OK)
  } catch {
    return `cache directory ${cacheDir} is not writable`
  }
  return null
}
