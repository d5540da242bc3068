/**
 * The SSH upstream (DESIGN §7): exec channels on the real Git server's SSH
 * service, made with ssh2's client and the proxy's own key.
 *
 * - The upstream's host key must be listed in `upstream.ssh.known-hosts`
 *   (OpenSSH known_hosts: plain or hashed `|1|` host names, `[host]:port`
 *   for other ports than 22, `@revoked`). No file configured, an unknown
 *   host or a changed key: the connection is refused and logged.
 * - Connections are shared: each carries up to `maxChannels` exec channels
 *   at once (OpenSSH's sshd allows 10 sessions per connection by default),
 *   more channels open more connections; a connection idle for `idleMs`
 *   is closed, and a broken one is dropped and replaced on next use.
 */
import { createHmac, createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import ssh2 from 'ssh2'
import type { Client as SshClient, ClientChannel, ParsedKey } from 'ssh2'
import { UpstreamError } from '../errors.js'
import type { Log } from '../logger.js'

// ssh2 is CommonJS: its exports are properties of the default export under ESM.
const { Client, utils } = ssh2

export interface SshUpstreamOptions {
  url: Readonly<URL>
  /** Private key file of the proxy towards the upstream; null: none (the upstream refuses). */
  keyFile: string | null
  /** OpenSSH known_hosts file; null: refuse to connect. */
  knownHostsFile: string | null
  log: Log
  maxChannels?: number
  idleMs?: number
  /** ms to connect and finish the SSH handshake (`upstream.connect-timeout`) */
  connectTimeoutMs?: number
}

export interface UpstreamExec {
  channel: ClientChannel
  /** The exit status (null if the channel closed without one). */
  exit: Promise<number | null>
}

interface Connection {
  client: SshClient
  ready: Promise<void>
  channels: number
  /** Channels this connection may carry at once. */
  limit: number
  broken: boolean
  idle: NodeJS.Timeout | null
}

export class SshUpstream {
  readonly #opts: Required<Omit<SshUpstreamOptions, 'keyFile' | 'knownHostsFile'>> & SshUpstreamOptions
  readonly #connections = new Set<Connection>()
  #closed = false

  constructor(opts: SshUpstreamOptions) {
    this.#opts = { maxChannels: 8, idleMs: 30_000, connectTimeoutMs: 20_000, ...opts }
  }

  /** `git-upload-pack '<prefix>/<path>'`: the exec string for `path` upstream. */
  commandFor(service: 'git-upload-pack' | 'git-receive-pack', path: string): string {
    const prefix = decodeURIComponent(this.#opts.url.pathname).replace(/\/+$/, '')
    return `${service} ${quoteArgument(`${prefix}/${path}`)}`
  }

  /** Opens an exec channel, on a shared connection when one has room. */
  async exec(command: string, env: Record<string, string>): Promise<UpstreamExec> {
    if (this.#closed) throw new UpstreamError('ERR_UPSTREAM_CLOSED', 'the SSH upstream is shut down')
    let conn = this.#pick()
    const reused = conn !== null
    conn ??= this.#connect()
    try {
      return await this.#open(conn, command, env)
    } catch (err) {
      if (!reused) throw err
      // A shared connection died under us, or the server allows fewer
      // sessions per connection than we assumed: once more on a fresh one.
      conn.limit = Math.max(1, conn.channels)
      return this.#open(this.#connect(), command, env)
    }
  }

  async close(): Promise<void> {
    this.#closed = true
    for (const conn of this.#connections) {
      if (conn.idle !== null) clearTimeout(conn.idle)
      conn.client.end()
    }
    this.#connections.clear()
  }

  #pick(): Connection | null {
    for (const conn of this.#connections) {
      if (!conn.broken && conn.channels < conn.limit) return conn
    }
    return null
  }

  async #open(conn: Connection, command: string, env: Record<string, string>): Promise<UpstreamExec> {
    conn.channels++
    if (conn.idle !== null) {
      clearTimeout(conn.idle)
      conn.idle = null
    }
    let released = false
    const release = (): void => {
      if (released) return
      released = true
      conn.channels--
      if (conn.channels === 0 && !conn.broken) {
        conn.idle = setTimeout(() => {
          this.#connections.delete(conn)
          conn.client.end()
        }, this.#opts.idleMs)
        conn.idle.unref()
      }
    }
    try {
      await conn.ready
      const channel = await new Promise<ClientChannel>((resolve, reject) => {
        conn.client.exec(command, Object.keys(env).length === 0 ? {} : { env }, (err, ch) => {
          if (err === undefined) resolve(ch)
          else reject(new UpstreamError('ERR_UPSTREAM_SSH', `upstream SSH exec failed: ${err.message}`, { cause: err }))
        })
      })
      const exit = new Promise<number | null>((resolve) => {
        let code: number | null = null
        channel.on('exit', (status: number | null) => {
          code = typeof status === 'number' ? status : 128
        })
        channel.once('close', () => {
          release()
          resolve(code)
        })
      })
      return { channel, exit }
    } catch (err) {
      release()
      throw err
    }
  }

  #connect(): Connection {
    const { url, log } = this.#opts
    const client = new Client()
    const conn: Connection = { client, ready: Promise.resolve(), channels: 0, limit: this.#opts.maxChannels, broken: false, idle: null }
    this.#connections.add(conn)
    const drop = (): void => {
      conn.broken = true
      this.#connections.delete(conn)
      if (conn.idle !== null) clearTimeout(conn.idle)
    }
    conn.ready = (async () => {
      const knownHosts = await this.#readKnownHosts()
      const privateKey = this.#opts.keyFile === null ? undefined : await readFile(this.#opts.keyFile)
      const host = url.hostname.replace(/^\[|\]$/g, '')
      const port = Number(url.port === '' ? '22' : url.port)
      await new Promise<void>((resolve, reject) => {
        let hostKeyProblem: string | null = null
        client.once('ready', () => {
          resolve()
        })
        client.on('error', (err) => {
          drop()
          // A connection that cannot be made is "unreachable" (outage mode, DESIGN §3.10), not a refusal.
          reject(
            hostKeyProblem === null
              ? new UpstreamError('ERR_UPSTREAM_UNAVAILABLE', `cannot connect to the SSH upstream: ${err.message}`, { cause: err })
              : new UpstreamError('ERR_UPSTREAM_SSH', hostKeyProblem, { cause: err }),
          )
        })
        client.on('close', drop)
        client.connect({
          host,
          port,
          username: decodeURIComponent(url.username),
          ...(privateKey === undefined ? {} : { privateKey }),
          readyTimeout: this.#opts.connectTimeoutMs,
          keepaliveInterval: 15_000,
          hostVerifier: (key: Buffer) => {
            const verdict = checkHostKey(knownHosts, host, port, key)
            if (verdict === 'ok') return true
            hostKeyProblem =
              verdict === 'changed'
                ? `upstream SSH host key for ${hostLabel(host, port)} does not match upstream.ssh.known-hosts (${fingerprint(key)}): refusing to connect`
                : verdict === 'revoked'
                  ? `upstream SSH host key for ${hostLabel(host, port)} is revoked in upstream.ssh.known-hosts: refusing to connect`
                  : `upstream SSH host ${hostLabel(host, port)} is not in upstream.ssh.known-hosts (${fingerprint(key)}): refusing to connect`
            log.error({ host: hostLabel(host, port), fingerprint: fingerprint(key), verdict }, hostKeyProblem)
            return false
          },
        })
      })
    })()
    conn.ready.catch(() => {
      drop()
    })
    return conn
  }

  async #readKnownHosts(): Promise<KnownHost[]> {
    const file = this.#opts.knownHostsFile
    if (file === null) {
      const message = 'upstream.ssh.known-hosts is not set: refusing to connect to the SSH upstream'
      this.#opts.log.error({}, message)
      throw new UpstreamError('ERR_UPSTREAM_SSH_HOSTKEY', message)
    }
    try {
      return parseKnownHosts(await readFile(file, 'utf8'))
    } catch (err) {
      const message = `cannot read upstream.ssh.known-hosts ${file}: refusing to connect`
      this.#opts.log.error({ err }, message)
      throw new UpstreamError('ERR_UPSTREAM_SSH_HOSTKEY', message, { cause: err })
    }
  }
}

export interface KnownHost {
  marker: '@revoked' | '@cert-authority' | null
  /** Comma-separated patterns, or a hashed `|1|salt|hash` entry. */
  hosts: string
  /** The key blob (SSH wire format). */
  blob: Buffer
}

export function parseKnownHosts(text: string): KnownHost[] {
  const out: KnownHost[] = []
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) continue
    const words = line.split(/\s+/)
    let marker: KnownHost['marker'] = null
    if (words[0] === '@revoked' || words[0] === '@cert-authority') {
      marker = words[0]
      words.shift()
    }
    const [hosts, type, data] = words
    if (hosts === undefined || type === undefined || data === undefined) continue
    const key = utils.parseKey(`${type} ${data}`)
    if (key instanceof Error) continue
    const parsed: ParsedKey = key
    out.push({ marker, hosts, blob: parsed.getPublicSSH() })
  }
  return out
}

/** `ok`, or why the key is refused. */
export function checkHostKey(
  entries: readonly KnownHost[],
  host: string,
  port: number,
  blob: Buffer,
): 'ok' | 'unknown' | 'changed' | 'revoked' {
  const name = port === 22 ? host : `[${host}]:${port}`
  const mine = entries.filter((e) => e.marker !== '@cert-authority' && hostMatches(e.hosts, name))
  if (mine.some((e) => e.marker === '@revoked' && e.blob.equals(blob))) return 'revoked'
  const plain = mine.filter((e) => e.marker === null)
  if (plain.some((e) => e.blob.equals(blob))) return 'ok'
  return plain.length > 0 ? 'changed' : 'unknown'
}

function hostMatches(patterns: string, name: string): boolean {
  if (patterns.startsWith('|1|')) {
    const [, , salt, hash] = patterns.split('|')
    if (salt === undefined || hash === undefined) return false
    const mac = createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest('base64')
    return mac === hash
  }
  let matched = false
  for (const p of patterns.split(',')) {
    const negated = p.startsWith('!')
    const pattern = negated ? p.slice(1) : p
    const re = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`, 'i')
    if (re.test(name)) {
      if (negated) return false
      matched = true
    }
  }
  return matched
}

/** `text` single-quoted as git quotes a shell argument (sq_quote_buf). */
function quoteArgument(text: string): string {
  return `'${text.replace(/'/g, "'\\''").replace(/!/g, "'\\!'")}'`
}

function hostLabel(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`
}

function fingerprint(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`
}
