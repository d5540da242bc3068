/**
 * `POST /rest/scm-cache/latest/webhook` (DESIGN §8): push notifications from
 * the hosting server drop the repository's cache entries at once.
 *
 * Authentication, checked over the exact bytes received before anything
 * is parsed, by the first of these headers present:
 *   X-Forgejo-Signature / X-Gitea-Signature  hex HMAC-SHA256 of the body
 *   X-Hub-Signature-256                      `sha256=<hex>` (GitHub)
 *   X-Hub-Signature                          `sha256=<hex>` (Bitbucket Server)
 *   X-Gitlab-Token                           the secret itself (GitLab)
 * A missing or wrong one is 401 and changes nothing. With no
 * `webhook.secret` configured the endpoint does not exist (404). A request
 * that carries none of these headers is refused before its body is read;
 * the body of the others is read (at most MAX_PAYLOAD bytes) within the
 * proxy's body-memory budget (DESIGN §3.9), since the signature is over it.
 *
 * Any authenticated notification that names a repository invalidates it:
 * an unneeded invalidation costs one refill, a missed one serves stale refs.
 */
import { createHmac, timingSafeEqual } from 'node:crypto'
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import type { Log } from '../logger.js'
import type { Invalidation } from '../service/invalidation.js'
import { ProxyError } from '../errors.js'
import { BodyLease, type BodyBudget } from '../service/body-budget.js'
import { toRepoPath, type RepoPath } from '../repository.js'

export interface WebhookOptions {
  secret: string | null
  invalidation: Invalidation
  /** Request bodies held in memory share it (DESIGN §3.9). */
  budget: BodyBudget
  /** Path of the upstream's base URL (`/` or `/git/`), stripped from clone URLs. */
  upstreamBasePath: string
  /** `upstream.http.path-prefix`, tried in front of full names (`scm` + `PROJ/app`). */
  pathPrefix: string
  log: Log
}

/** Push payloads are tens of KB (GitHub, GitLab and Gitea list at most 20 commits). */
const MAX_PAYLOAD = 4 * 1024 * 1024

const SIGNATURE_HEADERS = ['x-forgejo-signature', 'x-gitea-signature', 'x-hub-signature-256', 'x-hub-signature', 'x-gitlab-token']

export const webhookPlugin: FastifyPluginAsync<WebhookOptions> = async (app, opts) => {
  const leases = new WeakMap<object, BodyLease>()
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', (request, payload, done) => {
    const lease = new BodyLease(opts.budget)
    leases.set(request.raw, lease)
    readPayload(payload, lease).then(
      (body) => {
        done(null, body)
      },
      (err: unknown) => {
        done(err instanceof Error ? err : new Error(String(err)), undefined)
      },
    )
  })
  // Before the body is read: no endpoint, or no signature at all.
  app.addHook('onRequest', async (request, reply) => {
    if (opts.secret === null) return sendError(reply, 404, 'webhooks are not configured (webhook.secret is unset)')
    if (!SIGNATURE_HEADERS.some((name) => request.headers[name] !== undefined)) {
      opts.log.warn({ reason: 'no signature header', ip: request.ip }, 'webhook refused')
      return sendError(reply.header('connection', 'close'), 401, 'no signature header')
    }
    return undefined
  })
  app.addHook('onResponse', async (request) => {
    leases.get(request.raw)?.release()
  })
  app.addHook('onRequestAbort', async (request) => {
    leases.get(request.raw)?.release()
  })

  app.post('/webhook', async (request: FastifyRequest, reply: FastifyReply) => {
    if (opts.secret === null) return sendError(reply, 404, 'webhooks are not configured (webhook.secret is unset)')
    const body = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0)
    const auth = verify(request, body, opts.secret)
    if (!auth.ok) {
      opts.log.warn({ reason: auth.reason, ip: request.ip }, 'webhook refused')
      return sendError(reply, 401, auth.reason)
    }
    let payload: unknown
    try {
      payload = parsePayload(body, request.headers['content-type'] ?? '')
    } catch {
      return sendError(reply, 400, 'payload is not JSON')
    }
    const candidates = repositoryCandidates(payload, opts.upstreamBasePath, opts.pathPrefix)
    if (candidates.length === 0) return sendError(reply, 400, 'the payload names no repository')

    // Exact names, plus any repository the cache knows under another case
    // (Bitbucket's clone URLs lower-case the project key).
    const known = opts.invalidation.knownRepos()
    const targets = new Set<string>(candidates)
    for (const repo of known) {
      if (candidates.some((c) => c.toLowerCase() === repo.toLowerCase())) targets.add(repo)
    }
    let dropped = 0
    for (const repo of targets) dropped += await opts.invalidation.repo(repo)
    opts.log.info(
      { via: auth.scheme, event: eventName(request), repos: [...targets].slice(0, 10), entriesDropped: dropped },
      'webhook: repository invalidated',
    )
    return reply.code(204).send()
  })
}

/** The whole payload, each chunk taken from the body budget; at most MAX_PAYLOAD bytes. */
async function readPayload(payload: AsyncIterable<unknown>, lease: BodyLease): Promise<Buffer> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of payload) {
    const buf = chunk as Buffer // request streams without an encoding yield Buffers
    size += buf.length
    if (size > MAX_PAYLOAD) {
      throw new ProxyError('ERR_PROTOCOL_TOO_LARGE', `webhook payload larger than ${MAX_PAYLOAD} bytes`, {})
    }
    await lease.take(buf.length)
    chunks.push(buf)
  }
  return Buffer.concat(chunks)
}

function sendError(reply: FastifyReply, status: number, message: string): FastifyReply {
  return reply.code(status).send({ errors: [{ message }] })
}

type Verdict = { ok: true; scheme: string } | { ok: false; reason: string }

export function verify(request: Pick<FastifyRequest, 'headers'>, body: Buffer, secret: string): Verdict {
  const h = (name: string): string | undefined => {
    const v = request.headers[name]
    return Array.isArray(v) ? v[0] : v
  }
  const hex = createHmac('sha256', secret).update(body).digest('hex')
  const checks: [string, string | undefined, (v: string) => boolean][] = [
    ['forgejo', h('x-forgejo-signature'), (v) => safeEqual(v.toLowerCase(), hex)],
    ['gitea', h('x-gitea-signature'), (v) => safeEqual(v.toLowerCase(), hex)],
    ['github', h('x-hub-signature-256'), (v) => safeEqual(v.toLowerCase(), `sha256=${hex}`)],
    ['bitbucket', h('x-hub-signature'), (v) => safeEqual(v.toLowerCase(), `sha256=${hex}`)],
    ['gitlab', h('x-gitlab-token'), (v) => safeEqual(v, secret)],
  ]
  for (const [scheme, value, check] of checks) {
    if (value === undefined) continue
    return check(value.trim()) ? { ok: true, scheme } : { ok: false, reason: `bad ${scheme} signature` }
  }
  return { ok: false, reason: 'no signature header' }
}

function safeEqual(a: string, b: string): boolean {
  // Compare digests so that lengths never leak and never throw.
  const da = createHmac('sha256', 'cmp').update(a).digest()
  const db = createHmac('sha256', 'cmp').update(b).digest()
  return timingSafeEqual(da, db)
}

function parsePayload(body: Buffer, contentType: string): unknown {
  const text = body.toString('utf8')
  if (contentType.startsWith('application/x-www-form-urlencoded')) {
    // GitHub and Gitea can post `payload=<json>` forms.
    return JSON.parse(new URLSearchParams(text).get('payload') ?? '')
  }
  return JSON.parse(text)
}

function eventName(request: FastifyRequest): string | undefined {
  for (const name of ['x-event-key', 'x-github-event', 'x-gitlab-event', 'x-gitea-event', 'x-forgejo-event']) {
    const v = request.headers[name]
    if (typeof v === 'string') return v.slice(0, 60)
  }
  return undefined
}

/**
 * Repository paths a payload may name: its clone URLs (relative to the
 * upstream's base path) and its full name (`owner/name` → `owner/name.git`),
 * across GitHub, GitLab, Gitea/Forgejo and Bitbucket Server shapes.
 */
export function repositoryCandidates(payload: unknown, upstreamBasePath: string, pathPrefix: string): RepoPath[] {
  const urls: string[] = []
  const names: string[] = []
  const repo = field(payload, 'repository')
  const project = field(payload, 'project')
  for (const holder of [repo, project]) {
    for (const key of ['clone_url', 'git_http_url', 'http_url']) {
      const v = field(holder, key)
      if (typeof v === 'string') urls.push(v)
    }
    for (const key of ['full_name', 'path_with_namespace']) {
      const v = field(holder, key)
      if (typeof v === 'string') names.push(v)
    }
  }
  // Bitbucket Server: repository.links.clone[].href, and project.key/slug.
  const clones = field(field(repo, 'links'), 'clone')
  if (Array.isArray(clones)) {
    for (const c of clones) {
      const href = field(c, 'href')
      if (typeof href === 'string' && /^https?:/.test(href)) urls.push(href)
    }
  }
  const slug = field(repo, 'slug')
  const key = field(field(repo, 'project'), 'key')
  if (typeof slug === 'string' && typeof key === 'string') names.push(`${key}/${slug}`)

  const base = `/${upstreamBasePath.replace(/^\/+|\/+$/g, '')}/`.replace('//', '/')
  const prefix = pathPrefix.replace(/^\/+|\/+$/g, '')
  const paths: string[] = []
  for (const u of urls) {
    let p: string
    try {
      p = decodeURIComponent(new URL(u).pathname)
    } catch {
      continue
    }
    paths.push(p.startsWith(base) ? p.slice(base.length) : p)
  }
  for (const n of names) {
    paths.push(n)
    if (prefix !== '') paths.push(`${prefix}/${n}`)
  }
  const out = new Set<RepoPath>()
  for (const p of paths) {
    const bare = p.replace(/^\/+/, '').replace(/\.git$/, '')
    for (const candidate of [`${bare}.git`, bare]) {
      try {
        out.add(toRepoPath(candidate))
      } catch {
        // Not a valid repository path: not a candidate.
      }
    }
  }
  return [...out]
}

function field(obj: unknown, key: string): unknown {
  if (typeof obj !== 'object' || obj === null) return undefined
  return (obj as Record<string, unknown>)[key] // a JSON object: any key may be read
}
