/**
 * What the services ask of the upstream Git server, whatever the transport
 * (DESIGN §1.5): its upload-pack advertisement and the answer to one
 * upload-pack request. `HttpGit` (http-git.ts) asks over HTTP with the
 * client's own credential; `SshGit` (ssh-git.ts) over SSH with the proxy's
 * key. Both reject with an UpstreamError when the upstream gives no usable
 * answer (UpstreamRefusedError for a 401/403, which reaches the client
 * unchanged).
 */
import type { Readable } from 'node:stream'
import type { ProtocolVersion } from '../protocol/git-protocol-header.js'

export interface UpstreamGit {
  /** The upload-pack advertisement in `version`, as the upstream sends it (unfiltered). */
  advertise(version: ProtocolVersion, signal: AbortSignal): Promise<Readable>
  /**
   * The answer to one upload-pack request (a v0/v1 request ending in `done`
   * or a depth preflight, or one v2 command), streamed as it arrives.
   */
  uploadPack(version: ProtocolVersion, request: Buffer, signal: AbortSignal): Promise<Readable>
}
