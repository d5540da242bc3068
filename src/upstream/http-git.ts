/**
 * UpstreamGit over HTTP (upstream-git.ts): the smart-HTTP requests git
 * itself would send, made with one client's headers (its credential) and
 * query string, so the upstream decides on that client's access.
 */
import type { Readable } from 'node:stream'
import { UpstreamStatusError } from '../errors.js'
import type { ProtocolVersion } from '../protocol/git-protocol-header.js'
import type { RepoPath } from '../repository.js'
import { isRefusal, refusalOf, type HttpUpstream, type UpstreamResponse } from './http.js'
import type { UpstreamGit } from './upstream-git.js'

export const UPLOAD_PACK_RESULT = 'application/x-git-upload-pack-result'
export const UPLOAD_PACK_ADVERTISEMENT = 'application/x-git-upload-pack-advertisement'

export interface HttpGitCall {
  repo: RepoPath
  /** The client's request headers, hop-by-hop ones removed (`forwardRequestHeaders`). */
  headers: Record<string, string>
  /** The client's query string (`?…`, or ''): an upstream may read credentials from it. */
  search: string
}

/** UpstreamGit for one client's request. */
export function httpGit(upstream: HttpUpstream, call: HttpGitCall): UpstreamGit {
  return {
    advertise: async (_version: ProtocolVersion, signal: AbortSignal) => {
      const res = await upstream.request({ method: 'GET', repo: call.repo, subPath: `info/refs${call.search}`, headers: call.headers, signal })
      return usable(res, UPLOAD_PACK_ADVERTISEMENT)
    },
    uploadPack: async (_version: ProtocolVersion, request: Buffer, signal: AbortSignal) => {
      const headers: Record<string, string> = { ...call.headers, 'content-length': String(request.length) }
      delete headers['transfer-encoding']
      // The request was gunzipped to be parsed; it goes as the client sent it.
      const res = await upstream.request({ method: 'POST', repo: call.repo, subPath: `git-upload-pack${call.search}`, headers, body: request, signal })
      return usable(res, UPLOAD_PACK_RESULT)
    },
  }
}

/**
 * The body of a 200 answer of `contentType`; a refusal (a password changed
 * within auth.ttl) as UpstreamRefusedError, to reach the client unchanged;
 * anything else as UpstreamStatusError.
 */
async function usable(res: UpstreamResponse, contentType: string): Promise<Readable> {
  if (isRefusal(res.statusCode)) throw await refusalOf(res)
  if (res.statusCode !== 200 || String(res.headers['content-type'] ?? '') !== contentType) {
    const detail = await readSome(res.body, 512)
    throw new UpstreamStatusError(res.statusCode, detail.trim())
  }
  return res.body
}

async function readSome(body: Readable, limit: number): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  try {
    for await (const chunk of body) {
      const buf = chunk as Buffer // undici bodies yield Buffers
      chunks.push(buf)
      size += buf.length
      if (size >= limit) break
    }
  } catch {
    // The detail is best effort.
  } finally {
    body.destroy()
  }
  return Buffer.concat(chunks).subarray(0, limit).toString('utf8').replace(/[^\x20-\x7e\n]/g, '?')
}
