// Line coverage per source folder, held at what the suite reaches: run
// after `tap` (which writes .tap/report/coverage-summary.json; see .taprc
// and test/coverage-map.mjs). A folder below its floor fails the run.
import { readFileSync } from 'node:fs'
import path from 'node:path'

const FLOORS: Record<string, number> = {
  'src/protocol': 95,
  'src/cache': 90,
  'src/service': 95,
  'src/front': 94,
  'src/config': 95,
  'src/rest': 95,
}

interface Figures {
  lines: { total: number; covered: number }
}

// tap's json-summary report: file -> figures
const summary = JSON.parse(readFileSync('.tap/report/coverage-summary.json', 'utf8')) as Record<string, Figures>
const root = process.cwd()
const folders: Record<string, { total: number; covered: number } | undefined> = {}
for (const [file, figures] of Object.entries(summary)) {
  if (file === 'total') continue
  const folder = Object.keys(FLOORS).find((f) => path.relative(root, file).startsWith(`${f}/`))
  if (folder === undefined) continue
  const f = (folders[folder] ??= { total: 0, covered: 0 })
  f.total += figures.lines.total
  f.covered += figures.lines.covered
}
let failed = false
for (const [folder, floor] of Object.entries(FLOORS)) {
  const f = folders[folder]
  const pct = f === undefined || f.total === 0 ? 0 : (100 * f.covered) / f.total
  const ok = pct >= floor
  failed ||= !ok
  console.log(`${ok ? 'ok' : 'BELOW'}  ${folder.padEnd(14)} ${pct.toFixed(1)}% of ${f?.total ?? 0} lines (floor ${floor}%)`)
}
if (failed) {
  console.log('line coverage fell below a floor')
  process.exit(1)
}
