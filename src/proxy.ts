/**
 * Assemble and start a proxy from a validated Config: the upstream (the
 * configured one, or the embedded `git http-backend`), the cache, the HTTP
 * front. Used by src/server.ts and by the tests, so both run the same code.
 */
import path from 'node:path'
import type { AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'
import { buildApp } from './app.js'
import type { Config } from './config/load.js'
import type { Log } from './logger.js'
import { ensureDemoRepository, startEmbeddedUpstream, type EmbeddedUpstream } from './upstream/embedded.js'
import { HttpUpstream } from './upstream/http.js'

export interface RunningProxy {
  /** `http://host:port` the HTTP front listens on. */
  readonly url: string
  readonly upstreamUrl: string
  /** Set when the embedded upstream runs: the demo repository's path. */
  readonly demoRepo: string | null
  readonly app: FastifyInstance
  close(): Promise<void>
}

/** Where the embedded upstream keeps its repositories: `repos` beside `cache.dir`. */
export function embeddedRepoRoot(config: Config): string {
  return path.join(path.dirname(config.cacheDir), 'repos')
}

export async function startProxy(config: Config, log: Log): Promise<RunningProxy> {
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

  const upstream = new HttpUpstream({ baseUrl: upstreamUrl })
  const app = await buildApp({ log, upstream })
  app.addHook('onClose', async () => {
    await upstream.close()
    await embedded?.close()
  })

  try {
    await app.listen({ host: config.proxy.httpHost, port: config.proxy.httpPort })
  } catch (err) {
    await app.close()
    throw err
  }
  const addr = app.server.address() as AddressInfo // listening on TCP: address() is an AddressInfo
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address
  return {
    url: `http://${host}:${addr.port}`,
    upstreamUrl: upstreamUrl.toString().replace(/\/$/, ''),
    demoRepo,
    app,
    close: async () => {
      await app.close()
    },
  }
}
