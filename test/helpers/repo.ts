/** Deterministic bare repositories for the test upstream. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { gitOk } from './git.js'

export interface RepoSpec {
  /** Commits on main (each adds a file). Default 3. */
  commits?: number
  /** Extra branches, each with one commit on top of main. */
  branches?: string[]
  /** Annotated tags on main's tip. */
  tags?: string[]
  /** Bytes of pseudo-random content per file (default small). */
  fileSize?: number
}

/** Create `<root>/<name>` (a bare repository) and return its path. */
export async function createBareRepo(home: string, root: string, name: string, spec: RepoSpec = {}): Promise<string> {
  const work = mkdtempSync(path.join(root, '.work-'))
  try {
    await gitOk(home, ['init', '-q', '-b', 'main', work])
    const commits = spec.commits ?? 3
    for (let i = 0; i < commits; i++) {
      await commitFile(home, work, `file-${i}.txt`, content(i, spec.fileSize ?? 200), `commit ${i}`, i)
    }
    for (const [j, branch] of (spec.branches ?? []).entries()) {
      await gitOk(home, ['-C', work, 'checkout', '-q', '-b', branch, 'main'])
      await commitFile(home, work, `${branch.replace(/\W/g, '_')}.txt`, content(1000 + j, 300), `on ${branch}`, 100 + j)
      await gitOk(home, ['-C', work, 'checkout', '-q', 'main'])
    }
    for (const tag of spec.tags ?? []) {
      await gitOk(home, ['-C', work, 'tag', '-a', tag, '-m', `release ${tag}`])
    }
    const target = path.join(root, name)
    await gitOk(home, ['clone', '-q', '--bare', work, target])
    return target
  } finally {
    rmSync(work, { recursive: true, force: true })
  }
}

/** Add a commit to a bare repository (as a push that bypasses the proxy would). */
export async function addCommitDirect(home: string, bare: string, branch: string, file: string, n: number): Promise<string> {
  const work = mkdtempSync(path.join(path.dirname(bare), '.work-'))
  try {
    await gitOk(home, ['clone', '-q', '-b', branch, bare, work])
    await commitFile(home, work, file, content(5000 + n, 100), `direct ${file}`, 5000 + n)
    await gitOk(home, ['-C', work, 'push', '-q', 'origin', branch])
    return (await gitOk(home, ['-C', work, 'rev-parse', 'HEAD'])).trim()
  } finally {
    rmSync(work, { recursive: true, force: true })
  }
}

export async function commitFile(home: string, work: string, file: string, text: string, message: string, n: number): Promise<void> {
  writeFileSync(path.join(work, file), text)
  await gitOk(home, ['-C', work, 'add', file])
  const date = `${1700000000 + n * 60} +0000`
  await gitOk(home, ['-C', work, 'commit', '-q', '-m', message], {
    env: { GIT_AUTHOR_DATE: date, GIT_COMMITTER_DATE: date },
  })
}

/** Deterministic text of about `size` bytes. */
export function content(seed: number, size: number): string {
  let x = seed * 2654435761 + 1
  const parts: string[] = []
  let len = 0
  while (len < size) {
    x = (x * 1103515245 + 12345) % 2147483648
    const word = x.toString(36)
    parts.push(word)
    len += word.length + 1
  }
  return parts.join(' ') + '\n'
}
