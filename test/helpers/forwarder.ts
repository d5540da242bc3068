/**
 * A small loopback forwarder in front of the test upstream: over HTTPS with
 * a test certificate (an upstream with a private CA), and/or answering some
 * paths with a redirect (an upstream that moved a repository).
 */
import http from 'node:http'
import https from 'node:https'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { readFileSync } from 'node:fs'
import type { Test } from 'tap'

export interface ForwarderOptions {
  /** Serve HTTPS with these PEM files. */
  tls?: { certFile: string; keyFile: string }
  /** A `Location` to answer 301 with, or null to forward the request. Given the request path and the forwarder's own origin. */
  redirect?: (path: string, origin: string) => string | null
}

export interface Forwarder {
  /** `http(s)://127.0.0.1:PORT` */
  url: string
  /** Paths answered with a redirect. */
  redirected: string[]
}

export async function startForwarder(t: Test, upstreamUrl: string, opts: ForwarderOptions = {}): Promise<Forwarder> {
  const target = new URL(upstreamUrl)
  const state: Forwarder = { url: '', redirected: [] }
  const handler: http.RequestListener = (req, res) => {
    const location = opts.redirect?.(req.url ?? '/', state.url) ?? null
    if (location !== null) {
      state.redirected.push(req.url ?? '/')
      req.resume()
      res.writeHead(301, { location, 'content-type': 'text/plain' }).end('moved\n')
      return
    }
    const up = http.request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: { ...req.headers, host: target.host } },
      (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers)
        upRes.on('data', (c: Buffer) => res.write(c))
        upRes.on('end', () => res.end())
      },
    )
    up.on('error', () => res.destroy())
    req.on('data', (c: Buffer) => up.write(c))
    req.on('end', () => up.end())
  }
  const server =
    opts.tls === undefined
      ? http.createServer(handler)
      : https.createServer({ cert: readFileSync(opts.tls.certFile), key: readFileSync(opts.tls.keyFile) }, handler)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  state.url = `${opts.tls === undefined ? 'http' : 'https'}://127.0.0.1:${(server.address() as AddressInfo).port}`
  t.teardown(async () => {
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => { resolve() }))
  })
  return state
}
