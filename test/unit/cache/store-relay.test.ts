/**
 * A write that fails mid-fill (ENOSPC, EDQUOT, EIO) does not fail the
 * fill's readers: the fill relays the rest from memory, paced by its
 * slowest reader, and is not committed (DESIGN §3.5; fill-relay.ts).
 */
import { readdir } from 'node:fs/promises'
import path from 'node:path'
import { Readable } from 'node:stream'
import type { Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { openTmpFile } from '../../../src/cache/entry-file.js'
import type { EntryFile } from '../../../src/cache/entry-file.js'
import { FillRelay, RELAY_MAX_HELD } from '../../../src/cache/fill-relay.js'
import type { FillOutcome } from '../../../src/cache/store.js'
import { HOUR, bodyOf, collect, collectError, fdsInto, gateAt, keyOf, makeStore, matches, producer, randomBody, request, until } from './fixtures/store-harness.js'

const KiB = 1024
const MiB = 1024 * KiB

/** An opener whose files fail every write that reaches past `limit.at` bytes, with `limit.code`. */
function failingDisk(limit: { at: number; code: string }): (file: string) => Promise<EntryFile> {
  return async (file) => {
    const real = await openTmpFile(file)
    return {
      ...real,
      write: async (data, position) => {
        if (position + data.length > limit.at) {
          throw Object.assign(new Error(`${limit.code}: write failed`), { code: limit.code })
        }
        await real.write(data, position)
      },
    }
  }
}

const tmpFiles = async (dir: string): Promise<string[]> => readdir(path.join(dir, 'tmp'))

for (const code of ['ENOSPC', 'EDQUOT', 'EIO']) {
  void t.test(`${code} mid-fill: every reader gets the whole body, nothing is committed`, async (t) => {
    const fillErrors: unknown[] = []
    const h = await makeStore(t, {
      openForWrite: failingDisk({ at: 300 * KiB, code }),
      onFillError: (err) => fillErrors.push(err),
    })
    const data = randomBody(3 * MiB)
    const key = keyOf(`relay-${code}`)
    const gate = gateAt(200 * KiB)
    const p = producer(data, { chunkMax: 32 * KiB, gate: gate.gate })
    const opened = await Promise.all([0, 1, 2, 3].map(() => h.store.open(request(key, p.produce))))
    t.same(opened.map((o) => o.how), ['miss', 'join', 'join', 'join'])
    // Two readers start reading before the failure, two after it (they read the file part first).
    const early = [matches(bodyOf(opened[0]!), data), matches(bodyOf(opened[1]!), data, 2)]
    gate.release()
    await until(() => fillErrors.length > 0)
    const late = [collect(bodyOf(opened[2]!)), matches(bodyOf(opened[3]!), data, 1)] as const

    // A request after the failure does not join the relay.
    const after = await h.store.open(request(key, producer(data).produce, { admit: false }))
    t.equal(after.how, 'bypass', 'a later request goes around the failed fill')

    t.same(await Promise.all(early), [true, true], 'the readers from before the failure got every byte')
    const [whole, same] = await Promise.all(late)
    t.ok(whole.equals(data), 'a reader that started after the failure got every byte')
    t.equal(same, true)
    await h.store.idle()
    t.equal(p.calls, 1, 'one upstream request')
    t.equal(h.store.peek(key, HOUR), undefined, 'not committed')
    t.same(await tmpFiles(h.dir), [], 'no temp file left')
    t.equal((await fdsInto(h.dir)) ?? 0, 0, 'no fd left open')
    t.equal(h.store.stats().fillsInFlight, 0)
    t.match(fillErrors[0], { code: 'ERR_CACHE_WRITE_FAILED', cause: { code } }, 'the store is told, with the cause')
    t.equal(fillErrors.length, 1, 'once')
    t.ok(h.records.some((r) => r.msg === 'cache write failed mid-fill: relaying the rest from memory, not cached'))
  })
}

void t.test('the relay is paced by the slowest reader: memory stays bounded', async (t) => {
  const h = await makeStore(t, { openForWrite: failingDisk({ at: 64 * KiB, code: 'ENOSPC' }) })
  const data = randomBody(8 * MiB)
  const key = keyOf('relay-pacing')
  const p = producer(data, { chunkMax: 16 * KiB })
  const fast = await h.store.open(request(key, p.produce))
  const slow = await h.store.open(request(key, p.produce))
  let slowRead = 0
  let maxAhead = 0
  const slowBody = (async (): Promise<Buffer> => {
    const parts: Buffer[] = []
    for await (const chunk of bodyOf(slow)) {
      if (!Buffer.isBuffer(chunk)) throw new Error('expected Buffer chunks')
      parts.push(chunk)
      slowRead += chunk.length
      maxAhead = Math.max(maxAhead, p.written - slowRead)
      await sleep(1)
    }
    return Buffer.concat(parts)
  })()
  const [fastBody, slowWhole] = await Promise.all([collect(bodyOf(fast)), slowBody])
  t.ok(fastBody.equals(data), 'the fast reader got every byte')
  t.ok(slowWhole.equals(data), 'the slow reader got every byte')
  // Upstream bytes read but not yet taken by the slow reader: the relay's
  // bound plus the stream buffers on both sides (the producer's 16 objects
  // of up to 16 KiB, the sink's and the reader's 64 KiB), never the body.
  t.ok(maxAhead < 1.25 * MiB, `the producer ran at most ${(maxAhead / KiB).toFixed(0)} KiB ahead of the slow reader`)
  const done = h.records.find((r) => r.msg === 'fill relayed to its readers: not cached')
  t.ok(done !== undefined, 'logged')
  const peak = Number(done?.['peakHeld'])
  t.ok(peak <= RELAY_MAX_HELD + 64 * KiB, `peak memory held ${peak} bytes`)
  await h.store.idle()
  t.equal(h.store.peek(key, HOUR), undefined)
})

void t.test('a relay whose readers all leave is failed and its producer aborted', async (t) => {
  const h = await makeStore(t, { openForWrite: failingDisk({ at: 64 * KiB, code: 'EIO' }) })
  const data = randomBody(16 * MiB)
  const key = keyOf('relay-abandoned')
  const p = producer(data, { chunkMax: 16 * KiB })
  const r = await h.store.open(request(key, p.produce))
  const body = bodyOf(r)
  let got = 0
  await new Promise<void>((resolve) => {
    body.on('data', (chunk: Buffer) => {
      got += chunk.length
      if (got > 512 * KiB) {
        body.destroy()
        resolve()
      }
    })
  })
  await h.store.idle()
  t.equal(p.signals[0]?.aborted, true, 'the producer was aborted')
  t.ok(p.written < 4 * MiB, `the upstream was not read to the end (${p.written} bytes)`)
  t.same(await tmpFiles(h.dir), [])
  t.equal((await fdsInto(h.dir)) ?? 0, 0)
})

void t.test('closing the store during a relay ends its readers with ERR_CACHE_FILL_FAILED', async (t) => {
  const h = await makeStore(t, { openForWrite: failingDisk({ at: 64 * KiB, code: 'ENOSPC' }) })
  const data = randomBody(4 * MiB)
  const gate = gateAt(MiB)
  const p = producer(data, { chunkMax: 16 * KiB, gate: gate.gate })
  const r = await h.store.open(request(keyOf('relay-close'), p.produce))
  const failed = collectError(bodyOf(r))
  await until(() => p.written >= 512 * KiB)
  await h.store.close()
  gate.release()
  t.match(await failed, { code: 'ERR_CACHE_FILL_FAILED' })
})

void t.test('an upstream failure during a relay still fails the readers', async (t) => {
  const h = await makeStore(t, { openForWrite: failingDisk({ at: 64 * KiB, code: 'ENOSPC' }) })
  const p = producer(randomBody(MiB), { chunkMax: 16 * KiB, failAt: 512 * KiB })
  const r = await h.store.open(request(keyOf('relay-upstream-fails'), p.produce))
  t.match(await collectError(bodyOf(r)), { code: 'ERR_CACHE_FILL_FAILED', message: /upstream reset mid-pack/ })
  await h.store.idle()
  t.same(await tmpFiles(h.dir), [])
})

void t.test('a complete answer that is not storable (deliver) is relayed whole too', async (t) => {
  const h = await makeStore(t, { openForWrite: failingDisk({ at: 10 * KiB, code: 'ENOSPC' }) })
  const data = randomBody(300 * KiB)
  const outcome: FillOutcome = { commit: false, reason: 'upstream ERR', deliver: true }
  const produce = async (sink: Writable): Promise<FillOutcome> => {
    await pipeline(Readable.from([data.subarray(0, 100 * KiB), data.subarray(100 * KiB)]), sink)
    return outcome
  }
  const r = await h.store.open(request(keyOf('relay-deliver'), produce))
  t.ok((await collect(bodyOf(r))).equals(data))
})

void t.test('FillRelay: reads across chunks, drops what all have read, holds the producer when full', (t) => {
  const relay = new FillRelay(100, 10)
  let calls = 0
  relay.push(Buffer.from('abcdef'), () => calls++)
  t.equal(calls, 1, 'room: the producer goes on')
  relay.push(Buffer.from('ghijkl'), () => calls++)
  t.equal(calls, 1, 'full (12 >= 10): held')
  t.equal(relay.end, 112)
  const buf = Buffer.alloc(8)
  t.equal(relay.read(buf, 104), 2, 'the rest of one chunk')
  t.equal(buf.subarray(0, 2).toString(), 'ef')
  t.equal(relay.read(buf, 106), 6)
  t.equal(buf.subarray(0, 6).toString(), 'ghijkl')
  relay.release(105)
  t.equal(relay.held, 12, 'the first chunk is still wanted at 105')
  t.equal(calls, 1)
  relay.release(106)
  t.equal(relay.held, 6, 'the first chunk is dropped')
  t.equal(calls, 2, 'and the producer released')
  t.equal(relay.peak, 12)
  relay.clear()
  t.equal(relay.held, 0)
  t.end()
})
