/**
 * The SSH front's client keys: an OpenSSH authorized_keys file, with one
 * option of our own, `repos="PROJ/*,team/app"` (DESIGN §7). Parsing and
 * matching are pure; reading the file is the caller's.
 *
 * A line is `[options ]<key-type> <base64>[ comment]`. Options understood:
 *   repos="g1,g2"   the key may read only repositories whose
 *                   `projectKey/repoSlug` matches one of the globs
 *                   (`*` and `?` stay within a path segment, `**` crosses
 *                   segments); without it, every repository the proxy's
 *                   upstream key can read.
 *   restrict, no-pty, no-port-forwarding, no-agent-forwarding,
 *   no-X11-forwarding, no-user-rc
 *                   accepted: the front offers none of these features.
 * Any other option (`command=`, `from=`, `expiry-time=`, ...) would restrict
 * the key in a way the proxy does not enforce, so such a line is rejected
 * (fail closed) and reported.
 */
import { timingSafeEqual } from 'node:crypto'
import ssh2 from 'ssh2'
import type { ParsedKey } from 'ssh2'

// ssh2 is CommonJS: its exports are properties of the default export under ESM.
const { utils } = ssh2

export interface AuthorizedKey {
  /** The public key in SSH wire format (the blob clients present). */
  blob: Buffer
  key: ParsedKey
  /** Globs over `projectKey/repoSlug`, or null: every repository. */
  repos: string[] | null
  /** 1-based line number, for logs. */
  line: number
}

export interface AuthorizedKeysParse {
  keys: AuthorizedKey[]
  /** Lines that were not used, with why (for a start-up warning). */
  rejected: { line: number; reason: string }[]
}

const HARMLESS_OPTIONS: ReadonlySet<string> = new Set([
  'restrict',
  'no-pty',
  'no-port-forwarding',
  'no-agent-forwarding',
  'no-x11-forwarding',
  'no-user-rc',
])

const KEY_TYPE = /^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com)$/

export function parseAuthorizedKeys(text: string): AuthorizedKeysParse {
  const keys: AuthorizedKey[] = []
  const rejected: { line: number; reason: string }[] = []
  for (const [i, rawLine] of text.split('\n').entries()) {
    const line = rawLine.trim()
    if (line === '' || line.startsWith('#')) continue
    const parsed = parseLine(line)
    if ('reason' in parsed) {
      rejected.push({ line: i + 1, reason: parsed.reason })
      continue
    }
    keys.push({ ...parsed, line: i + 1 })
  }
  return { keys, rejected }
}

function parseLine(line: string): Omit<AuthorizedKey, 'line'> | { reason: string } {
  let rest = line
  let repos: string[] | null = null
  const firstWord = /^\S+/.exec(rest)?.[0] ?? ''
  if (!KEY_TYPE.test(firstWord)) {
    const opts = splitOptions(rest)
    if (opts === null) return { reason: 'malformed options' }
    rest = opts.rest
    for (const opt of opts.options) {
      const eq = opt.indexOf('=')
      const name = (eq < 0 ? opt : opt.slice(0, eq)).toLowerCase()
      if (name === 'repos' && eq > 0) {
        const value = unquoteOption(opt.slice(eq + 1))
        if (value === null) return { reason: 'repos= needs a double-quoted value' }
        repos = value
          .split(',')
          .map((g) => g.trim())
          .filter((g) => g !== '')
        continue
      }
      if (eq < 0 && HARMLESS_OPTIONS.has(name)) continue
      return { reason: `unsupported option ${name} (the line is not used)` }
    }
  }
  const [type, data] = rest.split(/\s+/)
  if (type === undefined || data === undefined || !KEY_TYPE.test(type)) return { reason: 'not a public key line' }
  const key = utils.parseKey(`${type} ${data}`)
  if (key instanceof Error) return { reason: `unreadable key: ${key.message}` }
  return { blob: key.getPublicSSH(), key, repos }
}

/** `opt1,opt2="a,b" rest...` → options and the rest, honouring double quotes (with `\"`). */
function splitOptions(line: string): { options: string[]; rest: string } | null {
  const options: string[] = []
  let current = ''
  let quoted = false
  for (let i = 0; i < line.length; i++) {
    const c = line.charAt(i)
    if (quoted) {
      if (c === '\\' && line[i + 1] === '"') {
        current += '\\"'
        i++
        continue
      }
      if (c === '"') quoted = false
      current += c
      continue
    }
    if (c === '"') {
      quoted = true
      current += c
    } else if (c === ',') {
      options.push(current)
      current = ''
    } else if (c === ' ' || c === '\t') {
      options.push(current)
      return options.includes('') ? null : { options, rest: line.slice(i + 1).trim() }
    } else {
      current += c
    }
  }
  return null
}

function unquoteOption(value: string): string | null {
  if (value.length < 2 || !value.startsWith('"') || !value.endsWith('"')) return null
  return value.slice(1, -1).replace(/\\"/g, '"')
}

/**
 * The authorized key whose blob equals `blob` (and whose type is `algo`'s
 * key type), or null. Every key is compared in constant time, and the loop
 * never stops early, so timing does not tell which entry matched.
 */
export function findAuthorizedKey(keys: readonly AuthorizedKey[], blob: Buffer): AuthorizedKey | null {
  let found: AuthorizedKey | null = null
  for (const k of keys) {
    const same = k.blob.length === blob.length && timingSafeEqual(k.blob, blob)
    if (same && found === null) found = k
  }
  return found
}

/** Whether `name` (`projectKey/repoSlug`) matches one of `globs`. */
export function reposAllow(globs: readonly string[] | null, name: string): boolean {
  if (globs === null) return true
  return globs.some((g) => globToRegExp(g).test(name))
}

export function globToRegExp(glob: string): RegExp {
  let re = ''
  for (let i = 0; i < glob.length; i++) {
    const c = glob.charAt(i)
    if (c === '*' && glob[i + 1] === '*') {
      re += '.*'
      i++
    } else if (c === '*') {
      re += '[^/]*'
    } else if (c === '?') {
      re += '[^/]'
    } else {
      re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&')
    }
  }
  return new RegExp(`^${re}$`)
}
