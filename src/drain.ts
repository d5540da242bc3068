/**
 * Graceful shutdown behind a load balancer (DESIGN §10). On SIGTERM a node
 * first fails `/readyz`, and keeps serving for `proxy.shutdown.drain`
 * seconds so the balancer's health checks take it out of rotation while
 * requests that were already on their way still get answers. Then it stops
 * accepting connections and lets transfers in flight finish, up to a
 * deadline after which the remaining connections are closed.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import type { Log } from './logger.js'

/** How often connections that went idle while closing are closed. */
const IDLE_SWEEP_MS = 100

/** Whether the node is draining; `/readyz` reads it. */
export class DrainState {
  #draining = false

  get draining(): boolean {
    return this.#draining
  }

  begin(): void {
    this.#draining = true
  }

  /** The readiness problem while draining, else null. */
  problem(): string | null {
    return this.#draining ? 'draining: the node is shutting down' : null
  }
}

/** What a shutdown acts on: the running proxy. */
export interface Drainable {
  /** `/readyz` answers 503 from now on; everything else is served as before. */
  beginDrain(): void
  /** Stop accepting, wait for connections in flight. */
  close(): Promise<void>
  /**
   * Its HTTP server: keep-alive connections are closed as soon as they are
   * idle (a balancer keeps idle ones for reuse), every connection still open
   * is cut when the deadline passes.
   */
  readonly app: { readonly server: { closeIdleConnections(): void; closeAllConnections(): void } }
}

export interface ShutdownOptions {
  /** The signal that asked for it, for the log. */
  reason: string
  drainMs: number
  /** After the drain: how long transfers in flight may take before they are cut. */
  deadlineMs: number
  /** Aborted to end the drain early (a second SIGTERM or SIGINT). */
  skip: AbortSignal
  log: Log
}

/** Drain, then close. Resolves once the proxy is closed. */
export async function drainAndClose(target: Drainable, opts: ShutdownOptions): Promise<void> {
  const { log } = opts
  target.beginDrain()
  if (opts.drainMs > 0 && !opts.skip.aborted) {
    log.info(
      { signal: opts.reason, drainSeconds: opts.drainMs / 1000 },
      'draining: /readyz fails, still serving until the load balancer has noticed (signal again to skip)',
    )
    await sleep(opts.drainMs, undefined, { signal: opts.skip }).catch(() => {
      log.info('drain cut short')
    })
  }
  log.info({ signal: opts.reason }, 'shutting down: no new connections, waiting for transfers in flight')
  const deadline = setTimeout(() => {
    log.warn({ deadlineMs: opts.deadlineMs }, 'shutdown deadline passed: closing remaining connections')
    target.app.server.closeAllConnections()
  }, opts.deadlineMs)
  deadline.unref()
  const idle = setInterval(() => {
    target.app.server.closeIdleConnections()
  }, IDLE_SWEEP_MS)
  idle.unref()
  try {
    await target.close()
  } finally {
    clearTimeout(deadline)
    clearInterval(idle)
  }
}
