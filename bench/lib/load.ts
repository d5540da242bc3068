/**
 * A bounded-duration HTTP load loop on undici: `concurrency` workers, each
 * sending its next request as soon as the previous body was consumed.
 */
import { Pool } from 'undici'
import { percentile } from './stats.js'

export interface LoadRequest {
  method: 'GET' | 'POST'
  path: string
  headers: Record<string, string>
  body?: Buffer
}

export interface LoadResult {
  requests: number
  failures: number
  seconds: number
  rps: number
  p50Ms: number
  p99Ms: number
  maxMs: number
  bytes: number
}

export async function runLoad(origin: string, req: LoadRequest, concurrency: number, durationMs: number): Promise<LoadResult> {
  const pool = new Pool(origin, { connections: concurrency, pipelining: 1, keepAliveTimeout: 10_000 })
  const latencies: number[] = []
  let failures = 0
  let bytes = 0
  const t0 = performance.now()
  const deadline = t0 + durationMs
  const worker = async (): Promise<void> => {
    while (performance.now() < deadline) {
      const s = performance.now()
      try {
        const res = await pool.request({
          method: req.method,
          path: req.path,
          headers: req.headers,
          ...(req.body === undefined ? {} : { body: req.body }),
        })
        for await (const chunk of res.body) bytes += (chunk as Buffer).length
        if (res.statusCode !== 200) failures++
      } catch {
        failures++
      }
      latencies.push(performance.now() - s)
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  const seconds = (performance.now() - t0) / 1000
  await pool.close()
  return {
    requests: latencies.length,
    failures,
    seconds,
    rps: latencies.length / seconds,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    maxMs: percentile(latencies, 100),
    bytes,
  }
}

/** A v2 `ls-refs` request body as `git ls-remote` sends it. */
export function lsRefsBody(prefixes: string[] = ['refs/heads/', 'refs/tags/']): Buffer {
  const pkt = (s: string): string => (s.length + 4).toString(16).padStart(4, '0') + s
  let out = pkt('command=ls-refs\n') + pkt('agent=git/2.39.5\n') + pkt('object-format=sha1\n') + '0001'
  out += pkt('peel\n') + pkt('symrefs\n')
  for (const p of prefixes) out += pkt(`ref-prefix ${p}\n`)
  return Buffer.from(out + '0000')
}
