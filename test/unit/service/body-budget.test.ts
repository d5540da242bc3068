/**
 * The body-memory budget (src/service/body-budget.ts, DESIGN §3.9): bytes
 * are taken at once while they fit, waited for in arrival order past the
 * limit, refused with a BusyError (503) after `waitMs` or at once when one
 * request asks for more than the whole budget, and given back by leases.
 * Waits here are a few tens of milliseconds (`waitMs` is the budget's own).
 */
import t from 'tap'
import { BusyError } from '../../../src/errors.js'
import { BodyBudget, BodyLease } from '../../../src/service/body-budget.js'

// The budget's wait timer is unref'd (it must not hold a closing proxy open):
// keep this process alive while tests wait on it.
const alive = setInterval(() => undefined, 1000)
t.teardown(() => {
  clearInterval(alive)
})

/** Settles `p` and tells how: 'ok', or the error's class name and message. */
async function outcome(p: Promise<void>): Promise<string> {
  try {
    await p
    return 'ok'
  } catch (err) {
    return err instanceof Error ? `${err.constructor.name}: ${err.message}` : String(err)
  }
}

/** Whether `p` is still pending after the microtasks queued now have run. */
async function pending(p: Promise<unknown>): Promise<boolean> {
  const marker = Symbol('pending')
  const tick = new Promise((resolve) => {
    setImmediate(() => {
      resolve(marker)
    })
  })
  const first = await Promise.race([p.then(() => 'settled', () => 'settled'), tick])
  return first === marker
}

void t.test('take without waiting: what fits is granted at once', async (t) => {
  const cases: { name: string; limit: number; takes: number[]; used: number }[] = [
    { name: 'nothing', limit: 10, takes: [], used: 0 },
    { name: 'zero bytes', limit: 10, takes: [0], used: 0 },
    { name: 'one under the limit', limit: 10, takes: [9], used: 9 },
    { name: 'exactly the limit', limit: 10, takes: [10], used: 10 },
    { name: 'several up to the limit', limit: 10, takes: [3, 3, 4], used: 10 },
    { name: 'zero-byte budget, zero bytes', limit: 0, takes: [0, 0], used: 0 },
  ]
  for (const c of cases) {
    const budget = new BodyBudget({ limit: c.limit, waitMs: 50 })
    for (const n of c.takes) await budget.take(n)
    t.equal(budget.used, c.used, c.name)
  }
})

void t.test('more than the whole budget: BusyError at once, nothing taken, nobody waits', async (t) => {
  const cases: { name: string; limit: number; held: number; ask: number }[] = [
    { name: 'one over, budget empty', limit: 10, held: 0, ask: 11 },
    { name: 'far over, budget half used', limit: 10, held: 5, ask: 1_000_000 },
    { name: 'any byte of a zero budget', limit: 0, held: 0, ask: 1 },
  ]
  for (const c of cases) {
    // waitMs far beyond the test: a refusal that waited would time the test out.
    const budget = new BodyBudget({ limit: c.limit, waitMs: 60_000 })
    await budget.take(c.held)
    const err = await budget.take(c.ask).then(
      () => null,
      (e: unknown) => e,
    )
    t.ok(err instanceof BusyError, `${c.name}: BusyError`)
    t.match(err, { code: 'ERR_CACHE_BUSY', message: /proxy\.http\.body-memory/ }, `${c.name}: names the setting`)
    t.equal(budget.used, c.held, `${c.name}: nothing taken`)
  }
})

void t.test('past the limit a take waits, and is granted when bytes come back', async (t) => {
  const budget = new BodyBudget({ limit: 10, waitMs: 60_000 })
  await budget.take(8)
  const waiting = budget.take(5)
  t.ok(await pending(waiting), 'waits while 8 of 10 are held')
  t.equal(budget.used, 8, 'a waiting take holds nothing')
  budget.give(2)
  t.ok(await pending(waiting), 'still waits: 6 + 5 > 10')
  budget.give(1)
  t.equal(await outcome(waiting), 'ok', 'granted once 5 + 5 fit')
  t.equal(budget.used, 10)
})

void t.test('waiters are served in arrival order; a small late one does not overtake', async (t) => {
  const budget = new BodyBudget({ limit: 10, waitMs: 60_000 })
  await budget.take(10)
  const order: string[] = []
  const big = budget.take(8).then(() => order.push('big'))
  const small = budget.take(1).then(() => order.push('small'))
  // A new take that would fit the free bytes still queues behind the waiters.
  budget.give(2)
  t.ok(await pending(small), 'the small take waits behind the big one although 1 byte would fit')
  const late = budget.take(1).then(() => order.push('late'))
  t.ok(await pending(late), 'a new take queues too')
  budget.give(8)
  await Promise.all([big, small, late])
  t.same(order, ['big', 'small', 'late'])
  t.equal(budget.used, 10, 'all three granted: 8 + 1 + 1')
})

void t.test('one give grants every waiter at the head that fits, and stops at the first that does not', async (t) => {
  const budget = new BodyBudget({ limit: 10, waitMs: 60_000 })
  await budget.take(10)
  const a = budget.take(3)
  const b = budget.take(3)
  const c = budget.take(5)
  const d = budget.take(1)
  budget.give(10)
  t.equal(await outcome(a), 'ok')
  t.equal(await outcome(b), 'ok')
  t.ok(await pending(c), '3 + 3 + 5 > 10: waits')
  t.ok(await pending(d), 'behind the one that does not fit, although it would')
  t.equal(budget.used, 6)
  budget.give(6)
  t.equal(await outcome(c), 'ok')
  t.equal(await outcome(d), 'ok')
  t.equal(budget.used, 6)
})

void t.test('a wait longer than waitMs: BusyError, and the waiter leaves the queue', async (t) => {
  const budget = new BodyBudget({ limit: 10, waitMs: 30 })
  await budget.take(10)
  const started = performance.now()
  t.match(await outcome(budget.take(1)), /^BusyError: .*retry later/)
  t.ok(performance.now() - started >= 25, 'after about waitMs')
  t.equal(budget.used, 10, 'nothing taken')
  budget.give(10)
  t.equal(budget.used, 0, 'the timed-out waiter is not granted later')
})

void t.test('a waiter that leaves lets the ones behind it through', async (t) => {
  const cases: { name: string; leave: (waiter: { abort: AbortController }) => void; waitMs: number; want: RegExp }[] = [
    { name: 'timed out', leave: () => undefined, waitMs: 30, want: /^BusyError/ },
    {
      name: 'aborted',
      leave: (w) => {
        w.abort.abort(new Error('client gone'))
      },
      waitMs: 60_000,
      want: /^Error: client gone$/,
    },
  ]
  for (const c of cases) {
    const budget = new BodyBudget({ limit: 10, waitMs: c.waitMs })
    await budget.take(6)
    const abort = new AbortController()
    // The head waits for 8 (does not fit); the one behind for 4 (would fit at once).
    const head = budget.take(8, abort.signal)
    const behind = budget.take(4, new AbortController().signal)
    t.ok(await pending(behind), `${c.name}: behind the head`)
    c.leave({ abort })
    t.match(await outcome(head), c.want, `${c.name}: the head leaves`)
    t.equal(await outcome(behind), 'ok', `${c.name}: the one behind is granted as the head leaves`)
    t.equal(budget.used, 10, `${c.name}: 6 + 4`)
  }
})

void t.test('abort while waiting: rejects with the signal reason, nothing taken', async (t) => {
  const cases: { name: string; reason: unknown; want: RegExp }[] = [
    { name: 'an Error reason', reason: new Error('client went away'), want: /^Error: client went away$/ },
    { name: 'a DOMException default reason', reason: undefined, want: /^DOMException: / },
    { name: 'a non-Error reason', reason: 'bye', want: /^Error: aborted$/ },
  ]
  for (const c of cases) {
    const budget = new BodyBudget({ limit: 4, waitMs: 60_000 })
    await budget.take(4)
    const abort = new AbortController()
    const waiting = budget.take(2, abort.signal)
    t.ok(await pending(waiting), `${c.name}: waits`)
    abort.abort(c.reason)
    t.match(await outcome(waiting), c.want, c.name)
    budget.give(4)
    t.equal(budget.used, 0, `${c.name}: the aborted take is not granted later`)
  }
})

void t.test('a signal aborted before the take: refused at once, whether the bytes fit or not', async (t) => {
  const cases: { name: string; held: number; want: RegExp }[] = [
    { name: 'budget full (would wait)', held: 4, want: /^Error: already gone$/ },
    { name: 'budget free (would fit)', held: 0, want: /^Error: already gone$/ },
  ]
  for (const c of cases) {
    // A short waitMs: a take that waited instead would fail as a BusyError, not hang the test.
    const budget = new BodyBudget({ limit: 4, waitMs: 300 })
    await budget.take(c.held)
    const abort = new AbortController()
    abort.abort(new Error('already gone'))
    t.match(await outcome(budget.take(1, abort.signal)), c.want, `${c.name}: rejects with the reason, without waiting`)
    t.equal(budget.used, c.held, `${c.name}: nothing taken`)
    budget.give(c.held)
    t.equal(budget.used, 0, `${c.name}: and not granted later`)
  }
})

void t.test('a grant removes the abort listener: aborting afterwards changes nothing', async (t) => {
  const budget = new BodyBudget({ limit: 4, waitMs: 60_000 })
  await budget.take(4)
  const abort = new AbortController()
  const waiting = budget.take(3, abort.signal)
  budget.give(4)
  t.equal(await outcome(waiting), 'ok')
  abort.abort(new Error('late'))
  t.equal(budget.used, 3, 'the granted bytes stay taken')
})

void t.test('give never drives the count below zero', async (t) => {
  const cases: { name: string; take: number; gives: number[]; used: number }[] = [
    { name: 'give back exactly', take: 5, gives: [5], used: 0 },
    { name: 'give back more than held', take: 5, gives: [9], used: 0 },
    { name: 'give on an empty budget', take: 0, gives: [3], used: 0 },
    { name: 'twice', take: 5, gives: [5, 5], used: 0 },
    { name: 'partly', take: 5, gives: [2], used: 3 },
  ]
  for (const c of cases) {
    const budget = new BodyBudget({ limit: 10, waitMs: 60_000 })
    await budget.take(c.take)
    for (const g of c.gives) budget.give(g)
    t.equal(budget.used, c.used, c.name)
    // Over-giving creates no room beyond the limit: filled up, one more byte waits.
    await budget.take(10 - c.used)
    const abort = new AbortController()
    const more = budget.take(1, abort.signal)
    t.ok(await pending(more), `${c.name}: the limit still holds`)
    abort.abort(new Error('done'))
    await outcome(more)
  }
})

void t.test('waitMs defaults to 10 s: a waiter is still waiting after a moment', async (t) => {
  const budget = new BodyBudget({ limit: 1 })
  await budget.take(1)
  const waiting = budget.take(1)
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.ok(await pending(waiting))
  budget.give(1)
  t.equal(await outcome(waiting), 'ok')
})

void t.test('BodyLease: takes add up, release gives back everything once', async (t) => {
  const budget = new BodyBudget({ limit: 100, waitMs: 30 })
  const a = new BodyLease(budget)
  const b = new BodyLease(budget)
  await a.take(10)
  await a.take(20)
  await b.take(5)
  t.equal(a.held, 30)
  t.equal(b.held, 5)
  t.equal(budget.used, 35)
  a.release()
  t.equal(a.held, 0)
  t.equal(budget.used, 5, "only a's bytes came back")
  a.release()
  t.equal(budget.used, 5, "a second release gives nothing: b's bytes stay counted")
  b.release()
  t.equal(budget.used, 0)
})

void t.test('BodyLease: a refused take is not held, and release does not give it back', async (t) => {
  const cases: { name: string; limit: number; before: number; ask: number; abort?: boolean }[] = [
    { name: 'larger than the budget', limit: 10, before: 4, ask: 11 },
    { name: 'timed out', limit: 10, before: 10, ask: 1 },
    { name: 'aborted', limit: 10, before: 10, ask: 1, abort: true },
  ]
  for (const c of cases) {
    const budget = new BodyBudget({ limit: c.limit, waitMs: 30 })
    const other = new BodyLease(budget)
    const lease = new BodyLease(budget)
    await other.take(c.before === c.limit ? c.limit - 2 : 0)
    await lease.take(c.before === c.limit ? 2 : c.before)
    const abort = new AbortController()
    const p = lease.take(c.ask, abort.signal)
    if (c.abort === true) abort.abort(new Error('gone'))
    t.not(await outcome(p), 'ok', `${c.name}: refused`)
    const held = lease.held
    t.equal(held, c.before === c.limit ? 2 : c.before, `${c.name}: only the granted bytes are held`)
    lease.release()
    t.equal(budget.used, other.held, `${c.name}: release gave back exactly what the lease held`)
    other.release()
    t.equal(budget.used, 0, `${c.name}: all back`)
  }
})
