/**
 * One Git exec on the SSH front, after the command was parsed and the key
 * allowed the repository: the conversation between the client's channel,
 * the upstream's SSH service and the clone cache.
 *
 * The advertisement: with ref caching on for SSH and the proxy's upstream
 * key known to read the repository (AuthMemo, auth.ttl), it comes from the
 * ref cache (filled by an exec that reads the upstream's advertisement and
 * closes) and no upstream session is opened yet. Otherwise the session
 * starts with an upstream exec ("session A") whose advertisement goes to
 * the client, filtered like HTTP's; that successful advertisement is also
 * the proof that the proxy's upstream key can read the repository
 * (DESIGN §3.1, recorded in the AuthMemo for auth.ttl), and it fills the
 * ref cache when that is on. Session A is opened lazily when the
 * conversation must pass through: it reads and drops its own advertisement
 * first (the client's wants come from the one it saw; the upstream still
 * has those objects).
 *
 * v0/v1: the client's want section is read. Without depth, its next packet
 * too: `done` makes the request a clone, which the UploadPackService may
 * answer from cache (session A is then closed); anything else (haves) is
 * replayed to session A and both directions are piped until the upstream
 * exits. With depth (`deepen*`), the cached answer to wants + `done` starts
 * with the shallow list, which git expects before it says `done`: that part
 * is sent first, then the client's next packet decides: `done` gets the rest
 * of the cached answer; anything else is replayed to session A (whose own
 * shallow list is dropped, the client already has it) and piped. An
 * already-shallow client (`shallow` lines) negotiates next, so it passes
 * through whole from its want section on.
 *
 * v0/v1 `ls-remote` (an empty want list) is answered locally when session A
 * was never opened: upload-pack has nothing more to say.
 *
 * v2: the capability advertisement, then one command at a time: `fetch`
 * goes to the UploadPackService (from cache, or forwarded to session A when
 * not cacheable), a cacheable `ls-refs` to the ref cache (same entries as
 * HTTP's: the answer bytes are the same over both transports), everything
 * else is forwarded to session A and its answer relayed up to its closing
 * flush. A lone flush or the end of input ends it.
 *
 * Cache fills run on their own upstream exec (advertisement skipped, request
 * written, input closed), so a fill never depends on one client's session.
 * Two exceptions keep a poll at one upstream exec: a live session A's
 * advertisement fills the ref cache's advertisement entry, and an `ls-refs`
 * on a session whose session A is open is filled through it.
 */
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { ServerChannel } from 'ssh2'
import { ProtocolError, ProxyError, UpstreamError, toError } from '../errors.js'
import type { Log } from '../logger.js'
import { packetText, type Frame } from '../protocol/pkt-line.js'
import { parseUploadPackRequestV1 } from '../protocol/v1/upload-pack-request.js'
import { parseCommandRequestV2, type CommandRequestV2 } from '../protocol/v2/command-request.js'
import type { RepoPath } from '../repository.js'
import type { Access } from '../service/access.js'
import { SSH_UPSTREAM_KEY } from '../service/credential.js'
import { gitProtocolVersion, type ProtocolVersion } from '../protocol/git-protocol-header.js'
import type { RefsService } from '../service/refs.js'
import type { UploadPackAnswer, UploadPackService } from '../service/upload-pack.js'
import type { CacheBody } from '../service/answer.js'
import type { SshGit, UpstreamExec } from '../upstream/ssh-git.js'
import { advertisedVersion, filterSshAdvertisement, refLines } from '../service/advertisement.js'
import type { Invalidation } from '../service/invalidation.js'
import type { SshService } from './ssh-command.js'
import { firstByte } from '../io/first-byte.js'
import { concatFrames, MAX_SECTION, PktReader, send } from '../io/pkt-reader.js'
import { Outage } from '../service/outage.js'
import { keptBody, progressMarker, withOutageProgress } from '../service/outage-progress.js'


const DONE = Buffer.from('0009done\n')



export interface GitSessionDeps {
  upstream: SshGit
  uploadPack: UploadPackService
  refs: RefsService
  invalidation: Invalidation
  access: Access
  allowPush: boolean
  log: Log
  /** Outage mode (service/outage.ts); absent: none. */
  outage?: Outage
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
  cache: 'hit' | 'miss' | 'join' | 'bypass' | 'stale'
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
  /** Session A's own advertisement, filtered. */
  #liveFiltered: Buffer | null = null
  /** The advertisement the client got from the ref cache, if it came from there. */
  #cachedSent: Buffer | null = null
  /** Upstream stderr goes to the client only while the upstream's answer does. */
  #relayStderr = true
  #finished = false
  #outcome: SessionOutcome
  /** The upstream is unreachable and this session is answered from the cache (outage mode). */
  #stale: Outage | null = null

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

  /** The version the client asked for (GIT_PROTOCOL), read as upload-pack reads it. */
  get #requested(): ProtocolVersion {
    return gitProtocolVersion(this.#x.gitProtocol)
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
        // The client may have been shown refs the upstream no longer
        // advertises (and a stateful v0/v1 upload-pack refuses to send):
        // its retry gets the upstream's current refs.
        if (this.#cachedSent !== null) await this.#d.invalidation.repo(this.#x.repo, 'refs').catch(() => 0)
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
    if (code === 0) await this.#d.invalidation.repo(this.#x.repo)
    await this.#finish(code ?? 128)
    // Again after the answer: a fill that started while the push ran is dropped too.
    if (code === 0) await this.#d.invalidation.repo(this.#x.repo)
  }

  // ---- upload-pack ---------------------------------------------------------

  async #uploadPack(): Promise<void> {
    const adv = (await this.#outageAdvertisement(null)) ?? (await this.#cachedAdvertisement()) ?? (await this.#liveOrOutage())
    if (adv === null) return // the upstream refused; the session is finished
    const version = advertisedVersion(adv)
    this.#outcome.version = version
    await this.#write(adv)
    if (version === 2) {
      await this.#v2Loop()
      return
    }
    await this.#v0Conversation(version)
  }

  /**
   * The advertisement from the ref cache, when ref caching is on for SSH and
   * the proxy's upstream key is known to read the repository (the client's
   * key was checked before the session). Null: ask the upstream live.
   */
  async #cachedAdvertisement(): Promise<Buffer | null> {
    const { refs, access, log } = this.#d
    const { repo } = this.#x
    if (!refs.enabledFor('SSH')) return null
    // A check running for the proxy's key (another session's live
    // advertisement) fills the entry: wait for it rather than ask again.
    if (!(await access.settled(repo, SSH_UPSTREAM_KEY, 'ssh'))) return null
    try {
      const answer = await refs.serve({
        repo,
        key: refs.keys.ssh(repo, this.#requested),
        front: 'SSH',
        expect: { kind: 'advertisement', form: 'ssh', version: this.#requested },
        fetchUpstream: (signal) => this.#fetchAdvertisement(signal),
      })
      if (answer.kind !== 'body') return null
      const bytes = await readAll(answer.body.stream, MAX_SECTION)
      this.#outcome.cache = answer.how
      this.#cachedSent = bytes
      return bytes
    } catch (err) {
      if (this.#signal.aborted) throw err
      // Whatever went wrong (the upstream, the cache), the live path tells
      // the client in the upstream's own words, or works.
      log.info({ repo, err: toError(err) }, 'cached ssh advertisement unavailable: asking the upstream')
      return null
    }
  }

  /**
   * Session A's advertisement (the proxy key's access check), filtered; it
   * fills the ref cache when that is on. Null when the upstream refused:
   * its stderr reached the client and its exit status ended the session.
   */
  async #liveAdvertisement(): Promise<Buffer | null> {
    const { refs, access, log } = this.#d
    const { repo } = this.#x
    const refsOn = refs.enabledFor('SSH')
    const endCheck = refsOn ? access.beginCheck(repo, SSH_UPSTREAM_KEY, 'ssh') : null
    try {
      if ((await this.#ensureUp()) === null) return null
      const filtered = this.#liveFiltered
      if (filtered === null) throw new Error('no upstream advertisement') // set by #ensureUp
      if (refsOn) {
        try {
          const answer = await refs.serve({
            repo,
            key: refs.keys.ssh(repo, this.#requested),
            front: 'SSH',
            expect: { kind: 'advertisement', form: 'ssh', version: this.#requested },
            fetchUpstream: async () => Readable.from([filtered]),
          })
          // The client gets the live answer (session A speaks for it); the
          // entry is read through so waiters released below find it whole.
          if (answer.kind === 'body') await readAll(answer.body.stream, MAX_SECTION)
        } catch (err) {
          if (this.#signal.aborted) throw err
          log.info({ repo, err: toError(err) }, 'ssh advertisement not cached')
        }
      }
      return filtered
    } finally {
      endCheck?.()
    }
  }

  // ---- outage mode (DESIGN §3.10) ------------------------------------------

  /** The live advertisement; an unreachable upstream in outage mode answers from the last good one. */
  async #liveOrOutage(): Promise<Buffer | null> {
    try {
      const adv = await this.#liveAdvertisement()
      this.#d.outage?.up()
      return adv
    } catch (err) {
      const outage = this.#d.outage
      if (outage === undefined || !Outage.isUnreachable(err)) throw err
      outage.down(toError(err).message)
      if (!outage.enabled) throw err
      const adv = await this.#outageAdvertisement(err)
      if (adv === null) throw outage.error('this request')
      return adv
    }
  }

  /**
   * With outage mode on and the upstream unreachable (`cause`, or
   * remembered down when null): the last good advertisement, when the
   * proxy's upstream key read the repository within auth.outage-ttl (the
   * client's key was checked locally). The session is then answered from
   * the cache only. Null: not in an outage (cause null), or nothing kept.
   */
  async #outageAdvertisement(cause: unknown): Promise<Buffer | null> {
    const { outage, access, refs } = this.#d
    if (outage === undefined || !outage.enabled) return null
    if (cause === null && !outage.remembersDown()) return null
    const { repo } = this.#x
    if (!access.acceptedForOutage(repo, SSH_UPSTREAM_KEY, 'ssh', outage.outageTtlMs)) throw outage.error('this request')
    const adv = await outage.lastGood.load(repo, refs.keys.ssh(repo, this.#requested))
    if (adv === null) throw outage.error('this advertisement')
    this.#stale = outage
    this.#stale.countAnswer()
    this.#outcome.cache = 'stale'
    this.#d.log.info({ repo }, 'answered from the cache during an upstream outage')
    return adv
  }

  /** Keeps a live advertisement as the last good one (outage mode). */
  #keepAdvertisement(adv: Buffer): void {
    const { outage, refs } = this.#d
    if (outage === undefined) return
    void outage.lastGood.save(this.#x.repo, refs.keys.ssh(this.#x.repo, this.#requested), adv) // never rejects
  }

  /** A ref-cache fill: the upstream's advertisement (the proxy key's access check), filtered. */
  async #fetchAdvertisement(signal: AbortSignal): Promise<Readable> {
    const { upstream, access } = this.#d
    let adv: Buffer
    try {
      adv = await upstream.advertisement(this.#x.upstreamPath, this.#protocolEnv(), signal)
    } catch (err) {
      if (err instanceof UpstreamError && err.code === 'ERR_UPSTREAM_SSH') access.reject(this.#x.repo, SSH_UPSTREAM_KEY, 'ssh')
      throw err
    }
    access.accept(this.#x.repo, SSH_UPSTREAM_KEY, 'ssh')
    const filtered = await filterSshAdvertisement(adv)
    this.#keepAdvertisement(filtered)
    return Readable.from([filtered])
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
    let shallowClient: boolean
    try {
      const req = parseUploadPackRequestV1(wantSection)
      shallowClient = req.shallows.length > 0 || req.deepenRelative
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
      // An empty want list (ls-remote): upload-pack answers nothing more,
      // so without a session A there is nothing to ask the upstream.
      if (this.#up === null) await this.#finish(0)
      else await this.#passV0([wantSection], false)
      return
    }
    if (shallowClient) {
      // An already-shallow client negotiates (haves) next: v0/v1 over ssh
      // keeps that state in one upload-pack, so it passes through whole.
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
    const body = new PktReader(answer.body.stream)
    let shallowList: Frame[] | null
    try {
      shallowList = await body.untilFlush()
    } catch (err) {
      answer.body.stream.destroy()
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
      answer.body.stream.destroy()
      this.#outcome.cache = 'bypass'
      await this.#passV0(next === null ? [wantSection] : [wantSection, next.raw], true)
      return
    }
    await this.#endUpstream()
    await pipeline(Readable.from(body.rest()), this.#counter(), this.#ch, { end: false, signal: this.#signal })
    await this.#finish(0)
  }

  async #v2Loop(): Promise<void> {
    // From here on, one log line per command.
    this.#outcome.cmd = ''
    for (;;) {
      const frames = await this.#client.untilFlush()
      if (frames === null || frames.length === 1) break
      const request = concatFrames(frames)
      let parsed: CommandRequestV2 | null = null
      try {
        parsed = parseCommandRequestV2(request)
      } catch (err) {
        if (!(err instanceof ProtocolError)) throw err
      }
      const command = parsed?.command ?? null
      this.#outcome = { ...this.#outcome, cmd: command ?? 'unknown', cache: 'bypass', bytes: 0, status: 0 }
      let answer: { body: CacheBody } | null = null
      if (command === 'fetch') answer = await this.#serve(2, request)
      else if (parsed !== null && command === 'ls-refs') answer = await this.#serveLsRefs(request, parsed)
      if (answer !== null) {
        await this.#streamBody(answer.body)
      } else if (!(await this.#forwardV2(request, parsed !== null && command === 'ls-refs' ? this.#lsRefsKey(parsed) : null))) {
        return
      }
      this.#onCommand(this.#outcome)
      this.#outcome = { ...this.#outcome, cmd: '' }
    }
    await this.#endUpstream()
    await this.#finish(0)
  }

  /** One v2 command through session A, its answer relayed up to its flush. False if the upstream ended the session. */
  async #forwardV2(request: Buffer, keepAs: string | null = null): Promise<boolean> {
    const up = await this.#ensureUp()
    if (up === null) return false
    const reader = this.#upstreamReader()
    await send(up.channel, request, this.#signal)
    const kept: Buffer[] = []
    for (;;) {
      const frame = await reader.next()
      if (frame === null) {
        const code = await up.exit
        this.#outcome.status = code ?? 128
        await this.#finish(code ?? 128)
        return false
      }
      await this.#write(frame.raw)
      if (keepAs !== null) kept.push(frame.raw)
      if (frame.length === 0) {
        // A whole ls-refs answer: the last good one for outage mode.
        if (keepAs !== null && this.#d.outage !== undefined) void this.#d.outage.lastGood.save(this.#x.repo, keepAs, Buffer.concat(kept))
        return true
      }
    }
  }

  /** The ref cache's key of an ls-refs request (shared with HTTP), or null when it has none. */
  #lsRefsKey(cmd: CommandRequestV2): string | null {
    const decision = this.#d.refs.lsRefsDecision(this.#x.repo, cmd.capabilities, cmd.args)
    return decision.cacheable ? decision.key : null
  }

  // ---- the cache -----------------------------------------------------------

  /** The cached (or being-filled) answer, or null when the request must pass through. */
  async #serve(version: 0 | 1 | 2, body: Buffer): Promise<Extract<UploadPackAnswer, { kind: 'body' }> | null> {
    const { uploadPack, access } = this.#d
    const { repo } = this.#x
    // DESIGN §3.1 for SSH: the client's key was checked against its repos=
    // globs before the session started; the proxy's upstream key must have
    // read this repository within auth.ttl (this session's own
    // advertisement recorded it). Unknown: the live upstream answers.
    if (this.#stale !== null) return this.#serveStale(version, body, this.#stale)
    if (!access.isAccepted(repo, SSH_UPSTREAM_KEY, 'ssh')) return null
    let answer: UploadPackAnswer
    try {
      answer = await uploadPack.serve({
        repo,
        version,
        body,
        front: 'SSH',
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
    return null
  }

  /** A pack from the cache during an outage; anything the cache does not hold gets the outage error. */
  async #serveStale(version: 0 | 1 | 2, body: Buffer, outage: Outage): Promise<Extract<UploadPackAnswer, { kind: 'body' }>> {
    const answer = await this.#d.uploadPack.serveCachedOnly({ repo: this.#x.repo, version, body, front: 'SSH' }, (what) => outage.error(what))
    outage.countAnswer()
    this.#outcome.cache = 'stale'
    const marker = progressMarker(version, body)
    return marker === null ? answer : { ...answer, body: withOutageProgress(answer.body, marker) }
  }

  /**
   * A v2 `ls-refs` from the ref cache, or null when it must go to session A.
   * The key is HTTP's: upload-pack writes the same answer bytes whether it
   * runs under sshd or http-backend (checked with git 2.39), so both fronts
   * share the entry. Filled by forwarding the command on its own exec.
   */
  async #serveLsRefs(request: Buffer, cmd: CommandRequestV2): Promise<{ body: CacheBody } | null> {
    const { refs, access, log } = this.#d
    const { repo } = this.#x
    if (this.#stale !== null) {
      const decision = refs.lsRefsDecision(repo, cmd.capabilities, cmd.args)
      const kept = decision.cacheable ? await this.#stale.lastGood.load(repo, decision.key) : null
      if (kept === null) throw this.#stale.error('this ls-refs request')
      this.#stale.countAnswer()
      this.#outcome.cache = 'stale'
      return { body: keptBody(kept) }
    }
    if (!refs.enabledFor('SSH')) return null
    const decision = refs.lsRefsDecision(repo, cmd.capabilities, cmd.args)
    // Unknown access (auth.ttl ran out during a long session): session A's
    // answer is the check.
    if (!decision.cacheable || !access.isAccepted(repo, SSH_UPSTREAM_KEY, 'ssh')) return null
    const answer = await refs.serve({
      repo,
      key: decision.key,
      front: 'SSH',
      expect: { kind: 'pkt-lines' },
      // With session A open (its advertisement was this session's access
      // check), it answers the fill: one upstream exec per poll at most.
      fetchUpstream: (signal) => (this.#up === null ? this.#fill(2, request, signal) : this.#lsRefsOnSessionA(request)),
    })
    if (answer.kind !== 'body') return null
    const err = await firstByte(answer.body.stream)
    if (err !== null) {
      answer.body.stream.destroy()
      if (this.#signal.aborted) throw err
      log.info({ repo, err }, 'ls-refs fill failed before its first byte: forwarded to the upstream')
      return null
    }
    this.#outcome.cache = answer.how
    return answer
  }

  /** `ls-refs` on session A, its answer read up to its flush (a fill of the ref cache). */
  async #lsRefsOnSessionA(request: Buffer): Promise<Readable> {
    const up = this.#requireUp()
    await send(up.channel, request, this.#signal)
    const answer = await this.#upstreamReader().untilFlush()
    if (answer === null) throw new UpstreamError('ERR_UPSTREAM_SSH', 'the upstream ended the session instead of answering ls-refs')
    return Readable.from([concatFrames(answer)])
  }

  /** A cache fill: its own upstream exec (SshGit.uploadPack). */
  #fill(version: ProtocolVersion, request: Buffer, signal: AbortSignal): Promise<Readable> {
    return this.#d.upstream.uploadPack(this.#x.upstreamPath, version, request, signal)
  }

  // ---- pass-through --------------------------------------------------------

  async #passV0(replay: Buffer[], skipShallowList: boolean): Promise<void> {
    const up = await this.#ensureUp()
    if (up === null) return
    const code = await this.#pipeBothWays(up, replay, skipShallowList)
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
    const up = await this.#d.upstream.open(service, this.#x.upstreamPath, env)
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

  /**
   * Session A, opened now if it was not: its advertisement is read (and
   * kept, filtered, for the live path) but not sent; the client already has
   * one. Null when the upstream refused: its stderr reached the client and
   * its exit status ended the session.
   */
  async #ensureUp(): Promise<UpstreamExec | null> {
    if (this.#up !== null) return this.#up
    // Answered from the cache during an outage: what needs the upstream cannot be answered.
    if (this.#stale !== null) throw this.#stale.error('this request')
    const up = await this.#openUpstream('git-upload-pack', this.#protocolEnv())
    const adv = await this.#upstreamReader()
      .untilFlush()
      .catch(() => null)
    if (adv === null) {
      // Unknown repository, no access: pass the upstream's exit status on.
      const code = await up.exit
      this.#outcome.status = code === 0 || code === null ? 128 : code
      await this.#finish(this.#outcome.status)
      return null
    }
    this.#d.access.accept(this.#x.repo, SSH_UPSTREAM_KEY, 'ssh')
    this.#liveFiltered = await filterSshAdvertisement(concatFrames(adv))
    this.#keepAdvertisement(this.#liveFiltered)
    if (this.#cachedSent !== null && refLines(this.#cachedSent) !== refLines(this.#liveFiltered)) {
      // The upstream's refs moved since the cached advertisement (a push
      // that bypassed the proxy): this client carries on with the wants it
      // chose, the next poll gets the upstream's refs.
      this.#d.log.info({ repo: this.#x.repo }, 'upstream refs moved since the cached ssh advertisement: ref entries dropped')
      await this.#d.invalidation.repo(this.#x.repo, 'refs')
    }
    return up
  }

  #protocolEnv(): Record<string, string> {
    return this.#x.gitProtocol === null ? {} : { GIT_PROTOCOL: this.#x.gitProtocol }
  }

  #requireUp(): UpstreamExec {
    if (this.#up === null) throw new Error('no upstream session') // callers check #up first
    return this.#up
  }

  #upstreamReader(): PktReader {
    if (this.#upReader === null) throw new Error('no upstream session') // set with #up, which callers open first
    return this.#upReader
  }

  /** Session A is not needed any more (the answer comes from the cache). */
  async #endUpstream(): Promise<void> {
    this.#relayStderr = false
    this.#up?.channel.close()
  }

  async #streamBody(body: CacheBody): Promise<void> {
    this.#outcome.bytes += await body.copyTo(this.#ch, this.#signal, false)
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

/** A whole (small) stream in memory; throws past `limit` bytes. */
async function readAll(body: Readable, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = []
  let size = 0
  await pipeline(body, async (source: AsyncIterable<Buffer>) => {
    for await (const c of source) {
      size += c.length
      if (size > limit) throw new ProtocolError('ERR_PROTOCOL_TOO_LONG', `advertisement longer than ${limit} bytes`)
      chunks.push(c)
    }
  })
  return Buffer.concat(chunks)
}

