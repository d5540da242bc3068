/**
 * Scenario 6, incremental fetches (issue 17, DESIGN §2): kept CI workspaces
 * that fetch after a push, proxy vs direct in the same run, alternating.
 *
 *   (a) N workspaces at the previous commit fetch the new one at once (v2, v0)
 *   (b) the same from `--depth 20` workspaces fetching with `--depth 20` (GitLab Runner)
 *   (c) N workspaces each at a different older commit (no two alike: the
 *       worst case, where caching must cost nothing)
 *   (d) what stays uncached (a push, a `deepen-not` clone): pass-through overhead
 *
 * (a)-(c) run direct, through the proxy (refs cache off: every client's ref
 * advertisement still reaches the upstream), and through the proxy with
 * the refs cache on ("proxy-refs"; the burst starts once the refs TTL has
 * passed since the push, as after a webhook or a poll interval).
 *
 * Every fetch is checked: the new tip, refs equal to the upstream's, and
 * `git fsck` on a sample of the workspaces.
 */
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { measure, pushCommit, type Env } from '../environment.js'
import { SeededBytes, type RepoName } from '../generate.js'
import type { GitRun } from '../lib/git.js'
import { log, sleep } from '../lib/log.js'
import { median, percentile, round } from '../lib/stats.js'
import type { Plan, Target } from '../plan.js'

export type FetchCase = 'a: same commit' | 'b: --depth 20' | 'c: all different'
export type FetchVia = Target | 'proxy-refs'

export interface FetchRow {
  repo: RepoName
  case: FetchCase
  proto: number
  n: number
  target: FetchVia
  reps: {
    wallS: number
    p50S: number
    p99S: number
    failures: number
    packGenerations: number
    upstreamCpuS: number
    proxyCpuS: number
  }[]
  median: FetchRow['reps'][number]
  firstError?: string
}

export interface FetchPassRow {
  op: string
  directS: number[]
  proxyS: number[]
  failures: number
  median: { directS: number; proxyS: number; overhead: number; addedMs: number }
}

export interface FetchResults {
  rows: FetchRow[]
  passThrough: FetchPassRow[]
}

/** Workspaces to fsck per burst (fsck of a medium repository costs seconds each). */
const FSCK_SAMPLE = 2

export async function scenarioFetch(env: Env, plan: Plan): Promise<FetchResults> {
  const repo = env.repos.get(plan.fetchRepo)
  if (repo === undefined) throw new Error(`repository ${plan.fetchRepo} not generated`)
  const work = await mkdtemp(path.join(env.tmp, 'fetch-'))
  const upstreamUrl = `${env.upstream.url}/${repo.name}.git`
  const bare = path.join(env.root, `${repo.name}.git`)
  // Base workspaces, cloned straight from the upstream; brought up to date before each burst.
  const full = path.join(work, 'base-full')
  const shallow = path.join(work, 'base-shallow')
  await env.client.ok(['clone', '-q', '--no-checkout', upstreamUrl, full])
  await env.client.ok(['clone', '-q', '--no-checkout', '--depth', '20', upstreamUrl, shallow])

  const rows = new Map<string, FetchRow>()
  const cases: { c: FetchCase; proto: number }[] = [
    ...plan.fetchProtos.map((proto) => ({ c: 'a: same commit' as const, proto })),
    ...plan.fetchProtos.map((proto) => ({ c: 'b: --depth 20' as const, proto })),
    { c: 'c: all different', proto: 2 },
  ]
  for (let rep = 0; rep < plan.fetchReps; rep++) {
    for (const { c, proto } of cases) {
      const base = c === 'b: --depth 20' ? shallow : full
      // The base at the upstream's current tip (the "previous commit"), then a new push.
      const depth = c === 'b: --depth 20' ? ['--depth', '20'] : []
      await env.client.ok(['-C', base, 'fetch', '-q', ...depth, 'origin'])
      const sha = await pushCommit(env, repo.name)
      const order: FetchVia[] = rep % 2 === 0 ? ['proxy', 'direct', 'proxy-refs'] : ['direct', 'proxy', 'proxy-refs']
      for (const target of order) {
        const server = target === 'proxy-refs' ? env.proxyRefs : env.proxy
        const url = target === 'direct' ? upstreamUrl : `${server.url}/${repo.name}.git`
        const ws = await workspaces(env, work, base, url, plan.fetchN, c === 'c: all different')
        // The refs cache's advertisement from before the push has expired by now.
        if (target === 'proxy-refs') await sleep(plan.refsTtl * 1000 + 500)
        const args = ['-c', `protocol.version=${proto}`, 'fetch', '-q', ...depth, 'origin']
        const m = await measure(env, server, () => Promise.all(ws.map((w) => env.client.run(['-C', w, ...args]))))
        const runs: GitRun[] = m.value
        const failures = await check(env, bare, ws, runs, sha)
        const ms = runs.map((r) => r.ms / 1000)
        const key = `${c}|${proto}|${target}`
        const row = rows.get(key) ?? { repo: repo.name, case: c, proto, n: ws.length, target, reps: [], median: undefined as unknown as FetchRow['median'] }
        row.reps.push({
          wallS: round(m.wallMs / 1000),
          p50S: round(percentile(ms, 50)),
          p99S: round(percentile(ms, 99)),
          failures,
          packGenerations: m.packGenerations,
          upstreamCpuS: round(m.upstreamCpuS, 2),
          proxyCpuS: target === 'direct' ? 0 : round(m.proxyCpuS, 2),
        })
        const err = runs.find((r) => !r.ok)
        if (err !== undefined && row.firstError === undefined) row.firstError = err.stderr.trim().slice(-600)
        rows.set(key, row)
        log(`fetch ${repo.name} ${c} v${proto} n=${ws.length} ${target}: wall ${(m.wallMs / 1000).toFixed(2)} s, p99 ${percentile(ms, 99).toFixed(2)} s, ` +
          `fail ${failures}, packs ${m.packGenerations}, upstream cpu ${m.upstreamCpuS.toFixed(2)} s, proxy cpu ${m.proxyCpuS.toFixed(2)} s`)
        await Promise.all(ws.map((w) => rm(w, { recursive: true, force: true })))
      }
    }
  }
  const out = [...rows.values()]
  for (const r of out) r.median = medianOf(r.reps)
  const passThrough = await uncached(env, plan, work, bare, upstreamUrl)
  await rm(work, { recursive: true, force: true })
  return { rows: out, passThrough }
}

/**
 * `n` copies of `base` pointing at `url`. With `different`, workspace i is
 * moved back i+1 commits (its remote-tracking ref and HEAD), so no two send
 * the same haves.
 */
async function workspaces(env: Env, work: string, base: string, url: string, n: number, different: boolean): Promise<string[]> {
  const dir = await mkdtemp(path.join(work, 'ws-'))
  const ws = Array.from({ length: n }, (_, i) => path.join(dir, `w${i}`))
  await Promise.all(ws.map((w) => cp(base, w, { recursive: true })))
  await Promise.all(
    ws.map(async (w, i) => {
      await env.client.ok(['-C', w, 'remote', 'set-url', 'origin', url])
      if (!different) return
      const old = (await env.client.ok(['-C', w, 'rev-parse', `refs/remotes/origin/main~${i + 1}`])).trim()
      await env.client.ok(['-C', w, 'update-ref', 'refs/remotes/origin/main', old])
      await env.client.ok(['-C', w, 'update-ref', 'refs/heads/main', old])
    }),
  )
  return ws
}

/** Counts failed fetches: exit status, the new tip, refs equal to the upstream's, fsck of a sample. */
async function check(env: Env, bare: string, ws: string[], runs: GitRun[], sha: string): Promise<number> {
  const upstream = sortedRefs(await env.client.ok(['-C', bare, 'for-each-ref', '--format=%(objectname) %(refname)', 'refs/heads/', 'refs/tags/']), true)
  let failures = 0
  for (const [i, w] of ws.entries()) {
    const r = runs[i]
    if (r === undefined || !r.ok) {
      failures++
      continue
    }
    const local = sortedRefs(await env.client.ok(['-C', w, 'for-each-ref', '--format=%(objectname) %(refname)', 'refs/remotes/origin/', 'refs/tags/']), false)
    const tip = (await env.client.ok(['-C', w, 'rev-parse', 'refs/remotes/origin/main'])).trim()
    let problem = tip === sha ? null : `fetched ${tip} instead of ${sha}`
    // Branches and tags the fetch brought must be the upstream's (a shallow fetch may leave tags out).
    if (problem === null && local.some((l) => !upstream.includes(l))) problem = 'refs differ from the upstream\'s'
    if (problem === null && i < FSCK_SAMPLE) {
      const fsck = await env.client.run(['-C', w, 'fsck', '--no-progress'])
      if (!fsck.ok) problem = `fsck: ${fsck.stderr.trim().slice(-300)}`
    }
    if (problem !== null) {
      failures++
      r.ok = false
      r.stderr = problem
    }
  }
  return failures
}

/** `<oid> <ref>` lines, remote-tracking refs renamed to the upstream's names, sorted. */
function sortedRefs(text: string, isUpstream: boolean): string[] {
  return text
    .split('\n')
    .filter((l) => l !== '' && !l.endsWith('/HEAD'))
    .map((l) => (isUpstream ? l : l.replace(' refs/remotes/origin/', ' refs/heads/')))
    .sort()
}

/**
 * (d) What stays uncached, proxy vs direct: a push (small commit) and a
 * `--shallow-exclude` clone (`deepen-not`), one request at a time.
 */
async function uncached(env: Env, plan: Plan, work: string, bare: string, upstreamUrl: string): Promise<FetchPassRow[]> {
  // deepen-not names a ref: one a few commits below main.
  const old = (await env.client.ok(['-C', bare, 'rev-parse', 'refs/heads/main~5'])).trim()
  await env.client.ok(['-C', bare, 'update-ref', 'refs/heads/bench-exclude', old])
  const pushers: Record<Target, string> = { direct: path.join(work, 'push-direct'), proxy: path.join(work, 'push-proxy') }
  for (const t of ['direct', 'proxy'] as const) {
    await env.client.ok(['clone', '-q', '--no-checkout', '--depth', '1', upstreamUrl, pushers[t]])
    const url = t === 'proxy' ? `${env.proxy.url}/${path.basename(bare)}` : upstreamUrl
    await env.client.ok(['-C', pushers[t], 'remote', 'set-url', 'origin', url])
  }
  const ops = ['push', 'clone --shallow-exclude (deepen-not, v2)'] as const
  const rows = new Map<string, FetchPassRow>(ops.map((op) => [op, { op, directS: [], proxyS: [], failures: 0, median: { directS: 0, proxyS: 0, overhead: 0, addedMs: 0 } }]))
  for (let rep = 0; rep < plan.passReps; rep++) {
    const order: Target[] = rep % 2 === 0 ? ['proxy', 'direct'] : ['direct', 'proxy']
    for (const op of ops) {
      for (const t of order) {
        const url = t === 'proxy' ? `${env.proxy.url}/${path.basename(bare)}` : upstreamUrl
        let r: GitRun
        if (op === 'push') {
          const dir = pushers[t]
          await writeFile(path.join(dir, '.git', `pass-${rep}.txt`), new SeededBytes(`fetch pass ${t} ${rep}`).text(8 * 1024))
          const blob = (await env.client.ok(['-C', dir, 'hash-object', '-w', path.join(dir, '.git', `pass-${rep}.txt`)])).trim()
          const tree = (await env.client.ok(['-C', dir, 'mktree'], { input: `100644 blob ${blob}\tpass.txt\n` })).trim()
          const commit = (await env.client.ok(['-C', dir, 'commit-tree', tree, '-m', `pass ${rep}`])).trim()
          r = await env.client.run(['-C', dir, 'push', '-q', '-f', 'origin', `${commit}:refs/heads/bench-fetch-${t}`])
        } else {
          const dir = path.join(work, `excl-${t}-${rep}`)
          r = await env.client.run(['-c', 'protocol.version=2', 'clone', '-q', '--no-checkout', '--shallow-exclude=bench-exclude', url, dir])
          await rm(dir, { recursive: true, force: true })
        }
        const row = rows.get(op)
        if (row === undefined) continue
        if (!r.ok) {
          row.failures++
          log(`fetch pass-through ${op} ${t} failed: ${r.stderr.trim()}`)
        }
        ;(t === 'proxy' ? row.proxyS : row.directS).push(round(r.ms / 1000, 4))
      }
    }
  }
  const out = [...rows.values()]
  for (const r of out) {
    const d = median(r.directS)
    const p = median(r.proxyS)
    r.median = { directS: d, proxyS: p, overhead: round(p / d - 1), addedMs: round((p - d) * 1000, 1) }
    log(`fetch pass-through ${r.op}: direct ${d} s, proxy ${p} s, overhead ${(r.median.overhead * 100).toFixed(1)}% (${r.median.addedMs} ms)`)
  }
  return out
}

function medianOf<T extends Record<string, number>>(rows: T[]): T {
  const out: Record<string, number> = {}
  for (const k of Object.keys(rows[0] ?? {})) out[k] = round(median(rows.map((r) => r[k] ?? 0)))
  return out as T
}
