/**
 * Upstream behaviours no packaged server shows, in front of the real
 * upstream (`git http-backend`): a loopback HTTP server that decides each
 * request by a rule (let it through, refuse it, answer a sign-in page) and
 * streams what it lets through to `target` unchanged. For the access rules
 * of DESIGN §3.1: authentication by cookie, by query parameter or by a
 * custom header, an SSO front that answers unauthenticated GETs with a 200
 * HTML page, an upstream that ignores `Git-Protocol`.
 */
import http from 'node:http'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { pipeline } from 'node:stream/promises'
import type { Test } from 'tap'

export type GateDecision =
  | { kind: 'pass'; dropHeaders?: string[] }
  | { kind: 'refuse'; status: 401 | 403 }
  | { kind: 'sign-in-page' }

export interface GateRequest {
  method: string
  /** Path with its query string. */
  url: string
  headers: http.IncomingHttpHeaders
}

export interface AuthGate {
  url: string
  /** Every request the gate saw, with its decision. */
  seen: { method: string; url: string; decision: GateDecision['kind']; bodyBytes: number }[]
  close(): Promise<void>
}

export const SIGN_IN_PAGE = '<!doctype html><html><body><form action="/login">Sign in</form></body></html>\n'

export async function startAuthGate(t: Test, target: string, decide: (req: GateRequest) => GateDecision): Promise<AuthGate> {
  const seen: AuthGate['seen'] = []
  const base = new URL(target)
  const server = http.createServer((req, res) => {
    const url = req.url ?? '/'
    const decision = decide({ method: req.method ?? 'GET', url, headers: req.headers })
    const record = { method: req.method ?? 'GET', url, decision: decision.kind, bodyBytes: 0 }
    seen.push(record)
    req.on('data', (c: Buffer) => (record.bodyBytes += c.length))
    if (decision.kind === 'refuse') {
      req.resume()
      res
        .writeHead(decision.status, { 'www-authenticate': 'Basic realm="Gate"', 'content-type': 'text/plain' })
        .end(`gate says ${decision.status}\n`)
      return
    }
    if (decision.kind === 'sign-in-page') {
      req.resume()
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(SIGN_IN_PAGE)
      return
    }
    const drop = new Set(decision.dropHeaders ?? [])
    const headers = Object.fromEntries(Object.entries({ ...req.headers, host: base.host }).filter(([name]) => !drop.has(name)))
    const up = http.request({ host: base.hostname, port: base.port, method: req.method, path: url, headers }, (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers)
      pipeline(upRes, res).catch(() => res.destroy())
    })
    up.on('error', () => res.destroy())
    pipeline(req, up).catch(() => up.destroy())
  })
  server.keepAliveTimeout = 5_000
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const addr = server.address() as AddressInfo // listening on TCP: address() is an AddressInfo
  let closed = false
  const close = async (): Promise<void> => {
    if (closed) return
    closed = true
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => { resolve() }))
  }
  t.teardown(close)
  return { url: `http://127.0.0.1:${addr.port}`, seen, close }
}

/** `private.git` requests: the repository part of a gate request's path. */
export function repoOf(url: string): string {
  return /^\/(.+?\.git)\//.exec(url)?.[1] ?? ''
}
