/** CacheStore: hits, misses, single flight, joins and failed fills. */
import { readdir, rm, truncate } from 'node:fs/promises'
import path from 'node:path'
import type { Writable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import type { Test } from 'tap'
import { entryPath, openTmpFile } from '../../../src/cache/entry-file.js'
import type { EntryFile } from '../../../src/cache/entry-file.js'
import { CacheError } from '../../../src/errors.js'
import {
  HOUR,
  REPO,
  bodyOf,
  collect,
  collectError,
  fdsInto,
  firstChunk,
  gateAt,
  keyOf,
  makeStore,
  matches,
  producer,
  randomBody,
  request,
  sha256,
  until,
} from './fixtures/store-harness.js'
import type { Producer } from './fixtures/store-harness.js'
import type { OpenRequest } from '../../../src/cache/store.js'

const MB = 1024 * 1024

void t.test('miss, then hit: bytes, info, metadata, accounting', async (t) => {
  const { store, dir, clock } = await makeStore(t)
  const data = randomBody(300 * 1024)
  const key = keyOf('a')
  const p = producer(data, {
    chunkMax: 20_000,
    info: { 'content-type': 'application/x-git-upload-pack-result' },
  })

  const miss = await store.open(request(key, p.produce))
  t.equal(miss.how, 'miss')
  t.equal(miss.how !== 'bypass' && miss.info, null, 'no info before commit')
  t.equal(store.peek(key, HOUR), undefined, 'not visible while filling')
  t.ok((await collect(bodyOf(miss))).equals(data), 'the miss reader gets the body')

  const info = store.peek(key, HOUR)
  t.ok(info, 'committed once the miss body ended')
  t.match(info, {
    key,
    kind: 'upload-pack',
    repo: REPO,
    createdAt: clock.now,
    bodySize: data.length,
    bodySha256: sha256(data),
    info: { 'content-type': 'application/x-git-upload-pack-result' },
  })
  t.same(await readdir(path.join(dir, 'tmp')), [], 'no temp file left')
  t.same(await readdir(path.dirname(entryPath(dir, key))), [key])

  clock.now += 1000
  const hit = await store.open(request(key, p.produce))
  t.equal(hit.how, 'hit')
  t.same(hit.how === 'hit' && hit.info, { 'content-type': 'application/x-git-upload-pack-result' })
  t.ok((await collect(bodyOf(hit))).equals(data), 'the hit is the body only, without the trailer')
  t.equal(p.calls, 1)

  const s = store.stats()
  t.match(s.repos.get(REPO)?.uploadPack, {
    entries: 1,
    hits: 1,
    misses: 1,
    joins: 0,
    bypasses: 0,
    bytesServed: data.length,
    lastHit: clock.now,
  })
  t.equal(s.repos.get(REPO)?.uploadPack.size, info?.size)
  t.ok((info?.size ?? 0) > data.length, 'size on disk includes the trailer')
  t.same(s.repos.get(REPO)?.refs.entries, 0)
  t.same(s.totals.uploadPack, s.repos.get(REPO)?.uploadPack, 'totals over one repo')
  t.equal(s.fillsInFlight, 0)
  t.equal(s.evictions, 0)

  store.recordBypass(REPO, 'refs')
  t.equal(store.stats().repos.get(REPO)?.refs.bypasses, 1)
})

void t.test('an empty body is cached and served', async (t) => {
  const { store } = await makeStore(t)
  const p = producer(Buffer.alloc(0))
  const key = keyOf('empty')
  t.equal((await collect(bodyOf(await store.open(request(key, p.produce))))).length, 0)
  const hit = await store.open(request(key, p.produce))
  t.equal(hit.how, 'hit')
  t.equal((await collect(bodyOf(hit))).length, 0)
})

void t.test('200 concurrent opens of one key: one produce, byte-identical bodies', async (t) => {
  const { store, dir } = await makeStore(t)
  const data = randomBody(2 * MB)
  const p = producer(data, { chunkMax: 48 * 1024, delayMs: 2 })
  const key = keyOf('burst')
  const hows = { hit: 0, miss: 0, join: 0, bypass: 0 }

  const readers = Array.from({ length: 200 }, async (_, i) => {
    // half at once, half while the fill runs (late joiners start at offset 0)
    if (i >= 100) await sleep(Math.random() * 60)
    const r = await store.open(request(key, p.produce))
    hows[r.how]++
    // every tenth reader is a slow consumer
    return matches(bodyOf(r), data, i % 10 === 0 ? 2 : 0)
  })
  const same = await Promise.all(readers)

  t.equal(p.calls, 1, 'produce called once')
  t.equal(hows.miss, 1)
  t.equal(hows.join + hows.hit, 199)
  t.ok(hows.join >= 100, `joins: ${hows.join}`)
  t.equal(same.filter(Boolean).length, 200, 'every reader got exactly the bytes produced')
  await store.idle()
  t.same(await readdir(path.join(dir, 'tmp')), [])
  t.equal(store.stats().totals.uploadPack.entries, 1, 'one entry')
  t.equal(store.stats().totals.uploadPack.joins, hows.join)
  t.equal(await fdsInto(dir) ?? 0, 0, 'no fd left open')
})

void t.test('a late joiner starts at offset 0', async (t) => {
  const { store } = await makeStore(t)
  const data = randomBody(2 * MB)
  const g = gateAt(MB + 1)
  t.teardown(g.release)
  const p = producer(data, { gate: g.gate })
  const key = keyOf('late')

  const first = await store.open(request(key, p.produce))
  const firstBody = collect(bodyOf(first))
  await until(() => p.written > MB)
  await sleep(20) // let the first reader catch up with the writer
  const late = await store.open(request(key, p.produce))
  t.equal(late.how, 'join')
  g.release()
  const [a, b] = await Promise.all([firstBody, collect(bodyOf(late))])
  t.ok(a.equals(data))
  t.ok(b.equals(data), 'the late joiner got everything from byte 0')
})

void t.test('the first reader going away does not stop the fill', async (t) => {
  const { store } = await makeStore(t)
  const data = randomBody(MB)
  const p = producer(data, { chunkMax: 16 * 1024, delayMs: 1 })
  const key = keyOf('first-leaves')

  const first = bodyOf(await store.open(request(key, p.produce)))
  const others = await Promise.all([1, 2, 3].map(() => store.open(request(key, p.produce))))
  t.same(
    others.map((o) => o.how),
    ['join', 'join', 'join'],
  )
  const done = Promise.all(others.map((o) => collect(bodyOf(o), 1)))
  // read a little of the first body, then hang up
  await firstChunk(first)
  first.destroy()

  for (const b of await done) t.ok(b.equals(data), 'the others complete')
  await store.idle()
  t.ok(store.peek(key, HOUR), 'the entry was committed')
  const hit = await store.open(request(key, p.produce))
  t.equal(hit.how, 'hit')
  t.ok((await collect(bodyOf(hit))).equals(data))
  t.equal(p.calls, 1)
})

void t.test('a fill whose every reader left still completes and commits', async (t) => {
  const { store } = await makeStore(t)
  const data = randomBody(512 * 1024)
  const p = producer(data, { chunkMax: 16 * 1024, delayMs: 1 })
  const key = keyOf('nobody')
  bodyOf(await store.open(request(key, p.produce))).destroy()
  await store.idle()
  const hit = await store.open(request(key, p.produce))
  t.equal(hit.how, 'hit')
  t.ok((await collect(bodyOf(hit))).equals(data))
  t.equal(p.calls, 1)
})

/** Opens one miss and `joins` joins of a fill that is going to fail, and checks the failure is clean. */
async function checkFailedFill(
  t: Test,
  h: Awaited<ReturnType<typeof makeStore>>,
  key: string,
  p: ReturnType<typeof producer>,
  expect: { message: RegExp; cause?: object },
): Promise<void> {
  const { store, dir } = h
  const opened = await Promise.all([0, 1, 2, 3, 4].map(() => store.open(request(key, p.produce))))
  t.same(
    opened.map((o) => o.how),
    ['miss', 'join', 'join', 'join', 'join'],
  )
  let reopened: Promise<unknown> | undefined
  const errors = await Promise.all(
    opened.map((o, i) => {
      const body = bodyOf(o)
      if (i === 0) {
        body.once('error', () => {
          // the failed fill left the single-flight map before its readers heard of it
          const probe = producer(Buffer.from('x'), { outcome: { commit: false, reason: 'probe' } })
          reopened = store.open(request(key, probe.produce)).then((r) => {
            if (r.how !== 'bypass') r.body.stream.destroy()
            return r.how
          })
        })
      }
      return collectError(body)
    }),
  )
  for (const err of errors) {
    t.ok(err instanceof CacheError)
    t.match(err, { code: 'ERR_CACHE_FILL_FAILED', message: expect.message })
    if (expect.cause && err instanceof Error) t.match(err.cause, expect.cause)
  }
  t.equal(await reopened, 'miss', 'an open right after the failure starts a fresh fill, it does not join')
  await store.idle()
  t.same(await readdir(path.join(dir, 'tmp')), [], 'no temp file left')
  t.equal(store.peek(key, HOUR), undefined, 'nothing committed by the failed fill')
  t.equal(p.calls, 1)
}

void t.test('produce rejects mid-way: readers error, nothing committed, next open is a miss', async (t) => {
  const h = await makeStore(t)
  const data = randomBody(MB)
  const key = keyOf('reject')
  const p = producer(data, { failAt: 300 * 1024, chunkMax: 16 * 1024, delayMs: 1 })
  await checkFailedFill(t, h, key, p, { message: /upstream reset mid-pack/, cause: { code: 'ECONNRESET' } })

  const good = producer(data)
  const again = await h.store.open(request(key, good.produce))
  t.equal(again.how, 'miss')
  t.ok((await collect(bodyOf(again))).equals(data))
  const hit = await h.store.open(request(key, good.produce))
  t.equal(hit.how, 'hit')
  bodyOf(hit).destroy()
})

void t.test('produce resolves { commit: false }: same clean failure', async (t) => {
  const h = await makeStore(t)
  const p = producer(randomBody(256 * 1024), {
    outcome: { commit: false, reason: 'upstream sent an ERR packet' },
    chunkMax: 16 * 1024,
    delayMs: 1,
  })
  await checkFailedFill(t, h, keyOf('no-commit'), p, { message: /upstream sent an ERR packet/ })
})

void t.test('{ commit: false, deliver: true }: readers get the whole body, nothing is committed', async (t) => {
  const h = await makeStore(t)
  const data = randomBody(128 * 1024)
  const key = keyOf('deliver')
  const gate = gateAt(64 * 1024)
  const p = producer(data, {
    outcome: { commit: false, reason: 'upstream answered ERR', deliver: true },
    chunkMax: 8 * 1024,
    gate: gate.gate,
  })
  const first = await h.store.open(request(key, p.produce))
  const joiner = await h.store.open(request(key, p.produce))
  t.equal(first.how, 'miss')
  t.equal(joiner.how, 'join')
  gate.release()
  t.ok((await collect(bodyOf(first))).equals(data), 'the first reader got every byte')
  t.ok((await collect(bodyOf(joiner))).equals(data), 'so did the joiner')
  await h.store.idle()
  t.equal(h.store.peek(key, HOUR), undefined, 'not committed')
  const next = await h.store.open(request(key, producer(data).produce))
  t.equal(next.how, 'miss', 'the next request fills afresh')
  await collect(bodyOf(next))
})

void t.test('a write error (ENOSPC) does not fail the fill: relayed, not committed (store-relay.test.ts)', async (t) => {
  let failAfter = 200 * 1024
  const openForWrite = async (file: string): Promise<EntryFile> => {
    const real = await openTmpFile(file)
    return {
      ...real,
      write: async (data, position) => {
        if (position + data.length > failAfter) {
          throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' })
        }
        await real.write(data, position)
      },
    }
  }
  const h = await makeStore(t, { openForWrite })
  const data = randomBody(MB)
  const key = keyOf('enospc')
  const p = producer(data, { chunkMax: 16 * 1024, delayMs: 1 })
  const readers = await Promise.all([0, 1, 2].map(() => h.store.open(request(key, p.produce))))
  t.same(readers.map((r) => r.how), ['miss', 'join', 'join'])
  t.same(await Promise.all(readers.map((r) => matches(bodyOf(r), data))), [true, true, true], 'every reader got every byte')
  await h.store.idle()
  t.equal(h.store.peek(key, HOUR), undefined, 'nothing committed')

  failAfter = Infinity
  const again = await h.store.open(request(key, producer(data).produce))
  t.equal(again.how, 'miss')
  t.ok((await collect(bodyOf(again))).equals(data), 'the disk has room again: the next fill works')
})

void t.test('an unwritable cache directory fails the fill cleanly', async (t) => {
  const h = await makeStore(t)
  await rm(path.join(h.dir, 'tmp'), { recursive: true })
  const p = producer(randomBody(1024))
  const r = await h.store.open(request(keyOf('no-dir'), p.produce))
  t.equal(r.how, 'miss')
  t.match(await collectError(bodyOf(r)), { code: 'ERR_CACHE_FILL_FAILED', cause: { code: 'ENOENT' } })
  t.equal(p.calls, 0, 'produce never called without a file to write')
  await h.store.idle()
  t.equal(h.store.stats().fillsInFlight, 0)
})

void t.test('produce resolving commit without ending the sink is a failure', async (t) => {
  const { store } = await makeStore(t)
  const produce = async (sink: Writable): Promise<{ commit: true }> => {
    sink.write('half a pack')
    await sleep(1)
    return { commit: true }
  }
  const r = await store.open(request(keyOf('unended'), produce))
  t.match(await collectError(bodyOf(r)), {
    code: 'ERR_CACHE_FILL_FAILED',
    message: /without ending the sink/,
  })
})

void t.test('a produce that never ends the sink on a failing disk cannot crash the process', async (t) => {
  const openForWrite = async (file: string): Promise<EntryFile> => {
    const real = await openTmpFile(file)
    return { ...real, write: () => Promise.reject(new Error('EIO: i/o error')) }
  }
  const { store } = await makeStore(t, { openForWrite })
  const produce = async (sink: Writable): Promise<{ commit: true }> => {
    sink.write('abc')
    await sleep(10)
    return { commit: true }
  }
  const r = await store.open(request(keyOf('eio'), produce))
  t.match(await collectError(bodyOf(r)), { code: 'ERR_CACHE_FILL_FAILED', message: /without ending the sink/ })
  await store.idle()
})

void t.test('hit readers close their fd; bytesServed counts what was delivered', async (t) => {
  const { store, dir } = await makeStore(t)
  const data = randomBody(MB)
  const key = keyOf('fds')
  const p = producer(data)
  await collect(bodyOf(await store.open(request(key, p.produce))))
  await store.idle()
  const before = store.stats().totals.uploadPack.bytesServed

  const full = bodyOf(await store.open(request(key, p.produce)))
  await collect(full)
  const early = bodyOf(await store.open(request(key, p.produce)))
  await firstChunk(early)
  early.destroy()
  await new Promise((resolve) => early.once('close', resolve))

  const served = store.stats().totals.uploadPack.bytesServed - before
  t.ok(served > data.length && served < 2 * data.length, `bytesServed ${served}`)
  t.equal(await fdsInto(dir) ?? 0, 0, 'no fd left open')
})

void t.test('a key that belongs to another repository is never served across', async (t) => {
  const { store, records } = await makeStore(t)
  const key = keyOf('conflict')
  const p = producer(Buffer.from('repo one'))
  await collect(bodyOf(await store.open(request(key, p.produce))))
  const r = await store.open(request(key, p.produce, { repo: 'OTHER/repo.git' }))
  t.equal(r.how, 'bypass')
  t.ok(records.some((rec) => rec.level === 50 && /key conflict/.test(String(rec.msg))))
})

void t.test('an lfs entry (content-addressed) answers every repository, and only as lfs', async (t) => {
  const { store } = await makeStore(t)
  const key = keyOf('lfs object')
  const data = Buffer.from('one object, stored once')
  const p = producer(data)
  const lfs = { kind: 'lfs' as const }
  t.equal((await store.open(request(key, p.produce, lfs))).how, 'miss')
  await store.idle()
  const other = await store.open(request(key, p.produce, { ...lfs, repo: 'OTHER/repo.git' }))
  t.equal(other.how, 'hit', 'another repository hits the same entry (its grant is checked by the caller)')
  t.ok((await collect(bodyOf(other))).equals(data))
  t.equal(p.calls, 1)
  const asPack = await store.open(request(key, p.produce, { repo: 'OTHER/repo.git' }))
  t.equal(asPack.how, 'bypass', 'never as another kind')
  const stats = store.stats()
  t.match(stats.totals.lfs, { entries: 1, misses: 1, hits: 1 })
  t.match(stats.repos.get(REPO)?.lfs, { entries: 1 }, 'the entry counts for the repository that filled it')
})

void t.test('concurrent lfs opens from two repositories share one fill', async (t) => {
  const { store } = await makeStore(t)
  const key = keyOf('lfs burst')
  const data = randomBody(200_000)
  const p = producer(data, { chunkMax: 10_000 })
  const a = await store.open(request(key, p.produce, { kind: 'lfs' }))
  const b = await store.open(request(key, p.produce, { kind: 'lfs', repo: 'OTHER/repo.git' }))
  t.same([a.how, b.how], ['miss', 'join'])
  const [ba, bb] = await Promise.all([collect(bodyOf(a)), collect(bodyOf(b))])
  t.ok(ba.equals(data) && bb.equals(data))
  t.equal(p.calls, 1)
})

void t.test('bad keys are refused', async (t) => {
  const { store } = await makeStore(t)
  await t.rejects(store.open(request('../../etc/passwd', producer(Buffer.from('x')).produce)), {
    code: 'ERR_CACHE_BAD_KEY',
  })
  t.throws(() => store.peek('ABC', HOUR), { code: 'ERR_CACHE_BAD_KEY' })
})

void t.test('small refs entries are served from memory after their first hit, exactly, and go with invalidation', async (t) => {
  const h = await makeStore(t)
  const data = randomBody(40 * 1024)
  const key = keyOf('hot-refs')
  const req = (p: Producer): OpenRequest => ({ ...request(key, p.produce), kind: 'refs' })
  const first = await h.store.open(req(producer(data)))
  t.equal(first.how, 'miss')
  t.ok((await collect(bodyOf(first))).equals(data))
  for (let i = 0; i < 3; i++) {
    const hit = await h.store.open(req(producer(data)))
    t.equal(hit.how, 'hit')
    t.ok((await collect(bodyOf(hit))).equals(data), `hit ${i} has the exact bytes`)
  }
  // The file is gone, yet hits still come from memory: the copy is what is served.
  await rm(path.join(h.dir, 'entries'), { recursive: true })
  const fromMemory = await h.store.open(req(producer(data)))
  t.equal(fromMemory.how, 'hit')
  t.ok((await collect(bodyOf(fromMemory))).equals(data))
  const stats = h.store.stats().totals.refs
  t.equal(stats.hits, 4)
  t.equal(stats.bytesServed, 4 * data.length)
  await h.store.invalidateRepo(REPO)
  const after = await h.store.open(req(producer(data)))
  t.equal(after.how, 'miss', 'invalidation drops the memory copy with the entry')
  await collect(bodyOf(after))
})

void t.test('a small refs entry found truncated on disk at its first hit is a miss, not a failing hit', async (t) => {
  const h = await makeStore(t)
  const data = randomBody(40 * 1024)
  const key = keyOf('cut-refs')
  const req = (p: Producer): OpenRequest => ({ ...request(key, p.produce), kind: 'refs' })
  const first = await h.store.open(req(producer(data)))
  await collect(bodyOf(first))
  await truncate(entryPath(h.dir, key), 1000)
  const cut = await h.store.open(req(producer(data)))
  t.equal(cut.how, 'miss', 'the truncated entry is dropped and refilled')
  t.ok((await collect(bodyOf(cut))).equals(data), 'the refill has the exact bytes')
  const hit = await h.store.open(req(producer(data)))
  t.equal(hit.how, 'hit')
  t.ok((await collect(bodyOf(hit))).equals(data))
})
