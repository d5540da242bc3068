/** Start the real proxy for a test, configured through the real config loader. */
import path from 'node:path'
import type { Test } from 'tap'
import { loadConfig } from '../../src/config/load.js'
import { startProxy, type ProxyOptions, type RunningProxy } from '../../src/proxy.js'
import { logSink, type LogRecord } from './log-sink.js'

export interface TestProxy {
  url: string
  proxy: RunningProxy
  logs: LogRecord[]
  cacheDir: string
  /** Resolves once no Git request is in flight: every log line of what the client saw is written. */
  settled(): Promise<void>
  close(): Promise<void>
}

/**
 * `settings` are config keys (`scm-cache.refs.enabled`) with string values;
 * they are given to the loader as SCM_CACHE_* environment variables, so
 * tests exercise the same path as users.
 */
export async function startTestProxy(
  t: Test,
  dir: string,
  upstreamUrl: string | null,
  settings: Record<string, string> = {},
  options: ProxyOptions = {},
): Promise<TestProxy> {
  const cacheDir = path.join(dir, 'cache')
  const env: Record<string, string> = {
    SCM_CACHE_CACHE_DIR: cacheDir,
    SCM_CACHE_PROXY_HTTP_HOST: '127.0.0.1',
    SCM_CACHE_PROXY_HTTP_PORT: '0',
    // Tests run on whatever disk the machine has: no free-space floor unless a test sets one.
    SCM_CACHE_SCM_CACHE_MINIMUM_FREE_SPACE: '0',
  }
  if (upstreamUrl !== null) env['SCM_CACHE_UPSTREAM_HTTP_URL'] = upstreamUrl
  for (const [key, value] of Object.entries(settings)) {
    env[`SCM_CACHE_${key.toUpperCase().replace(/[.-]/g, '_')}`] = value
  }
  const config = loadConfig({ argv: [], env, cwd: dir })
  const { log, records } = logSink()
  const proxy = await startProxy(config, log, options)
  let closed = false
  const close = async (): Promise<void> => {
    if (closed) return
    closed = true
    await proxy.close()
  }
  t.teardown(close)
  const settled = async (): Promise<void> => {
    const deadline = performance.now() + 10_000
    while (proxy.requestsInFlight() > 0 && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5))
  }
  return { url: proxy.url, proxy, logs: records, cacheDir, settled, close }
}
