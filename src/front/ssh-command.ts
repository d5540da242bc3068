/**
 * The exec grammar of the SSH front (DESIGN §7, git-protocol-notes §3). Pure.
 *
 * Accepted, exactly (one space between the words, nothing before or after):
 *
 *   git-upload-pack '<path>'     git upload-pack '<path>'
 *   git-receive-pack '<path>'    git receive-pack '<path>'
 *
 * `<path>` is one argument quoted the way git quotes it (sq_quote_buf):
 * single-quoted runs, with `'` written as `'\''` and `!` as `'\!'`. Nothing
 * else is unquoted: no double quotes, no bare words, no other backslash
 * escapes, no second argument. The command is never handed to a shell.
 *
 * Paths: `/app.git` (ssh:// URLs) and `app.git` (scp-style `host:app.git`)
 * name the same repository; one leading `/` is dropped. `~alice/app.git`
 * (and `/~alice/app.git`) is kept as a literal path segment `~alice`, which
 * is how Bitbucket names personal repositories; the proxy never expands a
 * home directory. The rest is validated by `toRepoPath`.
 */
import { ProtocolError } from '../errors.js'
import { toRepoPath, type RepoPath } from '../repository.js'

export type SshService = 'git-upload-pack' | 'git-receive-pack'

export type SshCommand =
  | { ok: true; service: SshService; path: RepoPath }
  | { ok: false; message: string }

const PROGRAMS: ReadonlyMap<string, SshService | 'git-upload-archive'> = new Map([
  ['git-upload-pack', 'git-upload-pack'],
  ['git upload-pack', 'git-upload-pack'],
  ['git-receive-pack', 'git-receive-pack'],
  ['git receive-pack', 'git-receive-pack'],
  ['git-upload-archive', 'git-upload-archive'],
  ['git upload-archive', 'git-upload-archive'],
])

/** Longest exec string looked at; git's own paths are far shorter. */
export const MAX_COMMAND_LENGTH = 4096

const USAGE = "only git-upload-pack '<path>' and git-receive-pack '<path>' are served here"

export function parseSshCommand(command: string): SshCommand {
  if (command.length > MAX_COMMAND_LENGTH) return refuse(`command too long; ${USAGE}`)
  const quote = command.indexOf("'")
  if (quote < 1 || command[quote - 1] !== ' ') return refuse(`unsupported command ${describe(command)}; ${USAGE}`)
  const program = PROGRAMS.get(command.slice(0, quote - 1))
  if (program === undefined) return refuse(`unsupported command ${describe(command)}; ${USAGE}`)
  if (program === 'git-upload-archive') return refuse(`git-upload-archive is not supported; ${USAGE}`)
  const arg = unquoteArgument(command.slice(quote))
  if (arg === null) return refuse(`malformed path argument in ${describe(command)}: expected one single-quoted path`)
  const raw = arg.startsWith('/') ? arg.slice(1) : arg
  if (raw.startsWith('/')) return refuse(`repository path ${describe(arg)} is not valid`)
  try {
    return { ok: true, service: program, path: toRepoPath(raw) }
  } catch (err) {
    if (err instanceof ProtocolError) return refuse(`repository path ${describe(arg)} is not valid: ${err.message}`)
    throw err
  }
}

/**
 * The inverse of git's sq_quote_buf for exactly one argument: the whole
 * string must be quoted runs joined by `\'` or `\!`. Null if it is not.
 */
export function unquoteArgument(text: string): string | null {
  let out = ''
  let i = 0
  if (text[i] !== "'") return null
  for (;;) {
    // Inside a quoted run: everything up to the next quote is literal.
    const close = text.indexOf("'", i + 1)
    if (close < 0) return null
    out += text.slice(i + 1, close)
    i = close + 1
    if (i === text.length) return out
    // Between runs: exactly `\'` or `\!`, then the next run opens.
    const escaped = text[i + 1]
    if (text[i] !== '\\' || (escaped !== "'" && escaped !== '!') || text[i + 2] !== "'") return null
    out += escaped
    i += 2
  }
}

/** `text` quoted as git quotes a shell argument (sq_quote_buf). */
export function quoteArgument(text: string): string {
  return `'${text.replace(/'/g, "'\\''").replace(/!/g, "'\\!'")}'`
}

/** Untrusted text for a message: at most 100 characters, control characters escaped. */
function describe(text: string): string {
  const cut = text.length > 100 ? `${text.slice(0, 100)}...` : text
  // eslint-disable-next-line no-control-regex -- control characters are what gets escaped
  return JSON.stringify(cut.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`))
}

function refuse(message: string): SshCommand {
  return { ok: false, message }
}
