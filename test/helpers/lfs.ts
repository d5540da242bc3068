/** Git LFS in tests: the real git-lfs client, isolated like git, and deterministic content. */
import { createHash } from 'node:crypto'
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { lfsOid, lfsPointer, storeLfsObject } from '../../src/upstream/embedded-lfs.js'
import { gitHome, gitOk } from './git.js'

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

export interface LfsFile {
  name: string
  content: Buffer
}

/**
 * `<root>/<name>`, a bare repository with one commit holding `files` as
 * Git LFS pointers (and `.gitattributes`), their objects in the
 * repository's LFS store: what a git-lfs push leaves upstream, made with
 * plain git. `home` must be a git HOME without the LFS filter.
 */
export async function createLfsRepo(home: string, root: string, name: string, files: LfsFile[]): Promise<string> {
  const work = mkdtempSync(path.join(root, '.work-'))
  try {
    await gitOk(home, ['init', '-q', '-b', 'main', work])
    writeFileSync(path.join(work, '.gitattributes'), '*.bin filter=lfs diff=lfs merge=lfs -text\n')
    writeFileSync(path.join(work, 'README.md'), `# ${name}\n`)
    for (const f of files) {
      mkdirSync(path.dirname(path.join(work, f.name)), { recursive: true })
      writeFileSync(path.join(work, f.name), lfsPointer(lfsOid(f.content), f.content.length))
    }
    await gitOk(home, ['-C', work, 'add', '.'])
    await gitOk(home, ['-C', work, 'commit', '-q', '-m', `${files.length} LFS files`])
    const target = path.join(root, name)
    await gitOk(home, ['clone', '-q', '--bare', work, target])
    for (const f of files) await storeLfsObject(target, f.content)
    return target
  } finally {
    rmSync(work, { recursive: true, force: true })
  }
}
