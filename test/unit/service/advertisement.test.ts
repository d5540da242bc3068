/**
 * Advertisements as clients see them (src/service/advertisement.ts), on real
 * git 2.39.5 transcripts (test/fixtures/protocol): the HTTP filter finds the
 * version in however the upstream's body is chunked, bounds a v2 answer,
 * turns upstream faults into UpstreamErrors and releases the upstream body
 * when the client leaves; the SSH helpers read the version and ref lines of
 * malformed input without throwing; advertisement keys are remembered.
 */
import { PassThrough, Readable } from 'node:stream'
import { buffer } from 'node:stream/consumers'
import t from 'tap'
import { advertisementKey, sshAdvertisementKey } from '../../../src/cache/policy.js'
import { UpstreamError } from '../../../src/errors.js'
import {
  AdvertisementKeys,
  advertisedVersion,
  filterAdvertisement,
  filterSshAdvertisement,
  refLines,
} from '../../../src/service/advertisement.js'
import { until } from '../../helpers/wait.js'
import { chunks, fixture, FLUSH, pkt } from '../protocol/fixtures/transcripts.js'

const HTTP_V0 = fixture('http-v0-clone/01-info-refs.res.bin')
const HTTP_V2 = fixture('http-v2-clone/01-info-refs.res.bin')
const SSH_V0 = fixture('ssh-v0-clone/out.bin')
const SSH_V1 = fixture('ssh-v1-clone/out.bin')
const SSH_V2 = fixture('ssh-v2-clone/out.bin')

/** An SSH transcript's advertisement: up to its first flush. */
const advertisementOf = (b: Buffer): Buffer => b.subarray(0, b.indexOf('0000') + 4)

const filtered = async (parts: Buffer[]): Promise<Buffer> => buffer(await filterAdvertisement(Readable.from(parts, { objectMode: false })))

void t.test('HTTP: the same answer however the upstream body is chunked', async (t) => {
  for (const [name, body] of [
    ['v0', HTTP_V0],
    ['v2', HTTP_V2],
  ] as const) {
    const whole = await filtered([body])
    t.ok(whole.length > 0, `${name}: an answer`)
    for (const size of [1, 2, 13, 14, 15, 100]) {
      t.ok((await filtered(chunks(body, size))).equals(whole), `${name} in ${size}-byte chunks`)
    }
    // A first chunk shorter than the v2 start, then the rest at once.
    t.ok((await filtered([body.subarray(0, 5), body.subarray(5)])).equals(whole), `${name}: a 5-byte first chunk`)
  }
})

void t.test('HTTP: v2 is filtered whole, v0 as a stream, each by its own rules', async (t) => {
  const v2 = (await filtered([HTTP_V2])).toString('latin1')
  t.match(v2, /^000eversion 2\n/, 'v2 stays v2')
  t.match(v2, /ls-refs/, 'its commands stay')
  const v0 = (await filtered([HTTP_V0])).toString('latin1')
  t.match(v0, /^001e# service=git-upload-pack\n0000/, 'v0 keeps its service line')
  t.equal(v0.split('\n').length, HTTP_V0.toString('latin1').split('\n').length, 'and every ref line')
})

void t.test('HTTP: bodies shorter than the v2 start go to the v0 filter', async (t) => {
  const cases: { name: string; body: Buffer[]; want: string }[] = [
    { name: 'empty', body: [], want: '' },
    { name: 'a flush only', body: [FLUSH], want: '0000' },
    { name: 'a flush in two chunks', body: [Buffer.from('00'), Buffer.from('00')], want: '0000' },
    { name: 'the v2 start cut short', body: [Buffer.from('000eversion')], want: 'error: advertisement ended inside a pkt-line at offset 0' },
  ]
  for (const c of cases) {
    const out = await filterAdvertisement(Readable.from(c.body, { objectMode: false }))
    const got = await buffer(out).then(
      (b) => b.toString('latin1'),
      (err: unknown) => `error: ${err instanceof Error ? err.message : String(err)}`,
    )
    t.equal(got, c.want, c.name)
  }
})

void t.test('HTTP: a v2 answer over 1 MiB is not an advertisement', async (t) => {
  const big = Buffer.concat([pkt('version 2\n'), ...Array.from({ length: 1100 }, () => pkt(`${'x'.repeat(990)}\n`)), FLUSH])
  const body = Readable.from(chunks(big, 64 * 1024), { objectMode: false })
  const err = await filterAdvertisement(body).then(
    () => null,
    (e: unknown) => e,
  )
  t.ok(err instanceof UpstreamError, 'an UpstreamError')
  t.match(err, { code: 'ERR_UPSTREAM_BAD_ANSWER', message: 'upstream v2 advertisement too large' })
  t.ok(body.destroyed, 'the upstream body is released')
})

void t.test('HTTP: the upstream failing while the head is read is ERR_UPSTREAM_BROKEN', async (t) => {
  const cases: { name: string; before: Buffer }[] = [
    { name: 'before any byte', before: Buffer.alloc(0) },
    { name: 'within the first 14 bytes', before: HTTP_V2.subarray(0, 6) },
    { name: 'within a v2 answer', before: HTTP_V2.subarray(0, 40) },
  ]
  for (const c of cases) {
    const body = new PassThrough()
    if (c.before.length > 0) body.write(c.before)
    setImmediate(() => body.destroy(new Error('socket reset')))
    const err = await filterAdvertisement(body).then(
      () => null,
      (e: unknown) => e,
    )
    t.ok(err instanceof UpstreamError, `${c.name}: an UpstreamError`)
    t.match(err, { code: 'ERR_UPSTREAM_BROKEN', cause: { message: 'socket reset' } }, c.name)
  }
})

void t.test('HTTP: a v0 body failing later fails the returned stream', async (t) => {
  const body = new PassThrough()
  body.write(HTTP_V0.subarray(0, 200))
  const out = await filterAdvertisement(body)
  setImmediate(() => body.destroy(new Error('socket reset')))
  await t.rejects(buffer(out), /socket reset/)
})

void t.test('HTTP: a client that leaves early releases the upstream body', async (t) => {
  const body = new PassThrough()
  body.write(HTTP_V0.subarray(0, 300))
  const out = await filterAdvertisement(body)
  out.once('data', () => {
    out.destroy()
  })
  // The upstream sends nothing more: the release cannot wait for its next chunk.
  await until(() => body.destroyed, 'the upstream body released', 3000)
  t.ok(body.destroyed, 'the upstream body is destroyed')
})

void t.test('SSH: advertisedVersion', async (t) => {
  const cases: { name: string; bytes: Buffer; want: 0 | 1 | 2 }[] = [
    { name: 'a real v0 advertisement', bytes: SSH_V0, want: 0 },
    { name: 'a real v1 advertisement', bytes: SSH_V1, want: 1 },
    { name: 'a real v2 advertisement', bytes: SSH_V2, want: 2 },
    { name: 'empty', bytes: Buffer.alloc(0), want: 0 },
    { name: 'a flush only', bytes: FLUSH, want: 0 },
    { name: 'a cut length', bytes: Buffer.from('00'), want: 0 },
    { name: 'a bad length', bytes: Buffer.from('zzzzversion 2\n'), want: 0 },
    { name: 'a length too short to be a packet', bytes: Buffer.from('0002'), want: 0 },
    { name: 'version 3', bytes: pkt('version 3\n'), want: 0 },
    { name: 'version 2 without its newline', bytes: pkt('version 2'), want: 2 },
    { name: 'version 2 later, not first', bytes: Buffer.concat([pkt('x\n'), pkt('version 2\n')]), want: 0 },
  ]
  for (const c of cases) t.equal(advertisedVersion(c.bytes), c.want, c.name)
})

void t.test('SSH: refLines', async (t) => {
  const v0 = refLines(advertisementOf(SSH_V0))
  t.ok(v0.length > 0, 'a real v0 advertisement has ref lines')
  for (const line of v0.split('\n')) t.match(line, /^[0-9a-f]{40} \S+$/, `"${line.slice(0, 60)}": an oid and a ref, no capabilities`)
  t.equal(refLines(advertisementOf(SSH_V1)), v0, 'v1: the same lines, its version line left out')
  const cases: { name: string; bytes: Buffer; want: string }[] = [
    { name: 'v2: none', bytes: SSH_V2, want: '' },
    { name: 'empty', bytes: Buffer.alloc(0), want: '' },
    { name: 'a bad length', bytes: Buffer.from('zzzz'), want: '' },
    { name: 'cut in a packet', bytes: SSH_V0.subarray(0, 30), want: '' },
    { name: 'a flush and a delimiter only', bytes: Buffer.from('00000001'), want: '' },
  ]
  for (const c of cases) t.equal(refLines(c.bytes), c.want, c.name)
})

void t.test('SSH: filterSshAdvertisement keeps each version', async (t) => {
  const end = advertisementOf
  for (const [name, bytes, want] of [
    ['v0', end(SSH_V0), 0],
    ['v1', end(SSH_V1), 1],
    ['v2', end(SSH_V2), 2],
  ] as const) {
    const out = await filterSshAdvertisement(bytes)
    t.equal(advertisedVersion(out), want, `${name}: still ${name}`)
    t.equal(refLines(out), refLines(bytes), `${name}: the same refs`)
  }
})

void t.test('AdvertisementKeys: the policy keys, remembered, bounded', async (t) => {
  const keys = new AdvertisementKeys(3)
  const cases: { repo: string; version: 0 | 1 | 2 }[] = [
    { repo: 'team/app.git', version: 0 },
    { repo: 'team/app.git', version: 2 },
    { repo: 'other.git', version: 1 },
    { repo: 'x/y.git', version: 2 },
    { repo: 'team/app.git', version: 0 },
  ]
  for (let round = 0; round < 2; round++) {
    for (const c of cases) {
      t.equal(keys.http(c.repo, c.version), advertisementKey(c.repo, c.version), `http ${c.repo} v${c.version}, round ${round}`)
      t.equal(keys.ssh(c.repo, c.version), sshAdvertisementKey(c.repo, c.version), `ssh ${c.repo} v${c.version}, round ${round}`)
    }
  }
  t.not(keys.http('a.git', 0), keys.ssh('a.git', 0), 'HTTP and SSH keys differ')
  t.not(keys.http('a.git', 0), keys.http('a.git', 2), 'versions differ')
  const fresh = new AdvertisementKeys()
  t.equal(fresh.http('a.git', 1), advertisementKey('a.git', 1), 'default bound')
})
