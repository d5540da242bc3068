/** gzipCopy and acceptsGzip: the gzip copies of hot ref entries. */
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { gunzipSync } from 'node:zlib'
import t from 'tap'
import { acceptsGzip, gzipCopy } from '../../../src/front/gzip-copy.js'

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

async function settled(body: Buffer): Promise<Buffer | undefined> {
  for (let i = 0; i < 200; i++) {
    const out = gzipCopy(body)
    if (out !== undefined) return out
    await sleep(5)
  }
  return undefined
}

void t.test('gzipCopy: none on the first call, then the same copy every time', async (t) => {
  const body = Buffer.from('0041' + 'a'.repeat(40) + ' refs/heads/main\n'.repeat(1000))
  t.equal(gzipCopy(body), undefined, 'the first call starts the copy')
  const copy = await settled(body)
  t.ok(copy !== undefined && copy.length < body.length / 10)
  t.same(gunzipSync(copy!), body)
  t.equal(gzipCopy(body), copy, 'made once')
})

void t.test('gzipCopy: a body gzip does not shrink is sent as it is', async (t) => {
  const body = randomBytes(64 * 1024)
  t.equal(gzipCopy(body), undefined)
  await sleep(100)
  t.equal(gzipCopy(body), undefined)
})
