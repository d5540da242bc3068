/**
 * The benchmark suite: real `git http-backend` upstream and the real proxy,
 * each in its own process, real git clients; every scenario runs against
 * the direct upstream and through the proxy in the same run, alternating.
 *
 *   npm run bench            full suite (a long run: see README "Benchmarks")
 *   npm run bench:quick      a few minutes on 2 cores
 *   npx tsx bench/run.ts [--quick] [--scenarios=burst,floor,passthrough,polling,mixed] [--reps=N]
 *     [--burst=<repo>:<n,...>:<proto,...>:<full|checkout,...>] [--mixed-seconds=S] [--proxy-rev=REV]
 *
 * Writes bench/results/<timestamp>.json, bench/results/latest.md and
 * bench/results/latest.svg. Targets are reported, never asserted.
 */
import { execFileSync } from 'node:child_process'
import { cp, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile, open } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { countPackObjects } from '../src/upstream/embedded.js'
import { ensureRepo, GENERATOR_VERSION, SeededBytes, type GeneratedRepo, type RepoName } from './generate.js'
import { GitClient, type GitRun } from './lib/git.js'
import { lsRefsBody, runLoad, type LoadRequest, type LoadResult } from './lib/load.js'
import { cpuSeconds, rssMb, installCleanup, registerTempDir, removeTempDir, RssSampler, startServer, type ServerProcess } from './lib/proc.js'
import { evaluateTargets, renderMarkdown, renderSvg, type Results } from './report.js'
import { median, percentile, round } from './lib/stats.js'

const here = path.dirname(fileURLToPath(import.meta.url))
const SCENARIOS = ['burst', 'floor', 'passthrough', 'polling', 'mixed'] as const
type Scenario = (typeof SCENARIOS)[number]
type Target = 'direct' | 'proxy'
type Mode = 'full' | 'checkout'

interface Plan {
  quick: boolean
  scenarios: Set<Scenario>
  reps: number
  /** Burst matrix: repository, concurrencies, protocols, modes. */
  bursts: { repo: RepoName; ns: number[]; protos: number[]; modes: Mode[]; reps: number }[]
  floorRepo: RepoName
  floorReps: number
  passReps: number
  pollSeconds: number
  pollConcurrency: number[]
  refsTtl: number
  mixedSeconds: number
  /** Run the proxy and upstream from this git revision's src/ (a snapshot) instead of the working tree. */
  proxyRev: string | null
}

function parsePlan(argv: string[]): Plan {
  const quick = argv.includes('--quick')
  const arg = (name: string): string | undefined => argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1]
  const reps = Number(arg('reps') ?? (quick ? 2 : 3))
  const wanted = arg('scenarios')?.split(',') ?? SCENARIOS.filter((s) => !(quick && s === 'mixed'))
  for (const s of wanted) if (!SCENARIOS.includes(s as Scenario)) throw new Error(`unknown scenario ${s}; one of ${SCENARIOS.join(', ')}`)
  // --burst=<repo>:<n,...>:<proto,...>:<mode,...>, e.g. --burst=medium:64:2:full, replaces the burst matrix.
  const custom = arg('burst')?.split(':')
  const customBursts: Plan['bursts'] | null = custom === undefined
    ? null
    : [{
        repo: (custom[0] ?? 'small') as RepoName,
        ns: (custom[1] ?? '8').split(',').map(Number),
        protos: (custom[2] ?? '2').split(',').map(Number),
        modes: (custom[3] ?? 'full').split(',') as Mode[],
        reps,
      }]
  return {
    quick,
    scenarios: new Set(wanted as Scenario[]),
    reps,
    bursts: customBursts ?? (quick
      ? [
          { repo: 'small', ns: [8, 32], protos: [2, 0], modes: ['full', 'checkout'], reps },
          { repo: 'medium', ns: [32], protos: [2], modes: ['full'], reps: 1 },
        ]
      : [
          { repo: 'small', ns: [8, 32, 64], protos: [2, 0], modes: ['full', 'checkout'], reps },
          { repo: 'medium', ns: [8, 32, 64], protos: [2, 0], modes: ['full', 'checkout'], reps },
        ]),
    floorRepo: 'medium',
    floorReps: quick ? 3 : 7,
    passReps: quick ? 5 : 11,
    pollSeconds: quick ? 3 : 10,
    pollConcurrency: quick ? [4, 32] : [4, 32, 128],
    refsTtl: quick ? 2 : 5,
    mixedSeconds: Number(arg('mixed-seconds') ?? 120),
    proxyRev: arg('proxy-rev') ?? null,
  }
}

/** RSS of the freshly started processes (before any request; the upstream runs under tsx, the proxy compiled). */
const idleRss = { proxyMb: 0, upstreamMb: 0 }
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
const log = (s: string): void => { console.log(`[${new Date().toISOString().slice(11, 19)}] ${s}`) }

// ---------------------------------------------------------------- environment

interface Env {
  tmp: string
  root: string
  trace2: string
  upstream: ServerProcess
  /** refs cache off: bursts, floor, pass-through (a push straight to the bare repo must be seen at once). */
  proxy: ServerProcess
  /** refs cache on (short TTL): polling and the mixed day. */
  proxyRefs: ServerProcess
  client: GitClient
  repos: Map<RepoName, GeneratedRepo>
  upstreamRequests: { n: number; byPath: Map<string, number> }
  pushes: number
}

/** `src/` of a git revision plus the two server scripts, under tmp; returns the scripts' directory. */
async function snapshot(rev: string, tmp: string): Promise<string> {
  const repoRoot = path.join(here, '..')
  const snap = path.join(tmp, 'snapshot')
  await mkdir(path.join(snap, 'bench'), { recursive: true })
  const tar = execFileSync('git', ['-C', repoRoot, 'archive', '--format=tar', rev, 'src', 'package.json'], { maxBuffer: 256 * 1024 * 1024 })
  execFileSync('tar', ['-x', '-C', snap], { input: tar })
  await symlink(path.join(repoRoot, 'node_modules'), path.join(snap, 'node_modules'))
  for (const f of ['proxy-server.ts', 'upstream-server.ts']) await cp(path.join(here, f), path.join(snap, 'bench', f))
  log(`proxy and upstream run from ${rev} (${execFileSync('git', ['-C', repoRoot, 'rev-parse', '--short', rev]).toString().trim()})`)
  return path.join(snap, 'bench')
}

/**
 * The proxy as users run it: compiled by tsc (not through tsx, whose loader
 * costs ~40 MB and CPU of its own), from `serverDir`'s sources (the working
 * tree, or a --proxy-rev snapshot). Returns the compiled proxy-server.js.
 */
async function compileProxy(serverDir: string, tmp: string): Promise<string> {
  const root = path.dirname(serverDir)
  const repoRoot = path.join(here, '..')
  const out = path.join(tmp, 'build')
  const base = JSON.parse(await readFile(path.join(repoRoot, 'tsconfig.json'), 'utf8')) as { compilerOptions: Record<string, unknown> }
  const tsconfig = path.join(tmp, 'tsconfig.proxy.json')
  await writeFile(tsconfig, JSON.stringify({
    compilerOptions: {
      ...base.compilerOptions,
      rootDir: root,
      outDir: out,
      noEmit: false,
      sourceMap: false,
      typeRoots: [path.join(repoRoot, 'node_modules', '@types')],
    },
    files: [path.join(root, 'bench', 'proxy-server.ts')],
  }))
  const started = performance.now()
  execFileSync(process.execPath, [path.join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', tsconfig], { stdio: 'inherit' })
  // ESM needs the package's "type"; bare imports need node_modules above the output.
  await cp(path.join(repoRoot, 'package.json'), path.join(out, 'package.json'))
  await symlink(path.join(repoRoot, 'node_modules'), path.join(out, 'node_modules'))
  log(`proxy compiled with tsc in ${round((performance.now() - started) / 1000, 1)} s`)
  return path.join(out, 'bench', 'proxy-server.js')
}

async function startProxyProcess(script: string, tmp: string, name: string, upstreamUrl: string, settings: Record<string, string>): Promise<ServerProcess> {
  const dir = path.join(tmp, name)
  await mkdir(dir, { recursive: true })
  const env: Record<string, string> = {
    BENCH_PROXY_CWD: dir,
    BENCH_PROXY_LOG_FILE: path.join(dir, 'proxy.log'),
    SCM_CACHE_CACHE_DIR: path.join(dir, 'cache'),
    SCM_CACHE_PROXY_HTTP_HOST: '127.0.0.1',
    SCM_CACHE_PROXY_HTTP_PORT: '0',
    SCM_CACHE_UPSTREAM_HTTP_URL: upstreamUrl,
    SCM_CACHE_SCM_CACHE_MINIMUM_FREE_SPACE: '0',
  }
  for (const [k, v] of Object.entries(settings)) env[`SCM_CACHE_${k.toUpperCase().replace(/[.-]/g, '_')}`] = v
  return startServer(script, [], env, undefined, await startFlags())
}

/** The node flags `npm start` runs the proxy with (package.json), so the bench measures the same process. */
async function startFlags(): Promise<string[]> {
  const pkg = JSON.parse(await readFile(path.join(here, '..', 'package.json'), 'utf8')) as { scripts: Record<string, string> }
  return (pkg.scripts['start'] ?? '').split(/\s+/).filter((w) => w.startsWith('--'))
}

async function setup(plan: Plan): Promise<Env> {
  const names = new Set<RepoName>(['small'])
  for (const b of plan.bursts) if (plan.scenarios.has('burst')) names.add(b.repo)
  if (plan.scenarios.has('floor')) names.add(plan.floorRepo)
  if (plan.scenarios.has('polling') || plan.scenarios.has('mixed')) names.add('refs')
  const repos = new Map<RepoName, GeneratedRepo>()
  for (const n of names) repos.set(n, await ensureRepo(n, log))

  const tmp = await mkdtemp(path.join(os.tmpdir(), 'scm-cache-bench-'))
  registerTempDir(tmp)
  const root = path.join(tmp, 'upstream')
  const trace2 = path.join(tmp, 'trace2')
  await mkdir(trace2, { recursive: true })
  for (const r of repos.values()) await cp(r.dir, path.join(root, `${r.name}.git`), { recursive: true })

  const serverDir = plan.proxyRev === null ? here : await snapshot(plan.proxyRev, tmp)
  const upstreamRequests = { n: 0, byPath: new Map<string, number>() }
  const upstream = await startServer(path.join(serverDir, 'upstream-server.ts'), [root, trace2], {}, (msg) => {
    if (msg.type !== 'req') return
    upstreamRequests.n++
    const key = String(msg['url']).replace(/\?.*/, '')
    upstreamRequests.byPath.set(key, (upstreamRequests.byPath.get(key) ?? 0) + 1)
  })
  const proxyScript = await compileProxy(serverDir, tmp)
  const proxy = await startProxyProcess(proxyScript, tmp, 'proxy', upstream.url, {})
  const proxyRefs = await startProxyProcess(proxyScript, tmp, 'proxy-refs', upstream.url, {
    'scm-cache.refs.enabled': 'true',
    'scm-cache.refs.ttl': String(plan.refsTtl),
  })
  await sleep(1000)
  idleRss.proxyMb = round(rssMb(proxy.pid), 1)
  idleRss.upstreamMb = round(rssMb(upstream.pid), 1)
  log(`upstream ${upstream.url} (pid ${upstream.pid}), proxy ${proxy.url} (pid ${proxy.pid}), proxy with refs cache ${proxyRefs.url} (pid ${proxyRefs.pid})`)
  return { tmp, root, trace2, upstream, proxy, proxyRefs, client: new GitClient(tmp), repos, upstreamRequests, pushes: 0 }
}

/** A push straight into the upstream's bare repository: one new commit on main. Returns its id. */
async function pushCommit(env: Env, repo: RepoName): Promise<string> {
  const n = ++env.pushes
  const date = 1_800_000_000 + n * 60
  const content = new SeededBytes(`push ${n}`).text(2048)
  const msg = `Bench push ${n}\n`
  const stream = Buffer.concat([
    Buffer.from(`commit refs/heads/main\ncommitter Bench Pusher <push@example.com> ${date} +0000\ndata ${msg.length}\n${msg}from refs/heads/main^0\nM 100644 inline pushes/${n}.txt\ndata ${content.length}\n`),
    content,
    Buffer.from('\ndone\n'),
  ])
  const dir = path.join(env.root, `${repo}.git`)
  await env.client.ok(['-C', dir, 'fast-import', '--quiet', '--done'], { input: stream })
  return (await env.client.ok(['-C', dir, 'rev-parse', 'refs/heads/main'])).trim()
}

// ---------------------------------------------------------------- measuring

interface Measured<T> {
  value: T
  wallMs: number
  upstreamCpuS: number
  upstreamRequests: number
  packGenerations: number
  proxyCpuS: number
  proxyPeakRssMb: number
}

async function clearTrace2(env: Env): Promise<void> {
  for (const f of await readdir(env.trace2)) await rm(path.join(env.trace2, f), { force: true })
}

async function measure<T>(env: Env, proxy: ServerProcess, fn: () => Promise<T>): Promise<Measured<T>> {
  await clearTrace2(env)
  const req0 = env.upstreamRequests.n
  const up0 = cpuSeconds(env.upstream.pid)
  const px0 = cpuSeconds(proxy.pid)
  const rss = new RssSampler(proxy.pid)
  rss.start()
  const t0 = performance.now()
  const value = await fn()
  const wallMs = performance.now() - t0
  await sleep(250) // the upstream reaps its git children after the response ends
  const proxyPeakRssMb = rss.stop()
  return {
    value,
    wallMs,
    upstreamCpuS: cpuSeconds(env.upstream.pid) - up0,
    upstreamRequests: env.upstreamRequests.n - req0,
    packGenerations: await countPackObjects(env.trace2),
    proxyCpuS: cpuSeconds(proxy.pid) - px0,
    proxyPeakRssMb,
  }
}

// ---------------------------------------------------------------- scenario 1: CI burst

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

async function oneBurst(env: Env, url: string, mode: Mode, proto: number, n: number, sha: string): Promise<{ runs: GitRun[]; failures: number }> {
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

async function scenarioBurst(env: Env, plan: Plan): Promise<BurstRow[]> {
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

// ---------------------------------------------------------------- scenario 3: warm clone vs the client's floor

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

async function scenarioFloor(env: Env, plan: Plan): Promise<FloorRow[]> {
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

// ---------------------------------------------------------------- scenario 4: pass-through overhead

export interface PassRow {
  op: string
  directS: number[]
  proxyS: number[]
  failures: number
  median: { directS: number; proxyS: number; overhead: number }
}

async function scenarioPassThrough(env: Env, plan: Plan): Promise<PassRow[]> {
  const repo = 'small'
  const work = path.join(env.tmp, 'pass')
  const clients: Record<Target, string> = { direct: path.join(work, 'direct'), proxy: path.join(work, 'proxy') }
  for (const t of ['direct', 'proxy'] as const) {
    await env.client.ok(['clone', '-q', `${env.upstream.url}/${repo}.git`, clients[t]])
    const url = t === 'proxy' ? env.proxy.url : env.upstream.url
    await env.client.ok(['-C', clients[t], 'remote', 'set-url', 'origin', `${url}/${repo}.git`])
    await env.client.ok(['-C', clients[t], 'checkout', '-q', '-b', `bench-${t}`])
  }
  const ops = ['fetch v2 (haves)', 'fetch v0 (haves)', 'push'] as const
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

// ---------------------------------------------------------------- scenario 2: polling

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

function pollRequests(): { kind: string; req: LoadRequest }[] {
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

async function scenarioPolling(env: Env, plan: Plan): Promise<{ rows: PollRow[]; lsRemote: LsRemoteRow[]; refsCacheHits: boolean }> {
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

// ---------------------------------------------------------------- scenario 5: mixed day

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

async function scenarioMixed(env: Env, plan: Plan): Promise<{ phases: MixedPhase[]; upstreamCpuSaved: number; upstreamRequestsSaved: number }> {
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

// ---------------------------------------------------------------- main

function machine(plan: Plan): Results['machine'] {
  const sh = (cmd: string, args: string[]): string => {
    try {
      return execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim()
    } catch {
      return 'unknown'
    }
  }
  const cpus = os.cpus()
  return {
    cpuModel: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    memoryGb: round(os.totalmem() / 2 ** 30, 1),
    os: `${os.type()} ${os.release()}`,
    node: process.version,
    git: sh('git', ['--version']).replace('git version ', ''),
    loadAvg1mAtStart: round(os.loadavg()[0] ?? 0, 2),
    commit: plan.proxyRev !== null
      ? sh('git', ['-C', path.join(here, '..'), 'rev-parse', '--short', plan.proxyRev])
      : sh('git', ['-C', path.join(here, '..'), 'rev-parse', '--short', 'HEAD']) +
        (sh('git', ['-C', path.join(here, '..'), 'status', '--porcelain', '--', 'src']) === '' ? '' : ' + uncommitted changes in src/'),
  }
}

async function main(): Promise<void> {
  installCleanup()
  const plan = parsePlan(process.argv.slice(2))
  const started = new Date()
  log(`scm-cache-proxy bench (${plan.quick ? 'quick' : 'full'}): ${[...plan.scenarios].join(', ')}`)
  const env = await setup(plan)
  const results: Results = {
    version: 1,
    generatorVersion: GENERATOR_VERSION,
    quick: plan.quick,
    startedAt: started.toISOString(),
    finishedAt: '',
    machine: machine(plan),
    repos: [...env.repos.values()].map((r) => ({ name: r.name, packMb: round(r.packBytes / 1e6, 1), refs: r.refs })),
    plan: { ...plan, scenarios: [...plan.scenarios] },
    idleRss,
  }
  try {
    if (plan.scenarios.has('burst')) results.burst = await scenarioBurst(env, plan)
    if (plan.scenarios.has('floor')) results.floor = await scenarioFloor(env, plan)
    if (plan.scenarios.has('passthrough')) results.passThrough = await scenarioPassThrough(env, plan)
    if (plan.scenarios.has('polling')) results.polling = await scenarioPolling(env, plan)
    if (plan.scenarios.has('mixed')) results.mixed = await scenarioMixed(env, plan)
  } finally {
    results.finishedAt = new Date().toISOString()
    results.machine.loadAvg1mAtEnd = round(os.loadavg()[0] ?? 0, 2)
    await Promise.all([env.proxy.stop(), env.proxyRefs.stop(), env.upstream.stop()])
    removeTempDir(env.tmp)
  }
  results.targets = evaluateTargets(results)
  const dir = path.join(here, 'results')
  await mkdir(dir, { recursive: true })
  const stamp = started.toISOString().replace(/[:.]/g, '-')
  const jsonFile = path.join(dir, `${stamp}.json`)
  await writeFile(jsonFile, `${JSON.stringify(results, null, 2)}\n`)
  const md = renderMarkdown(results)
  await writeFile(path.join(dir, 'latest.md'), md)
  const svg = renderSvg(results)
  if (svg !== null) await writeFile(path.join(dir, 'latest.svg'), svg)
  console.log(`\n${md}`)
  log(`wrote ${path.relative(process.cwd(), jsonFile)}, bench/results/latest.md${svg === null ? '' : ', bench/results/latest.svg'} ` +
    `(${((Date.now() - started.getTime()) / 60_000).toFixed(1)} min)`)
}

await main()
