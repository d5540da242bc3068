/**
 * The benchmark suite's command line: real `git http-backend` upstream and
 * the real proxy, each in its own process, real git clients; every scenario
 * (bench/scenarios/) runs against the direct upstream and through the proxy
 * in the same run, alternating. The environment is bench/environment.ts,
 * the plan bench/plan.ts, the report bench/report.ts.
 *
 *   npm run bench            full suite (a long run: see README "Benchmarks")
 *   npm run bench:quick      a few minutes on 2 cores
 *   npx tsx bench/run.ts [--quick] [--scenarios=burst,floor,passthrough,polling,mixed,fetch,lfs] [--reps=N]
 *     [--fetch=<repo>:<n>] [--fetch-reps=N]
 *     [--burst=<repo>:<n,...>:<proto,...>:<full|checkout,...>] [--mixed-seconds=S] [--proxy-rev=REV]
 *     [--lfs-mb=MB] [--lfs-objects=N] [--lfs-clients=N] [--lfs-reps=N]
 *
 * Writes bench/results/<timestamp>.json, bench/results/latest.md and
 * bench/results/latest.svg. Targets are reported, never asserted.
 */
import { execFileSync } from 'node:child_process'
import { mkdir, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { setup } from './environment.js'
import { GENERATOR_VERSION } from './generate.js'
import { log } from './lib/log.js'
import { installCleanup, removeTempDir } from './lib/proc.js'
import { round } from './lib/stats.js'
import { parsePlan, type Plan } from './plan.js'
import { evaluateTargets, renderMarkdown, renderSvg, type Results } from './report.js'
import { scenarioBurst } from './scenarios/burst.js'
import { scenarioFetch } from './scenarios/fetch.js'
import { scenarioFloor } from './scenarios/floor.js'
import { scenarioLfs } from './scenarios/lfs.js'
import { scenarioMixed } from './scenarios/mixed.js'
import { scenarioPassThrough } from './scenarios/passthrough.js'
import { scenarioPolling } from './scenarios/polling.js'

const here = path.dirname(fileURLToPath(import.meta.url))

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
    idleRss: env.idleRss,
  }
  try {
    if (plan.scenarios.has('burst')) results.burst = await scenarioBurst(env, plan)
    if (plan.scenarios.has('floor')) results.floor = await scenarioFloor(env, plan)
    if (plan.scenarios.has('passthrough')) results.passThrough = await scenarioPassThrough(env, plan)
    if (plan.scenarios.has('polling')) results.polling = await scenarioPolling(env, plan)
    if (plan.scenarios.has('mixed')) results.mixed = await scenarioMixed(env, plan)
    if (plan.scenarios.has('fetch')) results.fetch = await scenarioFetch(env, plan)
    if (plan.scenarios.has('lfs')) results.lfs = await scenarioLfs(env, plan)
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
