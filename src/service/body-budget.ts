/**
 * One memory budget for every request body the HTTP front holds in memory
 * (DESIGN §3.9, `proxy.http.body-memory`): upload-pack requests read whole
 * for parsing, their gunzipped form, webhook payloads. A request takes its
 * bytes as they arrive; past the budget it waits for others to give theirs
 * back, and after `waitMs` it gets a BusyError (503), so bodies can never
 * grow the process beyond the budget however many arrive at once.
 */
import { BusyError } from '../errors.js'

interface Waiter {
  bytes: number
  grant: () => void
}

export class BodyBudget {
  readonly #limit: number
  readonly #waitMs: number
  #used = 0
  readonly #waiting: Waiter[] = []

  constructor(opts: { limit: number; waitMs?: number }) {
    this.#limit = opts.limit
    this.#waitMs = opts.waitMs ?? 10_000
  }

  /** Bytes held now. */
  get used(): number {
    return this.#used
  }

  /**
   * Takes `bytes`, waiting while the budget is spent. Rejects with a
   * BusyError after `waitMs`, or with the signal's reason. Larger than the
   * whole budget, or the signal aborted already: refused at once.
   */
  async take(bytes: number, signal?: AbortSignal): Promise<void> {
    // An 'abort' listener added now would never fire: the request would wait out waitMs.
    if (signal?.aborted === true) throw abortReason(signal)
    if (bytes > this.#limit) throw this.#busy()
    if (this.#waiting.length === 0 && this.#used + bytes <= this.#limit) {
      this.#used += bytes
      return
    }
    await new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        bytes,
        grant: () => {
          clearTimeout(timer)
          signal?.removeEventListener('abort', onAbort)
          resolve()
        },
      }
      const leave = (err: Error): void => {
        const i = this.#waiting.indexOf(waiter)
        if (i >= 0) this.#waiting.splice(i, 1)
        signal?.removeEventListener('abort', onAbort)
        clearTimeout(timer)
        reject(err)
        this.#dispatch()
      }
      const onAbort = (): void => {
        if (signal !== undefined) leave(abortReason(signal))
      }
      const timer = setTimeout(() => {
        leave(this.#busy())
      }, this.#waitMs)
      timer.unref()
      signal?.addEventListener('abort', onAbort, { once: true })
      this.#waiting.push(waiter)
    })
  }

  /** Gives back bytes taken earlier. */
  give(bytes: number): void {
    this.#used = Math.max(0, this.#used - bytes)
    this.#dispatch()
  }

  #dispatch(): void {
    for (let w = this.#waiting[0]; w !== undefined && this.#used + w.bytes <= this.#limit; w = this.#waiting[0]) {
      this.#waiting.shift()
      this.#used += w.bytes
      w.grant()
    }
  }

  #busy(): BusyError {
    return new BusyError('the proxy holds as many request bodies as it may (proxy.http.body-memory): retry later')
  }
}

function abortReason(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new Error('aborted')
}

/** Bytes taken from a budget by one request, given back all at once. */
export class BodyLease {
  readonly #budget: BodyBudget
  #held = 0

  constructor(budget: BodyBudget) {
    this.#budget = budget
  }

  get held(): number {
    return this.#held
  }

  async take(bytes: number, signal?: AbortSignal): Promise<void> {
    await this.#budget.take(bytes, signal)
    this.#held += bytes
  }

  release(): void {
    const n = this.#held
    this.#held = 0
    this.#budget.give(n)
  }
}
