/**
 * Scenario 4, one client's overhead: a fetch with haves that no other client
 * sent (a cache miss: the fill's cost) and a push (passed through), proxy vs
 * direct.
 */
import { rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { pushCommit, type Env } from '../environment.js'
import { SeededBytes } from '../generate.js'
import type { GitRun } from '../lib/git.js'
import { log } from '../lib/log.js'
import { median, round } from '../lib/stats.js'
import type { Plan, Target } from '../plan.js'

export interface PassRow {
  op: string
  directS: number[]
  proxyS: number[]
  failures: number
  median: { directS: number; proxyS: number; overhead: number }
}

export async function scenarioPassThrough(env: Env, plan: Plan): Promise<PassRow[]> {
  const repo = 'small'
  const work = path.join(env.tmp, 'pass')
  const clients: Record<Target, string> = { direct: path.join(work, 'direct'), proxy: path.join(work, 'proxy') }
  for (const t of ['direct', 'proxy'] as const) {
    await env.client.ok(['clone', '-q', `${env.upstream.url}/${repo}.git`, clients[t]])
    const url = t === 'proxy' ? env.proxy.url : env.upstream.url
    await env.client.ok(['-C', clients[t], 'remote', 'set-url', 'origin', `${url}/${repo}.git`])
    await env.client.ok(['-C', clients[t], 'checkout', '-q', '-b', `bench-${t}`])
  }
  const ops = ['fetch v2 (haves, a miss)', 'fetch v0 (haves, a miss)', 'push'] as const
  const rows = new Map<string, PassRow>(ops.map((op) => [op, { op, directS: [], proxyS: [], failures: 0, median: { directS: 0, proxyS: 0, overhead: 0 } }]))
  for (let rep = 0; rep < plan.passReps; rep++) {
    const order: Target[] = rep % 2 === 0 ? ['proxy', 'direct'] : ['direct', 'proxy']
    for (const op of ops) {
      if (op !== 'push') await pushCommit(env, repo)
      for (const t of order) {
        const dir = clients[t]
        let r: GitRun
        if (op === 'push') {
          await writeFile(path.join(dir, `pass-${rep}.txt`), new SeededBytes(`pass ${t} ${rep}`).text(16 * 1024))
          await env.client.ok(['-C', dir, 'add', '.'])
          await env.client.ok(['-C', dir, 'commit', '-q', '-m', `pass ${rep}`])
          r = await env.client.run(['-C', dir, 'push', '-q', 'origin', `HEAD:refs/heads/bench-${t}`])
        } else {
          const proto = op.startsWith('fetch v2') ? '2' : '0'
          r = await env.client.run(['-C', dir, '-c', `protocol.version=${proto}`, 'fetch', '-q', 'origin', '+refs/heads/main:refs/remotes/origin/main'])
        }
        const row = rows.get(op)!
        if (!r.ok) {
          row.failures++
          log(`pass-through ${op} ${t} failed: ${r.stderr.trim()}`)
        }
        ;(t === 'proxy' ? row.proxyS : row.directS).push(round(r.ms / 1000, 4))
      }
    }
  }
  const out = [...rows.values()]
  for (const r of out) {
    const d = median(r.directS)
    const p = median(r.proxyS)
    r.median = { directS: d, proxyS: p, overhead: round(p / d - 1) }
    log(`pass-through ${r.op}: direct ${d} s, proxy ${p} s, overhead ${(r.median.overhead * 100).toFixed(1)}%`)
  }
  await rm(work, { recursive: true, force: true })
  return out
}
