/** CacheStore: start-up after a crash, TTLs, invalidation, eviction, admission, close. */
import { copyFile, mkdir, open, readdir, stat, truncate, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { entryPath } from '../../../src/cache/entry-file.js'
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
  producer,
  randomBody,
  request,
} from './fixtures/store-harness.js'
import type { Harness, ProduceOptions } from './fixtures/store-harness.js'
import { CacheStore } from '../../../src/cache/store.js'
import type { OpenRequest } from '../../../src/cache/store.js'
import { logSink } from '../../helpers/log-sink.js'

const KB = 1024

/** Fills and commits `key` with `data` (a miss read to the end). */
async function fill(
  h: Harness,
  key: string,
  data: Buffer,
  over: Partial<OpenRequest> = {},
  opts: ProduceOptions = {},
): Promise<void> {
  const r = await h.store.open(request(key, producer(data, opts).produce, over))
  if (r.how !== 'miss') throw new Error(`expected a miss, got ${r.how}`)
  await collect(r.body.stream)
}

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file)
    return true
  } catch {
    return false
  }
}

void t.test('init() after a crash: junk removed, whole entries kept and served', async (t) => {
  const dir = t.testdir()
  const a = randomBody(100 * KB)
  const b = randomBody(3 * KB)
  const first = await makeStore(t, { dir })
  await fill(first, keyOf('a'), a, {}, { info: { x: '1' } })
  await fill(first, keyOf('b'), b, { kind: 'refs' })
  await fill(first, keyOf('c'), randomBody(10 * KB))
  await first.store.close()

  // what a crash (or a meddler) can leave behind
  const keyC = keyOf('c')
  const keyD = keyOf('d')
  const keyE = keyOf('e')
  await writeFile(path.join(dir, 'tmp', `${keyOf('x')}.0123abcd`), 'half a pack')
  await mkdir(path.join(dir, 'tmp', 'odd-dir'))
  await truncate(entryPath(dir, keyC), 10 * KB + 5) // truncated entry
  await mkdir(path.dirname(entryPath(dir, keyD)), { recursive: true })
  await writeFile(entryPath(dir, keyD), randomBody(5000)) // no footer
  await mkdir(path.dirname(entryPath(dir, keyE)), { recursive: true })
  await copyFile(entryPath(dir, keyOf('a')), entryPath(dir, keyE)) // whole, but another key's entry
  await writeFile(path.join(dir, 'entries', 'stray-file'), 'x')
  await writeFile(path.join(path.dirname(entryPath(dir, keyC)), 'not-a-key'), 'x')

  const second = await makeStore(t, { dir })
  t.same(await readdir(path.join(dir, 'tmp')), [], 'tmp/ emptied')
  for (const k of [keyC, keyD, keyE]) t.notOk(await exists(entryPath(dir, k)), 'corrupt entry removed')
  t.notOk(await exists(path.join(dir, 'entries', 'stray-file')))
  t.notOk(await exists(path.join(path.dirname(entryPath(dir, keyC)), 'not-a-key')))
  const warned = second.records.filter((r) => r.msg === 'removing a corrupt cache file')
  t.equal(warned.length, 5, 'each removal logged')
  t.match(
    second.records.find((r) => r.msg === 'cache index rebuilt'),
    { entries: 2, removedTmp: 2, removedCorrupt: 5 },
    'a summary is logged',
  )

  const ha = await second.store.open(request(keyOf('a'), producer(Buffer.alloc(0)).produce))
  t.equal(ha.how, 'hit')
  t.same(ha.how === 'hit' && ha.info, { x: '1' })
  t.ok((await collect(bodyOf(ha))).equals(a))
  const hb = await second.store.open(request(keyOf('b'), producer(Buffer.alloc(0)).produce, { kind: 'refs' }))
  t.equal(hb.how, 'hit')
  t.ok((await collect(bodyOf(hb))).equals(b))
  t.match(second.store.stats().repos.get(REPO), { refs: { entries: 1 }, uploadPack: { entries: 1 } })
})

void t.test('TTL: an expired entry is never served, and is deleted', async (t) => {
  const h = await makeStore(t)
  const key = keyOf('ttl')
  const data = randomBody(10 * KB)
  await fill(h, key, data)
  h.clock.now += HOUR - 1
  t.ok(h.store.peek(key, HOUR), 'one ms before expiry')
  t.equal(h.store.peek(key, 60_000), undefined, 'a shorter TTL already expired it')
  await h.store.idle()
  t.notOk(await exists(entryPath(h.dir, key)), 'deleted lazily')

  await fill(h, key, data)
  h.clock.now += HOUR
  const p = producer(data)
  const r = await h.store.open(request(key, p.produce))
  t.equal(r.how, 'miss', 'expired at createdAt + ttl')
  await collect(bodyOf(r))
  t.equal(p.calls, 1)
})

void t.test('sweepExpired() uses the TTL of each kind', async (t) => {
  const h = await makeStore(t)
  await fill(h, keyOf('r'), randomBody(KB), { kind: 'refs' })
  await fill(h, keyOf('u'), randomBody(KB))
  h.clock.now += 120_000
  const n = await h.store.sweepExpired((kind) => (kind === 'refs' ? 60_000 : HOUR))
  t.equal(n, 1)
  t.notOk(await exists(entryPath(h.dir, keyOf('r'))))
  t.ok(await exists(entryPath(h.dir, keyOf('u'))))
  t.equal(h.store.stats().totals.refs.entries, 0)
  t.equal(h.store.stats().totals.uploadPack.entries, 1)
})

void t.test('invalidateRepo() and clear() drop committed entries', async (t) => {
  const h = await makeStore(t)
  await fill(h, keyOf('1'), randomBody(KB))
  await fill(h, keyOf('2'), randomBody(KB), { kind: 'refs' })
  await fill(h, keyOf('3'), randomBody(KB), { repo: 'OTHER/repo.git' })

  t.equal(await h.store.invalidateRepo(REPO, 'refs'), 1)
  t.notOk(await exists(entryPath(h.dir, keyOf('2'))))
  t.ok(h.store.peek(keyOf('1'), HOUR))
  t.equal(await h.store.invalidateRepo(REPO), 1)
  t.equal(h.store.peek(keyOf('1'), HOUR), undefined)
  t.ok(h.store.peek(keyOf('3'), HOUR), 'another repository is untouched')
  t.equal(await h.store.invalidateRepo('NOBODY/x.git'), 0)
  await h.store.clear()
  t.equal(h.store.peek(keyOf('3'), HOUR), undefined)
  t.notOk(await exists(entryPath(h.dir, keyOf('3'))))
  t.equal(h.store.stats().totals.uploadPack.entries, 0)
  t.equal(h.store.stats().totals.uploadPack.size, 0)
})

void t.test('invalidateRepo() during a fill: readers complete, no commit, next open a miss', async (t) => {
  const h = await makeStore(t)
  const key = keyOf('doomed')
  const old = randomBody(300 * KB)
  const g = gateAt(100 * KB)
  t.teardown(g.release)
  const p1 = producer(old, { gate: g.gate })
  const r1 = await h.store.open(request(key, p1.produce))
  const r2 = await h.store.open(request(key, p1.produce))
  t.same([r1.how, r2.how], ['miss', 'join'])
  const bodies = Promise.all([collect(bodyOf(r1)), collect(bodyOf(r2))])

  t.equal(await h.store.invalidateRepo(REPO), 0, 'no committed entry yet')
  const fresh = randomBody(50 * KB)
  const p2 = producer(fresh)
  const r3 = await h.store.open(request(key, p2.produce))
  t.equal(r3.how, 'miss', 'nobody joins a doomed fill')
  t.ok((await collect(bodyOf(r3))).equals(fresh))
  t.equal(p2.calls, 1, 'a second, concurrent fill')

  g.release()
  const [b1, b2] = await bodies
  t.ok(b1.equals(old) && b2.equals(old), 'the doomed fill streamed on to its readers')
  await h.store.idle()
  t.same(await readdir(path.join(h.dir, 'tmp')), [], 'the doomed temp file is gone')
  const hit = await h.store.open(request(key, p2.produce))
  t.equal(hit.how, 'hit')
  t.ok((await collect(bodyOf(hit))).equals(fresh), 'the entry is the one filled after the invalidation')
  t.equal(p1.calls, 1)
})

void t.test('clear() during a fill dooms it too', async (t) => {
  const h = await makeStore(t)
  const key = keyOf('cleared')
  const data = randomBody(100 * KB)
  const g = gateAt(10 * KB)
  const r = await h.store.open(request(key, producer(data, { gate: g.gate }).produce))
  const body = collect(bodyOf(r))
  await h.store.clear()
  g.release()
  t.ok((await body).equals(data))
  await h.store.idle()
  t.equal(h.store.peek(key, HOUR), undefined)
  t.same(await readdir(path.join(h.dir, 'tmp')), [])
})

void t.test('an open racing an invalidation: the fd is opened before the unlink', async (t) => {
  // a slow open(2): the unlink must still wait for it
  const h = await makeStore(t, {
    openForRead: async (file) => {
      await sleep(30)
      return open(file, 'r')
    },
  })
  const key = keyOf('race')
  const data = randomBody(500 * KB)
  await fill(h, key, data)
  const opening = h.store.open(request(key, producer(data).produce))
  const invalidated = h.store.invalidateRepo(REPO) // same tick: after the lookup
  const r = await opening
  t.equal(r.how, 'hit')
  t.equal(await invalidated, 1)
  t.notOk(await exists(entryPath(h.dir, key)), 'unlinked')
  t.ok((await collect(bodyOf(r), 1)).equals(data), 'the reader still gets every byte')
  t.equal(h.store.peek(key, HOUR), undefined)
})

void t.test('maxSize: the least recently used entry is evicted', async (t) => {
  const body = (): Buffer => randomBody(100 * KB)
  const h = await makeStore(t, { maxSize: 250 * KB })
  await fill(h, keyOf('a'), body())
  await fill(h, keyOf('b'), body())
  // a is now fresher than b
  bodyOf(await h.store.open(request(keyOf('a'), producer(body()).produce))).destroy()
  await fill(h, keyOf('c'), body())
  await h.store.idle()
  t.equal(h.store.peek(keyOf('b'), HOUR), undefined, 'b evicted')
  t.notOk(await exists(entryPath(h.dir, keyOf('b'))))
  t.ok(h.store.peek(keyOf('a'), HOUR))
  t.ok(h.store.peek(keyOf('c'), HOUR))
  const s = h.store.stats()
  t.equal(s.evictions, 1)
  t.equal(s.totals.uploadPack.entries, 2)
  t.ok(s.totals.uploadPack.size <= 250 * KB)
})

void t.test('an evicted entry with a slow reader: the reader completes with the right bytes', async (t) => {
  const h = await makeStore(t, { maxSize: 2500 * KB })
  const a = randomBody(1000 * KB)
  await fill(h, keyOf('a'), a)
  const slow = bodyOf(await h.store.open(request(keyOf('a'), producer(a).produce)))
  const first = await firstChunk(slow)
  await fill(h, keyOf('b'), randomBody(1000 * KB))
  await fill(h, keyOf('c'), randomBody(1000 * KB))
  await h.store.idle()
  t.equal(h.store.peek(keyOf('a'), HOUR), undefined, 'a evicted while being read')
  t.notOk(await exists(entryPath(h.dir, keyOf('a'))), 'and unlinked')
  t.equal(h.store.stats().evictions, 1)
  const again = await h.store.open(request(keyOf('a'), producer(a).produce))
  t.equal(again.how, 'miss', 'no new reader sees the evicted entry')
  bodyOf(again).destroy()

  const rest = await collect(slow, 1)
  t.ok(Buffer.concat([first, rest]).equals(a), 'the slow reader read every byte of the unlinked file')
  await h.store.idle()
  t.equal((await fdsInto(h.dir)) ?? 0, 0, 'its fd is closed')
})

void t.test('an entry larger than maxSize is streamed but not committed', async (t) => {
  const h = await makeStore(t, { maxSize: 100 * KB })
  const data = randomBody(200 * KB)
  const p = producer(data)
  const r = await h.store.open(request(keyOf('big'), p.produce))
  t.ok((await collect(bodyOf(r))).equals(data))
  await h.store.idle()
  t.equal(h.store.peek(keyOf('big'), HOUR), undefined)
  t.same(await readdir(path.join(h.dir, 'tmp')), [])
  t.ok(h.records.some((rec) => rec.msg === 'entry larger than the cache max size: not committed'))
})

void t.test('admit: false serves hits and joins, bypasses misses', async (t) => {
  const h = await makeStore(t)
  const data = randomBody(10 * KB)
  await fill(h, keyOf('cached'), data)
  const hit = await h.store.open(request(keyOf('cached'), producer(data).produce, { admit: false }))
  t.equal(hit.how, 'hit')
  t.ok((await collect(bodyOf(hit))).equals(data))

  const p = producer(data)
  const miss = await h.store.open(request(keyOf('new'), p.produce, { admit: false }))
  t.same(miss, { how: 'bypass' })
  t.equal(p.calls, 0, 'produce not called')
  t.equal(h.store.peek(keyOf('new'), HOUR), undefined)

  const g = gateAt(KB)
  const filling = await h.store.open(request(keyOf('filling'), producer(data, { gate: g.gate }).produce))
  const joined = await h.store.open(request(keyOf('filling'), p.produce, { admit: false }))
  t.equal(joined.how, 'join', 'joining a running fill writes nothing new')
  g.release()
  t.ok((await collect(bodyOf(joined))).equals(data))
  await collect(bodyOf(filling))
  t.match(h.store.stats().repos.get(REPO)?.uploadPack, { bypasses: 1, hits: 1, joins: 1 })
})

void t.test('close() aborts fills in flight and hit readers; later opens are refused', async (t) => {
  const h = await makeStore(t)
  const data = randomBody(200 * KB)
  await fill(h, keyOf('cached'), data)
  const hit = bodyOf(await h.store.open(request(keyOf('cached'), producer(data).produce)))
  await firstChunk(hit)
  const hitErr = new Promise((resolve) => hit.once('error', resolve))

  const g = gateAt(50 * KB)
  t.teardown(g.release)
  const p = producer(data, { gate: g.gate })
  const r1 = await h.store.open(request(keyOf('filling'), p.produce))
  const r2 = await h.store.open(request(keyOf('filling'), p.produce))
  const errs = Promise.all([collectError(bodyOf(r1)), collectError(bodyOf(r2))])
  await sleep(10)
  await h.store.close()

  for (const err of await errs) t.match(err, { code: 'ERR_CACHE_FILL_FAILED', message: /closing/ })
  t.match(await hitErr, { code: 'ERR_CACHE_CLOSED' })
  t.equal(p.signals[0]?.aborted, true, "produce's signal aborted")
  t.same(await readdir(path.join(h.dir, 'tmp')), [], 'temp file removed')
  t.equal((await fdsInto(h.dir)) ?? 0, 0, 'every fd closed')
  await t.rejects(h.store.open(request(keyOf('cached'), p.produce)), { code: 'ERR_CACHE_CLOSED' })
  t.equal(h.store.peek(keyOf('cached'), HOUR), undefined)
  await h.store.close() // idempotent
})

void t.test('using the store before init() is an error', async (t) => {
  const store = new CacheStore({ dir: t.testdir(), log: logSink().log })
  await t.rejects(store.open(request(keyOf('x'), producer(Buffer.alloc(0)).produce)), {
    code: 'ERR_CACHE_STATE',
  })
  t.throws(() => new CacheStore({ dir: '/x', log: logSink().log, maxSize: -1 }), TypeError)
})
