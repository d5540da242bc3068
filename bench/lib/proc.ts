/**
 * Processes the bench starts, and what it measures about them from /proc.
 *
 * Every child is registered here and killed when the bench exits (normally,
 * on an error, or on SIGINT/SIGTERM); every temporary directory is removed.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync, rmSync, writeFileSync } from 'node:fs'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import { execFileSync } from 'node:child_process'

const children = new Set<ChildProcess>()
const groups = new Set<number>()
const tempDirs = new Set<string>()
let installed = false

function cleanupNow(): void {
  for (const pgid of groups) {
    try {
      process.kill(-pgid, 'SIGKILL')
    } catch {
      // already gone
    }
  }
  groups.clear()
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  }
  children.clear()
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true })
  tempDirs.clear()
}

/** Kill children and remove temp dirs on exit, SIGINT and SIGTERM. */
export function installCleanup(): void {
  if (installed) return
  installed = true
  process.on('exit', cleanupNow)
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      console.error(`\nbench: ${sig}, stopping`)
      cleanupNow()
      process.exit(130)
    })
  }
}

export function registerTempDir(dir: string): void {
  tempDirs.add(dir)
}

export function removeTempDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true })
  tempDirs.delete(dir)
}

/** A process group to kill on exit (git clients started with `detached: true`). */
export function trackGroup(pgid: number): () => void {
  groups.add(pgid)
  return () => groups.delete(pgid)
}

export interface ServerProcess {
  readonly pid: number
  readonly url: string
  readonly child: ChildProcess
  /** Send one command line on stdin; resolves with the next JSON reply line (type `reply`). */
  command(line: string): Promise<unknown>
  stop(): Promise<void>
}

interface Line { type: string; [k: string]: unknown }

/**
 * Start `node [nodeFlags] [--import tsx] <script>`; it prints `{"type":"ready","url":...}`
 * as its first JSON line on stdout. Other lines go to `onLine`.
 */
export async function startServer(
  script: string,
  args: string[],
  extraEnv: Record<string, string> = {},
  onLine: (msg: Line) => void = () => undefined,
  nodeFlags: string[] = [],
): Promise<ServerProcess> {
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('SCM_CACHE_')) env[k] = v
  // TypeScript through tsx; compiled JavaScript as is.
  const loader = script.endsWith('.ts') ? ['--import', 'tsx'] : []
  const child = spawn(process.execPath, [...nodeFlags, ...loader, script, ...args], {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: { ...env, NODE_ENV: 'production', ...extraEnv },
  })
  children.add(child)
  const replies: ((v: unknown) => void)[] = []
  let ready: (url: string) => void = () => undefined
  const readyP = new Promise<string>((resolve, reject) => {
    ready = resolve
    child.once('exit', (code) => { reject(new Error(`${script} exited ${String(code)} before it was ready`)) })
  })
  const rl = createInterface({ input: child.stdout })
  rl.on('line', (text) => {
    let msg: Line
    try {
      msg = JSON.parse(text) as Line
    } catch {
      return
    }
    if (msg.type === 'ready') ready(String(msg['url']))
    else if (msg.type === 'reply') replies.shift()?.(msg['value'])
    else onLine(msg)
  })
  const url = await readyP
  return {
    pid: child.pid!,
    url,
    child,
    command: (line) => new Promise((resolve) => {
      replies.push(resolve)
      child.stdin.write(`${line}\n`)
    }),
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return
      const gone = once(child, 'exit')
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
      await gone
      clearTimeout(timer)
      children.delete(child)
    },
  }
}

let ticks = 0
function clockTicks(): number {
  if (ticks === 0) {
    try {
      ticks = Number.parseInt(execFileSync('getconf', ['CLK_TCK']).toString().trim(), 10) || 100
    } catch {
      ticks = 100
    }
  }
  return ticks
}

/** CPU seconds of a process and its reaped children: utime+stime+cutime+cstime. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  // fields[0] is field 3 (state): utime is field 14 -> index 11
  const sum = [11, 12, 13, 14].reduce((s, i) => s + Number(fields[i] ?? 0), 0)
  return sum / clockTicks()
}

function statusKb(pid: number, name: string): number {
  const m = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m?.[1] === undefined ? 0 : Number(m[1])
}

/** Samples VmRSS every `everyMs`; also resets and reads VmHWM where the kernel lets us. */
export class RssSampler {
  #peakKb = 0
  #timer: NodeJS.Timeout | null = null
  #hwmReset = false
  constructor(private readonly pid: number, private readonly everyMs = 50) {}

  start(): void {
    try {
      writeFileSync(`/proc/${this.pid}/clear_refs`, '5')
      this.#hwmReset = true
    } catch {
      this.#hwmReset = false
    }
    this.#peakKb = statusKb(this.pid, 'VmRSS')
    this.#timer = setInterval(() => {
      try {
        this.#peakKb = Math.max(this.#peakKb, statusKb(this.pid, 'VmRSS'))
      } catch {
        // process gone
      }
    }, this.everyMs)
  }

  /** Peak RSS in MB since start(). */
  stop(): number {
    if (this.#timer !== null) clearInterval(this.#timer)
    this.#timer = null
    try {
      this.#peakKb = Math.max(this.#peakKb, statusKb(this.pid, 'VmRSS'))
      if (this.#hwmReset) this.#peakKb = Math.max(this.#peakKb, statusKb(this.pid, 'VmHWM'))
    } catch {
      // process gone
    }
    return this.#peakKb / 1024
  }
}

export function rssMb(pid: number): number {
  return statusKb(pid, 'VmRSS') / 1024
}
