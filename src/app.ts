/**
 * buildApp: the fastify instance with every route, and no listen. The
 * caller (src/proxy.ts) owns listening and shutdown.
 */
import { createServer, type RequestListener } from 'node:http'
import type { Socket } from 'node:net'
import type { SecureContextOptions } from 'node:tls'
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import type { Log } from './logger.js'
import type { BodyPace } from './front/body-guard.js'
import { GitHttpFront, type GitHttpOptions } from './front/http.js'
import type { HttpGitService } from './service/http-git.js'
import type { TrustedProxies } from './front/forwarded.js'
import { createTlsServer } from './front/tls.js'

export interface AppDeps {
  log: Log
  /** What answers Git requests. */
  git: HttpGitService
  /** Connection limits of the HTTP front (DESIGN §3.9). */
  limits: {
    /** A connection with no request, or no bytes of its request, for this long is closed. */
    idleTimeoutMs: number
    maxConnections: number
    bodyPace: BodyPace
  }
  /** `auth.credential-headers`. */
  credentialHeaders: readonly string[]
  onRequestDone?: GitHttpOptions['onRequestDone']
  /** Prometheus text for `GET /metrics`. */
  metrics?: () => Promise<{ contentType: string; body: string }>
  /** `GET /readyz`: null when ready, else why not. */
  ready?: () => Promise<string | null>
  /** Extra fields of the `/readyz` body (the upstream outage, DESIGN §3.10). */
  readyDetails?: () => Record<string, unknown>
  /** Extra plugins (REST, metrics) registered before the Git catch-all. */
  register?: (app: FastifyInstance) => Promise<void>
  /** Certificate and key: the HTTP front speaks HTTPS (src/front/tls.ts). */
  tls?: SecureContextOptions
  trustedProxies?: TrustedProxies
}

/** The app, and the Git front's count of requests in flight (for tests and shutdown). */
export interface BuiltApp {
  app: FastifyInstance
  gitRequestsInFlight: () => number
}

export async function buildApp(deps: AppDeps): Promise<BuiltApp> {
  const loggerInstance: FastifyBaseLogger = deps.log
  const { idleTimeoutMs, maxConnections } = deps.limits
  const git = new GitHttpFront({
    service: deps.git,
    log: deps.log.child({ component: 'http' }),
    credentialHeaders: deps.credentialHeaders,
    bodyPace: deps.limits.bodyPace,
    ...(deps.onRequestDone === undefined ? {} : { onRequestDone: deps.onRequestDone }),
    ...(deps.trustedProxies === undefined ? {} : { trustedProxies: deps.trustedProxies }),
  })
  const app = Fastify({
    loggerInstance,
    // Git requests go straight to the Git front; fastify gets the rest
    // (REST API, health, metrics). Under /rest/ fastify routes first, and
    // its catch-all below hands over a Git path no REST route took.
    serverFactory: (handler) => {
      const listener: RequestListener = (req, res) => {
        // A request is under way: its own deadlines apply (below, and front/body-guard.ts).
        req.socket.setTimeout(0)
        if (req.url?.startsWith('/rest/') === true || !git.take(req, res)) handler(req, res)
      }
      // How often Node enforces the header deadline below.
      const connectionsCheckingInterval = Math.max(100, Math.min(30_000, Math.floor(idleTimeoutMs / 4)))
      const server =
        deps.tls === undefined
          ? createServer({ connectionsCheckingInterval }, listener)
          : createTlsServer(deps.tls, listener, { connectionsCheckingInterval, firstByteTimeoutMs: idleTimeoutMs })
      // A connection that sends nothing at all is not covered by Node's
      // header deadline: it gets the idle timeout until its first request
      // (on a TLS front, once its handshake is done).
      server.on(deps.tls === undefined ? 'connection' : 'secureConnection', (socket: Socket) => {
        socket.setTimeout(idleTimeoutMs)
        socket.once('timeout', () => {
          socket.destroy()
        })
      })
      // DESIGN §3.9. Idle means waiting for the client: for its next request
      // (keep-alive), for the rest of its headers (a connection that sends
      // nothing included), or for its body (front/body-guard.ts). A response
      // in progress has no deadline: a clone may take long, and upload-pack
      // may think for minutes before its first byte.
      server.requestTimeout = 0
      server.headersTimeout = idleTimeoutMs
      server.keepAliveTimeout = idleTimeoutMs
      server.setTimeout(0)
      // Beyond it, new connections are closed at once.
      server.maxConnections = maxConnections
      return server
    },
    // The Git front logs one line per Git request itself (DESIGN §9).
    logController: new LogController({ disableRequestLogging: true }),
    // No child logger per request: its request id is not worth what it
    // costs (a third of a cached poll's CPU, measured), and our lines carry
    // the repository instead.
    childLoggerFactory: (logger) => logger,
    // Clones and pushes may take a long time: no request or connection deadline
    // (set on the server above too).
    requestTimeout: 0,
    connectionTimeout: 0,
    keepAliveTimeout: idleTimeoutMs,
    forceCloseConnections: 'idle',
    return503OnClosing: true,
    routerOptions: { maxParamLength: 1024 },
    // A URL fastify itself cannot route (bad percent-encoding): 400 in the
    // shape of the area it was meant for.
    frameworkErrors: (error, request, reply) => {
      const message = error.message.replace(/^FST_\w+: /, '')
      const rest = request.url.startsWith('/rest/')
      reply.hijack()
      reply.raw
        .writeHead(400, { 'content-type': rest ? 'application/json; charset=utf-8' : 'text/plain; charset=utf-8' })
        .end(rest ? JSON.stringify({ errors: [{ message }] }) : `${message}\n`)
    },
  })

  app.get('/healthz', async () => ({ status: 'ok' }))
  app.get('/readyz', async (_req, reply) => {
    const problem = (await deps.ready?.()) ?? null
    const details = deps.readyDetails?.() ?? {}
    if (problem === null) return { status: 'ready', ...details }
    return reply.code(503).send({ status: 'not ready', reason: problem, ...details })
  })
  const metrics = deps.metrics
  if (metrics !== undefined) {
    app.get('/metrics', async (_req, reply) => {
      const m = await metrics()
      return reply.type(m.contentType).send(m.body)
    })
  }

  if (deps.register !== undefined) await deps.register(app)

  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', (_req, _payload, done) => {
    done(null, undefined)
  })
  app.route({
    method: ['GET', 'HEAD', 'POST', 'PUT'],
    url: '/*',
    handler: async (request, reply) => {
      reply.hijack()
      if (git.take(request.raw, reply.raw)) return
      request.raw.resume()
      reply.raw.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not a Git repository path\n')
    },
  })
  app.addHook('preClose', async () => {
    git.close()
  })
  return { app, gitRequestsInFlight: () => git.inFlight }
}
