import { execFile } from 'node:child_process'

/** Environment that isolates a git run from the machine's and user's config. */
export function isolatedGitEnv(extra: Record<string, string> = {}): Record<string, string> {
  return {
    PATH: process.env['PATH'] ?? '/usr/bin:/bin',
    HOME: process.env['HOME'] ?? '/tmp',
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_TERMINAL_PROMPT: '0',
    GIT_AUTHOR_NAME: 'scm-cache-proxy',
    GIT_AUTHOR_EMAIL: 'scm-cache-proxy@localhost',
    GIT_COMMITTER_NAME: 'scm-cache-proxy',
    GIT_COMMITTER_EMAIL: 'scm-cache-proxy@localhost',
    ...extra,
  }
}

/** Run git with an isolated environment; rejects with git's stderr on a non-zero exit. */
export function runGit(args: string[], env: Record<string, string> = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('git', args, { env: isolatedGitEnv(env), maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) {
        reject(new Error(`git ${args.join(' ')} failed: ${stderr.trim() || err.message}`, { cause: err }))
        return
      }
      resolve(stdout)
    })
  })
}
