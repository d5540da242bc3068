import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { FillLimiter } from '../../../src/cache/fill-limiter.js'
import { BusyError } from '../../../src/errors.js'

/** A job the test finishes by hand; `started` tells whether the limiter let it run. */
interface Job {
  fn: () => Promise<string>
  finish: () => void
  fail: (e: Error) => void
}

function job(log: string[], name: string): Job {
  let finish!: () => void
  let fail!: (e: Error) => void
  const done = new Promise<string>((resolve, reject) => {
    finish = () => {
      resolve(name)
    }
    fail = reject
  })
  return {
    fn: () => {
      log.push(name)
      return done
    },
    finish: () => {
      finish()
    },
    fail: (e) => {
      fail(e)
    },
  }
}

const opts = { maxTotal: 2, maxPerRepo: 2, maxQueue: 10, queueTimeoutMs: 5000 }

void t.test('bounded in total, FIFO queue, slots freed when fn settles', async (t) => {
  const l = new FillLimiter(opts)
  const started: string[] = []
  const jobs = ['a', 'b', 'c', 'd'].map((n) => job(started, n))
  const runs = jobs.map((j, i) => l.run(`repo${i}`, j.fn))
  await sleep(1)
  t.same(started, ['a', 'b'])
  t.equal(l.active, 2)
  t.equal(l.queued, 2)

  jobs[1]!.finish()
  t.equal(await runs[1], 'b', 'the result passes through')
  await sleep(1)
  t.same(started, ['a', 'b', 'c'], 'the oldest waiter goes next')
  jobs[0]!.fail(new Error('upstream 500'))
  await t.rejects(runs[0]!, { message: 'upstream 500' }, 'a rejection passes through')
  await sleep(1)
  t.same(started, ['a', 'b', 'c', 'd'], 'and frees its slot too')
  t.equal(l.queued, 0)
  jobs[2]!.finish()
  jobs[3]!.finish()
  await Promise.all(runs.slice(2))
  t.equal(l.active, 0)
})

void t.test('per-repository limit, without head-of-line blocking', async (t) => {
  const l = new FillLimiter({ ...opts, maxTotal: 3, maxPerRepo: 1 })
  const started: string[] = []
  const a1 = job(started, 'a1')
  const a2 = job(started, 'a2')
  const b1 = job(started, 'b1')
  const runs = [l.run('A', a1.fn), l.run('A', a2.fn), l.run('B', b1.fn)]
  await sleep(1)
  t.same(started, ['a1', 'b1'], 'B does not wait behind the queued A')
  t.equal(l.queued, 1)
  a1.finish()
  await sleep(1)
  t.same(started, ['a1', 'b1', 'a2'])
  a2.finish()
  b1.finish()
  await Promise.all(runs)
  t.equal(l.active, 0)
})

void t.test('a synchronous throw frees the slot', async (t) => {
  const l = new FillLimiter({ ...opts, maxTotal: 1 })
  await t.rejects(
    l.run('A', () => {
      throw new Error('boom')
    }),
    { message: 'boom' },
  )
  t.equal(l.active, 0)
  t.equal(await l.run('A', () => Promise.resolve(42)), 42)
})

void t.test('a full queue is refused with BusyError', async (t) => {
  const l = new FillLimiter({ ...opts, maxTotal: 1, maxQueue: 1 })
  const started: string[] = []
  const j1 = job(started, '1')
  const j2 = job(started, '2')
  const r1 = l.run('A', j1.fn)
  const r2 = l.run('B', j2.fn)
  const err = await l.run('C', () => Promise.resolve('never')).catch((e: unknown) => e)
  t.ok(err instanceof BusyError)
  t.match(err, {
    code: 'ERR_CACHE_BUSY',
    statusCode: 503,
    expose: true,
    message: 'upstream busy: 1 fills running, 1 queued; retry later',
  })
  j1.finish()
  j2.finish()
  await Promise.all([r1, r2])
  t.same(started, ['1', '2'])
})

void t.test('a waiter that waits longer than queueTimeoutMs is refused', async (t) => {
  const l = new FillLimiter({ ...opts, maxTotal: 1, queueTimeoutMs: 20 })
  const started: string[] = []
  const j1 = job(started, '1')
  const r1 = l.run('A', j1.fn)
  const t0 = Date.now()
  await t.rejects(l.run('B', () => Promise.resolve('never')), {
    code: 'ERR_CACHE_BUSY',
    message: 'upstream busy: 1 fills running, 0 queued; retry later',
  })
  t.ok(Date.now() - t0 >= 15, 'after the timeout')
  t.equal(l.queued, 0, 'the waiter left the queue')
  j1.finish()
  await r1
  t.same(started, ['1'])
  t.equal(l.active, 0)
})

void t.test('maxQueue 0: no waiting at all', async (t) => {
  const l = new FillLimiter({ ...opts, maxTotal: 1, maxQueue: 0 })
  const j = job([], '1')
  const r = l.run('A', j.fn)
  await t.rejects(l.run('A', j.fn), BusyError)
  j.finish()
  await r
})

void t.test('options are checked', async (t) => {
  t.throws(() => new FillLimiter({ ...opts, maxTotal: 0 }), RangeError)
  t.throws(() => new FillLimiter({ ...opts, maxPerRepo: 1.5 }), RangeError)
  t.throws(() => new FillLimiter({ ...opts, maxQueue: -1 }), RangeError)
  t.throws(() => new FillLimiter({ ...opts, queueTimeoutMs: Number.NaN }), RangeError)
})
