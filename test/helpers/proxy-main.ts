/**
 * The proxy in a process of its own, for tests that measure it from outside
 * (its RSS, kill -9) and need a test-only option: src/server.ts's startup,
 * with the slow-body window of TEST_BODY_RATE (`<minBytes>:<windowMs>`).
 */
import { pino } from 'pino'
import { loadConfig } from '../../src/config/load.js'
import { startProxy } from '../../src/proxy.js'

const rate = /^(\d+):(\d+)$/.exec(process.env['TEST_BODY_RATE'] ?? '')
const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => name !== 'TEST_BODY_RATE'))
const config = loadConfig({ argv: [], env, cwd: process.cwd() })
const log = pino({ level: process.env['LOG_LEVEL'] ?? 'warn' })
const proxy = await startProxy(config, log, rate === null ? {} : { bodyRate: { minBytes: Number(rate[1]), windowMs: Number(rate[2]) } })
process.stdout.write(`listening ${proxy.url}\n`)
process.on('SIGTERM', () => {
  void proxy.close().then(() => process.exit(0))
})
