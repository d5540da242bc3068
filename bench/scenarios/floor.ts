/** Scenario 3, warm clone vs the client's floor: a cached clone against `git index-pack` of the same pack. */
import { mkdir, open, readdir, rm } from 'node:fs/promises'
import path from 'node:path'
import { measure, type Env } from '../environment.js'
import type { RepoName } from '../generate.js'
import type { GitRun } from '../lib/git.js'
import { log } from '../lib/log.js'
import { median, round } from '../lib/stats.js'
import type { Plan } from '../plan.js'

export interface FloorRow {
  repo: RepoName
  proto: number
  packMb: number
  proxyWarmS: number[]
  directS: number[]
  floorS: number[]
  median: { proxyWarmS: number; directS: number; floorS: number; proxyVsFloor: number; directVsFloor: number; proxyVsDirect: number }
  proxyPeakRssMb: number
  failures: number
}

export async function scenarioFloor(env: Env, plan: Plan): Promise<FloorRow[]> {
  const repo = env.repos.get(plan.floorRepo)!
  const out: FloorRow[] = []
  for (const proto of [2, 0]) {
    const work = path.join(env.tmp, `floor-v${proto}`)
    await mkdir(work)
    const clone = (base: string, dir: string): Promise<GitRun> =>
      env.client.run(['-c', `protocol.version=${proto}`, 'clone', '-q', '--bare', `${base}/${repo.name}.git`, path.join(work, dir)])
    // Fill the cache (and keep this clone's pack as the floor's input).
    const prime = await clone(env.proxy.url, 'prime')
    if (!prime.ok) throw new Error(`floor: priming clone failed: ${prime.stderr}`)
    const packDir = path.join(work, 'prime', 'objects', 'pack')
    const packFile = path.join(packDir, (await readdir(packDir)).find((f) => f.endsWith('.pack'))!)
    const row: FloorRow = {
      repo: repo.name, proto, packMb: 0, proxyWarmS: [], directS: [], floorS: [], proxyPeakRssMb: 0, failures: 0,
      median: { proxyWarmS: 0, directS: 0, floorS: 0, proxyVsFloor: 0, directVsFloor: 0, proxyVsDirect: 0 },
    }
    const fh = await open(packFile, 'r')
    row.packMb = round((await fh.stat()).size / 1e6, 1)
    await fh.close()
    const kinds = ['proxy', 'direct', 'floor'] as const
    for (let rep = 0; rep < plan.floorReps; rep++) {
      for (let k = 0; k < kinds.length; k++) {
        const kind = kinds[(k + rep) % kinds.length]!
        const dir = `${kind}-${rep}`
        if (kind === 'floor') {
          await env.client.ok(['init', '-q', '--bare', path.join(work, dir)])
          const fd = await open(packFile, 'r')
          const t0 = performance.now()
          const r = await env.client.run(['-C', path.join(work, dir), 'index-pack', '--stdin', '--fix-thin'], { stdinFile: fd.fd })
          const ms = performance.now() - t0
          await fd.close()
          if (!r.ok) throw new Error(`index-pack failed: ${r.stderr}`)
          row.floorS.push(round(ms / 1000))
        } else if (kind === 'proxy') {
          const m = await measure(env, env.proxy, () => clone(env.proxy.url, dir))
          if (!m.value.ok) row.failures++
          if (m.packGenerations > 0) log(`floor: warm proxy clone made ${m.packGenerations} upstream pack generations`)
          row.proxyWarmS.push(round(m.value.ms / 1000))
          row.proxyPeakRssMb = Math.max(row.proxyPeakRssMb, round(m.proxyPeakRssMb, 1))
        } else {
          const r = await clone(env.upstream.url, dir)
          if (!r.ok) row.failures++
          row.directS.push(round(r.ms / 1000))
        }
        await rm(path.join(work, dir), { recursive: true, force: true })
      }
    }
    const p = median(row.proxyWarmS)
    const d = median(row.directS)
    const f = median(row.floorS)
    row.median = { proxyWarmS: p, directS: d, floorS: f, proxyVsFloor: round(p / f), directVsFloor: round(d / f), proxyVsDirect: round(p / d) }
    log(`floor ${repo.name} v${proto}: proxy warm ${p} s, direct ${d} s, index-pack floor ${f} s -> ${row.median.proxyVsFloor}x floor`)
    out.push(row)
    await rm(work, { recursive: true, force: true })
  }
  return out
}
