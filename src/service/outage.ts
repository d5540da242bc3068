/**
 * Outage mode (DESIGN §3.10): whether the upstream is reachable, decided per
 * request and remembered for a few seconds, and the last good
 * advertisements kept as they pass (cache/last-good.ts).
 *
 * "Unreachable": the connection refused or reset, no response headers
 * within `upstream.connect-timeout` (the HTTP upstream maps these to
 * ERR_UPSTREAM_UNAVAILABLE / ERR_UPSTREAM_TIMEOUT), or a 502/503/504
 * answer. Once seen, the upstream counts as down for `rememberMs` (so a
 * burst of 32 clones does not wait on a dead upstream 32 times); any real
 * answer ends the outage at once.
 *
 * Who is answered during an outage is decided in access.ts
 * (`acceptedForOutage`), what is answered in http-git.ts.
 */
import { Transform, type Readable } from 'node:stream'
import { UpstreamError, UpstreamStatusError } from '../errors.js'
import type { Log } from '../logger.js'
import { LAST_GOOD_MAX, type LastGood } from '../cache/last-good.js'

export const REMEMBER_DOWN_MS = 5000

export interface OutageStatus {
  /** outage mode is on (scm-cache.outage.enabled) */
  enabled: boolean
  /** the last request found the upstream reachable (or none has failed yet) */
  upstreamReachable: boolean
  /** epoch ms since which it is unreachable; null while reachable */
  since: number | null
  reason: string | null
  /** answers given from the cache during outages */
  answers: number
}

export interface OutageOptions {
  enabled: boolean
  /** auth.outage-ttl in ms */
  outageTtlMs: number
  lastGood: LastGood
  log: Log
  now?: () => number
  rememberMs?: number
  /** The upstream's name for messages. */
  upstreamName: string
}

export class Outage {
  readonly enabled: boolean
  readonly outageTtlMs: number
  readonly lastGood: LastGood
  readonly #log: Log
  readonly #now: () => number
  readonly #rememberMs: number
  readonly #name: string
  #since: number | null = null
  #downUntil = 0
  #reason: string | null = null
  #answers = 0

  constructor(opts: OutageOptions) {
    this.enabled = opts.enabled
    this.outageTtlMs = opts.outageTtlMs
    this.lastGood = opts.lastGood
    this.#log = opts.log
    this.#now = opts.now ?? Date.now
    this.#rememberMs = opts.rememberMs ?? REMEMBER_DOWN_MS
    this.#name = opts.upstreamName
  }

  /** Whether `err` says the upstream cannot be reached. */
  static isUnreachable(err: unknown): boolean {
    for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
      if (e instanceof UpstreamStatusError) return isUnreachableStatus(e.status)
      if (e instanceof UpstreamError && (e.code === 'ERR_UPSTREAM_UNAVAILABLE' || e.code === 'ERR_UPSTREAM_TIMEOUT')) return true
    }
    return false
  }

  /** The upstream failed to answer a request. */
  down(reason: string): void {
    const now = this.#now()
    this.#downUntil = now + this.#rememberMs
    this.#reason = reason
    if (this.#since === null) {
      this.#since = now
      this.#log.warn({ reason, outageMode: this.enabled }, 'upstream unreachable')
    }
  }

  /** The upstream answered. */
  up(): void {
    if (this.#since === null) return
    this.#log.info({ since: this.#since }, 'upstream reachable again')
    this.#since = null
    this.#reason = null
    this.#downUntil = 0
  }

  /** Down within the last few seconds: do not wait on it again. */
  remembersDown(): boolean {
    return this.#since !== null && this.#now() < this.#downUntil
  }

  countAnswer(): void {
    this.#answers++
  }

  status(): OutageStatus {
    return {
      enabled: this.enabled,
      upstreamReachable: this.#since === null,
      since: this.#since,
      reason: this.#reason,
      answers: this.#answers,
    }
  }

  /** The error for what the cache cannot answer during an outage (HTTP 503, ERR over SSH). */
  error(what: string): UpstreamError {
    const why = this.#reason === null ? '' : ` (${this.#reason})`
    return new UpstreamError('ERR_UPSTREAM_OUTAGE', `upstream ${this.#name} is unreachable${why}: ${what} cannot be answered from the cache during the outage`)
  }

  /**
   * `body` unchanged; once it has ended whole (and `valid(bytes)` agrees),
   * its bytes are kept as the last good copy of `key`.
   */
  keep(repo: string, key: string, body: Readable, valid: (bytes: Buffer) => boolean): Readable {
    const parts: Buffer[] = []
    let size = 0
    const lastGood = this.lastGood
    const tee = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        if (size <= LAST_GOOD_MAX) {
          parts.push(chunk)
          size += chunk.length
        }
        cb(null, chunk)
      },
      flush(cb) {
        const bytes = Buffer.concat(parts)
        if (size <= LAST_GOOD_MAX && valid(bytes)) void lastGood.save(repo, key, bytes) // never rejects
        cb()
      },
    })
    body.on('error', (err) => tee.destroy(err))
    return body.pipe(tee)
  }
}

export function isUnreachableStatus(status: number): boolean {
  return status === 502 || status === 503 || status === 504
}
