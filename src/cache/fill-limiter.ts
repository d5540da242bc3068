/**
 * Bounded concurrency for upstream fills (DESIGN §3, invariant 7): at most
 * `maxTotal` running at once, at most `maxPerRepo` of them for one
 * repository, and at most `maxQueue` callers waiting. A caller that cannot
 * wait (queue full) or waited `queueTimeoutMs` in vain gets a `BusyError`.
 *
 * The queue is served in arrival order, except that a waiter whose
 * repository is at its own limit does not block the waiters behind it:
 * when a slot frees, the oldest waiter that may run now gets it.
 */
import { BusyError } from '../errors.js'

export interface FillLimiterOptions {
  maxTotal: number
  maxPerRepo: number
  maxQueue: number
  queueTimeoutMs: number
}

interface Waiter {
  repo: string
  start: () => void
  timer: NodeJS.Timeout
}

export class FillLimiter {
  readonly #opts: FillLimiterOptions
  #active = 0
  readonly #perRepo = new Map<string, number>()
  readonly #queue: Waiter[] = []

  constructor(opts: FillLimiterOptions) {
    for (const [name, min] of [
      ['maxTotal', 1],
      ['maxPerRepo', 1],
      ['maxQueue', 0],
      ['queueTimeoutMs', 0],
    ] as const) {
      const v = opts[name]
      if (!Number.isSafeInteger(v) || v < min) {
        throw new RangeError(`FillLimiter: ${name} must be an integer >= ${min}, got ${String(v)}`)
      }
    }
    this.#opts = { ...opts }
  }

  /** Fills running now. */
  get active(): number {
    return this.#active
  }

  /** Callers waiting for a slot. */
  get queued(): number {
    return this.#queue.length
  }

  /** Runs `fn` once a slot is free for `repo`; the slot is freed when `fn` settles. */
  async run<T>(repo: string, fn: () => Promise<T>): Promise<T> {
    if (this.#canStart(repo)) this.#acquire(repo)
    else await this.#wait(repo) // resolves with the slot already taken for us
    try {
      return await fn()
    } finally {
      this.#release(repo)
    }
  }

  #canStart(repo: string): boolean {
    return this.#active < this.#opts.maxTotal && (this.#perRepo.get(repo) ?? 0) < this.#opts.maxPerRepo
  }

  #busy(): BusyError {
    return new BusyError(
      `upstream busy: ${this.#active} fills running, ${this.#queue.length} queued; retry later`,
    )
  }

  #wait(repo: string): Promise<void> {
    if (this.#queue.length >= this.#opts.maxQueue) return Promise.reject(this.#busy())
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        repo,
        start: resolve,
        timer: setTimeout(() => {
          const i = this.#queue.indexOf(waiter)
          if (i >= 0) this.#queue.splice(i, 1)
          reject(this.#busy())
        }, this.#opts.queueTimeoutMs),
      }
      this.#queue.push(waiter)
    })
  }

  #acquire(repo: string): void {
    this.#active++
    this.#perRepo.set(repo, (this.#perRepo.get(repo) ?? 0) + 1)
  }

  #release(repo: string): void {
    this.#active--
    const n = (this.#perRepo.get(repo) ?? 1) - 1
    if (n === 0) this.#perRepo.delete(repo)
    else this.#perRepo.set(repo, n)
    this.#dispatch()
  }

  /** Hands free slots to the oldest waiters that may run. */
  #dispatch(): void {
    for (let i = 0; i < this.#queue.length && this.#active < this.#opts.maxTotal; ) {
      const waiter = this.#queue[i]
      if (waiter === undefined || !this.#canStart(waiter.repo)) {
        i++
        continue
      }
      this.#queue.splice(i, 1)
      clearTimeout(waiter.timer)
      // Take the slot for the waiter now, so that no caller arriving meanwhile can take it first.
      this.#acquire(waiter.repo)
      waiter.start()
    }
  }
}
