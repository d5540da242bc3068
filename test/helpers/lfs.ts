/** Git LFS in tests: the real git-lfs client, isolated like git, and deterministic content. */
import { createHash } from 'node:crypto'
import { appendFileSync } from 'node:fs'
import path from 'node:path'
import { gitHome } from './git.js'

/** The filter section `git lfs install` would write, in the isolated global config. */
const LFS_FILTER = '[filter "lfs"]\n\tclean = git-lfs clean -- %f\n\tsmudge = git-lfs smudge -- %f\n\tprocess = git-lfs filter-process\n\trequired = true\n'

/** A git HOME (under `dir/lfs`) whose global config has the git-lfs filter; a clone there smudges. */
export function lfsGitHome(dir: string): string {
  const home = gitHome(path.join(dir, 'lfs'))
  appendFileSync(path.join(home, '.gitconfig'), LFS_FILTER)
  return home
}

/** `size` incompressible, deterministic bytes (a SHA-256 chain from `seed`). */
export function lfsContent(seed: string, size: number): Buffer {
  const out = Buffer.alloc(size)
  let block = createHash('sha256').update(seed).digest()
  for (let at = 0; at < size; at += block.length) {
    block.copy(out, at)
    block = createHash('sha256').update(block).digest()
  }
  return out
}

export function sha256(content: Uint8Array): string {
  return createHash('sha256').update(content).digest('hex')
}

export const LFS_JSON = 'application/vnd.git-lfs+json'

/** POST a batch request (or any LFS JSON call) as git-lfs does. */
export async function lfsPost(url: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; headers: Headers; json: unknown }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { accept: LFS_JSON, 'content-type': `${LFS_JSON}; charset=utf-8`, ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  })
  const text = await res.text()
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    json = text
  }
  return { status: res.status, headers: res.headers, json }
}

export function basicAuth(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`
}
