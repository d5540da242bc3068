/** Scenario 1, CI burst: N identical clones (or actions/checkout fetches) of a new commit at once, cold and warm. */
import { mkdtemp, rm } from 'node:fs/promises'
import path from 'node:path'
import { measure, pushCommit, type Env } from '../environment.js'
import type { RepoName } from '../generate.js'
import type { GitRun } from '../lib/git.js'
import { log } from '../lib/log.js'
import { median, percentile, round } from '../lib/stats.js'
import type { Mode, Plan, Target } from '../plan.js'

export interface BurstRow {
  repo: RepoName
  proto: number
  mode: Mode
  n: number
  target: Target
  phase: 'cold' | 'warm'
  reps: {
    wallS: number
    p50S: number
    p99S: number
    failures: number
    packGenerations: number
    upstreamRequests: number
    upstreamCpuS: number
    proxyCpuS: number
    proxyPeakRssMb: number
  }[]
  median: BurstRow['reps'][number]
  firstError?: string
}

function cloneSteps(mode: Mode, url: string, proto: number, sha: string, dir: string): { args: string[]; cwd?: string }[] {
  if (mode === 'full') return [{ args: ['-c', `protocol.version=${proto}`, 'clone', '-q', '--no-checkout', url, dir] }]
  // actions/checkout: init, add the remote, fetch exactly the commit with depth 1 (checkout itself is local work).
  return [
    { args: ['init', '-q', dir] },
    { args: ['-C', dir, 'remote', 'add', 'origin', url] },
    {
      args: ['-C', dir, '-c', `protocol.version=${proto}`, 'fetch', '-q', '--no-tags', '--prune', '--no-recurse-submodules', '--depth=1', 'origin', `+${sha}:refs/remotes/origin/main`],
    },
  ]
}

export async function oneBurst(env: Env, url: string, mode: Mode, proto: number, n: number, sha: string): Promise<{ runs: GitRun[]; failures: number }> {
  const work = await mkdtemp(path.join(env.tmp, 'burst-'))
  const runs = await Promise.all(
    Array.from({ length: n }, (_, i) => env.client.sequence(cloneSteps(mode, url, proto, sha, path.join(work, `c${i}`)))),
  )
  let failures = 0
  for (const [i, r] of runs.entries()) {
    if (!r.ok) {
      failures++
      continue
    }
    const ref = mode === 'full' ? 'HEAD' : 'refs/remotes/origin/main'
    const got = await env.client.run(['-C', path.join(work, `c${i}`), 'rev-parse', ref])
    if (got.stdout.trim() !== sha) {
      failures++
      r.ok = false
      r.stderr = `cloned ${got.stdout.trim()} instead of ${sha}`
    }
  }
  await rm(work, { recursive: true, force: true })
  return { runs, failures }
}

function medianOf<T extends Record<string, number>>(rows: T[]): T {
  const out: Record<string, number> = {}
  for (const k of Object.keys(rows[0] ?? {})) out[k] = round(median(rows.map((r) => r[k]!)))
  return out as T
}

export async function scenarioBurst(env: Env, plan: Plan): Promise<BurstRow[]> {
  const rows = new Map<string, BurstRow>()
  for (const b of plan.bursts) {
    const repo = env.repos.get(b.repo)!
    for (const proto of b.protos) {
      for (const mode of b.modes) {
        for (const n of b.ns) {
          for (let rep = 0; rep < b.reps; rep++) {
            const sha = await pushCommit(env, repo.name)
            const order: Target[] = rep % 2 === 0 ? ['proxy', 'direct'] : ['direct', 'proxy']
            for (const target of order) {
              const base = target === 'proxy' ? env.proxy.url : env.upstream.url
              // The direct upstream keeps nothing between bursts: one burst per repetition is its figure.
              const phases = target === 'proxy' ? (['cold', 'warm'] as const) : (['cold'] as const)
              for (const phase of phases) {
                const m = await measure(env, env.proxy, () => oneBurst(env, `${base}/${repo.name}.git`, mode, proto, n, sha))
                const ms = m.value.runs.map((r) => r.ms / 1000)
                const key = `${b.repo}|${proto}|${mode}|${n}|${target}|${phase}`
                const row = rows.get(key) ?? { repo: b.repo, proto, mode, n, target, phase, reps: [], median: undefined as unknown as BurstRow['median'] }
                row.reps.push({
                  wallS: round(m.wallMs / 1000),
                  p50S: round(percentile(ms, 50)),
                  p99S: round(percentile(ms, 99)),
                  failures: m.value.failures,
                  packGenerations: m.packGenerations,
                  upstreamRequests: m.upstreamRequests,
                  upstreamCpuS: round(m.upstreamCpuS, 2),
                  proxyCpuS: target === 'proxy' ? round(m.proxyCpuS, 2) : 0,
                  proxyPeakRssMb: target === 'proxy' ? round(m.proxyPeakRssMb, 1) : 0,
                })
                const err = m.value.runs.find((r) => !r.ok)
                if (err !== undefined && row.firstError === undefined) row.firstError = err.stderr.trim().slice(-600)
                rows.set(key, row)
                log(`burst ${b.repo} v${proto} ${mode} n=${n} ${target} ${phase}: wall ${(m.wallMs / 1000).toFixed(2)} s, ` +
                  `p99 ${percentile(ms, 99).toFixed(2)} s, fail ${m.value.failures}, packs ${m.packGenerations}, ` +
                  `upstream cpu ${m.upstreamCpuS.toFixed(2)} s, proxy cpu ${m.proxyCpuS.toFixed(2)} s, rss ${m.proxyPeakRssMb.toFixed(0)} MB`)
              }
            }
          }
        }
      }
    }
  }
  const out = [...rows.values()]
  for (const r of out) r.median = medianOf(r.reps)
  return out
}
