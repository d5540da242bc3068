/** Running the real git client in tests, isolated from the machine's config. */
import { execFile, spawn } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { isolatedGitEnv } from '../../src/upstream/git-command.js'

export interface GitResult {
  code: number
  stdout: string
  stderr: string
}

export interface GitOptions {
  cwd?: string
  env?: Record<string, string>
  input?: string
}

/** A HOME with an empty global config, so no user or system setting leaks into a test. */
export function gitHome(dir: string): string {
  const home = path.join(dir, 'home')
  mkdirSync(home, { recursive: true })
  writeFileSync(path.join(home, '.gitconfig'), '[init]\n\tdefaultBranch = main\n[advice]\n\tdetachedHead = false\n')
  return home
}

export function gitEnv(home: string, extra: Record<string, string> = {}): Record<string, string> {
  return isolatedGitEnv({
    HOME: home,
    GIT_CONFIG_GLOBAL: path.join(home, '.gitconfig'),
    GIT_AUTHOR_NAME: 'Test Author',
    GIT_AUTHOR_EMAIL: 'author@example.com',
    GIT_COMMITTER_NAME: 'Test Committer',
    GIT_COMMITTER_EMAIL: 'committer@example.com',
    GIT_AUTHOR_DATE: '1700000000 +0000',
    GIT_COMMITTER_DATE: '1700000000 +0000',
    ...extra,
  })
}

/** Run git; never rejects: the exit code is in the result. */
export function git(home: string, args: string[], opts: GitOptions = {}): Promise<GitResult> {
  return new Promise((resolve) => {
    const child = execFile(
      'git',
      args,
      { cwd: opts.cwd, env: gitEnv(home, opts.env), maxBuffer: 256 * 1024 * 1024, timeout: 240_000 },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1
        resolve({ code, stdout, stderr })
      },
    )
    if (opts.input !== undefined) child.stdin?.end(opts.input)
  })
}

/** Run git and reject with its stderr on failure. */
export async function gitOk(home: string, args: string[], opts: GitOptions = {}): Promise<string> {
  const r = await git(home, args, opts)
  if (r.code !== 0) throw new Error(`git ${args.join(' ')} exited ${r.code}:\n${r.stderr}`)
  return r.stdout
}

/** `ref -> oid` map from `git for-each-ref` (or `ls-remote` output). */
export function parseRefList(text: string): Map<string, string> {
  const refs = new Map<string, string>()
  for (const line of text.split('\n')) {
    const m = /^([0-9a-f]{40,64})\s+(\S+)$/.exec(line.trim())
    if (m?.[1] !== undefined && m[2] !== undefined) refs.set(m[2], m[1])
  }
  return refs
}

/** Start git in its own process group, so `kill()` takes its transport helpers down too. */
export function spawnGit(home: string, args: string[], opts: GitOptions = {}): { kill(): void; done: Promise<GitResult> } {
  let stdout = ''
  let stderr = ''
  const child = spawn('git', args, { cwd: opts.cwd, env: gitEnv(home, opts.env), detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()))
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
  const done = new Promise<GitResult>((resolve) => {
    child.on('close', (code, signal) => { resolve({ code: code ?? (signal === null ? 1 : 128), stdout, stderr }) })
  })
  return {
    kill: () => {
      if (child.pid !== undefined) {
        try {
          process.kill(-child.pid, 'SIGKILL')
        } catch {
          // already gone
        }
      }
    },
    done,
  }
}
