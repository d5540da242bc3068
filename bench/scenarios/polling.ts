/** Scenario 2, polling: ref advertisements and ls-refs under load, refs cache on, proxy vs direct; and ls-remote. */
import { measure, type Env } from '../environment.js'
import { log } from '../lib/log.js'
import { lsRefsBody, runLoad, type LoadRequest, type LoadResult } from '../lib/load.js'
import { median, round } from '../lib/stats.js'
import type { Plan, Target } from '../plan.js'

export interface PollRow {
  kind: string
  concurrency: number
  direct: LoadResult & { upstreamRequests: number; upstreamCpuS: number }
  proxy: LoadResult & { upstreamRequests: number; upstreamCpuS: number; proxyCpuS: number; proxyPeakRssMb: number; upstreamRequestsPerTtl: number }
  speedup: number
}

export interface LsRemoteRow {
  proto: number
  directS: number[]
  proxyS: number[]
  median: { directS: number; proxyS: number }
}

export function pollRequests(): { kind: string; req: LoadRequest }[] {
  const get = (repo: string, proto: string | null, extra: Record<string, string> = {}): LoadRequest => ({
    method: 'GET',
    path: `/${repo}.git/info/refs?service=git-upload-pack`,
    headers: { ...(proto === null ? {} : { 'git-protocol': proto }), ...extra },
  })
  const lsRefs = (extra: Record<string, string> = {}): LoadRequest => ({
    method: 'POST',
    path: '/refs.git/git-upload-pack',
    headers: { 'git-protocol': 'version=2', 'content-type': 'application/x-git-upload-pack-request', accept: 'application/x-git-upload-pack-result', ...extra },
    body: lsRefsBody(),
  })
  // What git 2.39's curl sends; the load loop counts the bytes and does not inflate them.
  const gzip = { 'accept-encoding': 'deflate, gzip, br, zstd' }
  return [
    { kind: 'v0 GET info/refs, small (18 refs)', req: get('small', null) },
    { kind: 'v0 GET info/refs, refs (20,501 refs)', req: get('refs', null) },
    { kind: 'v0 GET info/refs, refs (20,501 refs), gzip accepted', req: get('refs', null, gzip) },
    { kind: 'v2 GET info/refs (capabilities)', req: get('refs', 'version=2') },
    { kind: 'v2 POST ls-refs, refs (20,501 refs)', req: lsRefs() },
    { kind: 'v2 POST ls-refs, refs (20,501 refs), gzip accepted', req: lsRefs(gzip) },
  ]
}

export async function scenarioPolling(env: Env, plan: Plan): Promise<{ rows: PollRow[]; lsRemote: LsRemoteRow[]; refsCacheHits: boolean }> {
  const rows: PollRow[] = []
  for (const { kind, req } of pollRequests()) {
    for (const c of plan.pollConcurrency) {
      const ms = plan.pollSeconds * 1000
      const d = await measure(env, env.proxyRefs, () => runLoad(env.upstream.url, req, c, ms))
      const p = await measure(env, env.proxyRefs, () => runLoad(env.proxyRefs.url, req, c, ms))
      const windows = Math.max(1, Math.ceil(p.value.seconds / plan.refsTtl))
      const row: PollRow = {
        kind,
        concurrency: c,
        direct: { ...roundLoad(d.value), upstreamRequests: d.upstreamRequests, upstreamCpuS: round(d.upstreamCpuS, 2) },
        proxy: {
          ...roundLoad(p.value),
          upstreamRequests: p.upstreamRequests,
          upstreamCpuS: round(p.upstreamCpuS, 2),
          proxyCpuS: round(p.proxyCpuS, 2),
          proxyPeakRssMb: round(p.proxyPeakRssMb, 1),
          upstreamRequestsPerTtl: round(p.upstreamRequests / windows, 1),
        },
        speedup: round(p.value.rps / d.value.rps, 1),
      }
      rows.push(row)
      log(`poll ${kind} c=${c}: direct ${row.direct.rps} req/s p99 ${row.direct.p99Ms} ms; proxy ${row.proxy.rps} req/s p99 ${row.proxy.p99Ms} ms ` +
        `(${row.speedup}x), upstream requests through proxy ${p.upstreamRequests} (${row.proxy.upstreamRequestsPerTtl} per ${plan.refsTtl} s TTL), failures ${d.value.failures}/${p.value.failures}`)
    }
  }
  const lsRemote: LsRemoteRow[] = []
  for (const proto of [2, 0]) {
    const row: LsRemoteRow = { proto, directS: [], proxyS: [], median: { directS: 0, proxyS: 0 } }
    for (let i = 0; i < 5; i++) {
      for (const t of (i % 2 === 0 ? ['proxy', 'direct'] : ['direct', 'proxy']) as Target[]) {
        const base = t === 'proxy' ? env.proxyRefs.url : env.upstream.url
        const r = await env.client.run(['-c', `protocol.version=${proto}`, 'ls-remote', `${base}/refs.git`])
        if (!r.ok) log(`ls-remote ${t} failed: ${r.stderr.trim()}`)
        ;(t === 'proxy' ? row.proxyS : row.directS).push(round(r.ms / 1000, 4))
      }
    }
    row.median = { directS: median(row.directS), proxyS: median(row.proxyS) }
    log(`ls-remote refs.git v${proto}: direct ${row.median.directS} s, proxy ${row.median.proxyS} s`)
    lsRemote.push(row)
  }
  const refsCacheHits = rows.some((r) => r.proxy.requests > 10 * Math.max(1, r.proxy.upstreamRequests))
  return { rows, lsRemote, refsCacheHits }
}

function roundLoad(r: LoadResult): LoadResult {
  return { ...r, seconds: round(r.seconds, 2), rps: round(r.rps, 1), p50Ms: round(r.p50Ms, 2), p99Ms: round(r.p99Ms, 2), maxMs: round(r.maxMs, 2) }
}
