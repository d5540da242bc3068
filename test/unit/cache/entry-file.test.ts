import { createHash } from 'node:crypto'
import { appendFile, mkdir, readFile, readdir, stat, truncate, writeFile } from 'node:fs/promises'
import path from 'node:path'
import t from 'tap'
import {
  FOOTER_MAGIC,
  appendTrailer,
  encodeTrailer,
  entryPath,
  isCacheKey,
  openTmpFile,
  parseEntryMeta,
  publishFile,
  readEntryMeta,
  tmpPath,
} from '../../../src/cache/entry-file.js'
import type { EntryMeta } from '../../../src/cache/entry-file.js'

const sha256 = (data: string | Uint8Array): string => createHash('sha256').update(data).digest('hex')

function metaFor(body: Buffer, over: Partial<EntryMeta> = {}): EntryMeta {
  return {
    key: sha256('key-1'),
    kind: 'upload-pack',
    repo: 'PROJ/app.git',
    createdAt: 1_700_000_000_000,
    bodySize: body.length,
    bodySha256: sha256(body),
    info: { 'content-type': 'application/x-git-upload-pack-result' },
    ...over,
  }
}

/** Writes a committed entry the way a fill does: tmp file, body, trailer, fsync, rename. */
async function writeEntry(
  dir: string,
  body: Buffer,
  meta: EntryMeta,
): Promise<{ dest: string; size: number }> {
  const tmp = tmpPath(dir, meta.key)
  await mkdir(path.dirname(tmp), { recursive: true })
  const file = await openTmpFile(tmp)
  await file.write(body, 0)
  const size = await appendTrailer(file, meta)
  await file.close()
  const dest = entryPath(dir, meta.key)
  await publishFile(tmp, dest)
  return { dest, size }
}

void t.test('keys and paths', async (t) => {
  const key = sha256('x')
  t.ok(isCacheKey(key))
  t.notOk(isCacheKey(key.toUpperCase()), 'upper case is not a key')
  t.notOk(isCacheKey('../../etc/passwd'))
  t.notOk(isCacheKey(key.slice(1)))
  t.equal(entryPath('/c', key), `/c/entries/${key.slice(0, 2)}/${key}`)
  const a = tmpPath('/c', key)
  const b = tmpPath('/c', key)
  t.match(a, new RegExp(`^/c/tmp/${key}\\.[0-9a-f]+$`))
  t.not(a, b, 'temp names are unique')
})

void t.test('round trip: body, then JSON trailer, then length and magic', async (t) => {
  const dir = t.testdir()
  const body = Buffer.from('PACK and then some bytes\n'.repeat(1000))
  const meta = metaFor(body)
  const { dest, size } = await writeEntry(dir, body, meta)

  const raw = await readFile(dest)
  t.ok(raw.subarray(0, body.length).equals(body), 'body first')
  t.equal(raw.subarray(raw.length - 4).toString('ascii'), FOOTER_MAGIC)
  const jsonLen = raw.readUInt32BE(raw.length - 8)
  t.same(JSON.parse(raw.subarray(body.length, body.length + jsonLen).toString('utf8')), meta)
  t.equal(raw.length, body.length + jsonLen + 8)
  t.equal(size, raw.length, 'appendTrailer returns the file size')

  const read = await readEntryMeta(dest)
  t.same(read.meta, meta)
  t.equal(read.fileSize, raw.length)
  t.equal(read.ino, (await stat(dest)).ino)
  t.same(await readdir(path.join(dir, 'tmp')), [], 'the temp file was renamed away')
})

void t.test('an empty body is a valid entry', async (t) => {
  const dir = t.testdir()
  const body = Buffer.alloc(0)
  const { dest } = await writeEntry(dir, body, metaFor(body))
  t.equal((await readEntryMeta(dest)).meta.bodySize, 0)
})

void t.test('every kind reads back, lfs included', async (t) => {
  const dir = t.testdir()
  const body = Buffer.from('an LFS object')
  for (const kind of ['refs', 'upload-pack', 'lfs'] as const) {
    const meta = metaFor(body, { kind, key: sha256(`key-${kind}`) })
    const { dest } = await writeEntry(dir, body, meta)
    t.same((await readEntryMeta(dest)).meta, meta, kind)
  }
})

void t.test('corrupt files are rejected', async (t) => {
  const body = Buffer.from('0123456789'.repeat(100))
  const meta = metaFor(body)
  const good = Buffer.concat([body, encodeTrailer(meta)])

  const footer = (jsonLen: number, magic = FOOTER_MAGIC): Buffer => {
    const f = Buffer.alloc(8)
    f.writeUInt32BE(jsonLen, 0)
    f.write(magic, 4, 'ascii')
    return f
  }
  const withJson = (json: string, extraBody = body): Buffer =>
    Buffer.concat([extraBody, Buffer.from(json), footer(Buffer.byteLength(json))])

  const cases: { name: string; bytes: Buffer }[] = [
    { name: 'empty file', bytes: Buffer.alloc(0) },
    { name: 'shorter than a footer', bytes: Buffer.from('SCE1') },
    { name: 'truncated (footer cut off)', bytes: good.subarray(0, good.length - 3) },
    { name: 'truncated in the body', bytes: good.subarray(100) },
    { name: 'no footer at all', bytes: body },
    { name: 'bad magic', bytes: Buffer.concat([good.subarray(0, good.length - 4), Buffer.from('SCE2')]) },
    { name: 'length beyond the file', bytes: Buffer.concat([body, footer(body.length + 100)]) },
    { name: 'huge length', bytes: Buffer.concat([body, footer(0xffffffff)]) },
    { name: 'JSON not parseable', bytes: withJson('{"key": ') },
    { name: 'JSON not UTF-8', bytes: Buffer.concat([body, Buffer.from([0xff, 0xfe]), footer(2)]) },
    { name: 'JSON is an array', bytes: withJson('[]') },
    {
      name: 'size mismatch (extra body bytes)',
      bytes: withJson(JSON.stringify(meta), Buffer.concat([body, Buffer.from('x')])),
    },
    {
      name: 'size mismatch (missing body bytes)',
      bytes: withJson(JSON.stringify(meta), body.subarray(1)),
    },
    { name: 'bad kind', bytes: withJson(JSON.stringify({ ...meta, kind: 'push' })) },
    { name: 'bad key', bytes: withJson(JSON.stringify({ ...meta, key: '../x' })) },
    { name: 'missing repo', bytes: withJson(JSON.stringify({ ...meta, repo: undefined })) },
    { name: 'negative bodySize', bytes: withJson(JSON.stringify({ ...meta, bodySize: -1 })) },
    { name: 'fractional createdAt', bytes: withJson(JSON.stringify({ ...meta, createdAt: 1.5 })) },
    { name: 'info with a number', bytes: withJson(JSON.stringify({ ...meta, info: { a: 1 } })) },
    { name: 'bad bodySha256', bytes: withJson(JSON.stringify({ ...meta, bodySha256: 'zz' })) },
  ]
  const dir = t.testdir()
  for (const c of cases) {
    const file = path.join(dir, `case-${cases.indexOf(c)}`)
    await writeFile(file, c.bytes)
    await t.rejects(readEntryMeta(file), { code: 'ERR_CACHE_ENTRY_CORRUPT' }, c.name)
  }

  const ok = path.join(dir, 'good')
  await writeFile(ok, good)
  t.same((await readEntryMeta(ok)).meta, meta, 'the untouched file is fine')
  await appendFile(ok, 'x')
  await t.rejects(readEntryMeta(ok), { code: 'ERR_CACHE_ENTRY_CORRUPT' }, 'a byte appended')
  await writeFile(ok, good)
  await truncate(ok, good.length - 1)
  await t.rejects(readEntryMeta(ok), { code: 'ERR_CACHE_ENTRY_CORRUPT' }, 'a byte cut')

  await t.rejects(
    readEntryMeta(path.join(dir, 'missing')),
    { code: 'ENOENT' },
    'I/O errors are not corruption',
  )
  await t.rejects(readEntryMeta(dir), 'a directory is not an entry')
})

void t.test('parseEntryMeta copies only the known fields', async (t) => {
  const body = Buffer.from('x')
  const meta = metaFor(body)
  t.same(parseEntryMeta({ ...meta, extra: 1 }), meta)
  t.equal(parseEntryMeta(null), 'metadata is not an object')
})

void t.test('openTmpFile refuses to overwrite', async (t) => {
  const dir = t.testdir({ tmp: { existing: 'x' } })
  await t.rejects(openTmpFile(path.join(dir, 'tmp', 'existing')), { code: 'EEXIST' })
})
