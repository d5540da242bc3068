/**
 * The files an operator deploys with (DESIGN §10): the systemd unit checked
 * by `systemd-analyze verify`, the Containerfile's essentials and its health
 * check script run against a real proxy, and deploy/haproxy.cfg checked by
 * `haproxy -c` (the cluster test runs it for real).
 */
import { execFile, execFileSync } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { haproxyBinary, HAPROXY_CFG, NO_HAPROXY } from '../helpers/haproxy.js'
import { startTestProxy } from '../helpers/proxy.js'
import { startTestUpstream } from '../helpers/upstream.js'

const run = promisify(execFile)
const ROOT = path.resolve(import.meta.dirname, '../..')
const UNIT = path.join(ROOT, 'deploy/scm-cache-proxy.service')
const CONTAINERFILE = path.join(ROOT, 'deploy/Containerfile')
const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }

/** The node flags of `npm start` (`node --max-semi-space-size=2 dist/src/server.js`). */
const START_FLAGS = (pkg.scripts['start'] ?? '').split(/\s+/).filter((w) => w.startsWith('--'))

/** Run a command; never rejects: the exit code is in the result. */
async function runCode(
  cmd: string,
  args: string[],
  env?: Record<string, string>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(cmd, args, env === undefined ? {} : { env })
    return { code: 0, stdout: r.stdout, stderr: r.stderr }
  } catch (err) {
    const e = err as { code?: unknown; stdout?: unknown; stderr?: unknown } // execFile's error carries the process's output
    const text = (v: unknown): string => (typeof v === 'string' ? v : '')
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: text(e.stdout), stderr: text(e.stderr) }
  }
}

function hasTool(name: string, args: string[]): boolean {
  try {
    execFileSync(name, args, { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

/** `Key=value` lines of a unit file (the last value of a repeated key). */
function unitSettings(text: string): Map<string, string> {
  const out = new Map<string, string>()
  for (const line of text.split('\n')) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line)
    if (m?.[1] !== undefined) out.set(m[1], m[2] ?? '')
  }
  return out
}

void t.test('npm start has the node flag the deploy files must repeat', (t) => {
  t.ok(START_FLAGS.includes('--max-semi-space-size=2'), START_FLAGS.join(' '))
  t.end()
})

void t.test('deploy/scm-cache-proxy.service', async (t) => {
  const text = readFileSync(UNIT, 'utf8')
  const unit = unitSettings(text)
  t.equal(unit.get('DynamicUser'), 'yes', 'its own user')
  t.equal(unit.get('User'), 'scm-cache-proxy')
  t.equal(unit.get('StateDirectory'), 'scm-cache-proxy')
  t.match(text, /^Environment=SCM_CACHE_CACHE_DIR=\/var\/lib\/scm-cache-proxy\//m, 'cache.dir is in the state directory')
  for (const flag of START_FLAGS) t.match(unit.get('ExecStart'), flag, `ExecStart has ${flag}`)
  t.match(unit.get('ExecStart'), /dist\/src\/server\.js$/)
  t.match(unit.get('ExecReload'), /kill -HUP \$MAINPID/, 'reload is SIGHUP (TLS certificate)')
  t.equal(unit.get('Restart'), 'on-failure')
  t.ok(Number(unit.get('LimitNOFILE')) >= 65536, 'LimitNOFILE')
  t.ok(Number(unit.get('TimeoutStopSec')) >= 10 + 30, 'time to drain (10 s) and finish transfers (30 s)')
  for (const [key, value] of [
    ['ProtectSystem', 'strict'],
    ['NoNewPrivileges', 'yes'],
    ['PrivateTmp', 'yes'],
    ['ProtectHome', 'yes'],
    ['PrivateDevices', 'yes'],
    ['CapabilityBoundingSet', ''],
  ] as const) {
    t.equal(unit.get(key), value, `${key}=${value}`)
  }
  t.notOk(unit.has('MemoryDenyWriteExecute'), 'no MemoryDenyWriteExecute: V8 needs to JIT')

  const skip = hasTool('systemd-analyze', ['--version']) ? false : 'systemd-analyze is not installed: the unit is not verified by systemd'
  await t.test('systemd-analyze verify accepts it without a warning', { skip }, async (t) => {
    // Verified as shipped; only where node is not at /usr/bin/node, ExecStart points at this node.
    const copy = path.join(t.testdir(), 'scm-cache-proxy.service')
    writeFileSync(copy, existsSync('/usr/bin/node') ? text : text.replace('/usr/bin/node', process.execPath))
    const r = await runCode('systemd-analyze', ['verify', copy])
    t.equal(r.code, 0, `systemd-analyze verify: ${r.stderr}`)
    t.equal(r.stderr.trim(), '', 'no warnings (an unknown or misspelt key is only a warning)')
  })
})

void t.test('deploy/Containerfile', (t) => {
  const text = readFileSync(CONTAINERFILE, 'utf8')
  const froms = text.match(/^FROM .*/gm) ?? []
  t.equal(froms.length, 2, 'multi-stage: a build stage and a runtime stage')
  t.match(froms[0], / AS build$/)
  t.match(text, /^COPY --from=build /m, 'the runtime copies what was built')
  t.match(text, /npm prune --omit=dev/, 'no dev dependencies in the image')
  const user = /^USER (\S+)$/m.exec(text)?.[1]
  t.ok(user !== undefined && user !== 'root' && user !== '0', `runs as ${user}, not root`)
  t.match(text, /^HEALTHCHECK .*\n?.*CMD \["node", "deploy\/healthcheck\.mjs"\]/m)
  const volume = /^VOLUME \["([^"]+)"\]$/m.exec(text)?.[1]
  t.ok(volume !== undefined, 'the cache is on a volume')
  t.match(text, new RegExp(`SCM_CACHE_CACHE_DIR=${volume ?? '-'}/`), 'cache.dir is on the volume')
  const entrypoint = /^ENTRYPOINT (.*)$/m.exec(text)?.[1] ?? ''
  for (const flag of START_FLAGS) t.match(entrypoint, flag, `ENTRYPOINT has ${flag}`)
  t.match(text, /^STOPSIGNAL SIGTERM$/m)
  t.end()
})

void t.test('the container health check script asks /readyz', async (t) => {
  const dir = t.testdir()
  const upstream = await startTestUpstream(t, dir)
  const { url, proxy } = await startTestProxy(t, dir, upstream.url)
  const check = async (): Promise<number> =>
    (
      await runCode(process.execPath, [path.join(ROOT, 'deploy/healthcheck.mjs')], {
        PATH: process.env['PATH'] ?? '',
        SCM_CACHE_PROXY_HTTP_PORT: new URL(url).port,
      })
    ).code
  t.equal(await check(), 0, 'ready: healthy')
  proxy.beginDrain()
  t.equal(await check(), 1, 'draining: unhealthy')
})

void t.test('deploy/haproxy.cfg is valid for HAProxy as shipped, given its environment', { skip: haproxyBinary() === null ? NO_HAPROXY : false }, async (t) => {
  const binary = haproxyBinary() ?? 'haproxy'
  const env: Record<string, string> = {
    PATH: process.env['PATH'] ?? '',
    SCM_CACHE_LB_BIND: '127.0.0.1:7990',
    SCM_CACHE_LB_SSH_BIND: '127.0.0.1:7999',
  }
  for (const i of [1, 2, 3]) {
    env[`SCM_CACHE_NODE${i}`] = `10.0.0.${10 + i}:7990`
    env[`SCM_CACHE_NODE${i}_SSH`] = `10.0.0.${10 + i}:7999`
  }
  const ok = await runCode(binary, ['-c', '-f', HAPROXY_CFG], env)
  t.equal(ok.code, 0, ok.stderr)
  t.match(ok.stdout, /Configuration file is valid/)
  const missing = await runCode(binary, ['-c', '-f', HAPROXY_CFG], { PATH: env['PATH'] ?? '' })
  t.not(missing.code, 0, 'without the node addresses HAProxy refuses to start')

  const text = readFileSync(HAPROXY_CFG, 'utf8').replace(/^\s*#.*$/gm, '')
  const vars = new Set([...text.matchAll(/\$\{(\w+)(?:-[^}]*)?\}/g)].map((m) => m[1]))
  t.same(
    [...vars].sort(),
    [
      'SCM_CACHE_LB_BIND',
      'SCM_CACHE_LB_CHECK_INTER',
      'SCM_CACHE_LB_SSH_BIND',
      'SCM_CACHE_NODE1',
      'SCM_CACHE_NODE1_SSH',
      'SCM_CACHE_NODE2',
      'SCM_CACHE_NODE2_SSH',
      'SCM_CACHE_NODE3',
      'SCM_CACHE_NODE3_SSH',
    ],
    'the environment variables of DESIGN §10 (and the optional check interval)',
  )
  // Inactivity timeouts long enough for a node that thinks before its pack
  // (upstream headers within 300 s, a queued fill up to 120 s).
  for (const name of ['client', 'server']) {
    const m = new RegExp(`^\\s*timeout ${name} (\\d+)m$`, 'm').exec(text)
    t.ok(m !== null && Number(m[1]) >= 10, `timeout ${name} is at least 10 minutes`)
  }
  t.notMatch(text, /on-marked-down shutdown-sessions/, 'a node failing its checks keeps its transfers')
  t.notMatch(text, /hash-balance-factor/, 'no bounded-load spill: a burst stays on its node')
})
