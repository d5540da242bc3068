/**
 * Prometheus metrics (DESIGN §9), one registry per proxy (no module-level
 * state). Request counters are fed from the per-request log point; cache,
 * fill and disk figures are read from their owners at scrape time.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client'
import type { DiskGuard } from './cache/disk-guard.js'
import type { Outage } from './service/outage.js'
import type { FillLimiter } from './cache/fill-limiter.js'
import type { CacheStoreApi, KindStats } from './cache/store-api.js'
import type { UploadPackSplit } from './cache/upload-pack-split.js'

export interface MetricsSources {
  store: CacheStoreApi
  limiter: FillLimiter
  disk: DiskGuard
}

export interface RequestObservation {
  proto: string
  cmd: string
  cache: 'hit' | 'miss' | 'join' | 'bypass' | 'stale'
  status: number
  bytes: number
}

export class Metrics {
  readonly registry = new Registry()
  readonly #requests: Counter<'proto' | 'cmd' | 'cache'>
  readonly #bytes: Counter<'source'>
  readonly #upstream: Histogram<'method' | 'status'>
  readonly #outageAnswers: Counter
  #src: MetricsSources | undefined
  #outage: Outage | undefined
  #split: UploadPackSplit | undefined

  /** Sources are attached once they exist (`attach`); until then their metrics are absent. */
  constructor() {
    const r = this.registry
    const sources = (): MetricsSources | undefined => this.#src
    const outageOf = (): Outage | undefined => this.#outage
    this.#requests = new Counter({
      name: 'scm_cache_git_requests_total',
      help: 'Git requests by front, command and cache result (hit, miss, join, bypass)',
      labelNames: ['proto', 'cmd', 'cache'],
      registers: [r],
    })
    this.#bytes = new Counter({
      name: 'scm_cache_bytes_served_total',
      help: 'Response bytes sent to Git clients: by the cache (hits, and joins of a fill in flight) or straight from the upstream (misses, pass-through)',
      labelNames: ['source'],
      registers: [r],
    })
    this.#outageAnswers = new Counter({
      name: 'scm_cache_outage_answers_total',
      help: 'Git requests answered from the cache while the upstream was unreachable (outage mode)',
      registers: [r],
    })
    new Gauge({
      name: 'scm_cache_upstream_reachable',
      help: '1 while the upstream answers, 0 during an outage (DESIGN §3.10)',
      registers: [r],
      collect() {
        const outage = outageOf()
        if (outage !== undefined) this.set(outage.status().upstreamReachable ? 1 : 0)
      },
    })
    this.#upstream = new Histogram({
      name: 'scm_cache_upstream_response_seconds',
      help: 'Time from sending a request to the upstream to its response headers',
      labelNames: ['method', 'status'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: [r],
    })
    const kinds = ['refs', 'uploadPack', 'lfs'] as const
    const kindLabel = { refs: 'refs', uploadPack: 'upload-pack', lfs: 'lfs' } as const
    const fromTotals = (name: string, help: string, pick: (k: KindStats) => number, type: 'gauge' | 'counter'): void => {
      const collect = function (this: Gauge<'kind'> | Counter<'kind'>): void {
        this.reset()
        const src = sources()
        if (src === undefined) return
        const totals = src.store.stats().totals
        for (const k of kinds) {
          const v = pick(totals[k])
          if (this instanceof Gauge) this.set({ kind: kindLabel[k] }, v)
          else this.inc({ kind: kindLabel[k] }, v)
        }
      }
      if (type === 'gauge') new Gauge({ name, help, labelNames: ['kind'], registers: [r], collect })
      else new Counter({ name, help, labelNames: ['kind'], registers: [r], collect })
    }
    fromTotals('scm_cache_entries', 'Committed cache entries', (k) => k.entries, 'gauge')
    fromTotals('scm_cache_disk_bytes', 'Bytes on disk of committed cache entries', (k) => k.size, 'gauge')
    fromTotals('scm_cache_hits_total', 'Requests answered from a committed entry', (k) => k.hits, 'counter')
    fromTotals('scm_cache_misses_total', 'Requests that started a fill', (k) => k.misses, 'counter')
    fromTotals('scm_cache_joins_total', 'Requests that joined a fill in flight', (k) => k.joins, 'counter')
    fromTotals('scm_cache_bypasses_total', 'Cacheable-kind requests sent around the cache', (k) => k.bypasses, 'counter')
    const split = (): UploadPackSplit | undefined => this.#split
    new Counter({
      name: 'scm_cache_upload_pack_answers_total',
      help: 'Upload-pack answers from the cache by what was asked (clone, fetch: an incremental fetch, each negotiation round counted) and how (hit, miss, join)',
      labelNames: ['what', 'how'],
      registers: [r],
      collect() {
        this.reset()
        const s = split()
        if (s === undefined) return
        const t = s.snapshot().totals
        this.inc({ what: 'clone', how: 'hit' }, t.cloneHits)
        this.inc({ what: 'clone', how: 'miss' }, t.cloneMisses)
        this.inc({ what: 'clone', how: 'join' }, t.cloneJoins)
        this.inc({ what: 'fetch', how: 'hit' }, t.fetchHits)
        this.inc({ what: 'fetch', how: 'miss' }, t.fetchMisses)
        this.inc({ what: 'fetch', how: 'join' }, t.fetchJoins)
      },
    })
    new Counter({
      name: 'scm_cache_evictions_total',
      help: 'Entries evicted to keep the cache under scm-cache.max.size',
      registers: [r],
      collect() {
        this.reset()
        const src = sources()
        if (src !== undefined) this.inc(src.store.stats().evictions)
      },
    })
    new Gauge({
      name: 'scm_cache_fills_in_flight',
      help: 'Upstream fills running',
      registers: [r],
      collect() {
        const src = sources()
        if (src !== undefined) this.set(src.limiter.active)
      },
    })
    new Gauge({
      name: 'scm_cache_fills_queued',
      help: 'Upstream fills waiting for a slot',
      registers: [r],
      collect() {
        const src = sources()
        if (src !== undefined) this.set(src.limiter.queued)
      },
    })
    new Gauge({
      name: 'scm_cache_free_disk_bytes',
      help: 'Free bytes under cache.dir at the last check',
      registers: [r],
      collect() {
        const src = sources()
        if (src !== undefined) this.set(src.disk.status().freeSpace ?? Number.NaN)
      },
    })
    new Gauge({
      name: 'scm_cache_caching_enabled',
      help: '1 while new cache entries may be written, 0 while paused (low disk, unusable cache directory)',
      registers: [r],
      collect() {
        const src = sources()
        if (src !== undefined) this.set(src.disk.status().admitting ? 1 : 0)
      },
    })
  }

  attach(src: MetricsSources): void {
    this.#src = src
  }

  /** The upstream's reachability, as `scm_cache_upstream_reachable`. */
  attachOutage(outage: Outage): void {
    this.#outage = outage
  }

  /** The clone/fetch split of upload-pack answers (scm_cache_upload_pack_answers_total). */
  attachSplit(split: UploadPackSplit): void {
    this.#split = split
  }

  observeRequest(o: RequestObservation): void {
    this.#requests.inc({ proto: o.proto, cmd: o.cmd, cache: o.cache })
    if (o.cache === 'stale') this.#outageAnswers.inc()
    if (o.bytes > 0) this.#bytes.inc({ source: o.cache === 'hit' || o.cache === 'join' || o.cache === 'stale' ? 'cache' : 'upstream' }, o.bytes)
  }

  observeUpstream(method: string, status: number, seconds: number): void {
    this.#upstream.observe({ method, status: String(status) }, seconds)
  }
}
