/**
 * The free-disk guard (DESIGN §3.6). Watches the file system holding
 * `cache.dir`: below `minimum.free.space` no new entries are written (hits
 * are still served, misses pass through) until free space is back above
 * the minimum plus 10%, so the state does not flap around the threshold.
 *
 * Free space is read with statfs(2) (Node's `fs.statfs`): one syscall, no
 * `df` child process per check as with check-disk-space.
 *
 * Checked on an interval, before each new fill (at most once a second, so
 * a burst does not turn into a burst of statfs calls), and at once when a
 * write fails for lack of space.
 */
import { statfs } from 'node:fs/promises'
import type { Log } from '../logger.js'

export interface DiskStatus {
  /** true while new entries may be written */
  admitting: boolean
  /** why not, as a sentence; null while admitting */
  reason: string | null
  /** bytes free under cache.dir at the last check; null before the first */
  freeSpace: number | null
  minimumFreeSpace: number
  /** epoch ms of the last check */
  checkedAt: number | null
}

export interface DiskGuardOptions {
  dir: string
  minimumFreeSpace: number
  intervalMs: number
  log: Log
  /** Free bytes under `dir` for an unprivileged writer. Injectable for tests; defaults to statfs(2). */
  freeBytes?: (dir: string) => Promise<number>
  /** Size of the file system holding `dir`. Injectable for tests; defaults to statfs(2). */
  totalBytes?: (dir: string) => Promise<number>
  now?: () => number
}

const HYSTERESIS = 0.1
const MIN_RECHECK_MS = 1000
/**
 * After a write failed for lack of space, caching resumes only with at
 * least this much free (or the minimum + 10%, if larger): with a tiny or
 * zero minimum, resuming at the first free byte would fail the next fill too.
 */
const NO_SPACE_RESUME_FLOOR = 64 * 1024 * 1024
/** ... but never more than this share of the file system (a 64 MiB one would never resume). */
const NO_SPACE_RESUME_SHARE = 0.5

export class DiskGuard {
  readonly #o: Required<Omit<DiskGuardOptions, 'log'>> & { log: Log }
  #paused = false
  #disabled: string | null = null
  /** set by reportNoSpace(): the free bytes needed to resume */
  #resumeAt: number | null = null
  #reason: string | null = null
  #free: number | null = null
  #checkedAt: number | null = null
  #timer: NodeJS.Timeout | undefined
  #inflight: Promise<void> | undefined
  /** set by reportWriteFailure(): no resume before this (epoch ms) */
  #failedUntil: number | null = null

  constructor(opts: DiskGuardOptions) {
    this.#o = {
      freeBytes: async (dir) => {
        const fs = await statfs(dir)
        return fs.bavail * fs.bsize
      },
      totalBytes: async (dir) => {
        const fs = await statfs(dir)
        return fs.blocks * fs.bsize
      },
      now: Date.now,
      ...opts,
    }
  }

  /** First check, then one every interval. */
  async start(): Promise<void> {
    await this.check()
    this.#timer = setInterval(() => {
      void this.check() // check() never rejects
    }, this.#o.intervalMs)
    this.#timer.unref()
  }

  stop(): void {
    clearInterval(this.#timer)
  }

  /** Whether a new fill may write now. Triggers a fresh check when the last one is over a second old. */
  admit(): boolean {
    const now = this.#o.now()
    if (this.#checkedAt === null || now - this.#checkedAt >= MIN_RECHECK_MS) void this.check() // never rejects
    return !this.#paused
  }

  /** A write failed with ENOSPC/EDQUOT: pause at once, then confirm with a check. */
  reportNoSpace(): void {
    this.#resumeAt = Math.max(this.#o.minimumFreeSpace * (1 + HYSTERESIS), NO_SPACE_RESUME_FLOOR)
    if (!this.#paused) this.#setPaused(true, 'the cache disk is full (a write failed: no space left on device)')
    void this.check() // never rejects
  }

  /**
   * A write failed for another reason (EIO, the directory vanished): pause
   * at once; the next check that finds enough free space after one check
   * interval resumes.
   */
  reportWriteFailure(err: unknown): void {
    this.#failedUntil = this.#o.now() + this.#o.intervalMs
    const why = err instanceof Error ? err.message : String(err)
    if (!this.#paused) this.#setPaused(true, `a cache write failed: ${why}`)
  }

  /** The cache directory is unusable (say, not writable at start-up): never admit, and say why. */
  disable(reason: string): void {
    this.#disabled = reason
    this.#setPaused(true, reason)
  }

  /** Whether `err` (or its causes) says the disk is full. */
  static isNoSpace(err: unknown): boolean {
    for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
      const code = (e as NodeJS.ErrnoException).code // Node's system errors carry a string code
      if (code === 'ENOSPC' || code === 'EDQUOT') return true
    }
    return false
  }

  status(): DiskStatus {
    return {
      admitting: !this.#paused,
      reason: this.#reason,
      freeSpace: this.#free,
      minimumFreeSpace: this.#o.minimumFreeSpace,
      checkedAt: this.#checkedAt,
    }
  }

  /** Measure free space and update the state. Never rejects. */
  check(): Promise<void> {
    this.#inflight ??= this.#measure().finally(() => {
      this.#inflight = undefined
    })
    return this.#inflight
  }

  async #measure(): Promise<void> {
    const min = this.#o.minimumFreeSpace
    let free: number
    try {
      free = await this.#o.freeBytes(this.#o.dir)
    } catch (err) {
      this.#o.log.warn({ err, dir: this.#o.dir }, 'cannot measure free disk space')
      return
    }
    this.#free = free
    const now = this.#o.now()
    this.#checkedAt = now
    const failing = this.#failedUntil !== null && now < this.#failedUntil
    if (!this.#paused && free < min) {
      this.#setPaused(true, `free disk space ${gib(free)} is below the minimum ${gib(min)}`)
    } else if (this.#paused && this.#disabled === null && !failing && free >= (await this.#resumeFloor())) {
      this.#resumeAt = null
      this.#failedUntil = null
      this.#setPaused(false, null)
    } else if (this.#paused && this.#disabled === null && free < min) {
      this.#reason = `free disk space ${gib(free)} is below the minimum ${gib(min)}`
    }
  }

  /** Free bytes needed to resume: after ENOSPC, the floor, capped at a share of the file system. */
  async #resumeFloor(): Promise<number> {
    const normal = this.#o.minimumFreeSpace * (1 + HYSTERESIS)
    if (this.#resumeAt === null) return normal
    let total = Infinity
    try {
      total = await this.#o.totalBytes(this.#o.dir)
    } catch {
      // unknown size: keep the floor
    }
    return Math.max(normal, Math.min(this.#resumeAt, total * NO_SPACE_RESUME_SHARE))
  }

  #setPaused(paused: boolean, reason: string | null): void {
    this.#paused = paused
    this.#reason = reason
    if (paused) {
      this.#o.log.warn({ freeSpace: this.#free, minimumFreeSpace: this.#o.minimumFreeSpace, reason }, 'caching paused: low disk space')
    } else {
      this.#o.log.info({ freeSpace: this.#free, minimumFreeSpace: this.#o.minimumFreeSpace }, 'caching resumed: disk space is back')
    }
  }
}

function gib(bytes: number): string {
  return `${(bytes / 1024 ** 3).toFixed(1)} GiB`
}
