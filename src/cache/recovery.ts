/**
 * Start-up recovery: the cache directory after whatever happened to the
 * last process (a crash, a kill, a full disk) is made whole again before
 * anything is served from it.
 *
 * - The directories are created when missing.
 * - Everything under `tmp/` is deleted: fills that never committed.
 * - The index is rebuilt from the trailers of the files under `entries/`
 *   (`readEntryMeta` trusts nothing). A file that is not a whole entry of
 *   its own key, a name that is not a key in its shard, or a stray shard is
 *   deleted and logged. Entries larger than the cache's max size go too.
 * - Entries are inserted oldest first, so the newest are the most recently
 *   used and a smaller max size than last time evicts the oldest.
 *
 * Commits are atomic renames (entry-file.ts), so after a crash an entry
 * path holds either nothing or a whole file: nothing is ever repaired,
 * only kept or deleted.
 */
import { mkdir, readdir, rm } from 'node:fs/promises'
import path from 'node:path'
import type { Log } from '../logger.js'
import { entriesDir, errorCode, isCacheKey, readEntryMeta, tmpDir } from './entry-file.js'
import { indexRecord, type EntryIndex, type IndexRecord } from './entry-index.js'

const SHARD_RE = /^[0-9a-f]{2}$/
/** Entry files whose trailers are read at once. */
const INIT_CONCURRENCY = 16

/** Sweeps `<dir>/tmp`, then fills `index` from `<dir>/entries`, and logs what it found and removed. */
export async function recoverIndex(dir: string, index: EntryIndex, log: Log): Promise<void> {
  const started = performance.now()
  const entries = entriesDir(dir)
  const tmp = tmpDir(dir)
  await mkdir(entries, { recursive: true })
  await mkdir(tmp, { recursive: true })

  let removedTmp = 0
  for (const name of await readdir(tmp)) {
    await rm(path.join(tmp, name), { recursive: true, force: true })
    removedTmp++
  }

  let removedCorrupt = 0
  const removeJunk = async (file: string, why: string, err?: unknown): Promise<void> => {
    log.warn({ file, why, err }, 'removing a corrupt cache file')
    removedCorrupt++
    await rm(file, { recursive: true, force: true })
  }

  const candidates: { key: string; file: string }[] = []
  for (const shard of await readdir(entries, { withFileTypes: true })) {
    const shardPath = path.join(entries, shard.name)
    if (!shard.isDirectory() || !SHARD_RE.test(shard.name)) {
      await removeJunk(shardPath, 'not an entry shard directory')
      continue
    }
    for (const name of await readdir(shardPath)) {
      const file = path.join(shardPath, name)
      if (!isCacheKey(name) || !name.startsWith(shard.name)) {
        await removeJunk(file, 'not an entry file name')
        continue
      }
      candidates.push({ key: name, file })
    }
  }

  const found: IndexRecord[] = []
  let next = 0
  const worker = async (): Promise<void> => {
    for (let c = candidates[next++]; c !== undefined; c = candidates[next++]) {
      try {
        const { meta, fileSize, ino } = await readEntryMeta(c.file)
        if (meta.key !== c.key) {
          await removeJunk(c.file, `metadata is for key ${meta.key}`)
          continue
        }
        found.push(indexRecord(meta, c.file, fileSize, ino))
      } catch (err) {
        if (errorCode(err) === 'ENOENT') continue
        const why = errorCode(err) === 'ERR_CACHE_ENTRY_CORRUPT' ? 'corrupt' : 'unreadable'
        await removeJunk(c.file, why, err)
      }
    }
  }
  await Promise.all(Array.from({ length: INIT_CONCURRENCY }, worker))

  // Oldest first, so that the newest entries are the most recently used.
  found.sort((a, b) => a.meta.createdAt - b.meta.createdAt)
  let tooLarge = 0
  for (const rec of found) {
    if (!index.fits(rec.size)) {
      tooLarge++
      await rm(rec.path, { force: true })
      continue
    }
    index.insert(rec)
  }
  log.info(
    {
      entries: index.count,
      bytes: index.bytes,
      removedTmp,
      removedCorrupt,
      removedTooLarge: tooLarge,
      evictions: index.evictions,
      ms: Math.round(performance.now() - started),
    },
    'cache index rebuilt',
  )
}
