/**
 * The on-disk format of one cache entry, and the file operations that
 * publish it atomically.
 *
 * ```
 * <dir>/entries/<key[0..2]>/<key>      one file per committed entry
 * ┌──────────────┬──────────────────────┬───────────────┬────────┐
 * │ body bytes   │ metadata, UTF-8 JSON │ JSON length   │ 'SCE1' │
 * │ (bodySize)   │ (EntryMeta)          │ u32 BE        │ magic  │
 * └──────────────┴──────────────────────┴───────────────┴────────┘
 *                                       └──── footer, 8 bytes ───┘
 * <dir>/tmp/<key>.<random>             a fill in progress
 * ```
 *
 * A fill writes the body into a file under `tmp/`, appends the trailer,
 * fsyncs the file, renames it into `entries/` and fsyncs the directory. The
 * rename is atomic, so after a crash an entry path holds either nothing or
 * a whole file; whatever is left in `tmp/` is swept at start-up. The
 * trailer sits at the end because the body streams and its size and hash
 * are known only once it is complete; a reader of a committed entry stops
 * at `bodySize` and never sees the trailer.
 *
 * `readEntryMeta` trusts nothing: the footer, the JSON, every field and the
 * file size (= bodySize + JSON + 8) are checked, and anything else is
 * `ERR_CACHE_ENTRY_CORRUPT`. The body hash is recorded but not checked
 * here (that would read the whole body at every start-up).
 */
import { randomBytes } from 'node:crypto'
import { open, mkdir, rename, unlink } from 'node:fs/promises'
import path from 'node:path'
import { CacheError } from '../errors.js'
import type { Log } from '../logger.js'

/** `lfs`: a Git LFS object, keyed by its oid alone and readable from every repository (DESIGN §2). */
export type EntryKind = 'refs' | 'upload-pack' | 'lfs'

/** The metadata trailer of an entry file. */
export interface EntryMeta {
  key: string
  kind: EntryKind
  repo: string
  /** epoch ms */
  createdAt: number
  bodySize: number
  /** hex SHA-256 of the body */
  bodySha256: string
  info: Record<string, string>
}

export const FOOTER_MAGIC = 'SCE1'
export const FOOTER_SIZE = 8
/** A trailer larger than this is corrupt (the real ones are a few hundred bytes). */
export const MAX_META_SIZE = 1024 * 1024

const KEY_RE = /^[0-9a-f]{64}$/

/** A cache key is a lower-case hex SHA-256: it is also a file name, so nothing else is accepted. */
export function isCacheKey(key: string): boolean {
  return KEY_RE.test(key)
}

/** Throws ERR_CACHE_BAD_KEY unless `key` passes `isCacheKey`. */
export function checkKey(key: string): void {
  if (!isCacheKey(key)) {
    throw new CacheError('ERR_CACHE_BAD_KEY', 'a cache key must be a lower-case hex SHA-256')
  }
}

export function entriesDir(dir: string): string {
  return path.join(dir, 'entries')
}

export function tmpDir(dir: string): string {
  return path.join(dir, 'tmp')
}

/** `<dir>/entries/<key[0..2]>/<key>`. The key must pass `isCacheKey`. */
export function entryPath(dir: string, key: string): string {
  return path.join(entriesDir(dir), key.slice(0, 2), key)
}

/** A fresh, unique `<dir>/tmp/<key>.<random>`. */
export function tmpPath(dir: string, key: string): string {
  return path.join(tmpDir(dir), `${key}.${randomBytes(6).toString('hex')}`)
}

/**
 * The file a fill writes and its readers tail: positional reads and writes
 * only, so one handle serves the writer and every reader at once. The store
 * takes an opener for it so tests can inject I/O faults.
 */
export interface EntryFile {
  /** Writes all of `data` at `position`. */
  write(data: Uint8Array, position: number): Promise<void>
  /** Reads up to `buf.length` bytes at `position`; 0 at end of file. */
  read(buf: Uint8Array, position: number): Promise<number>
  sync(): Promise<void>
  /** Waits for pending operations on the handle, then closes it. */
  close(): Promise<void>
}

/** Creates `file` exclusively (read-write, mode 0600) for a fill. */
export async function openTmpFile(file: string): Promise<EntryFile> {
  const fh = await open(file, 'wx+', 0o600)
  return {
    async write(data, position) {
      let done = 0
      while (done < data.length) {
        const { bytesWritten } = await fh.write(data, done, data.length - done, position + done)
        done += bytesWritten
      }
    },
    async read(buf, position) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, position)
      return bytesRead
    },
    sync: () => fh.sync(),
    close: () => fh.close(),
  }
}

/** JSON trailer plus footer, to be written right after the body. */
export function encodeTrailer(meta: EntryMeta): Buffer {
  const json = Buffer.from(JSON.stringify(meta), 'utf8')
  const footer = Buffer.alloc(FOOTER_SIZE)
  footer.writeUInt32BE(json.length, 0)
  footer.write(FOOTER_MAGIC, 4, 'ascii')
  return Buffer.concat([json, footer])
}

/**
 * Appends the trailer after `meta.bodySize` body bytes and fsyncs the file.
 * Returns the final file size.
 */
export async function appendTrailer(file: EntryFile, meta: EntryMeta): Promise<number> {
  const trailer = encodeTrailer(meta)
  await file.write(trailer, meta.bodySize)
  await file.sync()
  return meta.bodySize + trailer.length
}

/** fsync a directory, so that a rename or unlink in it is durable. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r')
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
}

/**
 * Atomically moves a complete, fsynced file from `tmp/` to its entry path
 * and makes the rename durable (the shard directory is created, and its
 * parent fsynced, when missing).
 */
export async function publishFile(from: string, to: string): Promise<void> {
  const shard = path.dirname(to)
  const created = await mkdir(shard, { recursive: true })
  if (created !== undefined) await fsyncDir(path.dirname(shard))
  await rename(from, to)
  await fsyncDir(shard)
}

/** The `code` of a Node system error (or a CacheError), if any. */
export function errorCode(err: unknown): unknown {
  return err instanceof Error && 'code' in err ? err.code : undefined
}

/** Unlinks `file`; a missing file is fine, any other failure is logged, never thrown. */
export async function unlinkQuiet(file: string, log: Log): Promise<void> {
  try {
    await unlink(file)
  } catch (err) {
    if (errorCode(err) !== 'ENOENT') log.warn({ file, err }, 'removing a cache file failed')
  }
}

function corrupt(file: string, why: string): CacheError {
  return new CacheError('ERR_CACHE_ENTRY_CORRUPT', `corrupt cache entry ${file}: ${why}`)
}

function isStringRecord(v: unknown): v is Record<string, string> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false
  return Object.values(v).every((x) => typeof x === 'string')
}

function isNonNegativeInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
}

/** Checks parsed trailer JSON field by field; returns why it is not an EntryMeta, or the meta. */
export function parseEntryMeta(v: unknown): EntryMeta | string {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return 'metadata is not an object'
  const o: Partial<Record<keyof EntryMeta, unknown>> = v
  const { key, kind, repo, createdAt, bodySize, bodySha256, info } = o
  if (typeof key !== 'string' || !isCacheKey(key)) return 'bad key'
  if (kind !== 'refs' && kind !== 'upload-pack' && kind !== 'lfs') return 'bad kind'
  if (typeof repo !== 'string' || repo === '') return 'bad repo'
  if (!isNonNegativeInt(createdAt)) return 'bad createdAt'
  if (!isNonNegativeInt(bodySize)) return 'bad bodySize'
  if (typeof bodySha256 !== 'string' || !isCacheKey(bodySha256)) return 'bad bodySha256'
  if (!isStringRecord(info)) return 'bad info'
  return { key, kind, repo, createdAt, bodySize, bodySha256, info: { ...info } }
}

export interface EntryFileStat {
  meta: EntryMeta
  /** bytes on disk: body + trailer */
  fileSize: number
  /** inode number: tells this file from a later one at the same path */
  ino: number
}

/**
 * Reads and validates the trailer of a committed entry file. Throws
 * `ERR_CACHE_ENTRY_CORRUPT` for anything that is not a whole entry; I/O
 * errors (ENOENT included) are thrown as they are.
 */
export async function readEntryMeta(file: string): Promise<EntryFileStat> {
  const fh = await open(file, 'r')
  try {
    const st = await fh.stat()
    if (!st.isFile()) throw corrupt(file, 'not a regular file')
    const fileSize = st.size
    if (fileSize < FOOTER_SIZE) throw corrupt(file, `${fileSize} bytes is too short for a footer`)
    const footer = Buffer.alloc(FOOTER_SIZE)
    const { bytesRead: footerRead } = await fh.read(footer, 0, FOOTER_SIZE, fileSize - FOOTER_SIZE)
    if (footerRead !== FOOTER_SIZE) throw corrupt(file, 'short read of the footer')
    if (footer.toString('latin1', 4, 8) !== FOOTER_MAGIC) throw corrupt(file, 'bad footer magic')
    const jsonSize = footer.readUInt32BE(0)
    if (jsonSize > MAX_META_SIZE) throw corrupt(file, `metadata size ${jsonSize} is too large`)
    if (jsonSize > fileSize - FOOTER_SIZE) throw corrupt(file, 'metadata size exceeds the file')
    const json = Buffer.alloc(jsonSize)
    const jsonAt = fileSize - FOOTER_SIZE - jsonSize
    const { bytesRead: jsonRead } = await fh.read(json, 0, jsonSize, jsonAt)
    if (jsonRead !== jsonSize) throw corrupt(file, 'short read of the metadata')
    let parsed: unknown
    try {
      parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(json))
    } catch {
      throw corrupt(file, 'metadata is not UTF-8 JSON')
    }
    const meta = parseEntryMeta(parsed)
    if (typeof meta === 'string') throw corrupt(file, meta)
    if (meta.bodySize !== jsonAt) {
      throw corrupt(
        file,
        `file size ${fileSize} != body ${meta.bodySize} + metadata ${jsonSize} + ${FOOTER_SIZE}`,
      )
    }
    return { meta, fileSize, ino: st.ino }
  } finally {
    await fh.close()
  }
}
