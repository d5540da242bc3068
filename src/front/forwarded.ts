/**
 * Who the client is, for the log line: the socket's peer, or, when that peer
 * is a trusted load balancer (`proxy.http.trusted-proxies`), what its
 * `X-Forwarded-For` / `X-Forwarded-Proto` say. Headers from anyone else are
 * ignored, so a client cannot put another address in the log.
 *
 * For logs only: access decisions (the REST API's loopback rule) use the
 * socket's address and never read these headers.
 */
import type { IncomingMessage } from 'node:http'
import { BlockList, isIP } from 'node:net'
import { TLSSocket } from 'node:tls'

export interface ClientInfo {
  /** The client's address as far as it can be believed. */
  readonly client: string | undefined
  /** `https` when the client spoke TLS (to us, or to a trusted balancer), else `http`. */
  readonly clientProto: 'http' | 'https'
}

export class TrustedProxies {
  readonly #list = new BlockList()
  readonly #empty: boolean

  /** `cidrs` as `proxy.http.trusted-proxies` gives them: `address/prefix`. */
  constructor(cidrs: readonly string[]) {
    this.#empty = cidrs.length === 0
    for (const cidr of cidrs) {
      const [address = '', prefix = ''] = cidr.split('/')
      const family = isIP(address) === 6 ? 'ipv6' : 'ipv4'
      this.#list.addSubnet(address, Number(prefix), family)
    }
  }

  /** Whether `address` (as a socket reports it, IPv4-mapped or not) is a trusted balancer. */
  has(address: string | undefined): boolean {
    if (this.#empty || address === undefined) return false
    const plain = unmapped(address)
    const family = isIP(plain)
    if (family === 0) return false
    return this.#list.check(plain, family === 6 ? 'ipv6' : 'ipv4')
  }
}

/**
 * The client of a request that came from `peer` over a TLS socket or not.
 * Behind trusted balancers the client is the right-most `X-Forwarded-For`
 * address that is not itself a trusted balancer (each balancer appends the
 * address it saw); a malformed entry stops the walk at the last good hop.
 */
export function clientOf(
  peer: string | undefined,
  tls: boolean,
  headers: Readonly<Record<string, string | string[] | undefined>>,
  trusted: TrustedProxies,
): ClientInfo {
  const own: ClientInfo = { client: peer === undefined ? undefined : unmapped(peer), clientProto: tls ? 'https' : 'http' }
  if (!trusted.has(peer)) return own
  let client = own.client
  const hops = joined(headers['x-forwarded-for']).split(',').map((s) => s.trim()).filter((s) => s !== '')
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = unmapped(hops[i] ?? '')
    if (isIP(hop) === 0) break
    client = hop
    if (!trusted.has(hop)) break
  }
  // The left-most value is what the first balancer saw from the client.
  const proto = joined(headers['x-forwarded-proto']).split(',')[0]?.trim().toLowerCase()
  return { client, clientProto: proto === 'https' || proto === 'http' ? proto : own.clientProto }
}

/** No balancer is trusted (`proxy.http.trusted-proxies` unset). */
export const NO_TRUSTED_PROXIES = new TrustedProxies([])

/** `clientOf` for a request as the HTTP front receives it. */
export function clientOfRequest(req: IncomingMessage, trusted: TrustedProxies): ClientInfo {
  return clientOf(req.socket.remoteAddress, req.socket instanceof TLSSocket, req.headers, trusted)
}

function joined(value: string | string[] | undefined): string {
  return Array.isArray(value) ? value.join(',') : (value ?? '')
}

/** `::ffff:10.0.0.1` -> `10.0.0.1`; anything else unchanged. */
function unmapped(address: string): string {
  const lower = address.toLowerCase()
  return lower.startsWith('::ffff:') && isIP(lower.slice(7)) === 4 ? lower.slice(7) : address
}
