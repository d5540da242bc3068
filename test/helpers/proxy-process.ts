/** The proxy as a separate process (`node --import tsx src/server.ts`), for crash and signal tests. */
import { spawn, type ChildProcess } from 'node:child_process'
import net from 'node:net'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Test } from 'tap'
import { Agent } from 'undici'

const ROOT = path.resolve(import.meta.dirname, '../..')

export interface ProxyProcess {
  url: string
  child: ChildProcess
  output(): string
  exited: Promise<number | null>
}

/** `tlsCa`: the proxy speaks HTTPS (its env sets the certificate); its health is checked trusting this CA file's text. */
/**
 * `script` is the entry point: src/server.ts (what `npm start` runs) by
 * default, or test/helpers/proxy-main.ts for test-only options.
 */
export async function startProxyProcess(
  t: Test,
  env: Record<string, string>,
  opts: { tlsCa?: string; script?: string; nodeArgs?: string[] } = {},
): Promise<ProxyProcess> {
  const port = await freePort()
  let output = ''
  const script = path.join(ROOT, opts.script ?? 'src/server.ts')
  const child = spawn(process.execPath, [...(opts.nodeArgs ?? []), '--import', 'tsx', script], {
    cwd: ROOT,
    env: {
      PATH: process.env['PATH'] ?? '/usr/bin:/bin',
      HOME: process.env['HOME'] ?? '/tmp',
      SCM_CACHE_PROXY_HTTP_HOST: '127.0.0.1',
      SCM_CACHE_PROXY_HTTP_PORT: String(port),
      SCM_CACHE_SCM_CACHE_MINIMUM_FREE_SPACE: '0',
      // No coverage from the child: tsx transpiles src/ differently from the
      // test processes' loader, and c8 merging the two byte-offset maps of one
      // file marks lines the tests did run as uncovered (src/service and
      // src/front read 85.7% and 88.9% with it, 91.7% and 93.5% without).
      _TAPJS_PROCESSINFO_COVERAGE_: '0',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  child.stdout.on('data', (c: Buffer) => (output += c.toString()))
  child.stderr.on('data', (c: Buffer) => (output += c.toString()))
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => { resolve(code) }))
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL')
      await exited
    }
  })
  const url = `${opts.tlsCa === undefined ? 'http' : 'https'}://127.0.0.1:${port}`
  // Not kept open: a test may count the proxy's connections.
  const agent = new Agent({ pipelining: 0, ...(opts.tlsCa === undefined ? {} : { connect: { ca: opts.tlsCa } }) })
  t.teardown(() => agent.destroy())
  for (let i = 0; i < 300; i++) {
    if (child.exitCode !== null) throw new Error(`proxy exited early:\n${output}`)
    try {
      const res = await agent.request({ origin: url, path: '/healthz', method: 'GET', reset: true })
      await res.body.dump()
      if (res.statusCode === 200) return { url, child, output: () => output, exited }
    } catch {
      // not listening yet
    }
    await sleep(50)
  }
  throw new Error(`proxy did not start:\n${output}`)
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address()
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0
      s.close(() => { resolve(port) })
    })
    s.on('error', reject)
  })
}
