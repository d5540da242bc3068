/** gzipCopy and acceptsGzip: the gzip copies of hot ref entries. */
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { gunzipSync, gzipSync } from 'node:zlib'
import t from 'tap'
import { acceptsGzip, GzipCopies } from '../../../src/front/gzip-copy.js'

const copies = new GzipCopies()
const gzipCopy = (body: Buffer): Buffer | undefined => copies.copyOf(body)


void t.test('acceptsGzip reads Accept-Encoding with its q-values', async (t) => {
  const cases: [string | string[] | undefined, boolean][] = [
    [undefined, false],
    ['', false],
    ['deflate, gzip, br, zstd', true], // git 2.39 through curl
    ['gzip', true],
    ['GZIP', true],
    ['*', true],
    [['deflate', 'gzip'], true],
    ['gzip;q=0', false],
    ['br, zstd', false],
    ['identity', false],
    ['gzip;q=0.1, identity;q=1', false],
  ]
  for (const [value, want] of cases) t.equal(acceptsGzip(value), want, JSON.stringify(value))
})

/** The copy of `body` once it exists, polling with a deadline; undefined if none came. */
async function settled(body: Buffer, ms = 5000): Promise<Buffer | undefined> {
  const deadline = performance.now() + ms
  for (;;) {
    const out = gzipCopy(body)
    if (out !== undefined || performance.now() > deadline) return out
    await sleep(5)
  }
}

void t.test('gzipCopy: none on the first call, then the same copy every time', async (t) => {
  const body = Buffer.from('0041' + 'a'.repeat(40) + ' refs/heads/main\n'.repeat(1000))
  t.equal(gzipCopy(body), undefined, 'the first call starts the copy')
  const copy = await settled(body)
  if (copy === undefined) throw new Error('no gzip copy within the deadline')
  t.ok(copy.length < body.length / 10)
  t.same(gunzipSync(copy), body)
  t.equal(gzipCopy(body), copy, 'made once')
})

/** `size` bytes: random, then zeros for the last `zeroShare` of them, so gzip saves about that share. */
function partlyCompressible(size: number, zeroShare: number): Buffer {
  const zeros = Math.round(size * zeroShare)
  return Buffer.concat([randomBytes(size - zeros), Buffer.alloc(zeros)])
}

void t.test('gzipCopy: a copy only when gzip saves at least 10%', async (t) => {
  const SIZE = 64 * 1024
  const cases: { name: string; body: Buffer; copy: boolean }[] = [
    { name: 'random bytes (gzip grows them)', body: randomBytes(SIZE), copy: false },
    { name: 'saves about 5%', body: partlyCompressible(SIZE, 0.05), copy: false },
    { name: 'saves about 8%', body: partlyCompressible(SIZE, 0.08), copy: false },
    { name: 'saves about 12%', body: partlyCompressible(SIZE, 0.12), copy: true },
    { name: 'saves about 15%', body: partlyCompressible(SIZE, 0.15), copy: true },
  ]
  for (const c of cases) {
    const saving = 1 - gzipSync(c.body).length / c.body.length
    t.equal(saving >= 0.1, c.copy, `${c.name}: the input saves ${(saving * 100).toFixed(1)}%`)
  }
  // Bodies without a copy are started first, in the same tick.
  for (const c of cases) t.equal(gzipCopy(c.body), undefined, `${c.name}: none on the first call`)
  for (const c of cases.filter((x) => x.copy)) {
    const copy = await settled(c.body)
    t.ok(copy !== undefined && copy.length <= c.body.length * 0.9, `${c.name}: a copy`)
  }
  // A pending copy reads as undefined too: wait until the verdict is in,
  // then it must be "not worth it".
  for (const c of cases.filter((x) => !x.copy)) {
    const deadline = performance.now() + 5000
    while (copies.state(c.body) === 'pending' && performance.now() < deadline) await sleep(5)
    t.equal(copies.state(c.body), 'identity', `${c.name}: gzip ran and does not pay`)
    t.equal(gzipCopy(c.body), undefined, `${c.name}: none on later calls`)
  }
})
