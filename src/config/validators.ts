/**
 * Value validators for configuration keys. Each one turns the raw text of a
 * setting into its typed value, or says what is allowed. They are pure (no
 * I/O, no environment): paths are resolved against the `cwd` passed in.
 *
 * Raw text reaches a validator already trimmed (except for secrets) and never
 * empty for optional keys: the loader maps an empty optional value to unset.
 */
import { isIP } from 'node:net'
import path from 'node:path'

export type Protocol = 'HTTP' | 'SSH'

/** Every protocol, in canonical order. */
export const PROTOCOLS: readonly Protocol[] = Object.freeze(['HTTP', 'SSH'])

/** The longest TTL or interval: one year of seconds. */
export const MAX_SECONDS = 31_536_000

export interface ParseContext {
  /** Absolute directory relative paths are resolved against. */
  readonly cwd: string
}

export type ParseResult<T> = { readonly ok: true; readonly value: T } | { readonly ok: false }

export interface Validator<T> {
  /** What is allowed, phrased to follow "is not allowed: ". */
  readonly allowed: string
  /** Secret values are never echoed in errors or logs, and are not trimmed. */
  readonly secret: boolean
  parse(raw: string, ctx: ParseContext): ParseResult<T>
}

const INVALID: ParseResult<never> = Object.freeze({ ok: false })

function valid<T>(value: T): ParseResult<T> {
  return { ok: true, value }
}

function wholeNumber(raw: string): number | null {
  if (!/^\d+$/.test(raw)) return null
  const n = Number(raw)
  return Number.isSafeInteger(n) ? n : null
}

function rangedInteger(min: number, max: number, allowed: string): Validator<number> {
  return {
    allowed,
    secret: false,
    parse(raw) {
      const n = wholeNumber(raw)
      return n !== null && n >= min && n <= max ? valid(n) : INVALID
    },
  }
}

/** TTLs and intervals: whole seconds from 1 to 31536000. */
export const seconds = rangedInteger(1, MAX_SECONDS, `whole seconds from 1 to ${MAX_SECONDS}`)

/** A count of things (connections): a whole number from 1 to 1000000. */
export const count = rangedInteger(1, 1_000_000, 'a whole number from 1 to 1000000')
/** The longest shutdown drain: one hour. */
export const MAX_DRAIN_SECONDS = 3600

/** The drain after SIGTERM: whole seconds from 0 (none) to an hour. */
export const drainSeconds = rangedInteger(0, MAX_DRAIN_SECONDS, `whole seconds from 0 to ${MAX_DRAIN_SECONDS}`)

/** A TCP port; 0 lets the OS pick one. */
export const port = rangedInteger(0, 65535, 'a whole number from 0 to 65535')

export const boolean: Validator<boolean> = {
  allowed: 'true or false',
  secret: false,
  parse(raw) {
    const lower = raw.toLowerCase()
    if (lower === 'true') return valid(true)
    if (lower === 'false') return valid(false)
    return INVALID
  },
}

const BYTE_UNITS: Readonly<Record<string, number>> = {
  '': 1,
  b: 1,
  k: 1024,
  m: 1024 ** 2,
  g: 1024 ** 3,
  t: 1024 ** 4,
}

/**
 * A byte count: a whole number, optionally followed by a binary suffix.
 * `k`, `m`, `g`, `t` (or `KiB`, `KB`, `MiB`, `MB`, ..., any case) all mean
 * powers of 1024: `512m` and `512MB` are both 536870912.
 */
export const bytes: Validator<number> = {
  allowed:
    'a whole number of bytes, optionally with a binary suffix k, m, g or t (also KiB/KB, MiB/MB, GiB/GB, TiB/TB; 1k = 1024)',
  secret: false,
  parse(raw) {
    const match = /^(\d+)\s*(?:([kmgt])(?:i?b)?|(b))?$/i.exec(raw)
    if (match === null) return INVALID
    const [, digits = '', prefix = '', plainB = ''] = match
    const n = wholeNumber(digits)
    const unit = BYTE_UNITS[(prefix + plainB).toLowerCase()]
    if (n === null || unit === undefined) return INVALID
    const total = n * unit
    return Number.isSafeInteger(total) ? valid(total) : INVALID
  },
}

/**
 * A comma-separated subset of HTTP and SSH, case-insensitive. Empty (or only
 * commas and spaces) means none. Normalised to upper case, deduplicated and
 * put in canonical order (HTTP before SSH).
 */
export const protocols: Validator<readonly Protocol[]> = {
  allowed: 'a comma-separated list of HTTP and SSH (empty for none)',
  secret: false,
  parse(raw) {
    const wanted = new Set<string>()
    for (const item of raw.split(',')) {
      const name = item.trim().toUpperCase()
      if (name === '') continue
      if (!PROTOCOLS.some((p) => p === name)) return INVALID
      wanted.add(name)
    }
    return valid(Object.freeze(PROTOCOLS.filter((p) => wanted.has(p))))
  },
}

/** A listen address: a host name or an IP address (`0.0.0.0`, `::`, `localhost`). */
export const host: Validator<string> = {
  allowed: 'a host name or IP address',
  secret: false,
  parse(raw) {
    return /^[^\s/\\@?#]+$/.test(raw) ? valid(raw) : INVALID
  },
}

function filePath(allowed: string): Validator<string> {
  return {
    allowed,
    secret: false,
    parse(raw, ctx) {
      return raw === '' || raw.includes('\0') ? INVALID : valid(path.resolve(ctx.cwd, raw))
    },
  }
}

/** A file path, resolved against the working directory. */
export const file = filePath('a file path')

/** A directory path, resolved against the working directory. */
export const directory = filePath('a directory path')

/**
 * Base URL of the upstream's smart-HTTP root. Normalised so that its path ends
 * with `/`: `new URL('PROJ/repo.git/info/refs', url)` then keeps the base path.
 */
export const httpUrl: Validator<URL> = {
  allowed:
    'an http:// or https:// URL without user:password@ (clients send their own credentials), query or fragment, e.g. https://git.example.com/',
  secret: false,
  parse(raw) {
    if (!/^https?:\/\//i.test(raw) || !URL.canParse(raw)) return INVALID
    const url = new URL(raw)
    if (url.hostname === '' || url.search !== '' || url.hash !== '') return INVALID
    // Credentials in the URL would be the proxy's, sent for every client:
    // the upstream must see each client's own (DESIGN §3.1).
    if (url.username !== '' || url.password !== '') return INVALID
    if (!url.pathname.endsWith('/')) url.pathname += '/'
    return valid(url)
  },
}

/**
 * `ssh://user@host[:port][/prefix]`. The port defaults to 22 and is always
 * set on the result; a trailing `/` on the prefix is dropped. A password is
 * refused: the proxy authenticates with `upstream.ssh.key`.
 */
export const sshUrl: Validator<URL> = {
  allowed: 'ssh://user@host[:port][/prefix] without a password',
  secret: false,
  parse(raw) {
    if (!/^ssh:\/\//i.test(raw) || !URL.canParse(raw)) return INVALID
    const url = new URL(raw)
    if (
      url.username === '' ||
      url.password !== '' ||
      url.hostname === '' ||
      url.port === '0' ||
      url.search !== '' ||
      url.hash !== ''
    ) {
      return INVALID
    }
    if (url.port === '') url.port = '22'
    url.pathname = url.pathname.replace(/\/+$/, '')
    return valid(url)
  },
}

/**
 * A repository path prefix such as `scm/`, stored without leading or
 * trailing slashes (`''` for none). No empty, `.` or `..` segments.
 */
export const pathPrefix: Validator<string> = {
  allowed: 'a path prefix such as scm/ (no empty, . or .. segments, no spaces or backslashes)',
  secret: false,
  parse(raw) {
    const trimmed = raw.replace(/^\/+|\/+$/g, '')
    if (trimmed === '') return valid('')
    if (/[\s\\?#%]/.test(trimmed)) return INVALID
    const segments = trimmed.split('/')
    return segments.every((s) => s !== '' && s !== '.' && s !== '..') ? valid(trimmed) : INVALID
  },
}

/** A user name for HTTP basic authentication. */
export const username: Validator<string> = {
  allowed: 'a user name without ":"',
  secret: false,
  parse(raw) {
    return raw.includes(':') ? INVALID : valid(raw)
  },
}

/** Secret text: any non-empty string, taken verbatim. */
export const secret: Validator<string> = {
  allowed: 'any non-empty text',
  secret: true,
  parse(raw) {
    return raw === '' ? INVALID : valid(raw)
  },
}

/**
 * A comma-separated list of HTTP header names (RFC 9110 tokens), any case;
 * normalised to lower case, deduplicated, in the order given. Empty: none.
 */
export const headerNames: Validator<readonly string[]> = {
  allowed: 'a comma-separated list of HTTP header names, e.g. private-token,job-token (empty for none)',
  secret: false,
  parse(raw) {
    const names: string[] = []
    for (const item of raw.split(',')) {
      const name = item.trim().toLowerCase()
      if (name === '') continue
      if (!/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(name)) return INVALID
      if (!names.includes(name)) names.push(name)
    }
    return valid(Object.freeze(names))
  },
}

/**
 * A comma-separated list of IP addresses and CIDR blocks (`10.0.0.0/8`,
 * `192.0.2.7`, `fd00::/8`), normalised to `address/prefix` (a bare address
 * gets /32 or /128). Empty items are skipped.
 */
export const cidrs: Validator<readonly string[]> = {
  allowed: 'a comma-separated list of IP addresses or CIDR blocks, e.g. 10.0.0.0/8, 192.0.2.7, fd00::/8',
  secret: false,
  parse(raw) {
    const out: string[] = []
    for (const item of raw.split(',')) {
      const text = item.trim()
      if (text === '') continue
      const [address = '', prefix, extra] = text.split('/')
      const family = isIP(address)
      if (family === 0 || extra !== undefined) return INVALID
      const max = family === 4 ? 32 : 128
      const bits = prefix === undefined ? max : wholeNumber(prefix)
      if (bits === null || bits > max) return INVALID
      out.push(`${address.toLowerCase()}/${bits}`)
    }
    return out.length === 0 ? INVALID : valid(Object.freeze(out))
  },
}
