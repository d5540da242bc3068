/**
 * Writing Git responses to an HTTP client, with the proxy's error rule:
 * before the first byte, an HTTP status with a short text git prints; after
 * it, the connection is cut so a partial pack is never taken for a whole one.
 */
import type { ServerResponse } from 'node:http'
import type { Readable } from 'node:stream'
import { Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { ProxyError } from '../errors.js'

/** Answer with an HTTP error if nothing was sent yet, else cut the connection. */
export function failResponse(res: ServerResponse, err: unknown): void {
  if (res.headersSent) {
    res.destroy()
    return
  }
  const status = err instanceof ProxyError ? err.statusCode : 502
  const message = err instanceof ProxyError && err.expose ? err.message : 'proxy error'
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-cache' })
  res.end(`${message}\n`)
}

/**
 * Stream `body` to the client after `writeHead(status, headers)`. Resolves
 * with the bytes written; rejects (and destroys the socket) when the body
 * fails or the client goes away.
 */
export async function streamResponse(
  res: ServerResponse,
  status: number,
  headers: Record<string, string | string[]>,
  body: Readable,
  signal: AbortSignal,
): Promise<number> {
  res.writeHead(status, headers)
  try {
    let bytes = 0
    const counter = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        bytes += chunk.length
        cb(null, chunk)
      },
    })
    await pipeline([body, counter, res], { signal })
    return bytes
  } catch (err) {
    res.destroy()
    throw err
  }
}

/**
 * Answer with a body that is whole in memory: one write of headers and
 * body, with a content length. A client that went away just loses it.
 */
export function sendWhole(res: ServerResponse, status: number, headers: Record<string, string>, body: Buffer): void {
  res.writeHead(status, { ...headers, 'content-length': String(body.length) })
  res.end(body)
}

/**
 * The client hanging up before its response finished, as an AbortSignal
 * made on first use: a cached poll answered in one write never needs one,
 * and an AbortController per request is a measurable part of its cost.
 */
export class ClientGone {
  readonly #res: ServerResponse
  #ac: AbortController | undefined

  constructor(res: ServerResponse) {
    this.#res = res
  }

  get signal(): AbortSignal {
    if (this.#ac !== undefined) return this.#ac.signal
    const ac = new AbortController()
    this.#ac = ac
    const res = this.#res
    if (this.#closedEarly()) {
      ac.abort(new Error('client closed the connection'))
    } else {
      res.once('close', () => {
        if (!res.writableFinished) ac.abort(new Error('client closed the connection'))
      })
    }
    return ac.signal
  }

  /** True once the client went away before the response finished. */
  get aborted(): boolean {
    return this.#ac === undefined ? this.#closedEarly() : this.#ac.signal.aborted
  }

  #closedEarly(): boolean {
    return this.#res.destroyed && !this.#res.writableFinished
  }
}

