/** Results of a bench run: the JSON shape, the targets, the Markdown table and the SVG chart. */
import type { BurstRow } from './scenarios/burst.js'
import type { FloorRow } from './scenarios/floor.js'
import type { LfsRow } from './scenarios/lfs.js'
import type { MixedPhase } from './scenarios/mixed.js'
import type { PassRow } from './scenarios/passthrough.js'
import type { FetchResults } from './scenarios/fetch.js'
import type { LsRemoteRow, PollRow } from './scenarios/polling.js'

export interface Target {
  name: string
  goal: string
  measured: string
  met: boolean | null
}

export interface Results {
  version: 1
  generatorVersion: number
  quick: boolean
  startedAt: string
  finishedAt: string
  machine: {
    cpuModel: string
    cores: number
    memoryGb: number
    os: string
    node: string
    git: string
    commit: string
    /** Other work on the machine shows here: the bench alone keeps it near the core count. */
    loadAvg1mAtStart: number
    loadAvg1mAtEnd?: number
  }
  repos: { name: string; packMb: number; refs: number }[]
  plan: unknown
  /** RSS of the proxy and upstream processes right after start-up, before any request. */
  idleRss: { proxyMb: number; upstreamMb: number }
  burst?: BurstRow[]
  floor?: FloorRow[]
  passThrough?: PassRow[]
  polling?: { rows: PollRow[]; lsRemote: LsRemoteRow[]; refsCacheHits: boolean }
  mixed?: { phases: MixedPhase[]; upstreamCpuSaved: number; upstreamRequestsSaved: number }
  fetch?: FetchResults
  lfs?: LfsRow[]
  targets?: Target[]
}

const pct = (x: number): string => `${(x * 100).toFixed(1)}%`

export function evaluateTargets(r: Results): Target[] {
  const out: Target[] = []
  if (r.burst !== undefined) {
    const cold = r.burst.filter((b) => b.target === 'proxy' && b.phase === 'cold')
    const gens = cold.flatMap((b) => b.reps.map((x) => x.packGenerations))
    const warm = r.burst.filter((b) => b.target === 'proxy' && b.phase === 'warm').flatMap((b) => b.reps.map((x) => x.packGenerations))
    out.push({
      name: 'upstream pack generations per burst (proxy)',
      goal: '= 1 cold, 0 warm',
      measured: `cold: ${Math.min(...gens)}..${Math.max(...gens)} over ${gens.length} bursts; warm: ${Math.min(...warm)}..${Math.max(...warm)}`,
      met: gens.every((g) => g === 1) && warm.every((g) => g === 0),
    })
    const medium = r.burst.filter((b) => b.repo === 'medium' && b.target === 'proxy')
    if (medium.length > 0) {
      const n = Math.max(...medium.map((b) => b.n))
      const rss = Math.max(...medium.filter((b) => b.n === n).flatMap((b) => b.reps.map((x) => x.proxyPeakRssMb)))
      out.push({
        name: `proxy peak RSS, ${n}-clone burst of medium`,
        goal: '< 150 MB',
        measured: `${rss.toFixed(0)} MB`,
        met: rss < 150,
      })
    }
    const failures = r.burst.reduce((s, b) => s + b.reps.reduce((t, x) => t + x.failures, 0), 0)
    out.push({ name: 'failed clones in all bursts', goal: '0', measured: String(failures), met: failures === 0 })
  }
  for (const f of r.floor ?? []) {
    out.push({
      name: `warm clone vs client floor (${f.repo}, v${f.proto})`,
      goal: '<= 1.15x index-pack',
      measured: `${f.median.proxyVsFloor.toFixed(2)}x (${f.median.proxyWarmS} s vs ${f.median.floorS} s)`,
      met: f.median.proxyVsFloor <= 1.15,
    })
  }
  if (r.polling !== undefined) {
    const byKind = new Map<string, PollRow[]>()
    for (const p of r.polling.rows) byKind.set(p.kind, [...(byKind.get(p.kind) ?? []), p])
    for (const [kind, rows] of byKind) {
      const best = rows.reduce((a, b) => (b.speedup > a.speedup ? b : a))
      const low = rows.reduce((a, b) => (b.concurrency < a.concurrency ? b : a))
      out.push({
        name: `cached polls: ${kind}`,
        goal: '>= 50x upstream rate, p99 < 5 ms',
        measured: `${best.speedup}x at c=${best.concurrency}; p99 ${low.proxy.p99Ms} ms at c=${low.concurrency}` +
          (r.polling.refsCacheHits ? '' : ' (refs cache not hitting)'),
        met: best.speedup >= 50 && low.proxy.p99Ms < 5,
      })
    }
  }
  for (const p of r.passThrough ?? []) {
    out.push({
      name: `one client's overhead: ${p.op}`,
      goal: '<= 5% wall',
      measured: `${pct(p.median.overhead)} (${p.median.proxyS} s vs ${p.median.directS} s)`,
      met: p.median.overhead <= 0.05,
    })
  }
  if (r.mixed !== undefined) {
    const proxy = r.mixed.phases.find((p) => p.target === 'proxy')
    out.push({
      name: 'mixed day: upstream CPU saved / cache hit ratio',
      goal: 'report',
      measured: `${pct(r.mixed.upstreamCpuSaved)} CPU, ${pct(r.mixed.upstreamRequestsSaved)} requests saved; hit ratio ${proxy?.cache === undefined ? 'n/a' : pct(proxy.cache.hitRatio)}`,
      met: null,
    })
  }
  if (r.lfs !== undefined) {
    const cold = r.lfs.filter((l) => l.target === 'proxy' && l.phase === 'cold').flatMap((l) => l.reps.map((x) => x.upstreamObjectDownloads))
    const warm = r.lfs.filter((l) => l.target === 'proxy' && l.phase === 'warm').flatMap((l) => l.reps.map((x) => x.upstreamObjectDownloads))
    const objects = r.lfs[0]?.objects ?? 0
    out.push({
      name: `upstream LFS object downloads per ${r.lfs[0]?.n ?? '?'}-clone burst (proxy)`,
      goal: `= ${objects} cold (each object once), 0 warm`,
      measured: `cold: ${cold.join(', ')}; warm: ${warm.join(', ')}`,
      met: cold.every((c) => c === objects) && warm.every((w) => w === 0),
    })
    const failures = r.lfs.reduce((s, l) => s + l.reps.reduce((t, x) => t + x.failures, 0), 0)
    out.push({ name: 'failed LFS clones', goal: '0', measured: String(failures), met: failures === 0 })
  }
  if (r.fetch !== undefined) out.push(...fetchTargets(r.fetch))
  return out
}

/** Issue 17's targets: (a), (b) one pack per burst and >= 10x less upstream CPU; (c) <= 5% slower; (d) <= 5% and 2 ms. */
function fetchTargets(f: FetchResults): Target[] {
  const out: Target[] = []
  const pair = (c: string, proto: number, via: string): { p: FetchResults['rows'][number]; d: FetchResults['rows'][number] } | null => {
    const p = f.rows.find((x) => x.case === c && x.proto === proto && x.target === via)
    const d = f.rows.find((x) => x.case === c && x.proto === proto && x.target === 'direct')
    return p === undefined || d === undefined ? null : { p, d }
  }
  for (const row of f.rows.filter((x) => x.target !== 'direct')) {
    const both = pair(row.case, row.proto, row.target)
    if (both === null) continue
    const { p, d } = both
    if (row.case === 'c: all different') {
      const slower = p.median.wallS / d.median.wallS - 1
      out.push({
        name: `fetch ${row.case} (v${row.proto}, N=${row.n}, ${row.target}): wall vs direct`,
        goal: '<= 5% slower',
        measured: `${pct(slower)} (${p.median.wallS} s vs ${d.median.wallS} s); packs ${p.median.packGenerations} vs ${d.median.packGenerations}`,
        met: slower <= 0.05,
      })
      continue
    }
    const gens = p.reps.map((x) => x.packGenerations)
    const cpu = p.median.upstreamCpuS > 0 ? d.median.upstreamCpuS / p.median.upstreamCpuS : Infinity
    out.push({
      name: `fetch ${row.case} (v${row.proto}, N=${row.n}, ${row.target}): upstream packs and CPU`,
      goal: '1 pack per burst, >= 10x less upstream CPU',
      measured: `packs ${Math.min(...gens)}..${Math.max(...gens)} (direct ${d.median.packGenerations}); CPU ${p.median.upstreamCpuS} s vs ${d.median.upstreamCpuS} s (${cpu.toFixed(1)}x)`,
      met: gens.every((g) => g === 1) && cpu >= 10,
    })
  }
  const failures = f.rows.reduce((s, x) => s + x.reps.reduce((t, y) => t + y.failures, 0), 0)
  out.push({ name: 'failed fetches (exit, tip, refs, fsck)', goal: '0', measured: String(failures), met: failures === 0 })
  for (const p of f.passThrough) {
    out.push({
      name: `uncached: ${p.op}`,
      goal: '<= 5% wall and <= 2 ms added',
      measured: `${pct(p.median.overhead)} (${p.median.addedMs} ms: ${p.median.proxyS} s vs ${p.median.directS} s)`,
      met: p.median.overhead <= 0.05 && p.median.addedMs <= 2,
    })
  }
  return out
}

function table(head: string[], rows: (string | number)[][]): string {
  const line = (cells: (string | number)[]): string => `| ${cells.map(String).join(' | ')} |`
  return [line(head), line(head.map(() => '---')), ...rows.map(line)].join('\n')
}

export function renderMarkdown(r: Results): string {
  const m = r.machine
  const parts: string[] = []
  parts.push(`### Bench results (${r.quick ? 'quick' : 'full'}), ${r.startedAt.slice(0, 16).replace('T', ' ')} UTC`)
  parts.push(`Machine: ${m.cpuModel}, ${m.cores} cores, ${m.memoryGb} GB RAM, ${m.os}; node ${m.node}, git ${m.git}; proxy at ${m.commit}. ` +
    `Repositories: ${r.repos.map((x) => `${x.name} (${x.packMb} MB pack, ${x.refs} refs)`).join(', ')}. ` +
    `Proxy RSS at start-up (compiled, idle): ${r.idleRss.proxyMb} MB. ` +
    `Load average ${m.loadAvg1mAtStart} at start, ${m.loadAvg1mAtEnd ?? '?'} at end. ` +
    'Upstream, proxy and clients share the machine; upstream CPU includes its git processes.')
  const targets = r.targets ?? evaluateTargets(r)
  parts.push('#### Targets')
  parts.push(table(['target', 'goal', 'measured', 'met'], targets.map((t) => [t.name, t.goal, t.measured, t.met === null ? '–' : t.met ? 'yes' : '**no**'])))
  if (r.burst !== undefined) {
    parts.push('#### 1. CI burst after a push (medians)')
    parts.push('`full` = `git clone --no-checkout`; `checkout` = `init` + `fetch --depth=1 origin <sha>` as actions/checkout. Cold = first burst after the push, warm = the second.')
    parts.push(table(
      ['repo', 'proto', 'mode', 'N', 'via', 'phase', 'wall s', 'p50 s', 'p99 s', 'fail', 'upstream packs', 'upstream CPU s', 'proxy CPU s', 'proxy RSS MB'],
      r.burst.map((b) => [b.repo, `v${b.proto}`, b.mode, b.n, b.target, b.target === 'proxy' ? b.phase : '–', b.median.wallS, b.median.p50S, b.median.p99S,
        b.reps.reduce((s, x) => s + x.failures, 0), b.median.packGenerations, b.median.upstreamCpuS,
        b.target === 'proxy' ? b.median.proxyCpuS : '–', b.target === 'proxy' ? b.median.proxyPeakRssMb : '–']),
    ))
    const errs = r.burst.filter((b) => b.firstError !== undefined)
    for (const b of errs) parts.push(`- failure in ${b.repo} v${b.proto} ${b.mode} N=${b.n} ${b.target} ${b.phase}: \`${(b.firstError ?? '').replace(/\s+/g, ' ').slice(0, 300)}\``)
  }
  if (r.floor !== undefined) {
    parts.push('#### 3. Warm clone vs the client\'s floor (medians)')
    parts.push(table(['repo', 'proto', 'pack MB', 'proxy warm s', 'direct s', 'index-pack floor s', 'proxy / floor', 'direct / floor', 'proxy RSS MB'],
      r.floor.map((f) => [f.repo, `v${f.proto}`, f.packMb, f.median.proxyWarmS, f.median.directS, f.median.floorS, f.median.proxyVsFloor, f.median.directVsFloor, f.proxyPeakRssMb])))
  }
  if (r.passThrough !== undefined) {
    parts.push('#### 4. Pass-through overhead (small repo, medians)')
    parts.push(table(['operation', 'direct s', 'proxy s', 'overhead', 'fail'],
      r.passThrough.map((p) => [p.op, p.median.directS, p.median.proxyS, pct(p.median.overhead), p.failures])))
  }
  if (r.polling !== undefined) {
    parts.push('#### 2. Polling (refs cache on)')
    if (!r.polling.refsCacheHits) parts.push('**The refs cache did not answer polls from cache in this run** (upstream requests ≈ client requests).')
    parts.push(table(['request', 'conc.', 'direct req/s', 'direct p50/p99 ms', 'proxy req/s', 'proxy p50/p99 ms', 'speed-up', 'upstream reqs via proxy', 'per TTL', 'fail d/p', 'proxy CPU s', 'KB per answer d/p'],
      r.polling.rows.map((p) => [p.kind, p.concurrency, p.direct.rps, `${p.direct.p50Ms} / ${p.direct.p99Ms}`, p.proxy.rps, `${p.proxy.p50Ms} / ${p.proxy.p99Ms}`,
        `${p.speedup}x`, p.proxy.upstreamRequests, p.proxy.upstreamRequestsPerTtl, `${p.direct.failures} / ${p.proxy.failures}`, p.proxy.proxyCpuS,
        `${kbPerAnswer(p.direct)} / ${kbPerAnswer(p.proxy)}`])))
    parts.push(table(['`git ls-remote` refs.git', 'direct s', 'proxy s'], r.polling.lsRemote.map((l) => [`v${l.proto}`, l.median.directS, l.median.proxyS])))
  }
  if (r.mixed !== undefined) {
    parts.push('#### 5. Mixed day')
    parts.push(table(['via', 'seconds', 'polls (fail)', 'poll p99 ms', 'clones (fail)', 'clone p50/p99 s', 'fetches (fail)', 'pushes', 'upstream reqs', 'upstream packs', 'upstream CPU s', 'proxy CPU s', 'proxy RSS MB', 'hit ratio'],
      r.mixed.phases.map((p) => [p.target, p.seconds, `${p.polls} (${p.pollFailures})`, p.pollP99Ms, `${p.clones} (${p.cloneFailures})`, `${p.cloneP50S} / ${p.cloneP99S}`,
        `${p.fetches} (${p.fetchFailures})`, p.pushes, p.upstreamRequests, p.packGenerations, p.upstreamCpuS, p.target === 'proxy' ? p.proxyCpuS : '–',
        p.target === 'proxy' ? p.proxyPeakRssMb : '–', p.cache === undefined ? '–' : pct(p.cache.hitRatio)])))
    parts.push(`Upstream CPU saved: ${pct(r.mixed.upstreamCpuSaved)}; upstream requests saved: ${pct(r.mixed.upstreamRequestsSaved)}.`)
  }
  if (r.fetch !== undefined) {
    parts.push('#### 6. Incremental fetches (kept workspaces, medians)')
    parts.push(table(['case', 'proto', 'N', 'via', 'wall s', 'p50/p99 s', 'fail', 'upstream packs', 'upstream CPU s', 'proxy CPU s'],
      r.fetch.rows.map((x) => [x.case, `v${x.proto}`, x.n, x.target, x.median.wallS, `${x.median.p50S} / ${x.median.p99S}`, x.median.failures,
        x.median.packGenerations, x.median.upstreamCpuS, x.target === 'direct' ? '–' : x.median.proxyCpuS])))
    for (const x of r.fetch.rows.filter((y) => y.firstError !== undefined)) parts.push(`- failure in ${x.case} v${x.proto} ${x.target}: \`${(x.firstError ?? '').replace(/\s+/g, ' ').slice(0, 300)}\``)
    parts.push(table(['uncached operation', 'direct s', 'proxy s', 'overhead', 'added ms', 'fail'],
      r.fetch.passThrough.map((p) => [p.op, p.median.directS, p.median.proxyS, pct(p.median.overhead), p.median.addedMs, p.failures])))
  }
  if (r.lfs !== undefined) {
    parts.push('#### 7. Git LFS burst (medians)')
    parts.push(`${r.lfs[0]?.n ?? '?'} concurrent \`git clone\` with git-lfs smudging ${r.lfs[0]?.objects ?? '?'} objects, ${r.lfs[0]?.totalMb ?? '?'} MB in all. Cold = proxy cache cleared first.`)
    parts.push(table(['via', 'phase', 'wall s', 'p50 s', 'p99 s', 'fail', 'upstream object GETs', 'upstream LFS MB', 'upstream CPU s', 'proxy CPU s', 'proxy RSS MB'],
      r.lfs.map((l) => [l.target, l.target === 'proxy' ? l.phase : '–', l.median.wallS, l.median.p50S, l.median.p99S, l.reps.reduce((s, x) => s + x.failures, 0),
        l.median.upstreamObjectDownloads, l.median.upstreamLfsMb, l.median.upstreamCpuS, l.target === 'proxy' ? l.median.proxyCpuS : '–', l.target === 'proxy' ? l.median.proxyPeakRssMb : '–'])))
    for (const l of r.lfs.filter((x) => x.firstError !== undefined)) parts.push(`- failure via ${l.target} ${l.phase}: \`${(l.firstError ?? '').replace(/\s+/g, ' ').slice(0, 300)}\``)
  }
  return `${parts.join('\n\n')}\n`
}

// ---------------------------------------------------------------- SVG

interface Series { label: string; color: string; dash: string; points: [number, number][] }

function panel(x0: number, title: string, unit: string, xs: number[], series: Series[]): string {
  const w = 400
  const h = 260
  const left = x0 + 50
  const top = 40
  const plotW = w - 70
  const plotH = h - 80
  const maxY = Math.max(1e-9, ...series.flatMap((s) => s.points.map((p) => p[1]))) * 1.1
  const xAt = (i: number): number => left + (xs.length === 1 ? plotW / 2 : (i * plotW) / (xs.length - 1))
  const yAt = (v: number): number => top + plotH - (v / maxY) * plotH
  const out: string[] = []
  out.push(`<text x="${x0 + w / 2}" y="22" text-anchor="middle" font-weight="bold">${title}</text>`)
  out.push(`<line x1="${left}" y1="${top + plotH}" x2="${left + plotW}" y2="${top + plotH}" stroke="#333"/>`)
  out.push(`<line x1="${left}" y1="${top}" x2="${left}" y2="${top + plotH}" stroke="#333"/>`)
  for (let t = 0; t <= 4; t++) {
    const v = (maxY * t) / 4
    const y = yAt(v)
    out.push(`<line x1="${left}" y1="${y}" x2="${left + plotW}" y2="${y}" stroke="#ddd"/>`)
    out.push(`<text x="${left - 6}" y="${y + 4}" text-anchor="end">${v < 10 ? v.toFixed(1) : v.toFixed(0)}</text>`)
  }
  out.push(`<text x="${x0 + 12}" y="${top + plotH / 2}" transform="rotate(-90 ${x0 + 12} ${top + plotH / 2})" text-anchor="middle">${unit}</text>`)
  xs.forEach((x, i) => {
    out.push(`<text x="${xAt(i)}" y="${top + plotH + 18}" text-anchor="middle">${x}</text>`)
  })
  out.push(`<text x="${left + plotW / 2}" y="${top + plotH + 36}" text-anchor="middle">concurrent clones</text>`)
  for (const s of series) {
    const pts = s.points.map(([x, y]) => `${xAt(xs.indexOf(x)).toFixed(1)},${yAt(y).toFixed(1)}`)
    out.push(`<polyline fill="none" stroke="${s.color}" stroke-width="2.5" stroke-dasharray="${s.dash}" points="${pts.join(' ')}"/>`)
    for (const p of pts) {
      const [cx, cy] = p.split(',')
      out.push(`<circle cx="${cx}" cy="${cy}" r="3.5" fill="${s.color}"/>`)
    }
  }
  return out.join('\n')
}

/** Clone-burst wall time and upstream CPU vs concurrency, proxy vs direct (v2 full clones). */
export function renderSvg(r: Results): string | null {
  if (r.burst === undefined) return null
  const candidates = ['medium', 'small'].map((repo) => r.burst!.filter((b) => b.repo === repo && b.proto === 2 && b.mode === 'full'))
  const rows = candidates.find((c) => new Set(c.map((b) => b.n)).size >= 2) ?? candidates.find((c) => c.length > 0)
  if (rows === undefined || rows.length === 0) return null
  const repo = rows[0]!.repo
  const xs = [...new Set(rows.map((b) => b.n))].sort((a, b) => a - b)
  const pick = (target: string, phase: string, f: (b: BurstRow) => number): [number, number][] =>
    xs.map((n) => {
      const b = rows.find((x) => x.n === n && x.target === target && x.phase === phase)
      return [n, b === undefined ? 0 : f(b)]
    })
  const mk = (f: (b: BurstRow) => number): Series[] => [
    { label: 'direct', color: '#c0392b', dash: '', points: pick('direct', 'cold', f) }, // direct has one phase
    { label: 'proxy, cold', color: '#2471a3', dash: '6 4', points: pick('proxy', 'cold', f) },
    { label: 'proxy, warm', color: '#27ae60', dash: '', points: pick('proxy', 'warm', f) },
  ]
  const wall = mk((b) => b.median.wallS)
  const cpu = mk((b) => b.median.upstreamCpuS)
  const legend = wall.map((s, i) =>
    `<line x1="${250 + i * 140}" y1="296" x2="${280 + i * 140}" y2="296" stroke="${s.color}" stroke-width="2.5" stroke-dasharray="${s.dash}"/>` +
    `<text x="${286 + i * 140}" y="300">${s.label}</text>`).join('\n')
  const m = r.machine
  return `<svg xmlns="http://www.w3.org/2000/svg" width="820" height="330" viewBox="0 0 820 330" font-family="sans-serif" font-size="12">
<rect width="820" height="330" fill="white"/>
${panel(0, `Burst wall time (${repo}, v2 clone)`, 'seconds', xs, wall)}
${panel(410, `Upstream CPU per burst (${repo}, v2 clone)`, 'CPU seconds', xs, cpu)}
${legend}
<text x="410" y="322" text-anchor="middle" fill="#555" font-size="10">${escapeXml(`${m.cpuModel}, ${m.cores} cores; git ${m.git}; ${r.startedAt.slice(0, 10)}; medians`)}</text>
</svg>
`
}

function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
}

function kbPerAnswer(l: { bytes: number; requests: number }): number {
  return l.requests === 0 ? 0 : Math.round(l.bytes / l.requests / 100) / 10
}
