/**
 * The embedded upstream's Git LFS server: `<repo>.git/info/lfs/...` as
 * git-lfs finds it from the remote URL (git-lfs `docs/api/server-discovery.md`).
 *
 * - `POST objects/batch`: the batch API (`batch.md`), operations `download`
 *   and `upload`, transfer `basic`. Per-object errors: 404 for an unknown
 *   object on download, 422 when the size disagrees with the stored object.
 * - `GET|PUT objects/<oid>`: the basic transfer (`basic-transfers.md`).
 *   Objects live in the repository, `<repo>.git/lfs/objects/ab/cd/<oid>`;
 *   an upload is streamed to a temporary file, checked against its oid and
 *   size, and renamed into place.
 * - `POST objects/<oid>/verify`: the verify action.
 * - `locks`, `locks/verify`, `locks/<id>/unlock`: the locks API (`locking.md`).
 *
 * Authentication is split as on hosted servers. The batch and locks
 * endpoints take the repository's own credential (Basic, when the repository
 * has one). The object hrefs take none of it: each action carries its own
 * header, `Authorization: RemoteAuth <token>`, an HMAC over (action,
 * repository, oid, size, expiry) with a key made at start-up, so whoever holds
 * an href without its header gets a 401.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { createReadStream, createWriteStream } from 'node:fs'
import { mkdir, rename, rm, stat, writeFile } from 'node:fs/promises'
import type http from 'node:http'
import path from 'node:path'
import { Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { ProtocolError, ProxyError } from '../errors.js'
import {
  LFS_ERR_INVALID,
  LFS_ERR_JSON,
  LFS_ERR_TOO_LARGE,
  LFS_MEDIA_TYPE,
  parseBatchRequest,
  type BatchRequest,
  type LfsObjectSpec,
  type LfsOid,
  type LfsOperation,
} from '../protocol/lfs-batch.js'
import { LfsLocks } from './embedded-lfs-locks.js'

/** A test fault on an object download: flip the first byte, or cut the body in the middle. */
export type LfsFault = 'corrupt' | 'truncate'

/** What an LFS request was, for the upstream's request log. */
export interface LfsRequestNote {
  endpoint: 'batch' | 'download' | 'upload' | 'verify' | 'locks' | 'unknown'
  /** The batch operation. */
  operation?: LfsOperation
  /** The object of a transfer or verify call. */
  oid?: string
  /** Objects in a batch request. */
  objects?: number
}

export interface EmbeddedLfsOptions {
  /** The embedded upstream's repository root. */
  root: string
  /** Origin of the hrefs in batch answers (`http://host:port`); default: the request's Host. */
  publicUrl?: string
  /** Seconds an action's href and header stay valid (`expires_in`). Default 3600. */
  tokenTtl?: number
  /** Test hook: a fault to serve for an object download, or null. */
  fault?: (repo: string, oid: string) => LfsFault | null
  now?: () => number
}

export interface LfsRequestContext {
  /** The repository's path under the root, `demo.git`. */
  repo: string
  /** The path after `info/lfs/`. */
  path: string
  /** False when the repository takes a credential and the request had no valid one. */
  authorized: boolean
  /** The authenticated user, or null for anonymous access. */
  user: string | null
  /** Origin of the connection's local address, used when the Host header is unusable. */
  localOrigin: string
  note: (n: LfsRequestNote) => void
  countRequest: (chunk: Buffer) => void
  countResponse: (n: number) => void
}

type TokenAction = 'download' | 'upload' | 'verify'

const JSON_LIMIT = 1024 * 1024
const AUTH_SCHEME = 'RemoteAuth'
const BASIC_REALM = 'Basic realm="Git LFS", charset="UTF-8"'
const HOST = /^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/

export class EmbeddedLfs {
  readonly #root: string
  readonly #publicUrl: string | null
  readonly #ttl: number
  readonly #fault: EmbeddedLfsOptions['fault']
  readonly #now: () => number
  readonly #key = randomBytes(32)
  readonly #locks: LfsLocks

  constructor(opts: EmbeddedLfsOptions) {
    this.#root = opts.root
    this.#publicUrl = opts.publicUrl?.replace(/\/+$/, '') ?? null
    this.#ttl = opts.tokenTtl ?? 3600
    this.#fault = opts.fault
    this.#now = opts.now ?? Date.now
    this.#locks = new LfsLocks(this.#now)
  }

  async handle(req: http.IncomingMessage, res: http.ServerResponse, ctx: LfsRequestContext): Promise<void> {
    try {
      await this.#route(req, res, ctx)
    } catch (err) {
      if (!(err instanceof ProxyError) || !err.expose || res.headersSent) throw err
      req.resume()
      sendJson(res, ctx, err.statusCode, { message: err.message })
    }
  }

  async #route(req: http.IncomingMessage, res: http.ServerResponse, ctx: LfsRequestContext): Promise<void> {
    const method = req.method ?? 'GET'
    const object = /^objects\/([0-9a-f]{64})(\/verify)?$/.exec(ctx.path)
    if (ctx.path === 'objects/batch') {
      ctx.note({ endpoint: 'batch' })
      if (method !== 'POST') throw refusal(405, `${method} is not allowed on the batch endpoint`)
      await this.#batch(req, res, ctx)
    } else if (object?.[1] !== undefined) {
      // Matched by the pattern above: 64 lowercase hex digits.
      const oid = object[1] as LfsOid
      const verify = object[2] !== undefined
      const endpoint = verify ? 'verify' : method === 'PUT' ? 'upload' : 'download'
      ctx.note({ endpoint, oid })
      await this.#object(req, res, ctx, oid, method, endpoint)
    } else if (ctx.path === 'locks' || ctx.path.startsWith('locks/')) {
      ctx.note({ endpoint: 'locks' })
      await this.#lockCall(req, res, ctx, method)
    } else {
      ctx.note({ endpoint: 'unknown' })
      throw refusal(404, 'Not found')
    }
  }

  async #batch(req: http.IncomingMessage, res: http.ServerResponse, ctx: LfsRequestContext): Promise<void> {
    if (!ctx.authorized) throw challenge(res)
    if (!isJsonType(req.headers['content-type'])) {
      throw refusal(415, `Content-Type must be ${LFS_MEDIA_TYPE}`)
    }
    const body = await readBody(req, JSON_LIMIT, ctx)
    if (body === null) throw refusal(413, `batch request over ${JSON_LIMIT} bytes`)
    let batch: BatchRequest
    try {
      batch = parseBatchRequest(body, JSON_LIMIT)
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err
      throw refusal(batchErrorStatus(err.code), err.message, err)
    }
    ctx.note({ endpoint: 'batch', operation: batch.operation, objects: batch.objects.length })
    if (!batch.transfers.includes('basic')) {
      throw refusal(422, 'no common transfer adapter: this server offers "basic"')
    }
    if (!(await this.#repositoryExists(ctx.repo))) throw refusal(404, 'Repository not found')
    const origin = this.#origin(req, ctx)
    const objects = await Promise.all(batch.objects.map((o) => this.#batchObject(ctx.repo, origin, batch.operation, o)))
    sendJson(res, ctx, 200, { transfer: 'basic', objects, hash_algo: 'sha256' })
  }

  async #batchObject(repo: string, origin: string, operation: LfsOperation, o: LfsObjectSpec): Promise<Record<string, unknown>> {
    const stored = await storedSize(this.#objectPath(repo, o.oid))
    if (stored !== null && stored !== o.size) {
      return { ...o, error: { code: 422, message: `size ${o.size} does not match the stored object (${stored} bytes)` } }
    }
    const href = `${origin}/${encodePath(repo)}/info/lfs/objects/${o.oid}`
    if (operation === 'download') {
      if (stored === null) return { ...o, error: { code: 404, message: 'Object does not exist' } }
      return { ...o, authenticated: true, actions: { download: this.#action('download', repo, o, href) } }
    }
    if (stored !== null) return { ...o } // already here: no actions, the client skips the upload
    return {
      ...o,
      authenticated: true,
      actions: { upload: this.#action('upload', repo, o, href), verify: this.#action('verify', repo, o, `${href}/verify`) },
    }
  }

  async #object(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    ctx: LfsRequestContext,
    oid: LfsOid,
    method: string,
    endpoint: TokenAction,
  ): Promise<void> {
    const wanted = endpoint === 'download' ? 'GET' : endpoint === 'upload' ? 'PUT' : 'POST'
    if (method !== wanted) throw refusal(405, `${method} is not allowed on this href`)
    const size = this.#checkToken(req.headers.authorization, endpoint, ctx.repo, oid)
    if (size === null) {
      res.setHeader('www-authenticate', `${AUTH_SCHEME} realm="Git LFS objects"`)
      throw refusal(401, 'this href needs the header of its batch action')
    }
    const file = this.#objectPath(ctx.repo, oid)
    switch (endpoint) {
      case 'download':
        return this.#download(res, ctx, file, oid)
      case 'upload':
        return this.#upload(req, res, ctx, file, { oid, size })
      case 'verify':
        return this.#verify(req, res, ctx, file, { oid, size })
    }
  }

  async #download(res: http.ServerResponse, ctx: LfsRequestContext, file: string, oid: LfsOid): Promise<void> {
    const size = await storedSize(file)
    if (size === null) throw refusal(404, 'Object does not exist')
    const fault = this.#fault?.(ctx.repo, oid) ?? null
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(size) })
    // Range requests (git-lfs resuming a download) get the whole object: the spec lets a server ignore Range.
    const source = createReadStream(file, fault === 'truncate' ? { end: Math.floor(size / 2) - 1 } : {})
    try {
      await pipeline(source, countingTransform(ctx.countResponse, fault === 'corrupt'), res, { end: fault !== 'truncate' })
    } catch {
      // The client left, or the file could not be read: after the headers, a cut connection is the answer.
    }
    if (fault === 'truncate' || !res.writableFinished) res.destroy()
  }

  async #upload(req: http.IncomingMessage, res: http.ServerResponse, ctx: LfsRequestContext, file: string, want: LfsObjectSpec): Promise<void> {
    const incoming = path.join(this.#root, ctx.repo, 'lfs', 'incomplete')
    await mkdir(incoming, { recursive: true })
    const temp = path.join(incoming, `${want.oid}.${randomBytes(6).toString('hex')}`)
    const hash = createHash('sha256')
    let bytes = 0
    const check = new Transform({
      transform(chunk: Buffer, _enc, done) {
        ctx.countRequest(chunk)
        bytes += chunk.length
        if (bytes > want.size) {
          done() // too long: read on, store nothing more, answer 422 at the end
          return
        }
        hash.update(chunk)
        done(null, chunk)
      },
    })
    try {
      await pipeline(req, check, createWriteStream(temp, { flags: 'wx', flush: true }))
    } catch (err) {
      await rm(temp, { force: true })
      if (!req.complete) {
        res.destroy() // the client went away mid-upload
        return
      }
      throw err
    }
    const actual = hash.digest('hex')
    if (bytes !== want.size || actual !== want.oid) {
      await rm(temp, { force: true })
      throw refusal(422, `upload of ${bytes} bytes has SHA-256 ${actual}, expected ${want.size} bytes with ${want.oid}`)
    }
    await mkdir(path.dirname(file), { recursive: true })
    await rename(temp, file)
    sendJson(res, ctx, 200, {})
  }

  async #verify(req: http.IncomingMessage, res: http.ServerResponse, ctx: LfsRequestContext, file: string, want: LfsObjectSpec): Promise<void> {
    const body = await readBody(req, JSON_LIMIT, ctx)
    const sent = body === null ? null : parseJson(body)
    if (!isRecord(sent) || sent['oid'] !== want.oid || sent['size'] !== want.size) {
      throw refusal(422, 'verify body must name the oid and size of its action')
    }
    const size = await storedSize(file)
    if (size !== want.size) throw refusal(404, 'Object does not exist')
    sendJson(res, ctx, 200, {})
  }

  async #lockCall(req: http.IncomingMessage, res: http.ServerResponse, ctx: LfsRequestContext, method: string): Promise<void> {
    if (!ctx.authorized) throw challenge(res)
    if (!(await this.#repositoryExists(ctx.repo))) throw refusal(404, 'Repository not found')
    let body: unknown = null
    if (method === 'POST') {
      const raw = await readBody(req, JSON_LIMIT, ctx)
      if (raw === null) throw refusal(413, `request over ${JSON_LIMIT} bytes`)
      body = raw.length === 0 ? {} : parseJson(raw)
      if (body === undefined) throw refusal(400, 'request body is not JSON')
    }
    const query = new URL(req.url ?? '/', 'http://lfs').searchParams
    const answer = this.#locks.answer(ctx.repo, method, ctx.path, query, body, ctx.user ?? 'anonymous')
    sendJson(res, ctx, answer.status, answer.body)
  }

  #action(action: TokenAction, repo: string, o: LfsObjectSpec, href: string): Record<string, unknown> {
    const expires = Math.floor(this.#now() / 1000) + this.#ttl
    const token = `${expires}.${o.size}.${this.#mac(action, repo, o.oid, o.size, expires)}`
    return { href, header: { Authorization: `${AUTH_SCHEME} ${token}` }, expires_in: this.#ttl }
  }

  /** The size the token was issued for, or null unless it is a live token for exactly this action. */
  #checkToken(header: string | undefined, action: TokenAction, repo: string, oid: LfsOid): number | null {
    const m = /^RemoteAuth (\d{1,12})\.(\d{1,16})\.([A-Za-z0-9_-]{43})$/.exec(header ?? '')
    if (m?.[1] === undefined || m[2] === undefined || m[3] === undefined) return null
    const expires = Number(m[1])
    const size = Number(m[2])
    if (expires < this.#now() / 1000 || !Number.isSafeInteger(size)) return null
    const want = Buffer.from(this.#mac(action, repo, oid, size, expires))
    const got = Buffer.from(m[3])
    return want.length === got.length && timingSafeEqual(want, got) ? size : null
  }

  #mac(action: TokenAction, repo: string, oid: string, size: number, expires: number): string {
    return createHmac('sha256', this.#key).update(`${action}\n${repo}\n${oid}\n${size}\n${expires}`).digest('base64url')
  }

  #origin(req: http.IncomingMessage, ctx: LfsRequestContext): string {
    if (this.#publicUrl !== null) return this.#publicUrl
    const host = req.headers.host
    return host !== undefined && HOST.test(host) ? `http://${host}` : ctx.localOrigin
  }

  #objectPath(repo: string, oid: LfsOid): string {
    return lfsObjectPath(path.join(this.#root, repo), oid)
  }

  async #repositoryExists(repo: string): Promise<boolean> {
    return (await storedSize(path.join(this.#root, repo, 'HEAD'))) !== null
  }
}

/** Where a bare repository keeps an LFS object: `lfs/objects/ab/cd/<oid>`, as git-lfs does in `.git`. */
export function lfsObjectPath(repoDir: string, oid: LfsOid): string {
  return path.join(repoDir, 'lfs', 'objects', oid.slice(0, 2), oid.slice(2, 4), oid)
}

/** The SHA-256 oid of some content. */
export function lfsOid(content: Uint8Array): LfsOid {
  // A SHA-256 digest in hex is 64 lowercase hex digits.
  return createHash('sha256').update(content).digest('hex') as LfsOid
}

/** The pointer file git-lfs commits in place of the content (git-lfs `docs/spec.md`). */
export function lfsPointer(oid: LfsOid, size: number): string {
  return `version https://git-lfs.github.com/spec/v1\noid sha256:${oid}\nsize ${size}\n`
}

/** Store `content` in a bare repository's LFS store (written aside, then renamed into place). */
export async function storeLfsObject(repoDir: string, content: Uint8Array): Promise<LfsOid> {
  const oid = lfsOid(content)
  const file = lfsObjectPath(repoDir, oid)
  await mkdir(path.dirname(file), { recursive: true })
  const temp = `${file}.${randomBytes(6).toString('hex')}.tmp`
  await writeFile(temp, content)
  await rename(temp, file)
  return oid
}

/** An answer with a status and a message to the client: thrown, and sent by `handle`. */
function refusal(status: number, message: string, cause?: unknown): ProxyError {
  return new ProxyError('ERR_EMBEDDED_LFS_REFUSED', message, { statusCode: status, cause })
}

/** 401 asking for the repository's Basic credential (`LFS-Authenticate` is the spec's, git-lfs reads both). */
function challenge(res: http.ServerResponse): ProxyError {
  res.setHeader('www-authenticate', BASIC_REALM)
  res.setHeader('lfs-authenticate', BASIC_REALM)
  return refusal(401, 'Credentials needed')
}

/** The HTTP status for a batch request the parser refused. */
function batchErrorStatus(code: string): number {
  switch (code) {
    case LFS_ERR_TOO_LARGE:
      return 413
    case LFS_ERR_JSON:
      return 400
    case LFS_ERR_INVALID:
      return 422
    default:
      return 400
  }
}

function sendJson(res: http.ServerResponse, ctx: LfsRequestContext, status: number, body: Record<string, unknown>): void {
  const bytes = Buffer.from(JSON.stringify(body))
  ctx.countResponse(bytes.length)
  if (!res.headersSent) {
    res.writeHead(status, { 'content-type': LFS_MEDIA_TYPE, 'content-length': String(bytes.length) })
  }
  res.end(bytes)
}

/** The whole body, or null once it passes `limit` bytes (the rest is left unread). */
async function readBody(req: http.IncomingMessage, limit: number, ctx: LfsRequestContext): Promise<Buffer | null> {
  const chunks: Buffer[] = []
  let length = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    ctx.countRequest(chunk)
    length += chunk.length
    if (length > limit) return null
    chunks.push(chunk)
  }
  return Buffer.concat(chunks)
}

/** Counts the bytes passing through; with `corrupt`, flips the first one. */
function countingTransform(count: (n: number) => void, corrupt: boolean): Transform {
  let first = true
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      count(chunk.length)
      if (corrupt && first && chunk.length > 0) {
        const copy = Buffer.from(chunk)
        copy[0] = (copy[0] ?? 0) ^ 0xff
        chunk = copy
      }
      first = false
      done(null, chunk)
    },
  })
}

async function storedSize(file: string): Promise<number | null> {
  try {
    return (await stat(file)).size
  } catch {
    return null
  }
}

function isJsonType(header: string | undefined): boolean {
  const type = header?.split(';')[0]?.trim().toLowerCase()
  return type === LFS_MEDIA_TYPE || type === 'application/json'
}

function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8')) as unknown
  } catch {
    return undefined
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function encodePath(repo: string): string {
  return repo.split('/').map(encodeURIComponent).join('/')
}
