/** Timed git client runs, isolated from the machine's configuration. */
import { spawn } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { isolatedGitEnv } from '../../src/upstream/git-command.js'
import { trackGroup } from './proc.js'

export interface GitRun {
  ok: boolean
  ms: number
  stderr: string
  stdout: string
}

export class GitClient {
  readonly env: Record<string, string>
  constructor(dir: string) {
    const home = path.join(dir, 'client-home')
    mkdirSync(home, { recursive: true })
    writeFileSync(path.join(home, '.gitconfig'), '[init]\n\tdefaultBranch = main\n[advice]\n\tdetachedHead = false\n[user]\n\tname = Bench\n\temail = bench@example.com\n')
    this.env = isolatedGitEnv({
      HOME: home,
      GIT_CONFIG_GLOBAL: path.join(home, '.gitconfig'),
      GIT_AUTHOR_NAME: 'Bench',
      GIT_AUTHOR_EMAIL: 'bench@example.com',
      GIT_COMMITTER_NAME: 'Bench',
      GIT_COMMITTER_EMAIL: 'bench@example.com',
      GIT_AUTHOR_DATE: '1700000000 +0000',
      GIT_COMMITTER_DATE: '1700000000 +0000',
      LC_ALL: 'C',
    })
  }

  /** Run one git command in its own process group (killed with the bench). */
  run(args: string[], opts: { cwd?: string; input?: Buffer | string; stdinFile?: number; timeoutMs?: number } = {}): Promise<GitRun> {
    const t0 = performance.now()
    return new Promise((resolve) => {
      const child = spawn('git', args, {
        cwd: opts.cwd,
        env: this.env,
        detached: true,
        stdio: [opts.stdinFile ?? (opts.input === undefined ? 'ignore' : 'pipe'), 'pipe', 'pipe'],
      })
      const untrack = child.pid === undefined ? () => false : trackGroup(child.pid)
      let stdout = ''
      let stderr = ''
      child.stdout!.on('data', (c: Buffer) => { if (stdout.length < 1 << 20) stdout += c.toString() })
      child.stderr!.on('data', (c: Buffer) => { stderr = (stderr + c.toString()).slice(-4000) })
      if (opts.input !== undefined && child.stdin !== null) {
        child.stdin.on('error', () => undefined) // git may exit without reading all of it; its exit code tells
        child.stdin.end(opts.input)
      }
      const timer = setTimeout(() => {
        stderr += '\n[bench: timed out]'
        try {
          process.kill(-child.pid!, 'SIGKILL')
        } catch {
          // gone
        }
      }, opts.timeoutMs ?? 600_000)
      child.on('close', (code) => {
        clearTimeout(timer)
        untrack()
        resolve({ ok: code === 0, ms: performance.now() - t0, stderr, stdout })
      })
    })
  }

  async ok(args: string[], opts: { cwd?: string; input?: Buffer | string } = {}): Promise<string> {
    const r = await this.run(args, opts)
    if (!r.ok) throw new Error(`git ${args.join(' ')} failed:\n${r.stderr}`)
    return r.stdout
  }

  /** Run several git commands in sequence as one timed step; stops at the first failure. */
  async sequence(steps: { args: string[]; cwd?: string }[]): Promise<GitRun> {
    const t0 = performance.now()
    let last: GitRun = { ok: true, ms: 0, stderr: '', stdout: '' }
    for (const s of steps) {
      last = await this.run(s.args, s.cwd === undefined ? {} : { cwd: s.cwd })
      if (!last.ok) break
    }
    return { ...last, ms: performance.now() - t0 }
  }
}
