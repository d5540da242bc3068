import { createHash } from 'node:crypto'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import t from 'tap'
import { ProxyError } from '../../../src/errors.js'
import { lfsKey, ObjectCheck } from '../../../src/service/lfs.js'

function oidOf(content: Buffer): string {
  return createHash('sha256').update(content).digest('hex')
}

/** What passes the check, chunk by chunk, and how it ended. */
async function run(chunks: Buffer[], oid: string, size: number): Promise<{ out: Buffer[]; err: string | null }> {
  const out: Buffer[] = []
  const check = new ObjectCheck(oid, size)
  check.on('data', (chunk: Buffer) => out.push(chunk))
  try {
    await pipeline(Readable.from(chunks), check)
    return { out, err: null }
  } catch (err) {
    return { out, err: err instanceof ProxyError ? err.code : String(err) }
  }
}

const CONTENT = Buffer.from('0123456789'.repeat(100))
const OID = oidOf(CONTENT)
const CHUNKS = [CONTENT.subarray(0, 300), CONTENT.subarray(300, 700), CONTENT.subarray(700)]

void t.test('ObjectCheck passes a whole, matching object, holding back only its last chunk', async (t) => {
  const ok = await run(CHUNKS, OID, CONTENT.length)
  t.equal(ok.err, null)
  t.ok(Buffer.concat(ok.out).equals(CONTENT))
  const empty = await run([], oidOf(Buffer.alloc(0)), 0)
  t.same(empty, { out: [], err: null }, 'the empty object')
})

void t.test('ObjectCheck: a wrong, short or long object never passes whole', async (t) => {
  const corrupt = Buffer.from(CONTENT)
  corrupt[999] = 0x41
  const cases: { name: string; chunks: Buffer[]; size: number }[] = [
    { name: 'last byte changed', chunks: [corrupt.subarray(0, 500), corrupt.subarray(500)], size: CONTENT.length },
    { name: 'first byte changed', chunks: [Buffer.from('X'), CONTENT.subarray(1)], size: CONTENT.length },
    { name: 'one chunk, changed', chunks: [corrupt], size: CONTENT.length },
    { name: 'short', chunks: CHUNKS.slice(0, 2), size: CONTENT.length },
    { name: 'long', chunks: [...CHUNKS, Buffer.from('x')], size: CONTENT.length },
    { name: 'size claimed smaller', chunks: CHUNKS, size: 999 },
    { name: 'nothing at all', chunks: [], size: CONTENT.length },
  ]
  for (const c of cases) {
    const r = await run(c.chunks, OID, c.size)
    t.equal(r.err, 'ERR_LFS_OBJECT_MISMATCH', `${c.name}: fails`)
    t.ok(Buffer.concat(r.out).length < CONTENT.length, `${c.name}: less than the whole object passed (${Buffer.concat(r.out).length})`)
  }
})

void t.test('lfsKey: per oid, apart from the oid itself', async (t) => {
  t.equal(lfsKey(OID), lfsKey(OID))
  t.not(lfsKey(OID), OID)
  t.not(lfsKey(OID), lfsKey('0'.repeat(64)))
  t.match(lfsKey(OID), /^[0-9a-f]{64}$/)
})
