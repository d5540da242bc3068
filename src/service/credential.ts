/**
 * What a client's credential is (DESIGN §3.1): everything in the request
 * the upstream could authenticate it by. Two requests share a credential
 * only if all of it is equal; "anonymous" is a request with none of it.
 *
 *   - the `Authorization` header,
 *   - the `Cookie` header,
 *   - every query parameter other than `service`, in the order sent,
 *   - the headers named in `auth.credential-headers`.
 *
 * A request that carries authentication the proxy cannot see or key (a
 * client TLS certificate on a TLS front) has no cacheable credential: it is
 * never answered from cache. To add a credential carrier, add it here.
 * Pure.
 */
import type { IncomingHttpHeaders } from 'node:http'

export interface Credential {
  /**
   * Every part, in one canonical text (compared only through the AuthMemo's
   * keyed hash; never logged, never written anywhere).
   */
  readonly id: string
  readonly anonymous: boolean
  /** False: never answer this request from cache (authentication the proxy cannot key). */
  readonly cacheable: boolean
  /** The headers that carry it (lower-case names), for the upstream access checks. */
  readonly headers: Readonly<Record<string, string>>
  /** The query string that carries it (`?token=...`, `service` removed), or ''. */
  readonly query: string
}

export interface CredentialSource {
  headers: IncomingHttpHeaders
  /** The raw query string, with its `?` (or ''). */
  search: string
  /** `auth.credential-headers`, lower case. */
  credentialHeaders: readonly string[]
  /** The client presented a TLS certificate. */
  tlsClientCertificate: boolean
}

export function credentialOf(src: CredentialSource): Credential {
  const headers: Record<string, string> = {}
  for (const name of ['authorization', 'cookie', ...src.credentialHeaders]) {
    const value = src.headers[name]
    if (value === undefined) continue
    headers[name] = Array.isArray(value) ? value.join(name === 'cookie' ? '; ' : ', ') : value
  }
  const params = src.search
    .replace(/^\?/, '')
    .split('&')
    .filter((pair) => pair !== '' && paramName(pair) !== 'service')
  const query = params.length === 0 ? '' : `?${params.join('&')}`
  const names = Object.keys(headers).sort()
  const anonymous = names.length === 0 && params.length === 0
  return {
    id: anonymous ? '' : JSON.stringify([names.map((n) => [n, headers[n]]), params]),
    anonymous,
    cacheable: !src.tlsClientCertificate,
    headers,
    query,
  }
}

/** The SSH front's credential towards the upstream: the proxy's own key (DESIGN §7). */
export const SSH_UPSTREAM_KEY: Credential = Object.freeze({
  // Never the id of an HTTP credential: those are '' or a JSON array.
  id: 'ssh-upstream-key',
  anonymous: false,
  cacheable: true,
  headers: Object.freeze({}),
  query: '',
})

function paramName(pair: string): string {
  const raw = pair.split('=', 1)[0] ?? ''
  try {
    return decodeURIComponent(raw.replace(/\+/g, ' '))
  } catch {
    return raw
  }
}
