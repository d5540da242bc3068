/** A wall clock that moves only when told: TTL tests advance it instead of sleeping. */
export interface ManualClock {
  /** Epoch ms, for `startProxy`'s `now`. */
  readonly now: () => number
  advance(ms: number): void
}

export function manualClock(start = Date.now()): ManualClock {
  let t = start
  return {
    now: () => t,
    advance: (ms) => {
      t += ms
    },
  }
}
