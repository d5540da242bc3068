/**
 * Who may use the admin REST API (DESIGN §6): HTTP Basic against
 * `rest.auth.username`/`rest.auth.password`, compared in constant time; with
 * no credentials configured, loopback clients only. Pure functions: the
 * plugin turns a verdict into a reply.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import { isIP } from 'node:net'

export interface Credentials {
  readonly username: string
  readonly password: string
}

export type AuthVerdict =
  | { ok: true; by: string }
  | { ok: false; status: 401 | 403; message: string }

export const REALM = 'scm-cache'
export const WWW_AUTHENTICATE = `Basic realm="${REALM}"`

/**
 * Decides on a request from its `Authorization` header and the client's
 * address. `by` names the caller for the change log: the user name, or
 * `loopback` when no credentials are configured.
 */
export function authorize(
  expected: Credentials | null,
  authorization: string | undefined,
  remoteAddress: string | undefined,
): AuthVerdict {
  if (expected === null) {
    if (isLoopback(remoteAddress)) return { ok: true, by: 'loopback' }
    return {
      ok: false,
      status: 403,
      message: 'the REST API answers only loopback clients while rest.auth.username and rest.auth.password are unset',
    }
  }
  const given = parseBasic(authorization)
  if (given === null) return { ok: false, status: 401, message: 'authentication required (HTTP Basic)' }
  if (!credentialsMatch(expected, given)) return { ok: false, status: 401, message: 'wrong user name or password' }
  return { ok: true, by: expected.username }
}

/** The user name and password of a `Basic` authorization header, or null when it is absent or not Basic. */
export function parseBasic(header: string | undefined): Credentials | null {
  if (header === undefined) return null
  const match = /^basic[ \t]+([A-Za-z0-9+/=._~-]+)[ \t]*$/i.exec(header)
  if (match === null) return null
  const decoded = Buffer.from(match[1] ?? '', 'base64').toString('utf8')
  const colon = decoded.indexOf(':')
  if (colon < 0) return null
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) }
}

/**
 * Both fields compared through SHA-256 digests with `timingSafeEqual`: equal
 * lengths whatever was sent, and both comparisons always run, so timing
 * tells neither the length nor which field was wrong.
 */
export function credentialsMatch(expected: Credentials, given: Credentials): boolean {
  const user = timingSafeEqual(digest(expected.username), digest(given.username))
  const pass = timingSafeEqual(digest(expected.password), digest(given.password))
  return user && pass
}

/** 127.0.0.0/8, ::1, and IPv4-mapped 127.x (`::ffff:127.0.0.1`). */
export function isLoopback(address: string | undefined): boolean {
  if (address === undefined) return false
  const a = address.toLowerCase()
  if (a === '::1' || a === '0:0:0:0:0:0:0:1') return true
  const v4 = a.startsWith('::ffff:') ? a.slice('::ffff:'.length) : a
  return isIP(v4) === 4 && v4.startsWith('127.')
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest()
}
