/**
 * Scenario 6, Git LFS burst: N concurrent clones (the real git-lfs client
 * smudging every object) of a repository whose LFS objects add up to
 * `plan.lfsMb`, proxy vs direct. Measured: wall time, and what the
 * upstream's LFS server sent (object downloads and their bytes; target:
 * each object once per burst through the proxy, none when warm).
 */
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { lfsOid, lfsPointer, storeLfsObject } from '../../src/upstream/embedded-lfs.js'
import { measure, type Env } from '../environment.js'
import { SeededBytes } from '../generate.js'
import { log } from '../lib/log.js'
import { median, percentile, round } from '../lib/stats.js'
import type { Plan, Target } from '../plan.js'

export interface LfsRow {
  n: number
  objects: number
  totalMb: number
  target: Target
  phase: 'cold' | 'warm'
  reps: {
    wallS: number
    p50S: number
    p99S: number
    failures: number
    /** Object GETs the upstream's LFS server answered. */
    upstreamObjectDownloads: number
    /** Bytes of those answers. */
    upstreamLfsMb: number
    upstreamCpuS: number
    proxyCpuS: number
    proxyPeakRssMb: number
  }[]
  median: LfsRow['reps'][number]
  firstError?: string
}

/** The filter section `git lfs install` writes, as `-c` options (the bench's git HOME has none). */
const LFS_FILTER = [
  '-c', 'filter.lfs.process=git-lfs filter-process',
  '-c', 'filter.lfs.smudge=git-lfs smudge -- %f',
  '-c', 'filter.lfs.clean=git-lfs clean -- %f',
  '-c', 'filter.lfs.required=true',
]

interface LfsRepo {
  name: string
  sizes: Map<string, number>
}

/** `<upstream root>/lfs.git`: one commit of `count` LFS pointers (`totalMb` in all), their objects in its LFS store. */
async function makeLfsRepo(env: Env, totalMb: number, count: number): Promise<LfsRepo> {
  const name = 'lfs'
  const bare = path.join(env.root, `${name}.git`)
  const work = await mkdtemp(path.join(env.tmp, 'lfs-work-'))
  const sizes = new Map<string, number>()
  const each = Math.floor((totalMb * 1024 * 1024) / count)
  const bytes = new SeededBytes('bench lfs objects')
  await env.client.ok(['init', '-q', '-b', 'main', work])
  await writeFile(path.join(work, '.gitattributes'), '*.bin filter=lfs diff=lfs merge=lfs -text\n')
  const contents: Buffer[] = []
  for (let i = 0; i < count; i++) {
    const content = bytes.bytes(each)
    contents.push(content)
    const file = `asset-${String(i).padStart(3, '0')}.bin`
    sizes.set(file, content.length)
    await writeFile(path.join(work, file), lfsPointer(lfsOid(content), content.length))
  }
  await env.client.ok(['-C', work, 'add', '.'])
  await env.client.ok(['-C', work, 'commit', '-q', '-m', `${count} LFS objects`])
  await env.client.ok(['clone', '-q', '--bare', work, bare])
  for (const content of contents) await storeLfsObject(bare, content)
  await rm(work, { recursive: true, force: true })
  return { name, sizes }
}

async function oneLfsBurst(env: Env, url: string, n: number, repo: LfsRepo): Promise<{ runs: { ok: boolean; ms: number; stderr: string }[]; failures: number }> {
  const work = await mkdtemp(path.join(env.tmp, 'lfs-burst-'))
  const runs = await Promise.all(
    Array.from({ length: n }, (_, i) => env.client.run([...LFS_FILTER, 'clone', '-q', url, path.join(work, `c${i}`)], { timeoutMs: 1_200_000 })),
  )
  let failures = 0
  for (const [i, r] of runs.entries()) {
    if (!r.ok) {
      failures++
      continue
    }
    for (const [file, size] of repo.sizes) {
      const got = await stat(path.join(work, `c${i}`, file)).then((s) => s.size, () => -1)
      if (got !== size) {
        failures++
        r.ok = false
        r.stderr = `${file}: ${got} bytes instead of ${size} (not smudged)`
        break
      }
    }
  }
  await rm(work, { recursive: true, force: true })
  return { runs, failures }
}

async function clearProxyCache(env: Env): Promise<void> {
  const res = await fetch(`${env.proxy.url}/rest/scm-cache/latest/caches`, { method: 'DELETE' })
  if (res.status !== 204) throw new Error(`clearing the proxy cache answered ${res.status}`)
}

function medianOf<T extends Record<string, number>>(rows: T[]): T {
  const out: Record<string, number> = {}
  for (const k of Object.keys(rows[0] ?? {})) out[k] = round(median(rows.map((r) => r[k]!)))
  return out as T
}

export async function scenarioLfs(env: Env, plan: Plan): Promise<LfsRow[]> {
  const t0 = performance.now()
  const repo = await makeLfsRepo(env, plan.lfsMb, plan.lfsObjects)
  log(`lfs: ${plan.lfsObjects} objects, ${plan.lfsMb} MB, made in ${round((performance.now() - t0) / 1000, 1)} s`)
  const rows = new Map<string, LfsRow>()
  const n = plan.lfsClients
  for (let rep = 0; rep < plan.lfsReps; rep++) {
    const order: Target[] = rep % 2 === 0 ? ['proxy', 'direct'] : ['direct', 'proxy']
    for (const target of order) {
      const base = target === 'proxy' ? env.proxy.url : env.upstream.url
      if (target === 'proxy') await clearProxyCache(env)
      const phases = target === 'proxy' ? (['cold', 'warm'] as const) : (['cold'] as const)
      for (const phase of phases) {
        const lfs0 = { ...env.upstreamLfs }
        const m = await measure(env, env.proxy, () => oneLfsBurst(env, `${base}/${repo.name}.git`, n, repo))
        const downloads = env.upstreamLfs.downloads - lfs0.downloads
        const mb = (env.upstreamLfs.downloadBytes - lfs0.downloadBytes) / 2 ** 20
        const ms = m.value.runs.map((r) => r.ms / 1000)
        const key = `${target}|${phase}`
        const row = rows.get(key) ?? { n, objects: plan.lfsObjects, totalMb: plan.lfsMb, target, phase, reps: [], median: undefined as unknown as LfsRow['median'] }
        row.reps.push({
          wallS: round(m.wallMs / 1000),
          p50S: round(percentile(ms, 50)),
          p99S: round(percentile(ms, 99)),
          failures: m.value.failures,
          upstreamObjectDownloads: downloads,
          upstreamLfsMb: round(mb, 1),
          upstreamCpuS: round(m.upstreamCpuS, 2),
          proxyCpuS: target === 'proxy' ? round(m.proxyCpuS, 2) : 0,
          proxyPeakRssMb: target === 'proxy' ? round(m.proxyPeakRssMb, 1) : 0,
        })
        const err = m.value.runs.find((r) => !r.ok)
        if (err !== undefined && row.firstError === undefined) row.firstError = err.stderr.trim().slice(-600)
        rows.set(key, row)
        log(`lfs n=${n} ${target} ${phase}: wall ${(m.wallMs / 1000).toFixed(2)} s, p99 ${percentile(ms, 99).toFixed(2)} s, fail ${m.value.failures}, ` +
          `upstream object downloads ${downloads} (${mb.toFixed(1)} MB), proxy cpu ${m.proxyCpuS.toFixed(2)} s, rss ${m.proxyPeakRssMb.toFixed(0)} MB`)
      }
    }
  }
  await clearProxyCache(env)
  const out = [...rows.values()]
  for (const r of out) r.median = medianOf(r.reps)
  return out
}
