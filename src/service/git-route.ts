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
  /** The Git LFS API under `<repo>/info/lfs/` (batch, objects, locks). */
  | { kind: 'lfs'; subPath: string }

export interface GitRoute {
  repo: RepoPath
  endpoint: GitEndpoint
}

/**
 * The endpoints, each anchored at the end of the path; the repository is
 * everything before (greedy: a repository may have folders named `objects`
 * or `info` in its path).
 */
const SMART = /^\/(.+)\/(info\/refs|git-upload-pack|git-receive-pack)$/
const LFS = /^\/(.+)\/info\/lfs\/(.+)$/
/** Dumb paths, the longer ones first: `x.git/objects/info/packs` is never repository `x.git/objects`. */
const DUMB = [
  /^\/(.+)\/(objects\/info\/(?:alternates|http-alternates|packs))$/,
  /^\/(.+)\/(objects\/[0-9a-f]{2}\/[0-9a-f]{38}(?:[0-9a-f]{24})?)$/,
  /^\/(.+)\/(objects\/pack\/pack-[0-9a-f]{40}(?:[0-9a-f]{24})?\.(?:pack|idx))$/,
  /^\/(.+)\/(HEAD|info\/refs|info\/packs)$/,
]

const MAX_URL_LENGTH = 4096

/** Methods of each kind of endpoint (anything else is not a Git request: 404). */
const READ = new Set(['GET', 'HEAD'])
const LFS_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT'])

/**
 * `pathname` is the raw (still percent-encoded) URL path; `search` the query
 * string including its `?`. Returns null for a path that names no Git
 * endpoint (the caller answers 404); throws ProtocolError for a bad path.
 */
export function classifyGitRequest(method: string, pathname: string, search: string): GitRoute | null {
  if (pathname.length + search.length > MAX_URL_LENGTH) {
    throw new ProtocolError('ERR_PROTOCOL_BAD_PATH', 'request URL too long')
  }
  const smart = SMART.exec(pathname)
  if (smart !== null) {
    const [, encodedRepo = '', sub = ''] = smart
    if (sub === 'info/refs') {
      if (!READ.has(method)) return null
      const params = new URLSearchParams(search)
      // The proxy must read the request as the upstream does; git http-backend
      // takes the last of several `service=`, others may take the first.
      if (params.getAll('service').length > 1) {
        throw new ProtocolError('ERR_PROTOCOL_BAD_SERVICE', 'the service parameter is given more than once')
      }
      const service = params.get('service')
      const repo = decodeRepoPath(encodedRepo)
      if (service === null) return { repo, endpoint: { kind: 'dumb', subPath: sub } }
      if (service === 'git-upload-pack' || service === 'git-receive-pack') {
        return { repo, endpoint: { kind: 'advertisement', service } }
      }
      throw new ProtocolError('ERR_PROTOCOL_BAD_SERVICE', `unsupported service ${JSON.stringify(service.slice(0, 40))}`)
    }
    if (method !== 'POST' || (sub !== 'git-upload-pack' && sub !== 'git-receive-pack')) return null
    return { repo: decodeRepoPath(encodedRepo), endpoint: { kind: 'rpc', service: sub } }
  }
  const lfs = LFS.exec(pathname)
  if (lfs !== null) {
    const [, encodedRepo = '', sub = ''] = lfs
    if (!LFS_METHODS.has(method)) return null
    return { repo: decodeRepoPath(encodedRepo), endpoint: { kind: 'lfs', subPath: `info/lfs/${sub}` } }
  }
  const dumb = DUMB.map((re) => re.exec(pathname)).find((m) => m !== null)
  if (dumb === undefined || !READ.has(method)) return null
  const [, encodedRepo = '', sub = ''] = dumb
  return { repo: decodeRepoPath(encodedRepo), endpoint: { kind: 'dumb', subPath: sub } }
}
