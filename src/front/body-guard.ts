/**
 * Deadlines for a request body as it arrives (DESIGN §3.9): a client that
 * sends no byte of its body for the idle timeout, or sends it slower than
 * `minBytes` per `windowMs` (1 KiB/s over 30 s by default), is cut off, so
 * a slow-loris client cannot hold a connection (and a body-memory share)
 * forever.
 *
 * Measured on the socket (`bytesRead`), so nothing is added to the body's
 * own stream. Time the proxy itself is not reading (its consumer is slow:
 * the socket is paused by backpressure) never counts against the client.
 */
import type { Socket } from 'node:net'

export interface BodyPace {
  /** No byte for this long: cut. */
  idleMs: number
  /** Fewer than `minBytes` in a whole `windowMs`: cut. */
  minBytes: number
  windowMs: number
}

export const DEFAULT_MIN_BODY_BYTES = 30 * 1024
export const DEFAULT_BODY_WINDOW_MS = 30_000

export interface GuardedBody {
  /** What the guard reads of the socket (a Node request's `socket`). */
  readonly socket: Pick<Socket, 'bytesRead' | 'destroyed' | 'isPaused'>
  /** True once the whole body has arrived. */
  readonly complete: boolean
}

/**
 * Watches `body` until it is complete or `stop()` is called; `cut` is called
 * at most once. `now` (monotonic ms) is read once per check; tests inject it.
 */
export function guardBody(
  body: GuardedBody,
  pace: BodyPace,
  cut: (why: string) => void,
  now: () => number = () => performance.now(),
): () => void {
  const socket = body.socket
  let last = socket.bytesRead
  let lastByteAt = now()
  let windowStart = lastByteAt
  let windowBytes = 0
  const tick = Math.max(10, Math.min(1000, Math.floor(Math.min(pace.idleMs, pace.windowMs) / 4)))
  const timer = setInterval(() => {
    if (body.complete || socket.destroyed) {
      clearInterval(timer)
      return
    }
    const t = now()
    const read = socket.bytesRead
    if (read > last) {
      windowBytes += read - last
      last = read
      lastByteAt = t
    } else if (socket.isPaused()) {
      // Backpressure: the proxy is the slow one.
      lastByteAt = t
      windowStart = t
      windowBytes = 0
      return
    }
    if (t - lastByteAt >= pace.idleMs) {
      clearInterval(timer)
      cut(`no byte of the request body for ${Math.round(pace.idleMs / 1000)} s`)
      return
    }
    if (t - windowStart >= pace.windowMs) {
      if (windowBytes < pace.minBytes) {
        clearInterval(timer)
        cut(`request body slower than ${pace.minBytes} bytes per ${Math.round(pace.windowMs / 1000)} s`)
        return
      }
      windowStart = t
      windowBytes = 0
    }
  }, tick)
  timer.unref()
  return () => {
    clearInterval(timer)
  }
}
