/**
 * The embedded upstream: a loopback HTTP server that runs the real
 * `git http-backend` (as CGI) over a directory of bare repositories, with a
 * small Git LFS server beside it (`<repo>.git/info/lfs/...`, embedded-lfs.ts).
 *
 * With no `upstream.http.url` configured the proxy starts one over
 * `data/repos` with a demo repository, so `git clone` through the proxy works
 * at once. The test suite uses the same server as its real upstream, with
 * optional Basic auth per repository, a request log and a trace2 directory
 * in which every git process the upstream runs leaves one file (so tests
 * count `pack-objects` runs, i.e. pack generations, for real).
 */
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { pipeline } from 'node:stream/promises'
import { createHash, timingSafeEqual } from 'node:crypto'
import type { Log } from '../logger.js'
import { EmbeddedLfs, lfsOid, lfsPointer, storeLfsObject, type LfsFault, type LfsRequestNote } from './embedded-lfs.js'
import { runGit } from './git-command.js'

export interface UpstreamRequestRecord {
  method: string
  /** Path after the server root, with its query string. */
  url: string
  gitProtocol: string | null
  status: number
  requestBytes: number
  responseBytes: number
  /** First 64 KiB of the request body (decoded only if it was not gzip). */
  bodyHead: Buffer
  contentEncoding: string | null
  authorization: boolean
  /** What a Git LFS request was (`<repo>.git/info/lfs/...`), or null for git requests. */
  lfs: LfsRequestNote | null
}

export interface EmbeddedUpstreamOptions {
  /** Directory holding the bare repositories (`GIT_PROJECT_ROOT`). */
  root: string
  host?: string
  port?: number
  log?: Log
  /** Credentials required for a repository path (`private.git`), or null for public. */
  basicAuth?: (repo: string) => { username: string; password: string } | null
  /** When set, every git process run by the upstream writes a trace2 event file here. */
  trace2Dir?: string
  /** Called once per request after the response ended (tests keep a request log). */
  onRequest?: (rec: UpstreamRequestRecord) => void
  /** Origin of the LFS object hrefs in batch answers; default: from the request's Host header. */
  lfsUrl?: string
  /** Seconds an LFS action (href and header) stays valid. Default 3600. */
  lfsTokenTtl?: number
  /** Test hook: serve an LFS object download corrupted or cut short. */
  lfsFault?: (repo: string, oid: string) => LfsFault | null
}

export interface EmbeddedUpstream {
  /** Base URL, without a trailing slash: `http://127.0.0.1:PORT`. */
  readonly url: string
  close(): Promise<void>
}

const BODY_HEAD_LIMIT = 64 * 1024
/** `/<repo>.git/info/lfs/<rest>`: the LFS server's part of the URL space. */
const LFS_PATH = /^\/(.+?\.git)\/info\/lfs\/(.+)$/
const REALM = 'Basic realm="Git Access", charset="UTF-8"'

/** Start the embedded upstream; resolves when it listens. */
export async function startEmbeddedUpstream(opts: EmbeddedUpstreamOptions): Promise<EmbeddedUpstream> {
  const root = path.resolve(opts.root)
  const lfs = new EmbeddedLfs({
    root,
    ...(opts.lfsUrl === undefined ? {} : { publicUrl: opts.lfsUrl }),
    ...(opts.lfsTokenTtl === undefined ? {} : { tokenTtl: opts.lfsTokenTtl }),
    ...(opts.lfsFault === undefined ? {} : { fault: opts.lfsFault }),
  })
  const server = http.createServer((req, res) => {
    handle(req, res, root, lfs, opts).catch((err: unknown) => {
      opts.log?.error({ err }, 'embedded upstream: request failed')
      if (!res.headersSent) {
        res.writeHead(500, { 'content-type': 'text/plain' }).end('embedded upstream failed\n')
      } else {
        res.destroy()
      }
    })
  })
  server.requestTimeout = 0
  server.keepAliveTimeout = 30_000
  server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1')
  await once(server, 'listening')
  const addr = server.address() as AddressInfo // listening on TCP: address() is an AddressInfo
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address
  return {
    url: `http://${host}:${addr.port}`,
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => { resolve() }))
    },
  }
}

async function handle(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  root: string,
  lfs: EmbeddedLfs,
  opts: EmbeddedUpstreamOptions,
): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://upstream')
  const pathInfo = decodeURIComponent(url.pathname)
  const record: UpstreamRequestRecord = {
    method: req.method ?? 'GET',
    url: url.pathname + url.search,
    gitProtocol: headerValue(req, 'git-protocol'),
    status: 0,
    requestBytes: 0,
    responseBytes: 0,
    bodyHead: Buffer.alloc(0),
    contentEncoding: headerValue(req, 'content-encoding'),
    authorization: req.headers.authorization !== undefined,
    lfs: null,
  }
  res.on('close', () => {
    record.status = res.statusCode
    opts.onRequest?.(record)
  })

  const lfsPath = LFS_PATH.exec(pathInfo)
  const repo = lfsPath?.[1] ?? repositoryOf(pathInfo)
  if (repo === null || pathInfo.split('/').includes('..')) {
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n')
    return
  }
  const required = opts.basicAuth?.(repo) ?? null
  const remoteUser = required === null ? null : checkBasic(req.headers.authorization, required)
  const countRequest = (chunk: Buffer): void => {
    record.requestBytes += chunk.length
    if (record.bodyHead.length < BODY_HEAD_LIMIT) {
      record.bodyHead = Buffer.concat([record.bodyHead, chunk.subarray(0, BODY_HEAD_LIMIT - record.bodyHead.length)])
    }
  }
  if (lfsPath?.[2] !== undefined) {
    await lfs.handle(req, res, {
      repo,
      path: lfsPath[2],
      authorized: required === null || remoteUser !== null,
      user: remoteUser,
      localOrigin: localOrigin(req),
      note: (n) => {
        record.lfs = n
      },
      countRequest,
      countResponse: (n) => {
        record.responseBytes += n
      },
    })
    return
  }
  if (required !== null && remoteUser === null) {
    req.resume()
    res.writeHead(401, { 'www-authenticate': REALM, 'content-type': 'text/plain' }).end('authentication required\n')
    return
  }

  const env: Record<string, string> = {
    PATH: process.env['PATH'] ?? '/usr/bin:/bin',
    GIT_PROJECT_ROOT: root,
    GIT_HTTP_EXPORT_ALL: '1',
    GIT_HTTP_MAX_REQUEST_BUFFER: String(256 * 1024 * 1024),
    PATH_INFO: pathInfo,
    REQUEST_METHOD: req.method ?? 'GET',
    QUERY_STRING: url.search.slice(1),
    REMOTE_ADDR: req.socket.remoteAddress ?? '127.0.0.1',
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    HOME: root,
    GIT_CONFIG_COUNT: '5',
    GIT_CONFIG_KEY_0: 'http.receivepack',
    GIT_CONFIG_VALUE_0: 'true',
    GIT_CONFIG_KEY_1: 'uploadpack.allowFilter',
    GIT_CONFIG_VALUE_1: 'true',
    GIT_CONFIG_KEY_2: 'uploadpack.allowAnySHA1InWant',
    GIT_CONFIG_VALUE_2: 'true',
    GIT_CONFIG_KEY_3: 'safe.directory',
    GIT_CONFIG_VALUE_3: '*',
    GIT_CONFIG_KEY_4: 'receive.denyCurrentBranch',
    GIT_CONFIG_VALUE_4: 'ignore',
  }
  const contentType = headerValue(req, 'content-type')
  if (contentType !== null) env['CONTENT_TYPE'] = contentType
  const contentLength = headerValue(req, 'content-length')
  if (contentLength !== null) env['CONTENT_LENGTH'] = contentLength
  if (record.contentEncoding !== null) env['HTTP_CONTENT_ENCODING'] = record.contentEncoding
  if (record.gitProtocol !== null) env['GIT_PROTOCOL'] = record.gitProtocol
  if (remoteUser !== null) env['REMOTE_USER'] = remoteUser
  if (opts.trace2Dir !== undefined) env['GIT_TRACE2_EVENT'] = opts.trace2Dir

  const child = spawn('git', ['http-backend'], { env, stdio: ['pipe', 'pipe', 'pipe'] })
  const exited = once(child, 'close')
  child.stderr.on('data', (chunk: Buffer) => {
    opts.log?.warn({ stderr: chunk.toString('utf8').trim() }, 'git http-backend')
  })
  res.on('close', () => {
    if (!res.writableFinished) child.kill('SIGTERM')
  })

  req.on('data', countRequest)
  const feed = pipeline(req, child.stdin).catch(() => {
    // The backend may stop reading early (it answers errors before the end of the body).
  })

  await relayCgiResponse(child.stdout, res, (n) => {
    record.responseBytes += n
  })
  await feed
  await exited
}

/** Parse the CGI header block from `stdout`, then stream the body to `res`. */
async function relayCgiResponse(
  stdout: NodeJS.ReadableStream & AsyncIterable<Buffer>,
  res: http.ServerResponse,
  count: (n: number) => void,
): Promise<void> {
  let head = Buffer.alloc(0)
  let headersDone = false
  for await (const chunk of stdout) {
    if (!headersDone) {
      head = Buffer.concat([head, chunk])
      const end = findHeaderEnd(head)
      if (end === null) {
        if (head.length > 64 * 1024) throw new Error('CGI header block too large')
        continue
      }
      headersDone = true
      writeCgiHead(res, head.subarray(0, end.at).toString('latin1'))
      const rest = head.subarray(end.at + end.length)
      if (rest.length > 0) {
        count(rest.length)
        if (!res.write(rest)) await once(res, 'drain')
      }
      continue
    }
    count(chunk.length)
    if (!res.write(chunk)) await once(res, 'drain')
  }
  if (!headersDone) {
    if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' })
    res.end('git http-backend produced no response\n')
    return
  }
  res.end()
}

function findHeaderEnd(buf: Buffer): { at: number; length: number } | null {
  const crlf = buf.indexOf('\r\n\r\n')
  const lf = buf.indexOf('\n\n')
  if (crlf === -1 && lf === -1) return null
  if (crlf !== -1 && (lf === -1 || crlf < lf)) return { at: crlf, length: 4 }
  return { at: lf, length: 2 }
}

function writeCgiHead(res: http.ServerResponse, block: string): void {
  let status = 200
  const headers: Record<string, string> = {}
  for (const line of block.split(/\r?\n/)) {
    const colon = line.indexOf(':')
    if (colon <= 0) continue
    const name = line.slice(0, colon).trim().toLowerCase()
    const value = line.slice(colon + 1).trim()
    if (name === 'status') status = Number.parseInt(value, 10) || 500
    else headers[name] = value
  }
  res.writeHead(status, headers)
}

/** `http://address:port` of the connection's local end. */
function localOrigin(req: http.IncomingMessage): string {
  const { localAddress, localPort, localFamily } = req.socket
  const host = localAddress ?? '127.0.0.1'
  return `http://${localFamily === 'IPv6' ? `[${host}]` : host}:${localPort ?? 0}`
}

function headerValue(req: http.IncomingMessage, name: string): string | null {
  const v = req.headers[name]
  if (v === undefined) return null
  return Array.isArray(v) ? v.join(', ') : v
}

/** The repository part of a smart/dumb HTTP path: `/a/b.git/info/refs` gives `a/b.git`. */
function repositoryOf(pathInfo: string): string | null {
  const m = /^\/(.+?)\/(?:info\/refs|git-upload-pack|git-receive-pack|HEAD|objects\/.+|info\/.+)$/.exec(pathInfo)
  return m?.[1] ?? null
}

function checkBasic(
  header: string | undefined,
  want: { username: string; password: string },
): string | null {
  if (header?.startsWith('Basic ') !== true) return null
  const decoded = Buffer.from(header.slice(6), 'base64').toString('utf8')
  const colon = decoded.indexOf(':')
  if (colon < 0) return null
  const user = decoded.slice(0, colon)
  const pass = decoded.slice(colon + 1)
  const a = Buffer.from(`${user}\0${pass}`)
  const b = Buffer.from(`${want.username}\0${want.password}`)
  return a.length === b.length && timingSafeEqual(a, b) ? user : null
}

/**
 * Create `<root>/demo.git` with a few commits if it does not exist yet, one
 * of them adding a Git LFS file (`assets/logo.bin`, committed as its pointer,
 * its object in the repository's LFS store), so no git-lfs is needed here.
 * Returns the repository's path relative to the root (`demo.git`).
 */
export async function ensureDemoRepository(root: string): Promise<string> {
  const name = 'demo.git'
  const target = path.join(root, name)
  if (await exists(path.join(target, 'HEAD'))) return name
  await mkdir(root, { recursive: true })
  const work = await mkdtemp(path.join(tmpdir(), 'scm-cache-demo-'))
  const staging = path.join(root, `.${name}.${process.pid}.tmp`)
  try {
    await runGit(['init', '-q', '-b', 'main', work])
    const logo = demoLfsContent()
    const commits: { message: string; files: [string, string][] }[] = [
      { message: 'Add README.md', files: [['README.md', '# demo\n\nA repository served by the scm-cache-proxy embedded upstream.\n']] },
      { message: 'Add hello.txt', files: [['hello.txt', 'hello, world\n']] },
      {
        message: 'Add assets/logo.bin (Git LFS)',
        files: [
          ['.gitattributes', '*.bin filter=lfs diff=lfs merge=lfs -text\n'],
          ['assets/logo.bin', lfsPointer(lfsOid(logo), logo.length)],
        ],
      },
    ]
    for (const [i, commit] of commits.entries()) {
      await writeAndCommit(work, commit.files, commit.message, i)
    }
    await runGit(['-C', work, 'tag', '-a', 'v1.0', '-m', 'v1.0'])
    await rm(staging, { recursive: true, force: true })
    await runGit(['clone', '-q', '--bare', work, staging])
    await storeLfsObject(staging, logo)
    await rename(staging, target)
  } finally {
    await rm(work, { recursive: true, force: true })
    await rm(staging, { recursive: true, force: true })
  }
  return name
}

/** The demo's LFS file: 4 KiB of deterministic bytes (a SHA-256 chain). */
export function demoLfsContent(): Buffer {
  const blocks: Buffer[] = []
  let block = createHash('sha256').update('scm-cache-proxy demo logo').digest()
  for (let i = 0; i < 128; i++) {
    blocks.push(block)
    block = createHash('sha256').update(block).digest()
  }
  return Buffer.concat(blocks)
}

async function writeAndCommit(work: string, files: [string, string][], message: string, n: number): Promise<void> {
  for (const [file, text] of files) {
    await mkdir(path.dirname(path.join(work, file)), { recursive: true })
    await writeFile(path.join(work, file), text)
    await runGit(['-C', work, 'add', file])
  }
  const date = `${1700000000 + n * 60} +0000`
  await runGit(['-C', work, 'commit', '-q', '-m', message], {
    GIT_AUTHOR_DATE: date,
    GIT_COMMITTER_DATE: date,
  })
}

async function exists(p: string): Promise<boolean> {
  try {
    await stat(p)
    return true
  } catch {
    return false
  }
}

/** Count the `git pack-objects` processes recorded in a trace2 event directory. */
export async function countPackObjects(trace2Dir: string): Promise<number> {
  let n = 0
  for (const file of await readdir(trace2Dir).catch(() => [])) {
    const text = await readFile(path.join(trace2Dir, file), 'utf8').catch(() => '')
    if (/"event":"cmd_name","[^}]*"name":"pack-objects"/.test(text)) n++
  }
  return n
}
