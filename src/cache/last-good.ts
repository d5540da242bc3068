/**
 * The last good ref advertisement of each repository and protocol, kept on
 * disk for outage mode (DESIGN §3.10), even with refs caching off: v0/v1
 * `info/refs`, the v2 capability advertisement, and v2 `ls-refs` answers
 * per argument set. Keyed like the ref cache (the caller gives the key).
 *
 * ```
 * <cache.dir>/last-good/<key>        one small file each, replaced atomically
 * <cache.dir>/last-good/<key>.<rnd>  a write in progress (swept at start-up)
 * ```
 *
 * The file holds the repository path on its first line, then the body, so a
 * key can never answer for another repository. Failures are logged, never
 * thrown: the outage copy is best effort and must never break a request.
 */
import { randomBytes } from 'node:crypto'
import { mkdir, readdir, readFile, rename, unlink, writeFile } from 'node:fs/promises'
import path from 'node:path'
import type { Log } from '../logger.js'

/** Largest advertisement kept (a repository with ~100,000 refs). */
export const LAST_GOOD_MAX = 16 * 1024 * 1024

const KEY_RE = /^[0-9a-f]{64}$/

export class LastGood {
  readonly #dir: string
  readonly #log: Log
  /** Saves under way: `close()` waits for them, so nothing writes under cache.dir after it. */
  readonly #pending = new Set<Promise<void>>()
  #closed = false

  constructor(cacheDir: string, log: Log) {
    this.#dir = path.join(cacheDir, 'last-good')
    this.#log = log
  }

  /** Creates the directory and removes writes a crash interrupted. */
  async init(): Promise<void> {
    await mkdir(this.#dir, { recursive: true })
    for (const name of await readdir(this.#dir)) {
      if (name.includes('.')) await unlink(path.join(this.#dir, name)).catch(() => undefined)
    }
  }

  /** Replaces the copy for `key` (write to a temp file, then rename). Never rejects. */
  save(repo: string, key: string, body: Buffer): Promise<void> {
    if (this.#closed || !KEY_RE.test(key) || body.length > LAST_GOOD_MAX) return Promise.resolve()
    const done = this.#write(repo, key, body).finally(() => this.#pending.delete(done))
    this.#pending.add(done)
    return done
  }

  /** No more saves; resolves once those under way have ended. */
  async close(): Promise<void> {
    this.#closed = true
    await Promise.all([...this.#pending])
  }

  async #write(repo: string, key: string, body: Buffer): Promise<void> {
    const file = path.join(this.#dir, key)
    const tmp = `${file}.${randomBytes(6).toString('hex')}`
    try {
      await writeFile(tmp, Buffer.concat([Buffer.from(`${repo}\n`, 'utf8'), body]), { mode: 0o600 })
      await rename(tmp, file)
    } catch (err) {
      this.#log.warn({ repo, err }, 'keeping the last good advertisement failed')
      await unlink(tmp).catch(() => undefined)
    }
  }

  /** The copy for `key` of `repo`, or null. */
  async load(repo: string, key: string): Promise<Buffer | null> {
    if (!KEY_RE.test(key)) return null
    let data: Buffer
    try {
      data = await readFile(path.join(this.#dir, key))
    } catch {
      return null
    }
    const nl = data.indexOf(0x0a)
    if (nl < 0 || data.subarray(0, nl).toString('utf8') !== repo) return null
    return data.subarray(nl + 1)
  }
}
