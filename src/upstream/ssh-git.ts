/**
 * Git over the SSH upstream (DESIGN §7): what the proxy asks the upstream's
 * `git-upload-pack` and `git-receive-pack`, on exec channels of
 * `SshUpstream` made with the proxy's own key.
 *
 * - `advertisement`: an exec read up to its advertisement's flush, then
 *   closed (a ref-cache fill, and the proxy key's access check);
 * - `uploadPack`: a cache fill on its own exec: advertisement skipped, the
 *   request written, input closed, the answer streamed to the end, the exit
 *   status checked;
 * - `open`: a live exec the SSH front converses through (pass-through,
 *   pushes).
 */
import { Readable } from 'node:stream'
import { UpstreamError } from '../errors.js'
import { concatFrames, PktReader, send } from '../io/pkt-reader.js'
import type { ProtocolVersion } from '../protocol/git-protocol-header.js'
import type { SshUpstream, UpstreamExec } from './ssh.js'
import type { UpstreamGit } from './upstream-git.js'

export type { UpstreamExec } from './ssh.js'

const MAX_STDERR_KEPT = 64 * 1024

export type SshGitService = 'git-upload-pack' | 'git-receive-pack'

export class SshGit {
  readonly #upstream: SshUpstream

  constructor(upstream: SshUpstream) {
    this.#upstream = upstream
  }

  /** A live exec of `service` on `path` (under `upstream.ssh.url`'s prefix). */
  open(service: SshGitService, path: string, env: Record<string, string>): Promise<UpstreamExec> {
    return this.#upstream.exec(this.#upstream.commandFor(service, path), env)
  }

  /**
   * The upstream's upload-pack advertisement of `path`, whole up to its
   * flush (SSH form, unfiltered). Rejects with an UpstreamError carrying the
   * upstream's stderr and exit status when it sends none (no such
   * repository, no access).
   */
  async advertisement(path: string, env: Record<string, string>, signal: AbortSignal): Promise<Buffer> {
    const up = await this.open('git-upload-pack', path, env)
    const stderr = keepStderr(up)
    const onAbort = (): void => {
      up.channel.close()
    }
    signal.addEventListener('abort', onAbort, { once: true })
    try {
      const adv = await new PktReader(up.channel).untilFlush()
      if (adv === null) throw await failure(up, stderr, 'sent no advertisement')
      return concatFrames(adv)
    } finally {
      signal.removeEventListener('abort', onAbort)
      up.channel.close()
    }
  }

  /**
   * A cache fill: `request` (one v0/v1 want section with `done`, or one v2
   * command) on an exec of its own; resolves with the answer as it streams.
   * The stream fails if the upstream exits with a non-zero status.
   */
  async uploadPack(path: string, version: ProtocolVersion, request: Buffer, signal: AbortSignal): Promise<Readable> {
    const env: Record<string, string> = version > 0 ? { GIT_PROTOCOL: `version=${version}` } : {}
    const up = await this.open('git-upload-pack', path, env)
    const stderr = keepStderr(up)
    const onAbort = (): void => {
      up.channel.close()
    }
    signal.addEventListener('abort', onAbort, { once: true })
    const reader = new PktReader(up.channel)
    try {
      const adv = await reader.untilFlush()
      if (adv === null) throw await failure(up, stderr, 'sent no advertisement')
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
        if (code !== 0) throw await failure(up, stderr, 'failed')
      } finally {
        signal.removeEventListener('abort', onAbort)
        up.channel.close()
      }
    }
    return Readable.from(answer())
  }

  /** UpstreamGit for one repository path (the advertisement asked for as GIT_PROTOCOL `env` says). */
  forPath(path: string, env: Record<string, string>): UpstreamGit {
    return {
      advertise: async (_version, signal) => Readable.from([await this.advertisement(path, env, signal)]),
      uploadPack: (version, request, signal) => this.uploadPack(path, version, request, signal),
    }
  }

  close(): Promise<void> {
    return this.#upstream.close()
  }
}

async function failure(up: UpstreamExec, stderr: () => string, what: string): Promise<UpstreamError> {
  const code = await up.exit
  const text = stderr().trim()
  return new UpstreamError('ERR_UPSTREAM_SSH', `upstream upload-pack ${what} (exit ${code ?? 'none'})${text === '' ? '' : `: ${text}`}`)
}

/** Collects an upstream exec's stderr (bounded) for error messages. */
function keepStderr(up: UpstreamExec): () => string {
  const chunks: Buffer[] = []
  let kept = 0
  up.channel.stderr.on('data', (c: Buffer) => {
    if (kept < MAX_STDERR_KEPT) chunks.push(c)
    kept += c.length
  })
  return () => Buffer.concat(chunks).toString('utf8')
}
