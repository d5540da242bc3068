/**
 * The proxy under test, in its own process (CPU and RSS are measured per
 * process). Configured through SCM_CACHE_* variables like a user would;
 * the bench passes them in the environment.
 *
 *   node --import tsx bench/proxy-server.ts   (the bench runs it compiled: see compileProxy in run.ts)
 *
 * stdout: `{"type":"ready","url":...}`. stdin commands, one per line, each
 * answered by a `{"type":"reply","value":...}` line:
 *   stats   cache counters (totals over all repositories)
 *   clear   drop every cache entry
 */
import { createInterface } from 'node:readline'
import { pino } from 'pino'
import { loadConfig } from '../src/config/load.js'
import { startProxy } from '../src/proxy.js'

const env: Record<string, string> = {}
for (const [k, v] of Object.entries(process.env)) if (k.startsWith('SCM_CACHE_') && v !== undefined) env[k] = v
const config = loadConfig({ argv: [], env, cwd: process.env['BENCH_PROXY_CWD'] ?? process.cwd() })
// At the product's default level, one line per request, to a file (the cost
// is real, the terminal stays readable): BENCH_PROXY_LOG_FILE, or stderr;
// asynchronous, as src/server.ts's default destination is.
const logFile = process.env['BENCH_PROXY_LOG_FILE']
const log = pino({ level: process.env['BENCH_PROXY_LOG'] ?? 'info' }, pino.destination({ dest: logFile ?? 2, sync: false }))
const proxy = await startProxy(config, log)
process.stdout.write(`${JSON.stringify({ type: 'ready', url: proxy.url })}\n`)

const reply = (value: unknown): void => {
  process.stdout.write(`${JSON.stringify({ type: 'reply', value })}\n`)
}
createInterface({ input: process.stdin }).on('line', (line) => {
  const cmd = line.trim()
  if (cmd === 'stats') {
    const s = proxy.store.stats()
    reply({ totals: s.totals, fillsInFlight: s.fillsInFlight })
  } else if (cmd === 'clear') {
    proxy.store.clear().then(() => { reply(true) }, (err: unknown) => { reply(String(err)) })
  } else {
    reply(null)
  }
})

const stop = (): void => {
  proxy.close().then(() => process.exit(0), () => process.exit(1))
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
process.stdin.on('end', stop)
