/**
 * One Git exec on the SSH front, after the command was parsed and the key
 * allowed the repository: the conversation between the client's channel,
 * the upstream's SSH service and the clone cache.
 *
 * Every session starts with an upstream exec ("session A") whose
 * advertisement goes to the client, filtered like HTTP's. That successful
 * advertisement is also the proof that the proxy's upstream key can read the
 * repository (DESIGN §3.1, recorded in the AuthMemo for auth.ttl).
 *
 * v0/v1: the client's want section is read. Without depth, its next packet
 * too: `done` makes the request a clone, which the UploadPackService may
 * answer from cache (session A is then closed); anything else (haves) is
 * replayed to session A and both directions are piped until the upstream
 * exits. With depth (`deepen*`), the cached answer to wants + `done` starts
 * with the shallow list, which git expects before it says `done`: that part
 * is sent first, then the client's next packet decides: `done` gets the rest
 * of the cached answer; anything else is replayed to session A (whose own
 * shallow list is dropped, the client already has it) and piped.
 *
 * v2: the capability advertisement, then one command at a time: `fetch`
 * goes to the UploadPackService (from cache, or forwarded to session A when
 * not cacheable), everything else is forwarded to session A and its answer
 * relayed up to its closing flush. A lone flush or the end of input ends it.
 *
 * Cache fills run on their own upstream exec (advertisement skipped, request
 * written, input closed), so a fill never depends on one client's session.
 */
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { ServerChannel } from 'ssh2'
import { ProtocolError, ProxyError, UpstreamError, toError } from '../errors.js'
import type { Log } from '../logger.js'
import type { AuthMemo } from '../cache/auth-memo.js'
import type { CacheStore } from '../cache/store.js'
import { STRIPPED_CAPABILITIES, STRIPPED_FETCH_FEATURES } from '../cache/policy.js'
import { packetText, type Frame } from '../protocol/pkt-line.js'
import { createAdvertisementFilterV1 } from '../protocol/v1/advertisement.js'
import { parseUploadPackRequestV1 } from '../protocol/v1/upload-pack-request.js'
import { filterCapabilityAdvertisementV2 } from '../protocol/v2/capability-advertisement.js'
import { parseCommandRequestV2 } from '../protocol/v2/command-request.js'
import type { RepoPath } from '../repository.js'
import type { UploadPackAnswer, UploadPackService } from '../service/upload-pack.js'
import type { SshUpstream, UpstreamExec } from '../upstream/ssh.js'
import type { SshService } from './ssh-command.js'
import { concatFrames, PktReader, send } from './ssh-io.js'

/** The AuthMemo's name for "the proxy's own upstream key" (never a valid HTTP header value). */
export const SSH_UPSTREAM_CREDENTIAL = '\0ssh-upstream-key'

const STRIPPED_V1: ReadonlySet<string> = new Set([...STRIPPED_CAPABILITIES, ...STRIPPED_FETCH_FEATURES])
const DONE = Buffer.from('0009done\n')
const MAX_STDERR_KEPT = 64 * 1024

export interface GitSessionDeps {
  upstream: SshUpstream
  uploadPack: UploadPackService
  store: CacheStore
  authMemo: AuthMemo
  allowPush: boolean
  log: Log
}

export interface GitExec {
  channel: ServerChannel
  service: SshService
  /** The repository as the cache knows it (shared with HTTP). */
  repo: RepoPath
  /** The path under `upstream.ssh.url`. */
  upstreamPath: string
  /** The client's GIT_PROTOCOL (`version=2`), if it sent one. */
  gitProtocol: string | null
}

export interface SessionOutcome {
  cmd: string
  version: 0 | 1 | 2
  cache: 'hit' | 'miss' | 'join' | 'bypass'
  status: number
  bytes: number
}

/** Runs one exec to its end; always ends the channel with an exit status. */
export async function runGitSession(deps: GitSessionDeps, exec: GitExec, onCommand: (o: SessionOutcome) => void): Promise<void> {
  const session = new GitSession(deps, exec, onCommand)
  await session.run()
}

class GitSession {
  readonly #d: GitSessionDeps
  readonly #x: GitExec
  readonly #ch: ServerChannel
  readonly #abort = new AbortController()
  readonly #client: PktReader
  readonly #onCommand: (o: SessionOutcome) => void
  #up: UpstreamExec | null = null
  #upReader: PktReader | null = null
  /** Upstream stderr goes to the client only while the upstream's answer does. */
  #relayStderr = true
  #finished = false
  #outcome: SessionOutcome

  constructor(deps: GitSessionDeps, exec: GitExec, onCommand: (o: SessionOutcome) => void) {
    this.#d = deps
    this.#x = exec
    this.#ch = exec.channel
    this.#onCommand = onCommand
    this.#client = new PktReader(exec.channel)
    this.#outcome = { cmd: exec.service === 'git-receive-pack' ? 'receive-pack' : 'upload-pack', version: 0, cache: 'bypass', status: 0, bytes: 0 }
    this.#ch.once('close', () => {
      this.#abort.abort(new Error('the client closed the SSH channel'))
    })
  }

  get #signal(): AbortSignal {
    return this.#abort.signal
  }

  async run(): Promise<void> {
    try {
      if (this.#x.service === 'git-receive-pack') await this.#receivePack()
      else await this.#uploadPack()
    } catch (err) {
      const e = toError(err)
      if (!this.#signal.aborted) {
        const level = e instanceof ProxyError && e.expose ? 'info' : 'warn'
        this.#d.log[level]({ err: e, repo: this.#x.repo }, 'ssh git session failed')
        const message = e instanceof ProxyError && e.expose ? e.message : 'internal error'
        await this.#fail(`scm-cache-proxy: ${message}`)
      }
    } finally {
      this.#up?.channel.close()
      if (!this.#finished) this.#ch.destroy()
      if (this.#outcome.cmd !== '') this.#onCommand(this.#outcome)
    }
  }

  // ---- receive-pack --------------------------------------------------------

  async #receivePack(): Promise<void> {
    if (!this.#d.allowPush) {
      await this.#fail(
        'scm-cache-proxy: pushes are not accepted through this SSH proxy (proxy.ssh.allow-push=false); push to the upstream server directly',
      )
      this.#outcome.status = 128
      return
    }
    const up = await this.#openUpstream('git-receive-pack', {})
    const code = await this.#pipeBothWays(up, [], false)
    if (code === 0) await this.#d.store.invalidateRepo(this.#x.repo)
    await this.#finish(code ?? 128)
    // Again after the answer: a fill that started while the push ran is dropped too.
    if (code === 0) await this.#d.store.invalidateRepo(this.#x.repo)
  }

  // ---- upload-pack ---------------------------------------------------------

  async #uploadPack(): Promise<void> {
    const env: Record<string, string> = {}
    if (this.#x.gitProtocol !== null) env['GIT_PROTOCOL'] = this.#x.gitProtocol
    const up = await this.#openUpstream('git-upload-pack', env)
    const upReader = this.#upstreamReader()
    const adv = await upReader.untilFlush().catch(() => null)
    if (adv === null) {
      // The upstream refused (unknown repository, no access): its stderr
      // already reached the client; pass its exit status on.
      const code = await up.exit
      this.#outcome.status = code === 0 || code === null ? 128 : code
      await this.#finish(this.#outcome.status)
      return
    }
    this.#d.authMemo.accept(this.#x.repo, SSH_UPSTREAM_CREDENTIAL)
    const first = adv[0] === undefined || adv[0].length === 0 ? '' : packetText(adv[0].raw.subarray(4))
    const version = first === 'version 2' ? 2 : first === 'version 1' ? 1 : 0
    this.#outcome.version = version
    if (version === 2) {
      const filtered = filterCapabilityAdvertisementV2(concatFrames(adv), {
        fetchFeatures: STRIPPED_FETCH_FEATURES,
        capabilities: STRIPPED_CAPABILITIES,
      })
      await this.#write(filtered)
      await this.#v2Loop()
      return
    }
    await this.#write(await filterV1(concatFrames(adv)))
    await this.#v0Conversation(version)
  }

  async #v0Conversation(version: 0 | 1): Promise<void> {
    const wants = await this.#client.untilFlush()
    if (wants === null) {
      // The client only wanted the advertisement (and hung up).
      await this.#endUpstream()
      await this.#finish(0)
      return
    }
    const wantSection = concatFrames(wants)
    let depth: boolean
    try {
      const req = parseUploadPackRequestV1(wantSection)
      // Whenever upload-pack answers the want section with a shallow list
      // (receive_needs), git waits for it before saying anything more.
      depth =
        req.deepen !== null ||
        req.deepenSince !== null ||
        req.deepenNot.length > 0 ||
        req.deepenRelative ||
        req.shallows.length > 0
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err
      await this.#passV0([wantSection], false)
      return
    }
    if (wants.length === 1) {
      // An empty want list (ls-remote): upload-pack answers nothing more.
      await this.#passV0([wantSection], false)
      return
    }
    if (depth) {
      await this.#depthV0(version, wantSection)
      return
    }
    const next = await this.#client.next()
    if (next === null || !isDone(next)) {
      await this.#passV0(next === null ? [wantSection] : [wantSection, next.raw], false)
      return
    }
    const answer = await this.#serve(version, Buffer.concat([wantSection, DONE]))
    if (answer === null) {
      await this.#passV0([wantSection, next.raw], false)
      return
    }
    await this.#endUpstream()
    await this.#streamBody(answer.body)
    await this.#finish(0)
  }

  /** v0/v1 with `deepen*`: shallow list first, then the client's `done` (see the file header). */
  async #depthV0(version: 0 | 1, wantSection: Buffer): Promise<void> {
    const answer = await this.#serve(version, Buffer.concat([wantSection, DONE]))
    if (answer === null) {
      await this.#passV0([wantSection], false)
      return
    }
    const body = new PktReader(answer.body)
    let shallowList: Frame[] | null
    try {
      shallowList = await body.untilFlush()
    } catch (err) {
      answer.body.destroy()
      throw err
    }
    if (shallowList === null) {
      throw new UpstreamError('ERR_UPSTREAM_BAD_ANSWER', 'the upstream answered a shallow clone without a shallow list')
    }
    await this.#write(concatFrames(shallowList))
    const next = await this.#client.next()
    if (next === null || !isDone(next)) {
      // Not the clone we answered from cache: the upstream takes over.
      this.#d.log.debug({ repo: this.#x.repo }, 'shallow list sent from cache; the client negotiates with the upstream')
      answer.body.destroy()
      this.#outcome.cache = 'bypass'
      await this.#passV0(next === null ? [wantSection] : [wantSection, next.raw], true)
      return
    }
    await this.#endUpstream()
    await this.#streamBody(Readable.from(body.rest()))
    await this.#finish(0)
  }

  async #v2Loop(): Promise<void> {
    // From here on, one log line per command.
    this.#outcome.cmd = ''
    for (;;) {
      const frames = await this.#client.untilFlush()
      if (frames === null || frames.length === 1) break
      const request = concatFrames(frames)
      let command: string | null = null
      try {
        command = parseCommandRequestV2(request)?.command ?? null
      } catch (err) {
        if (!(err instanceof ProtocolError)) throw err
      }
      this.#outcome = { ...this.#outcome, cmd: command ?? 'unknown', cache: 'bypass', bytes: 0, status: 0 }
      const answer = command === 'fetch' ? await this.#serve(2, request) : null
      if (answer !== null) {
        await this.#streamBody(answer.body)
      } else if (!(await this.#forwardV2(request))) {
        return
      }
      this.#onCommand(this.#outcome)
      this.#outcome = { ...this.#outcome, cmd: '' }
    }
    await this.#endUpstream()
    await this.#finish(0)
  }

  /** One v2 command through session A, its answer relayed up to its flush. False if the upstream ended the session. */
  async #forwardV2(request: Buffer): Promise<boolean> {
    const up = this.#requireUp()
    const reader = this.#upstreamReader()
    await send(up.channel, request, this.#signal)
    for (;;) {
      const frame = await reader.next()
      if (frame === null) {
        const code = await up.exit
        this.#outcome.status = code ?? 128
        await this.#finish(code ?? 128)
        return false
      }
      await this.#write(frame.raw)
      if (frame.length === 0) return true
    }
  }

  // ---- the cache -----------------------------------------------------------

  /** The cached (or being-filled) answer, or null when the request must pass through. */
  async #serve(version: 0 | 1 | 2, body: Buffer): Promise<Extract<UploadPackAnswer, { kind: 'body' }> | null> {
    const { uploadPack, authMemo } = this.#d
    const { repo } = this.#x
    let answer: UploadPackAnswer
    try {
      answer = await uploadPack.serve({
        repo,
        version,
        body,
        front: 'SSH',
        authorize: async () => {
          // DESIGN §3.1 for SSH: the client's key was checked against its
          // repos= globs before the session started; the proxy's upstream
          // key must have read this repository within auth.ttl (this
          // session's own advertisement recorded it).
          if (authMemo.isAccepted(repo, SSH_UPSTREAM_CREDENTIAL)) return null
          throw new UpstreamError('ERR_UPSTREAM_AUTH', 'the upstream no longer accepts the proxy for this repository', {
            statusCode: 403,
          })
        },
        fetchUpstream: (signal) => this.#fill(version, body, signal),
      })
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err
      this.#d.log.info({ repo, err: { code: err.code, message: err.message } }, 'unparsed upload-pack request passed through')
      return null
    }
    if (answer.kind === 'body') {
      this.#outcome.cache = answer.how
      return answer
    }
    if (answer.kind === 'refused') {
      answer.response.body.resume()
      throw new UpstreamError('ERR_UPSTREAM_AUTH', 'the upstream refused access to this repository', { statusCode: 403 })
    }
    return null
  }

  /** A cache fill: its own upstream exec, advertisement skipped, request written, input closed. */
  async #fill(version: 0 | 1 | 2, request: Buffer, signal: AbortSignal): Promise<Readable> {
    const env: Record<string, string> = {}
    if (version > 0) env['GIT_PROTOCOL'] = `version=${version}`
    const up = await this.#d.upstream.exec(this.#d.upstream.commandFor('git-upload-pack', this.#x.upstreamPath), env)
    const stderr: Buffer[] = []
    let kept = 0
    up.channel.stderr.on('data', (c: Buffer) => {
      if (kept < MAX_STDERR_KEPT) stderr.push(c)
      kept += c.length
    })
    const onAbort = (): void => {
      up.channel.close()
    }
    signal.addEventListener('abort', onAbort, { once: true })
    const reader = new PktReader(up.channel)
    const failure = async (what: string): Promise<UpstreamError> => {
      const code = await up.exit
      const text = Buffer.concat(stderr).toString('utf8').trim()
      return new UpstreamError('ERR_UPSTREAM_SSH', `upstream upload-pack ${what} (exit ${code ?? 'none'})${text === '' ? '' : `: ${text}`}`)
    }
    try {
      const adv = await reader.untilFlush()
      if (adv === null) throw await failure('sent no advertisement')
      await send(up.channel, request, signal)
      up.channel.end()
    } catch (err) {
      signal.removeEventListener('abort', onAbort)
      up.channel.close()
      throw err
    }
    async function* answer(): AsyncGenerator<Buffer> {
      try {
        yield* reader.rest()
        const code = await up.exit
        if (code !== 0) throw await failure('failed')
      } finally {
        signal.removeEventListener('abort', onAbort)
        up.channel.close()
      }
    }
    return Readable.from(answer())
  }

  // ---- pass-through --------------------------------------------------------

  async #passV0(replay: Buffer[], skipShallowList: boolean): Promise<void> {
    const code = await this.#pipeBothWays(this.#requireUp(), replay, skipShallowList)
    this.#outcome.cache = 'bypass'
    await this.#finish(code ?? 128)
  }

  /**
   * `replay`, then the rest of the client's input, to the upstream; the
   * upstream's output (after its shallow list, if `skipShallowList`) to the
   * client. Resolves with the upstream's exit status once its output ended.
   */
  async #pipeBothWays(up: UpstreamExec, replay: Buffer[], skipShallowList: boolean): Promise<number | null> {
    const reader = this.#upstreamReader()
    const signal = this.#signal
    const client = this.#client
    const toUpstream = async (): Promise<void> => {
      for (const b of replay) await send(up.channel, b, signal)
      for await (const chunk of client.rest()) await send(up.channel, chunk, signal)
      up.channel.end()
    }
    // The client may keep its input open until the upstream is done; this
    // pump ends with the channels, it is not waited for.
    toUpstream().catch(() => {
      // The client or the upstream went away: the output side tells.
    })
    if (skipShallowList) await reader.untilFlush()
    const counter = this.#counter()
    await pipeline(Readable.from(reader.rest()), counter, this.#ch, { end: false, signal })
    return up.exit
  }

  // ---- plumbing ------------------------------------------------------------

  async #openUpstream(service: SshService, env: Record<string, string>): Promise<UpstreamExec> {
    const up = await this.#d.upstream.exec(this.#d.upstream.commandFor(service, this.#x.upstreamPath), env)
    this.#up = up
    this.#upReader = new PktReader(up.channel)
    up.channel.stderr.on('data', (c: Buffer) => {
      if (this.#relayStderr && !this.#finished) this.#ch.stderr.write(c)
    })
    if (this.#signal.aborted) up.channel.close()
    this.#signal.addEventListener(
      'abort',
      () => {
        up.channel.close()
      },
      { once: true },
    )
    return up
  }

  #requireUp(): UpstreamExec {
    if (this.#up === null) throw new Error('no upstream session') // opened first in every path
    return this.#up
  }

  #upstreamReader(): PktReader {
    if (this.#upReader === null) throw new Error('no upstream session') // opened first in every path
    return this.#upReader
  }

  /** Session A is not needed any more (the answer comes from the cache). */
  async #endUpstream(): Promise<void> {
    this.#relayStderr = false
    this.#up?.channel.close()
  }

  async #streamBody(body: Readable): Promise<void> {
    await pipeline(body, this.#counter(), this.#ch, { end: false, signal: this.#signal })
  }

  /** A pipeline step that counts the bytes sent to the client. */
  #counter(): (source: AsyncIterable<Buffer>) => AsyncGenerator<Buffer> {
    const add = (n: number): void => {
      this.#outcome.bytes += n
    }
    return async function* (source: AsyncIterable<Buffer>) {
      for await (const chunk of source) {
        add(chunk.length)
        yield chunk
      }
    }
  }

  async #write(data: Buffer): Promise<void> {
    this.#outcome.bytes += data.length
    await send(this.#ch, data, this.#signal)
  }

  /** Everything written has left, then the exit status, then EOF and close. */
  async #finish(code: number): Promise<void> {
    if (this.#finished) return
    await send(this.#ch, Buffer.alloc(0), this.#signal)
    await send(this.#ch.stderr, Buffer.alloc(0), this.#signal)
    this.#finished = true
    this.#outcome.status = code
    this.#ch.exit(code)
    this.#ch.end()
  }

  async #fail(message: string): Promise<void> {
    if (this.#finished) return
    this.#relayStderr = false
    try {
      await send(this.#ch.stderr, Buffer.from(`${message}\n`), this.#signal)
      await this.#finish(128)
    } catch {
      // The client is gone.
    }
  }
}

function isDone(frame: Frame): boolean {
  return frame.length > 4 && packetText(frame.raw.subarray(4)) === 'done'
}

/** A v0/v1 advertisement (ssh form, complete up to its flush) without the stripped capabilities. */
async function filterV1(advertisement: Buffer): Promise<Buffer> {
  const chunks: Buffer[] = []
  await pipeline(Readable.from([advertisement]), createAdvertisementFilterV1(STRIPPED_V1), async (source: AsyncIterable<Buffer>) => {
    for await (const c of source) chunks.push(c)
  })
  return Buffer.concat(chunks)
}
