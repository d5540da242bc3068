/**
 * Classify a smart or dumb HTTP Git URL into repository + endpoint. Pure.
 */
import { ProtocolError } from '../errors.js'
import { decodeRepoPath, type RepoPath } from '../repository.js'

export type GitService = 'git-upload-pack' | 'git-receive-pack'

export type GitEndpoint =
  | { kind: 'advertisement'; service: GitService }
  | { kind: 'rpc'; service: GitService }
  /** Dumb HTTP: `HEAD`, `info/refs` without a service, `objects/...`. Passed through. */
  | { kind: 'dumb'; subPath: string }

export interface GitRoute {
  repo: RepoPath
  endpoint: GitEndpoint
}

const DUMB_PATHS = [
  /^HEAD$/,
  /^info\/refs$/,
  /^info\/packs$/,
  /^objects\/info\/(?:alternates|http-alternates|packs)$/,
  /^objects\/[0-9a-f]{2}\/[0-9a-f]{38}(?:[0-9a-f]{24})?$/,
  /^objects\/pack\/pack-[0-9a-f]{40}(?:[0-9a-f]{24})?\.(?:pack|idx)$/,
]

const MAX_URL_LENGTH = 4096

/**
 * `pathname` is the raw (still percent-encoded) URL path; `search` the query
 * string including its `?`. Returns null for a path that names no Git
 * endpoint (the caller answers 404); throws ProtocolError for a bad path.
 */
export function classifyGitRequest(method: string, pathname: string, search: string): GitRoute | null {
  if (pathname.length + search.length > MAX_URL_LENGTH) {
    throw new ProtocolError('ERR_PROTOCOL_BAD_PATH', 'request URL too long')
  }
  const m = /^\/(.+?)\/(info\/refs|git-upload-pack|git-receive-pack|HEAD|objects\/.+|info\/.+)$/.exec(pathname)
  if (m === null) return null
  const [, encodedRepo = '', sub = ''] = m
  const repo = decodeRepoPath(encodedRepo)
  const params = new URLSearchParams(search)

  if (sub === 'info/refs' && method !== 'POST') {
    // The proxy must read the request as the upstream does; git http-backend
    // takes the last of several `service=`, others may take the first.
    if (params.getAll('service').length > 1) {
      throw new ProtocolError('ERR_PROTOCOL_BAD_SERVICE', 'the service parameter is given more than once')
    }
    const service = params.get('service')
    if (service === null) return { repo, endpoint: { kind: 'dumb', subPath: sub } }
    if (service === 'git-upload-pack' || service === 'git-receive-pack') {
      return { repo, endpoint: { kind: 'advertisement', service } }
    }
    throw new ProtocolError('ERR_PROTOCOL_BAD_SERVICE', `unsupported service ${JSON.stringify(service.slice(0, 40))}`)
  }
  if (sub === 'git-upload-pack' || sub === 'git-receive-pack') {
    if (method !== 'POST') return null
    return { repo, endpoint: { kind: 'rpc', service: sub } }
  }
  if (method !== 'GET' && method !== 'HEAD') return null
  if (!DUMB_PATHS.some((re) => re.test(sub))) return null
  return { repo, endpoint: { kind: 'dumb', subPath: sub } }
}
