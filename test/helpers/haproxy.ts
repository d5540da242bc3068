/**
 * HAProxy run from the shipped `deploy/haproxy.cfg`, unedited, configured
 * through its environment variables only, as an operator runs it.
 */
import { execFileSync, spawn } from 'node:child_process'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Test } from 'tap'
import { freePort } from './proxy-process.js'

const ROOT = path.resolve(import.meta.dirname, '../..')
export const HAPROXY_CFG = path.join(ROOT, 'deploy/haproxy.cfg')

/** The haproxy binary, or null when it is not installed (tests then skip). */
export function haproxyBinary(): string | null {
  for (const candidate of ['haproxy', '/usr/sbin/haproxy']) {
    try {
      execFileSync(candidate, ['-v'], { stdio: 'ignore' })
      return candidate
    } catch {
      // try the next one
    }
  }
  return null
}

export const NO_HAPROXY = 'haproxy is not installed (apt-get install haproxy; .ci/run installs it)'

export interface NodeAddresses {
  /** `host:port` of the node's HTTP front. */
  http: string
  /** `host:port` of the node's SSH front (any free port when the node runs none). */
  ssh: string
}

export interface TestHaproxy {
  /** `http://127.0.0.1:PORT` of the HTTP frontend. */
  url: string
  /** `127.0.0.1:PORT` of the SSH frontend. */
  sshBind: string
  output(): string
  /** Resolves once HAProxy has logged that `server` (node1..3) of the HTTP backend is DOWN. */
  waitDown(server: string, timeoutMs?: number): Promise<void>
}

/** Start HAProxy with `deploy/haproxy.cfg` in front of three nodes; stopped at teardown. */
export async function startHaproxy(
  t: Test,
  nodes: readonly [NodeAddresses, NodeAddresses, NodeAddresses],
  opts: { checkInter?: string } = {},
): Promise<TestHaproxy> {
  const binary = haproxyBinary()
  if (binary === null) throw new Error(NO_HAPROXY)
  const [httpPort, sshPort] = [await freePort(), await freePort()]
  const env: Record<string, string> = {
    PATH: process.env['PATH'] ?? '/usr/bin:/bin',
    SCM_CACHE_LB_BIND: `127.0.0.1:${httpPort}`,
    SCM_CACHE_LB_SSH_BIND: `127.0.0.1:${sshPort}`,
    SCM_CACHE_LB_CHECK_INTER: opts.checkInter ?? '100ms',
  }
  nodes.forEach((node, i) => {
    env[`SCM_CACHE_NODE${i + 1}`] = node.http
    env[`SCM_CACHE_NODE${i + 1}_SSH`] = node.ssh
  })
  let output = ''
  const child = spawn(binary, ['-f', HAPROXY_CFG], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  child.stdout.on('data', (c: Buffer) => (output += c.toString()))
  child.stderr.on('data', (c: Buffer) => (output += c.toString()))
  const exited = new Promise<void>((resolve) => child.on('exit', () => { resolve() }))
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL')
      await exited
    }
  })
  const url = `http://127.0.0.1:${httpPort}`
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`haproxy exited:\n${output}`)
    const up = await fetch(`${url}/healthz`).then((r) => r.ok, () => false)
    if (up) break
    if (i > 200) throw new Error(`haproxy did not start:\n${output}`)
    await sleep(50)
  }
  return {
    url,
    sshBind: `127.0.0.1:${sshPort}`,
    output: () => output,
    waitDown: async (server, timeoutMs = 20_000) => {
      const pattern = new RegExp(`Server scm_cache_nodes/${server} is DOWN`)
      const deadline = Date.now() + timeoutMs
      while (!pattern.test(output)) {
        if (Date.now() > deadline) throw new Error(`haproxy never marked ${server} down:\n${output}`)
        await sleep(25)
      }
    },
  }
}
