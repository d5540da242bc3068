/**
 * The webhook endpoint (src/front/webhook.ts `webhookPlugin`) on a fastify
 * app of its own, driven with `inject`: 404 without a secret, 401 before the
 * body is read without a signature header, 401 with a wrong one, 400 for
 * payloads that are not JSON or name no repository, 413 past the payload
 * cap, 503 when the body budget is spent; a signed push drops the named
 * repositories (and those the cache knows under another case). Every body
 * byte taken from the budget is given back whatever the answer.
 */
import { createHmac } from 'node:crypto'
import Fastify, { type FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import { webhookPlugin } from '../../../src/front/webhook.js'
import { BodyBudget } from '../../../src/service/body-budget.js'
import { Invalidation } from '../../../src/service/invalidation.js'
import type { CacheStoreApi } from '../../../src/cache/store-api.js'
import { logSink, type LogRecord } from '../../helpers/log-sink.js'

const SECRET = 'hook-secret'
const PREFIX = '/rest/scm-cache/latest'
const MAX_PAYLOAD = 4 * 1024 * 1024

/** Records what would be dropped; the store behind it is never reached. */
class RecordingInvalidation extends Invalidation {
  readonly dropped: string[] = []
  readonly #known: string[]

  constructor(known: string[]) {
    super(null as unknown as CacheStoreApi) // never used: both methods below are overridden
    this.#known = known
  }

  override repo(repo: string): Promise<number> {
    this.dropped.push(repo)
    return Promise.resolve(2)
  }

  override knownRepos(): string[] {
    return this.#known
  }
}

interface Hook {
  app: FastifyInstance
  invalidation: RecordingInvalidation
  budget: BodyBudget
  records: LogRecord[]
}

async function hook(
  t: Test,
  opts: { secret?: string | null; known?: string[]; budget?: number; pathPrefix?: string; basePath?: string } = {},
): Promise<Hook> {
  const { log, records } = logSink()
  const invalidation = new RecordingInvalidation(opts.known ?? [])
  const budget = new BodyBudget({ limit: opts.budget ?? 64 * 1024 * 1024, waitMs: 30 })
  const app = Fastify()
  await app.register(webhookPlugin, {
    prefix: PREFIX,
    secret: opts.secret === undefined ? SECRET : opts.secret,
    invalidation,
    budget,
    upstreamBasePath: opts.basePath ?? '/',
    pathPrefix: opts.pathPrefix ?? '',
    log,
  })
  await app.ready()
  t.teardown(() => app.close())
  return { app, invalidation, budget, records }
}

const sign = (body: string | Buffer): string => createHmac('sha256', SECRET).update(body).digest('hex')

async function post(h: Hook, body: string | Buffer, headers: Record<string, string>): Promise<{ status: number; json: unknown; headers: Record<string, unknown> }> {
  const res = await h.app.inject({
    method: 'POST',
    url: `${PREFIX}/webhook`,
    headers: { 'content-type': 'application/json', ...headers },
    payload: body,
  })
  return { status: res.statusCode, json: res.body === '' ? null : (JSON.parse(res.body) as unknown), headers: res.headers }
}

const github = (body: string): Record<string, string> => ({ 'x-github-event': 'push', 'x-hub-signature-256': `sha256=${sign(body)}` })
const PUSH = JSON.stringify({ ref: 'refs/heads/main', repository: { full_name: 'team/app' } })

void t.test('signed pushes of each server drop the named repository', async (t) => {
  const cases: { name: string; payload: string; headers: (body: string) => Record<string, string>; contentType?: string; event: string; via: string }[] = [
    { name: 'GitHub', payload: PUSH, headers: github, event: 'push', via: 'github' },
    {
      name: 'Bitbucket Server',
      payload: JSON.stringify({ repository: { slug: 'app', project: { key: 'team' } } }),
      headers: (b) => ({ 'x-event-key': 'repo:refs_changed', 'x-hub-signature': `sha256=${sign(b)}` }),
      event: 'repo:refs_changed',
      via: 'bitbucket',
    },
    {
      name: 'GitLab',
      payload: JSON.stringify({ project: { path_with_namespace: 'team/app' } }),
      headers: () => ({ 'x-gitlab-event': 'Push Hook', 'x-gitlab-token': SECRET }),
      event: 'Push Hook',
      via: 'gitlab',
    },
    { name: 'Gitea', payload: PUSH, headers: (b) => ({ 'x-gitea-event': 'push', 'x-gitea-signature': sign(b) }), event: 'push', via: 'gitea' },
    { name: 'Forgejo', payload: PUSH, headers: (b) => ({ 'x-forgejo-event': 'push', 'x-forgejo-signature': sign(b) }), event: 'push', via: 'forgejo' },
    {
      name: 'a form-encoded payload (GitHub, Gitea)',
      payload: new URLSearchParams({ payload: PUSH }).toString(),
      headers: github,
      contentType: 'application/x-www-form-urlencoded',
      event: 'push',
      via: 'github',
    },
  ]
  for (const c of cases) {
    const h = await hook(t)
    const res = await post(h, c.payload, { ...c.headers(c.payload), ...(c.contentType === undefined ? {} : { 'content-type': c.contentType }) })
    t.equal(res.status, 204, `${c.name}: 204`)
    t.same(h.invalidation.dropped.sort(), ['team/app', 'team/app.git'], `${c.name}: both spellings dropped`)
    const line = h.records.find((r) => r.msg === 'webhook: repository invalidated')
    t.match(line, { via: c.via, event: c.event, entriesDropped: 4 }, `${c.name}: logged with the scheme, event and entries dropped`)
    t.equal(h.budget.used, 0, `${c.name}: the body's bytes are given back`)
  }
})

void t.test('refusals: nothing dropped, every byte given back', async (t) => {
  const cases: { name: string; body: string; headers: Record<string, string>; contentType?: string; status: number; message: string; closes?: boolean }[] = [
    { name: 'no signature header', body: PUSH, headers: { 'x-github-event': 'push' }, status: 401, message: 'no signature header', closes: true },
    { name: 'an unrelated header only', body: PUSH, headers: { authorization: `Bearer ${SECRET}` }, status: 401, message: 'no signature header', closes: true },
    { name: 'a wrong GitHub signature', body: PUSH, headers: { 'x-hub-signature-256': `sha256=${'0'.repeat(64)}` }, status: 401, message: 'bad github signature' },
    { name: 'a signature of other bytes', body: PUSH, headers: { 'x-gitea-signature': sign(`${PUSH} `) }, status: 401, message: 'bad gitea signature' },
    { name: 'a wrong GitLab token', body: PUSH, headers: { 'x-gitlab-token': 'guess' }, status: 401, message: 'bad gitlab signature' },
    { name: 'signed, not JSON', body: 'ref=main', headers: github('ref=main'), status: 400, message: 'payload is not JSON' },
    { name: 'signed, JSON cut short', body: PUSH.slice(0, -1), headers: github(PUSH.slice(0, -1)), status: 400, message: 'payload is not JSON' },
    { name: 'signed, empty', body: '', headers: github(''), status: 400, message: 'payload is not JSON' },
    {
      name: 'signed form without a payload field',
      body: 'other=1',
      headers: github('other=1'),
      contentType: 'application/x-www-form-urlencoded',
      status: 400,
      message: 'payload is not JSON',
    },
    { name: 'signed, names no repository', body: '{"zen":"hi"}', headers: github('{"zen":"hi"}'), status: 400, message: 'the payload names no repository' },
    {
      name: 'signed, names only invalid paths',
      body: '{"repository":{"full_name":"../etc"}}',
      headers: github('{"repository":{"full_name":"../etc"}}'),
      status: 400,
      message: 'the payload names no repository',
    },
    { name: 'signed JSON that is not an object', body: '[1,2]', headers: github('[1,2]'), status: 400, message: 'the payload names no repository' },
  ]
  for (const c of cases) {
    const h = await hook(t)
    const res = await post(h, c.body, { ...c.headers, ...(c.contentType === undefined ? {} : { 'content-type': c.contentType }) })
    t.equal(res.status, c.status, `${c.name}: ${c.status}`)
    t.same(res.json, { errors: [{ message: c.message }] }, `${c.name}: the reason`)
    if (c.closes === true) t.equal(res.headers['connection'], 'close', `${c.name}: the unread body's connection is closed`)
    t.same(h.invalidation.dropped, [], `${c.name}: nothing dropped`)
    t.equal(h.budget.used, 0, `${c.name}: nothing held`)
    if (c.status === 401) t.ok(h.records.some((r) => r.msg === 'webhook refused' && r['reason'] === c.message), `${c.name}: logged`)
  }
})

void t.test('no webhook.secret: the endpoint does not exist (404), signed or not', async (t) => {
  for (const headers of [{}, github(PUSH), { 'x-gitlab-token': SECRET }]) {
    const h = await hook(t, { secret: null })
    const res = await post(h, PUSH, headers)
    t.equal(res.status, 404, JSON.stringify(Object.keys(headers)))
    t.same(res.json, { errors: [{ message: 'webhooks are not configured (webhook.secret is unset)' }] })
    t.same(h.invalidation.dropped, [])
  }
})

void t.test('known repositories under another case are dropped too (Bitbucket lower-cases project keys)', async (t) => {
  const cases: { name: string; known: string[]; want: string[] }[] = [
    { name: 'another case', known: ['Team/App.git', 'other/app.git'], want: ['Team/App.git', 'team/app', 'team/app.git'] },
    { name: 'the same name is not added twice', known: ['team/app.git'], want: ['team/app', 'team/app.git'] },
    { name: 'nothing known', known: [], want: ['team/app', 'team/app.git'] },
    { name: 'a longer name is not a match', known: ['team/app-2.git', 'xteam/app.git'], want: ['team/app', 'team/app.git'] },
  ]
  for (const c of cases) {
    const h = await hook(t, { known: c.known })
    t.equal((await post(h, PUSH, github(PUSH))).status, 204, c.name)
    t.same(h.invalidation.dropped.sort(), c.want.sort(), c.name)
  }
})

void t.test('payload size: up to 4 MiB read, past it 413 and nothing dropped', async (t) => {
  const padded = (size: number): string => {
    const head = '{"repository":{"full_name":"team/app"},"pad":"'
    return `${head}${'x'.repeat(size - head.length - 2)}"}`
  }
  const cases: { name: string; size: number; status: number }[] = [
    { name: 'exactly the cap', size: MAX_PAYLOAD, status: 204 },
    { name: 'one byte over', size: MAX_PAYLOAD + 1, status: 413 },
    { name: 'far over', size: 3 * MAX_PAYLOAD, status: 413 },
  ]
  for (const c of cases) {
    const h = await hook(t)
    const body = padded(c.size)
    t.equal(Buffer.byteLength(body), c.size)
    const res = await post(h, body, github(body))
    t.equal(res.status, c.status, `${c.name}: ${c.status}`)
    if (c.status === 413) t.match(res.json, { code: 'ERR_PROTOCOL_TOO_LARGE' }, `${c.name}: the code`)
    t.same(h.invalidation.dropped.length, c.status === 204 ? 2 : 0, `${c.name}: dropped only when read`)
    t.equal(h.budget.used, 0, `${c.name}: every byte taken is given back`)
  }
})

void t.test('the body budget spent: 503, and what was taken comes back', async (t) => {
  const h = await hook(t, { budget: 10 })
  const res = await post(h, PUSH, github(PUSH))
  t.equal(res.status, 503)
  t.match(res.json, { code: 'ERR_CACHE_BUSY' })
  t.same(h.invalidation.dropped, [])
  t.equal(h.budget.used, 0)
})

void t.test('the upstream base path and path prefix shape the names tried', async (t) => {
  const body = JSON.stringify({ repository: { full_name: 'PROJ/app', clone_url: 'https://git.example/git/proj/app.git' } })
  const h = await hook(t, { basePath: '/git/', pathPrefix: 'scm' })
  t.equal((await post(h, body, github(body))).status, 204)
  t.same(h.invalidation.dropped.sort(), ['PROJ/app', 'PROJ/app.git', 'proj/app', 'proj/app.git', 'scm/PROJ/app', 'scm/PROJ/app.git'])
})
