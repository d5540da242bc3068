/**
 * Repository paths. A repository is named by its path under the upstream's
 * root (`group/sub/app.git`), the same over HTTP and SSH. Every path a client
 * sends is validated here before anything reaches the upstream or the cache.
 */
import { ProtocolError } from './errors.js'

declare const repoBrand: unique symbol
/** A validated repository path: no leading slash, `/`-separated safe segments. */
export type RepoPath = string & { readonly [repoBrand]: true }

export const MAX_REPO_PATH_LENGTH = 1024
const MAX_SEGMENT_LENGTH = 255

/**
 * Validate an already percent-decoded repository path. Rejects `.`/`..` and
 * empty segments, control characters (NUL included), backslashes, `%` (a
 * second level of encoding), and absurd lengths.
 */
export function toRepoPath(raw: string): RepoPath {
  const trimmed = raw.replace(/^\/+/, '')
  if (trimmed.length === 0) throw bad('empty repository path')
  if (trimmed.length > MAX_REPO_PATH_LENGTH) throw bad(`repository path longer than ${MAX_REPO_PATH_LENGTH} characters`)
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is rejected
  if (/[\u0000-\u001f\u007f\\%]/.test(trimmed)) throw bad('repository path contains a forbidden character')
  for (const seg of trimmed.split('/')) {
    if (seg === '' || seg === '.' || seg === '..') throw bad('repository path contains an empty, "." or ".." segment')
    if (seg.length > MAX_SEGMENT_LENGTH) throw bad('repository path segment too long')
  }
  return trimmed as RepoPath // validated above
}

/** Percent-decode a URL path once, then validate it as a repository path. */
export function decodeRepoPath(encoded: string): RepoPath {
  let decoded: string
  try {
    decoded = decodeURIComponent(encoded)
  } catch {
    throw bad('repository path is not valid percent-encoding')
  }
  return toRepoPath(decoded)
}

/** The path as it goes into an upstream URL: each segment percent-encoded. */
export function encodeRepoPath(repo: RepoPath): string {
  return repo.split('/').map(encodeURIComponent).join('/')
}

/**
 * The REST API's name for a repository: the last segment without `.git` is
 * the slug, the segments before it (slashes included) the project key. A
 * configured path prefix (`scm`) is removed first.
 */
export function projectAndSlug(repo: RepoPath, pathPrefix = ''): { projectKey: string; repoSlug: string } {
  let rest: string = repo
  const prefix = pathPrefix.replace(/^\/+|\/+$/g, '')
  if (prefix !== '' && rest.startsWith(`${prefix}/`)) rest = rest.slice(prefix.length + 1)
  const segs = rest.split('/')
  const last = segs.pop() ?? ''
  return { projectKey: segs.join('/'), repoSlug: last.replace(/\.git$/, '') }
}

function bad(message: string): ProtocolError {
  return new ProtocolError('ERR_PROTOCOL_BAD_PATH', message)
}
