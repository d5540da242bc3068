#!/usr/bin/env node
/**
 * Composition root: the only module that reads argv and the environment,
 * creates the logger, starts the proxy and handles signals.
 */
import { pino } from 'pino'
import { ConfigError } from './errors.js'
import { describeConfig, loadConfig, parseArgs } from './config/load.js'
import { startProxy } from './proxy.js'
import { drainAndClose } from './drain.js'

const SHUTDOWN_DEADLINE_MS = 30_000

const USAGE = `usage: scm-cache-proxy [--config FILE]

Caching reverse proxy for Git servers. Settings come from FILE (default
config/scm-cache.properties, or $SCM_CACHE_CONFIG) and SCM_CACHE_* environment
variables; see config/scm-cache.properties for every key.
`

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2))
  if (args.help) {
    process.stdout.write(USAGE)
    return
  }
  const config = loadConfig({ argv: process.argv.slice(2), env: process.env, cwd: process.cwd() })
  const log = pino({
    level: process.env['LOG_LEVEL'] ?? 'info',
    redact: {
      paths: ['req.headers.authorization', 'req.headers.cookie', 'headers.authorization', 'authorization', 'password'],
      censor: '[redacted]',
    },
  })
  log.info({ config: describeConfig(config) }, 'starting scm-cache-proxy')
  if (![...process.execArgv, ...(process.env['NODE_OPTIONS'] ?? '').split(/\s+/)].some((a) => a.startsWith('--max-semi-space-size'))) {
    log.info('node runs without --max-semi-space-size=2 (npm start sets it): expect ~25 MB more memory while clones stream')
  }
  const proxy = await startProxy(config, log)
  log.info({ url: proxy.url, upstream: proxy.upstreamUrl }, 'listening')
  if (proxy.demoRepo !== null) {
    const { port, protocol } = new URL(proxy.url)
    process.stderr.write(
      `\nscm-cache-proxy is listening on ${proxy.url} in front of its embedded upstream.\n` +
        `Try:  git clone ${protocol}//localhost:${port}/${proxy.demoRepo}\n\n`,
    )
  }

  let stopping = false
  const skipDrain = new AbortController()
  const stop = (signal: string): void => {
    if (stopping) {
      skipDrain.abort()
      return
    }
    stopping = true
    const drainMs = config.proxy.shutdownDrain * 1000
    drainAndClose(proxy, { reason: signal, drainMs, deadlineMs: SHUTDOWN_DEADLINE_MS, skip: skipDrain.signal, log }).then(
      () => {
        log.info('stopped')
        process.exitCode = 0
      },
      (err: unknown) => {
        log.error({ err }, 'error while shutting down')
        process.exitCode = 1
      },
    )
  }
  process.on('SIGTERM', () => { stop('SIGTERM') })
  process.on('SIGINT', () => { stop('SIGINT') })
  // SIGHUP reloads the TLS certificate (and would otherwise end the process).
  process.on('SIGHUP', () => {
    proxy.reloadTls().then(
      (reloaded) => {
        log.info(reloaded ? 'SIGHUP: TLS certificate and key reloaded' : 'SIGHUP: no TLS configured, nothing to reload')
      },
      (err: unknown) => {
        log.error({ err }, 'SIGHUP: TLS certificate not reloaded, the previous one stays in use')
      },
    )
  })
}

main().catch((err: unknown) => {
  if (err instanceof ConfigError) {
    process.stderr.write(`scm-cache-proxy: ${err.message}\n`)
  } else {
    process.stderr.write(`scm-cache-proxy: failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
  }
  process.exit(1)
})
