/**
 * buildApp: the fastify instance with every route, and no listen. The
 * caller (src/proxy.ts) owns listening and shutdown.
 */
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import type { Log } from './logger.js'
import { gitHttpPlugin, type GitRouteHandler } from './front/http.js'
import type { HttpUpstream } from './upstream/http.js'

export interface AppDeps {
  log: Log
  upstream: HttpUpstream
  handlers?: GitRouteHandler
  /** Extra plugins (REST, metrics) registered before the Git catch-all. */
  register?: (app: FastifyInstance) => Promise<void>
}

export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const loggerInstance: FastifyBaseLogger = deps.log
  const app = Fastify({
    loggerInstance,
    // The Git front logs one line per Git request itself (DESIGN §9).
    logController: new LogController({ disableRequestLogging: true }),
    // Clones and pushes may take a long time: no request or connection deadline.
    requestTimeout: 0,
    connectionTimeout: 0,
    keepAliveTimeout: 65_000,
    forceCloseConnections: 'idle',
    return503OnClosing: true,
    routerOptions: { maxParamLength: 1024 },
  })

  app.get('/healthz', async () => ({ status: 'ok' }))

  if (deps.register !== undefined) await deps.register(app)

  await app.register(gitHttpPlugin, {
    upstream: deps.upstream,
    log: deps.log.child({ component: 'http' }),
    ...(deps.handlers === undefined ? {} : { handlers: deps.handlers }),
  })
  return app
}
