/**
 * The admin REST API (DESIGN §6), registered by src/proxy.ts with the prefix
 * `/rest/scm-cache/latest`. Encapsulated on purpose (no fastify-plugin):
 * its credentials check, error shape, body handling and catch-all 404 stay
 * inside it, and the webhook route beside it keeps its own rules.
 *
 * - Access: HTTP Basic against `rest.auth.username`/`rest.auth.password`;
 *   with none configured, loopback clients only (warned once at start-up).
 *   `openapi.json` sits behind the same check.
 * - Every answer that is not a success is `{"errors":[{"message":"..."}]}`;
 *   no stack trace ever leaves the process.
 * - No endpoint takes a body: bodies (up to 64 KiB, any content type) are
 *   read and ignored, so `curl -X PUT -H 'Content-Type: application/json'`
 *   without a body works as it does against Bitbucket.
 * - The schemas beside each route validate its input, serialize its output
 *   and make `openapi.json` (@fastify/swagger).
 */
import swagger from '@fastify/swagger'
import type { JsonSchemaToTsProvider } from '@fastify/type-provider-json-schema-to-ts'
import type { FastifyPluginAsync, FastifyRequest } from 'fastify'
import type { DiskGuard } from '../cache/disk-guard.js'
import type { CacheStoreApi } from '../cache/store-api.js'
import type { Config } from '../config/load.js'
import { ProxyError } from '../errors.js'
import type { Log } from '../logger.js'
import type { Settings, SettingsPersistence } from '../settings.js'
import { WWW_AUTHENTICATE, authorize } from './auth.js'
import { errorBody, notFound } from './errors.js'
import { OverrideWriter } from './overrides.js'
import { refusedMessage } from './params.js'
import { registerCachesRoutes } from './routes/caches.js'
import type { OutageStatus } from '../service/outage.js'
import type { UploadPackSplit } from '../cache/upload-pack-split.js'
import { registerConfigRoutes } from './routes/config.js'

export interface RestOptions {
  settings: Settings
  store: CacheStoreApi
  disk: DiskGuard
  config: Config
  persistence: SettingsPersistence
  log: Log
  /** The upstream outage state (DESIGN §3.10), shown in /caches. */
  outage?: () => OutageStatus
  /** The clone/fetch split of upload-pack answers (GET /caches). */
  split?: UploadPackSplit
}

const MAX_IGNORED_BODY = 64 * 1024
const ANY_METHOD = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'] as const

export const restPlugin: FastifyPluginAsync<RestOptions> = async (fastify, opts) => {
  const app = fastify.withTypeProvider<JsonSchemaToTsProvider>()
  const { log, config } = opts
  if (config.restAuth === null) {
    log.warn(
      { prefix: app.prefix },
      'REST API: rest.auth.username and rest.auth.password are unset: only loopback clients are answered',
    )
  }

  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: MAX_IGNORED_BODY }, (_request, _body, done) => {
    done(null, undefined)
  })

  const callers = new WeakMap<FastifyRequest, string>()
  const callerOf = (request: FastifyRequest): string => callers.get(request) ?? 'unknown'

  app.addHook('onRequest', async (request, reply) => {
    const verdict = authorize(config.restAuth, request.headers.authorization, request.raw.socket.remoteAddress)
    if (verdict.ok) {
      callers.set(request, verdict.by)
      return
    }
    log.warn({ status: verdict.status, ip: request.ip, method: request.method, url: request.url.slice(0, 200) }, 'REST request refused')
    if (verdict.status === 401) void reply.header('www-authenticate', WWW_AUTHENTICATE)
    return reply.code(verdict.status).send(errorBody(verdict.message))
  })

  app.setErrorHandler(async (error: unknown, request, reply) => {
    const { status, message } = describeError(error, request.params)
    if (status >= 500) log.error({ err: error, method: request.method, url: request.url.slice(0, 200) }, 'REST request failed')
    return reply.code(status).send(errorBody(message))
  })

  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'scm-cache-proxy admin REST API',
        description:
          'Run-time settings and cache figures of scm-cache-proxy, at the paths of Bitbucket SCM Cache. ' +
          'Errors answer {"errors":[{"message":"..."}]}. Under /caches/{projectKey}/{repoSlug} the project key ' +
          'of a nested repository holds its slashes (/caches/group/sub/app).',
        version: '1.0.0',
      },
      servers: [{ url: app.prefix }],
      components: { securitySchemes: { basic: { type: 'http', scheme: 'basic' } } },
      security: [{ basic: [] }],
    },
  })

  const writer = new OverrideWriter({ settings: opts.settings, persistence: opts.persistence, log })
  registerConfigRoutes(app, { settings: opts.settings, writer, callerOf })
  registerCachesRoutes(app, {
    settings: opts.settings,
    store: opts.store,
    disk: opts.disk,
    config,
    log,
    callerOf,
    ...(opts.outage === undefined ? {} : { outage: opts.outage }),
    ...(opts.split === undefined ? {} : { split: opts.split }),
  })

  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger())

  // Anything else under the prefix is this API's 404, in its error shape,
  // rather than the Git front's catch-all. Static routes (the webhook's
  // POST /webhook beside this plugin) still win over this wildcard.
  const unknownPath = async (request: FastifyRequest): Promise<never> => {
    throw notFound(`no such REST resource: ${request.method} ${request.url.slice(0, 200)}`)
  }
  app.route({ method: [...ANY_METHOD], url: '/', schema: { hide: true }, handler: unknownPath })
  app.route({ method: [...ANY_METHOD], url: '/*', schema: { hide: true }, handler: unknownPath })
}

/** The status and caller-safe message of an error thrown while handling a REST request. */
export function describeError(error: unknown, params: unknown): { status: number; message: string } {
  if (error instanceof ProxyError) {
    return error.expose ? { status: error.statusCode, message: error.message } : internal()
  }
  if (!(error instanceof Error)) return internal()
  const validation = validationOf(error)
  if (validation !== null) {
    const first = validation[0]
    const name = first?.name ?? 'request'
    const value = isRecord(params) ? params[name] : undefined
    return { status: 400, message: refusedMessage(name, value) }
  }
  // fastify's own client errors (body too large, bad URL encoding...) carry a safe message.
  const status = 'statusCode' in error && typeof error.statusCode === 'number' ? error.statusCode : 500
  if (status >= 400 && status < 500) return { status, message: error.message }
  return internal()
}

function internal(): { status: number; message: string } {
  return { status: 500, message: 'internal error; see the proxy log' }
}

/** The parameters a schema refused, from fastify's `validation` array; null when `error` is no validation error. */
function validationOf(error: Error): { name: string }[] | null {
  if (!('validation' in error) || !Array.isArray(error.validation)) return null
  const out: { name: string }[] = []
  const items: unknown[] = error.validation // fastify types it any[]: each item is narrowed below
  for (const item of items) {
    if (!isRecord(item)) continue
    const path = typeof item['instancePath'] === 'string' ? item['instancePath'].replace(/^\//, '') : ''
    const missing = isRecord(item['params']) ? item['params']['missingProperty'] : undefined
    out.push({ name: path !== '' ? path : typeof missing === 'string' ? missing : 'request' })
  }
  return out
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null
}
