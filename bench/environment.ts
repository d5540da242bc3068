/**
 * The bench's environment: the generated repositories, the real upstream
 * and the compiled proxy (each in its own process), a push straight into the
 * upstream, and one measurement around a scenario step (wall, upstream CPU
 * and requests, pack generations, proxy CPU and peak RSS).
 */
import { execFileSync } from 'node:child_process'
import { cp, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { envNameOf } from '../src/config/keys.js'
import { countPackObjects } from '../src/upstream/embedded.js'
import { ensureRepo, SeededBytes, type GeneratedRepo, type RepoName } from './generate.js'
import { GitClient } from './lib/git.js'
import { log, sleep } from './lib/log.js'
import { cpuSeconds, registerTempDir, rssMb, RssSampler, startServer, type ServerProcess } from './lib/proc.js'
import { round } from './lib/stats.js'
import type { Plan } from './plan.js'

const here = path.dirname(fileURLToPath(import.meta.url))

export interface Env {
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
  /** What the upstream's LFS server sent: object downloads (GETs answered 200) and their bytes. */
  upstreamLfs: { downloads: number; downloadBytes: number }
  pushes: number
  /** RSS of the freshly started processes (before any request; the upstream runs under tsx, the proxy compiled). */
  idleRss: { proxyMb: number; upstreamMb: number }
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
  for (const [k, v] of Object.entries(settings)) env[envNameOf(k)] = v
  return startServer(script, [], env, undefined, await startFlags())
}

/** The node flags `npm start` runs the proxy with (package.json), so the bench measures the same process. */
async function startFlags(): Promise<string[]> {
  const pkg = JSON.parse(await readFile(path.join(here, '..', 'package.json'), 'utf8')) as { scripts: Record<string, string> }
  return (pkg.scripts['start'] ?? '').split(/\s+/).filter((w) => w.startsWith('--'))
}

export async function setup(plan: Plan): Promise<Env> {
  const names = new Set<RepoName>(['small'])
  for (const b of plan.bursts) if (plan.scenarios.has('burst')) names.add(b.repo)
  if (plan.scenarios.has('floor')) names.add(plan.floorRepo)
  if (plan.scenarios.has('fetch')) names.add(plan.fetchRepo)
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
  const upstreamLfs = { downloads: 0, downloadBytes: 0 }
  const upstream = await startServer(path.join(serverDir, 'upstream-server.ts'), [root, trace2], {}, (msg) => {
    if (msg.type !== 'req') return
    if (msg['lfs'] === 'download' && msg['status'] === 200) {
      upstreamLfs.downloads++
      upstreamLfs.downloadBytes += Number(msg['bytes'] ?? 0)
    }
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
  const idleRss = { proxyMb: round(rssMb(proxy.pid), 1), upstreamMb: round(rssMb(upstream.pid), 1) }
  log(`upstream ${upstream.url} (pid ${upstream.pid}), proxy ${proxy.url} (pid ${proxy.pid}), proxy with refs cache ${proxyRefs.url} (pid ${proxyRefs.pid})`)
  return { tmp, root, trace2, upstream, proxy, proxyRefs, client: new GitClient(tmp), repos, upstreamRequests, upstreamLfs, pushes: 0, idleRss }
}

/** A push straight into the upstream's bare repository: one new commit on main. Returns its id. */
export async function pushCommit(env: Env, repo: RepoName): Promise<string> {
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

export interface Measured<T> {
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

export async function measure<T>(env: Env, proxy: ServerProcess, fn: () => Promise<T>): Promise<Measured<T>> {
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
