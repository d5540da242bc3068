/**
 * The SSH front (DESIGN §7): an ssh2 server that git clients clone through.
 *
 * - Host key: `proxy.ssh.host-key`, or an ed25519 key generated once and
 *   kept as `<cache.dir>/ssh_host_ed25519_key` (0600).
 * - Public-key authentication only, against `proxy.ssh.authorized-keys`
 *   (re-read when the file changes); the login name is not used. A key's
 *   `repos="..."` globs limit which repositories it may read, from the cache
 *   or not (see ssh-keys.ts).
 * - One `env GIT_PROTOCOL` and one `exec` per session; the exec grammar is
 *   ssh-command.ts's. Refusals are a line on stderr and exit status 128.
 * - The conversation itself is ssh-session.ts's.
 */
import { readFile, stat } from 'node:fs/promises'
import net, { type AddressInfo, type Socket } from 'node:net'
import ssh2 from 'ssh2'
import type { Connection, ServerChannel } from 'ssh2'
import { ProtocolError } from '../errors.js'
import type { Log } from '../logger.js'
import { projectAndSlug, toRepoPath, type RepoPath } from '../repository.js'
import { parseSshCommand } from './ssh-command.js'
import { findAuthorizedKey, parseAuthorizedKeys, reposAllow, type AuthorizedKey } from './ssh-keys.js'
import { runGitSession, type GitSessionDeps } from './ssh-session.js'

// ssh2 is CommonJS: its exports are properties of the default export under ESM.
const { Server } = ssh2

/** Longest time a connection gets to authenticate (OpenSSH's LoginGraceTime is 120 s). */
const AUTH_TIMEOUT_MS = 60_000

export interface SshFrontOptions extends GitSessionDeps {
  host: string
  port: number
  hostKey: Buffer
  /** OpenSSH authorized_keys file; null: no key is accepted. */
  authorizedKeysFile: string | null
  /** `upstream.http.path-prefix`: SSH paths are named with it in the cache, as HTTP names them. */
  pathPrefix: string
  /**
   * `proxy.http.idle-timeout` (DESIGN §3.9): a connection that has not
   * authenticated, or has not asked for a command, within it is closed.
   */
  idleTimeoutMs: number
  /** Connections open at most; new ones beyond it are refused at once. */
  maxConnections: number
  /** Told of every finished Git command (the fields of its log line), for metrics. */
  onRequestDone?: (o: { proto: string; cmd: string; cache: 'hit' | 'miss' | 'join' | 'bypass' | 'stale'; status: number; bytes: number }) => void
}

export interface SshFront {
  /** Git commands running (their log line not written yet). */
  inFlight(): number
  readonly port: number
  /** `ssh://host:port` */
  readonly url: string
  close(): Promise<void>
}

/** The authorized_keys file, re-read when its modification time or size changes. */
class AuthorizedKeys {
  readonly #file: string | null
  readonly #log: Log
  #keys: AuthorizedKey[] = []
  #stamp = ''

  constructor(file: string | null, log: Log) {
    this.#file = file
    this.#log = log
  }

  async load(): Promise<AuthorizedKey[]> {
    if (this.#file === null) return []
    let stamp: string
    try {
      const st = await stat(this.#file)
      stamp = `${st.mtimeMs}:${st.size}:${st.ino}`
    } catch (err) {
      this.#log.error({ err, file: this.#file }, 'cannot read proxy.ssh.authorized-keys: no key is accepted')
      this.#keys = []
      this.#stamp = ''
      return []
    }
    if (stamp === this.#stamp) return this.#keys
    const parsed = parseAuthorizedKeys(await readFile(this.#file, 'utf8'))
    for (const r of parsed.rejected) {
      this.#log.warn({ file: this.#file, line: r.line, reason: r.reason }, 'authorized_keys line not used')
    }
    this.#keys = parsed.keys
    this.#stamp = stamp
    this.#log.info({ file: this.#file, keys: parsed.keys.length }, 'authorized keys loaded')
    return this.#keys
  }
}

export async function startSshFront(opts: SshFrontOptions): Promise<SshFront> {
  const log = opts.log
  const authorized = new AuthorizedKeys(opts.authorizedKeysFile, log)
  if (opts.authorizedKeysFile === null) log.warn({}, 'proxy.ssh.authorized-keys is not set: the SSH front accepts no key')
  else if ((await authorized.load()).length === 0) log.warn({ file: opts.authorizedKeysFile }, 'no usable key in proxy.ssh.authorized-keys')

  const clients = new Set<Connection>()
  const running = { count: 0 }
  // Sockets that have not sent their SSH version line yet: ssh2 sees a
  // connection only then, so until then the idle timeout is the socket's.
  const silent = new Map<string, Socket>()
  const server = new Server({ hostKeys: [opts.hostKey], ident: 'scm-cache-proxy' }, (client, info) => {
    const key = `${info.ip}:${info.port}`
    silent.get(key)?.setTimeout(0)
    silent.delete(key)
    clients.add(client)
    client.once('close', () => clients.delete(client))
    handleConnection(client, info.ip, authorized, opts, running)
  })
  // Beyond it, new connections are closed at once (ssh2 counts them).
  server.maxConnections = opts.maxConnections
  server.on('error', (err: Error) => {
    log.warn({ err }, 'ssh front error')
  })
  const listener = net.createServer((socket) => {
    const key = `${socket.remoteAddress ?? ''}:${String(socket.remotePort ?? '')}`
    silent.set(key, socket)
    socket.once('close', () => {
      if (silent.get(key) === socket) silent.delete(key)
    })
    socket.setTimeout(opts.idleTimeoutMs, () => {
      log.info({ ip: socket.remoteAddress }, 'ssh client sent nothing: connection closed')
      socket.destroy()
    })
    server.injectSocket(socket)
  })
  await new Promise<void>((resolve, reject) => {
    listener.once('error', reject)
    listener.listen(opts.port, opts.host, () => {
      listener.off('error', reject)
      listener.on('error', (err: Error) => {
        log.warn({ err }, 'ssh front error')
      })
      resolve()
    })
  })
  const addr = listener.address() as AddressInfo // a TCP server's address() is an AddressInfo
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address
  log.info({ host: addr.address, port: addr.port }, 'ssh front listening')
  let closing: Promise<void> | null = null
  return {
    inFlight: () => running.count,
    port: addr.port,
    url: `ssh://${host}:${addr.port}`,
    close: () => {
      closing ??= new Promise<void>((resolve) => {
        listener.close(() => {
          resolve()
        })
        for (const socket of silent.values()) socket.destroy()
        for (const c of clients) c.end()
      }).then(() => opts.upstream.close())
      return closing
    },
  }
}

function handleConnection(client: Connection, ip: string, authorized: AuthorizedKeys, opts: SshFrontOptions, running: { count: number }): void {
  const log = opts.log
  let identity: AuthorizedKey | null = null
  // A client that never finishes authenticating, or never asks for a
  // command, does not keep its connection.
  let waitingFor = 'authenticate'
  const idleTimer = setTimeout(() => {
    log.info({ ip, waitingFor }, 'ssh client idle: connection closed')
    client.end()
  }, Math.min(AUTH_TIMEOUT_MS, opts.idleTimeoutMs))
  idleTimer.unref()
  client.once('close', () => {
    clearTimeout(idleTimer)
  })
  client.on('authentication', (ctx) => {
    if (ctx.method !== 'publickey') {
      ctx.reject(['publickey'])
      return
    }
    const { key, signature, blob, hashAlgo } = ctx
    authorized
      .load()
      .then((keys) => {
        const found = findAuthorizedKey(keys, key.data)
        if (found === null) {
          if (signature !== undefined) log.info({ ip, algo: key.algo }, 'ssh key not authorized')
          ctx.reject(['publickey'])
          return
        }
        if (signature === undefined || blob === undefined) {
          ctx.accept() // the client asks whether this key would do; the signed attempt follows
          return
        }
        if (!found.key.verify(blob, signature, hashAlgo)) {
          log.info({ ip, algo: key.algo }, 'ssh key signature invalid')
          ctx.reject(['publickey'])
          return
        }
        identity = found
        ctx.accept()
      })
      .catch((err: unknown) => {
        log.error({ err }, 'ssh authentication failed')
        ctx.reject(['publickey'])
      })
  })
  client.on('ready', () => {
    waitingFor = 'send a command'
    idleTimer.refresh()
    client.on('session', (accept) => {
      const session = accept()
      let gitProtocol: string | null = null
      let used = false
      session.on('env', (accept, reject, info) => {
        // ssh2 passes no accept/reject when the client wants no reply (OpenSSH's env requests).
        const reply = (info.key === 'GIT_PROTOCOL' && /^[\w.=:-]{1,256}$/.test(info.val) ? accept : reject) as (() => void) | undefined
        if (info.key === 'GIT_PROTOCOL' && reply === accept) gitProtocol = info.val
        reply?.()
      })
      session.on('pty', (_accept, reject) => {
        ;(reject as (() => void) | undefined)?.() // undefined when no reply is wanted
      })
      session.on('shell', (accept) => {
        const channel = accept()
        void refuse(channel, 'scm-cache-proxy: interactive shells are not provided; use git clone ssh://...')
      })
      session.on('subsystem', (_accept, reject) => {
        reject()
      })
      session.on('exec', (accept, _reject, info) => {
        const channel = accept()
        if (used || identity === null) {
          void refuse(channel, 'scm-cache-proxy: one command per session')
          return
        }
        used = true
        clearTimeout(idleTimer)
        running.count++
        void runExec(channel, info.command, gitProtocol, identity, opts).finally(() => {
          running.count--
        })
      })
    })
  })
  client.on('error', (err) => {
    log.debug({ err, ip }, 'ssh client connection error')
  })
}

async function runExec(
  channel: ServerChannel,
  command: string,
  gitProtocol: string | null,
  identity: AuthorizedKey,
  opts: SshFrontOptions,
): Promise<void> {
  const started = performance.now()
  const parsed = parseSshCommand(command)
  if (!parsed.ok) {
    opts.log.info({ proto: 'ssh', reason: parsed.message }, 'ssh command refused')
    await refuse(channel, `scm-cache-proxy: ${parsed.message}`)
    return
  }
  let repo: RepoPath
  try {
    repo = opts.pathPrefix === '' ? parsed.path : toRepoPath(`${opts.pathPrefix}/${parsed.path}`)
  } catch (err) {
    if (!(err instanceof ProtocolError)) throw err
    await refuse(channel, `scm-cache-proxy: ${err.message}`)
    return
  }
  const { projectKey, repoSlug } = projectAndSlug(repo, opts.pathPrefix)
  const name = projectKey === '' ? repoSlug : `${projectKey}/${repoSlug}`
  if (!reposAllow(identity.repos, name)) {
    opts.log.info({ proto: 'ssh', repo, keyLine: identity.line }, 'ssh key not allowed this repository')
    await refuse(channel, `scm-cache-proxy: repository '${parsed.path}' not found or access denied`)
    return
  }
  await runGitSession(opts, { channel, service: parsed.service, repo, upstreamPath: parsed.path, gitProtocol }, (o) => {
    opts.onRequestDone?.({ proto: 'ssh', cmd: o.cmd, cache: o.cache, status: o.status, bytes: o.bytes })
    opts.log.info(
      {
        repo,
        proto: 'ssh',
        service: parsed.service,
        cmd: o.cmd,
        version: o.version,
        cache: o.cache,
        status: o.status,
        bytes: o.bytes,
        ms: Math.round(performance.now() - started),
      },
      'git request',
    )
  })
}

/** A message on stderr, exit status 128, end. */
async function refuse(channel: ServerChannel, message: string): Promise<void> {
  await new Promise<void>((resolve) => {
    channel.stderr.write(`${message}\n`, () => {
      resolve()
    })
  })
  channel.exit(128)
  channel.end()
}
