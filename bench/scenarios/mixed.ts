/** Scenario 5, a mixed day: polls, pushes with CI bursts, and developer fetches together, direct then through the proxy. */
import { mkdir, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { measure, type Env } from '../environment.js'
import { SeededBytes } from '../generate.js'
import { log, sleep } from '../lib/log.js'
import { runLoad } from '../lib/load.js'
import type { ServerProcess } from '../lib/proc.js'
import { median, percentile, round } from '../lib/stats.js'
import type { Plan, Target } from '../plan.js'
import { oneBurst } from './burst.js'
import { pollRequests } from './polling.js'

export interface MixedPhase {
  target: Target
  seconds: number
  polls: number
  pollFailures: number
  pollP99Ms: number
  clones: number
  cloneFailures: number
  cloneP50S: number
  cloneP99S: number
  fetches: number
  fetchFailures: number
  pushes: number
  upstreamRequests: number
  packGenerations: number
  upstreamCpuS: number
  proxyCpuS: number
  proxyPeakRssMb: number
  cache?: { hits: number; joins: number; misses: number; bypasses: number; hitRatio: number }
}

interface CacheCounters { hits: number; joins: number; misses: number; bypasses: number }

async function cacheCounters(proxy: ServerProcess): Promise<CacheCounters> {
  const s = (await proxy.command('stats')) as { totals: Record<'refs' | 'uploadPack', CacheCounters> }
  const k = (f: keyof CacheCounters): number => s.totals.refs[f] + s.totals.uploadPack[f]
  return { hits: k('hits'), joins: k('joins'), misses: k('misses'), bypasses: k('bypasses') }
}

export async function scenarioMixed(env: Env, plan: Plan): Promise<{ phases: MixedPhase[]; upstreamCpuSaved: number; upstreamRequestsSaved: number }> {
  const repo = 'small'
  const phases: MixedPhase[] = []
  for (const target of ['direct', 'proxy'] as Target[]) {
    const base = target === 'proxy' ? env.proxyRefs.url : env.upstream.url
    const url = `${base}/${repo}.git`
    const work = path.join(env.tmp, `mixed-${target}`)
    await mkdir(work)
    const pusher = path.join(work, 'pusher')
    await env.client.ok(['clone', '-q', url, pusher])
    const fetchers = Array.from({ length: 4 }, (_, i) => path.join(work, `fetcher${i}`))
    for (const f of fetchers) await env.client.ok(['clone', '-q', '--no-checkout', url, f])
    const before = target === 'proxy' ? await cacheCounters(env.proxyRefs) : null
    const phase: MixedPhase = {
      target, seconds: plan.mixedSeconds, polls: 0, pollFailures: 0, pollP99Ms: 0, clones: 0, cloneFailures: 0, cloneP50S: 0, cloneP99S: 0,
      fetches: 0, fetchFailures: 0, pushes: 0, upstreamRequests: 0, packGenerations: 0, upstreamCpuS: 0, proxyCpuS: 0, proxyPeakRssMb: 0,
    }
    const cloneTimes: number[] = []
    let pollP99s: number[] = []
    const m = await measure(env, env.proxyRefs, async () => {
      const end = performance.now() + plan.mixedSeconds * 1000
      const tasks: Promise<void>[] = []
      // 20 pollers, one ref advertisement per second each (Jenkins-style SCM polling), small and refs repositories.
      tasks.push((async () => {
        while (performance.now() < end) {
          const t0 = performance.now()
          const [a, b] = await Promise.all([
            runLoad(base, pollRequests()[0]!.req, 10, 1),
            runLoad(base, pollRequests()[1]!.req, 10, 1),
          ])
          phase.polls += a.requests + b.requests
          phase.pollFailures += a.failures + b.failures
          pollP99s.push(a.p99Ms, b.p99Ms)
          await sleep(Math.max(0, 1000 - (performance.now() - t0)))
        }
      })())
      // Every 20 s: a push, then a CI burst of 16 (8 full clones, 8 actions/checkout fetches).
      tasks.push((async () => {
        let i = 0
        while (performance.now() < end - 5000) {
          const t0 = performance.now()
          await writeFile(path.join(pusher, `mixed-${i}.txt`), new SeededBytes(`mixed ${target} ${i}`).text(8192))
          await env.client.ok(['-C', pusher, 'add', '.'])
          await env.client.ok(['-C', pusher, 'commit', '-q', '-m', `mixed ${i}`])
          const pushed = await env.client.run(['-C', pusher, 'push', '-q', 'origin', 'HEAD:refs/heads/main'])
          if (!pushed.ok) log(`mixed push failed: ${pushed.stderr}`)
          phase.pushes++
          const sha = (await env.client.ok(['-C', pusher, 'rev-parse', 'HEAD'])).trim()
          const [full, co] = await Promise.all([
            oneBurst(env, url, 'full', 2, 8, sha),
            oneBurst(env, url, 'checkout', 2, 8, sha),
          ])
          for (const b of [full, co]) {
            phase.clones += b.runs.length
            phase.cloneFailures += b.failures
            cloneTimes.push(...b.runs.map((r) => r.ms / 1000))
          }
          i++
          await sleep(Math.max(0, 20_000 - (performance.now() - t0)))
        }
      })())
      // 4 developers' incremental fetches (with haves), every 5 s each.
      for (const f of fetchers) {
        tasks.push((async () => {
          while (performance.now() < end) {
            const r = await env.client.run(['-C', f, 'fetch', '-q', 'origin'])
            phase.fetches++
            if (!r.ok) phase.fetchFailures++
            await sleep(5000)
          }
        })())
      }
      await Promise.all(tasks)
    })
    phase.pollP99Ms = round(median(pollP99s), 2)
    pollP99s = []
    phase.cloneP50S = round(percentile(cloneTimes, 50))
    phase.cloneP99S = round(percentile(cloneTimes, 99))
    phase.upstreamRequests = m.upstreamRequests
    phase.packGenerations = m.packGenerations
    phase.upstreamCpuS = round(m.upstreamCpuS, 2)
    if (target === 'proxy' && before !== null) {
      const after = await cacheCounters(env.proxyRefs)
      const d = { hits: after.hits - before.hits, joins: after.joins - before.joins, misses: after.misses - before.misses, bypasses: after.bypasses - before.bypasses }
      const total = d.hits + d.joins + d.misses + d.bypasses
      phase.cache = { ...d, hitRatio: round(total === 0 ? 0 : (d.hits + d.joins) / total) }
      phase.proxyCpuS = round(m.proxyCpuS, 2)
      phase.proxyPeakRssMb = round(m.proxyPeakRssMb, 1)
    }
    log(`mixed ${target}: ${phase.polls} polls, ${phase.clones} clones (${phase.cloneFailures} failed), ${phase.fetches} fetches, ` +
      `upstream ${phase.upstreamRequests} requests, ${phase.packGenerations} pack generations, ${phase.upstreamCpuS} s CPU` +
      (phase.cache === undefined ? '' : `, hit ratio ${phase.cache.hitRatio}`))
    phases.push(phase)
    await rm(work, { recursive: true, force: true })
  }
  const [d, p] = [phases[0]!, phases[1]!]
  return {
    phases,
    upstreamCpuSaved: round(1 - p.upstreamCpuS / d.upstreamCpuS),
    upstreamRequestsSaved: round(1 - p.upstreamRequests / d.upstreamRequests),
  }
}
