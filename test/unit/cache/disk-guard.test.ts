/**
 * DiskGuard (src/cache/disk-guard.ts): pause new entries below the minimum
 * free space, resume only at the minimum + 10%, pause at once on ENOSPC,
 * and stay off once disabled. Free space and time are injected through the
 * constructor's `freeBytes` and `now`; one test runs the default statfs(2)
 * reader on a real temp dir.
 */
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { DiskGuard, type DiskGuardOptions } from '../../../src/cache/disk-guard.js'
import { logSink, type LogRecord } from '../../helpers/log-sink.js'

const GiB = 1024 ** 3
const MiB = 1024 ** 2
const FULL = 'the cache disk is full (a write failed: no space left on device)'

/** A disk whose free space the test sets; counts the reads. */
class FakeDisk {
  free = 100 * GiB
  reads = 0
  fail: Error | null = null
  #gate: Promise<void> | null = null
  #open: (() => void) | null = null

  readonly freeBytes = async (): Promise<number> => {
    this.reads++
    if (this.#gate !== null) await this.#gate
    if (this.fail !== null) throw this.fail
    return this.free
  }

  /** Reads wait until `release()`. */
  hold(): void {
    this.#gate = new Promise((resolve) => (this.#open = resolve))
  }

  release(): void {
    this.#open?.()
    this.#gate = null
  }
}

function setup(opts: Partial<DiskGuardOptions> = {}): {
  guard: DiskGuard
  disk: FakeDisk
  clock: { now: number }
  records: LogRecord[]
} {
  const disk = new FakeDisk()
  const clock = { now: 1_700_000_000_000 }
  const { log, records } = logSink()
  const guard = new DiskGuard({
    dir: '/cache',
    minimumFreeSpace: 10 * GiB,
    intervalMs: 60_000,
    log,
    freeBytes: disk.freeBytes,
    now: () => clock.now,
    ...opts,
  })
  return { guard, disk, clock, records }
}

const below = (free: string, min: string): string => `free disk space ${free} is below the minimum ${min}`

void t.test('before the first check: admitting, nothing measured', async (t) => {
  const { guard } = setup()
  t.same(guard.status(), { admitting: true, reason: null, freeSpace: null, minimumFreeSpace: 10 * GiB, checkedAt: null })
})

void t.test('hysteresis: pause below the minimum, resume only at the minimum + 10%', async (t) => {
  const { guard, disk, clock } = setup()
  // minimum 10 GiB: pause below 10 GiB, resume from 11 GiB.
  const steps: { free: number; admitting: boolean; reason: string | null; why: string }[] = [
    { free: 20 * GiB, admitting: true, reason: null, why: 'plenty free' },
    { free: 10 * GiB, admitting: true, reason: null, why: 'exactly the minimum still admits' },
    { free: 10 * GiB - 1, admitting: false, reason: below('10.0 GiB', '10.0 GiB'), why: 'one byte below the minimum pauses' },
    { free: 9.5 * GiB, admitting: false, reason: below('9.5 GiB', '10.0 GiB'), why: 'the reason follows the free space while below' },
    { free: 10 * GiB, admitting: false, reason: below('9.5 GiB', '10.0 GiB'), why: 'back at the minimum: still paused' },
    // While paused between the minimum and +10% the reason is not updated:
    // it still names the last reading below the minimum (freeSpace is current).
    { free: 10.9 * GiB, admitting: false, reason: below('9.5 GiB', '10.0 GiB'), why: 'minimum + 9%: still paused' },
    { free: 11 * GiB - 1, admitting: false, reason: below('9.5 GiB', '10.0 GiB'), why: 'one byte short of +10%' },
    { free: 11 * GiB, admitting: true, reason: null, why: 'exactly the minimum + 10% resumes' },
    { free: 10.5 * GiB, admitting: true, reason: null, why: 'between the minimum and +10% while admitting: stays on' },
    { free: 10 * GiB, admitting: true, reason: null, why: 'at the minimum while admitting: stays on' },
    { free: 0, admitting: false, reason: below('0.0 GiB', '10.0 GiB'), why: 'an empty disk pauses' },
    { free: 50 * GiB, admitting: true, reason: null, why: 'and plenty resumes' },
  ]
  for (const s of steps) {
    disk.free = s.free
    clock.now += 5000
    await guard.check()
    t.same(
      guard.status(),
      { admitting: s.admitting, reason: s.reason, freeSpace: s.free, minimumFreeSpace: 10 * GiB, checkedAt: clock.now },
      `${(s.free / GiB).toFixed(3)} GiB: ${s.why}`,
    )
  }
})

void t.test('pause and resume are logged once each', async (t) => {
  const { guard, disk, records } = setup()
  for (const free of [9 * GiB, 8 * GiB, 10.5 * GiB, 12 * GiB, 13 * GiB]) {
    disk.free = free
    await guard.check()
  }
  const lines = records.filter((r) => typeof r.msg === 'string' && r.msg.startsWith('caching '))
  t.match(lines, [
    { msg: 'caching paused: low disk space', level: 40, freeSpace: 9 * GiB, minimumFreeSpace: 10 * GiB, reason: below('9.0 GiB', '10.0 GiB') },
    { msg: 'caching resumed: disk space is back', level: 30, freeSpace: 12 * GiB },
  ])
  t.equal(lines.length, 2)
})

void t.test('a minimum of 0 never pauses on a check', async (t) => {
  const { guard, disk } = setup({ minimumFreeSpace: 0 })
  disk.free = 0
  await guard.check()
  t.equal(guard.status().admitting, true)
})

void t.test('a failed measurement changes nothing and is logged', async (t) => {
  const { guard, disk, clock, records } = setup()
  disk.free = 5 * GiB
  await guard.check()
  const before = guard.status()
  disk.fail = Object.assign(new Error('EIO: i/o error, statfs'), { code: 'EIO' })
  disk.free = 50 * GiB
  clock.now += 60_000
  await guard.check()
  t.same(guard.status(), before, 'still paused, old reading and time kept')
  t.match(records.at(-1), { level: 40, msg: 'cannot measure free disk space', dir: '/cache', err: { code: 'EIO' } })

  const fresh = setup()
  fresh.disk.fail = new Error('boom')
  await fresh.guard.check()
  t.same(fresh.guard.status(), { admitting: true, reason: null, freeSpace: null, minimumFreeSpace: 10 * GiB, checkedAt: null }, 'a guard that never measured keeps admitting')
})

void t.test('check() is single-flight', async (t) => {
  const { guard, disk } = setup()
  disk.hold()
  const a = guard.check()
  const b = guard.check()
  t.equal(a, b, 'the same promise while a measurement runs')
  disk.release()
  await Promise.all([a, b])
  t.equal(disk.reads, 1, 'one read')
  await guard.check()
  t.equal(disk.reads, 2, 'a new check after it settled reads again')
})

void t.test('admit(): a fresh check at most once a second', async (t) => {
  const { guard, disk, clock } = setup()
  const steps: { advance: number; reads: boolean; why: string }[] = [
    { advance: 0, reads: true, why: 'never checked' },
    { advance: 0, reads: false, why: 'checked just now' },
    { advance: 999, reads: false, why: '999 ms after the check' },
    { advance: 1, reads: true, why: '1000 ms after the check' },
    { advance: 500, reads: false, why: '500 ms after that' },
    { advance: 60_000, reads: true, why: 'a minute later' },
  ]
  for (const s of steps) {
    clock.now += s.advance
    const before = disk.reads
    t.equal(guard.admit(), true, `${s.why}: admits`)
    // freeBytes is called synchronously by the check admit() starts.
    t.equal(disk.reads - before, s.reads ? 1 : 0, `${s.why}: ${s.reads ? 'reads' : 'no read'}`)
    if (s.reads) await guard.check() // joins the running check, no second read
    t.equal(disk.reads - before, s.reads ? 1 : 0, `${s.why}: joined, not read again`)
  }
})

void t.test('admit() answers from the state it has; the check it starts decides the next call', async (t) => {
  const { guard, disk, clock } = setup()
  disk.free = 1 * GiB
  await guard.check()
  t.equal(guard.admit(), false, 'paused')
  disk.free = 50 * GiB
  clock.now += 1000
  t.equal(guard.admit(), false, 'still the old answer while the new check runs')
  await guard.check()
  t.equal(guard.admit(), true, 'the check resumed caching')
})

void t.test('reportNoSpace(): pause at once, resume at max(minimum + 10%, 64 MiB)', async (t) => {
  const cases: { name: string; min: number; steps: { free: number; admitting: boolean }[] }[] = [
    {
      name: 'minimum 0: needs 64 MiB',
      min: 0,
      steps: [
        { free: 10 * MiB, admitting: false },
        { free: 64 * MiB - 1, admitting: false },
        { free: 64 * MiB, admitting: true },
        // Once resumed, the ENOSPC floor is gone: a minimum of 0 never pauses.
        { free: 0, admitting: true },
      ],
    },
    {
      name: 'minimum 10 GiB: needs 11 GiB',
      min: 10 * GiB,
      steps: [
        { free: 10.5 * GiB, admitting: false },
        { free: 11 * GiB, admitting: true },
      ],
    },
    {
      name: 'minimum 40 MiB: 44 MiB is under the 64 MiB floor',
      min: 40 * MiB,
      steps: [
        { free: 44 * MiB, admitting: false },
        { free: 63 * MiB, admitting: false },
        { free: 64 * MiB, admitting: true },
        // Later pauses resume at the minimum + 10% again.
        { free: 30 * MiB, admitting: false },
        { free: 44 * MiB, admitting: true },
      ],
    },
  ]
  for (const c of cases) {
    const { guard, disk, records } = setup({ minimumFreeSpace: c.min })
    disk.free = 100 * GiB
    await guard.check()
    disk.hold()
    guard.reportNoSpace()
    t.same(guard.status().admitting, false, `${c.name}: paused at once, before any measurement`)
    t.equal(guard.status().reason, FULL, `${c.name}: the reason`)
    t.equal(disk.reads, 2, `${c.name}: a confirming check started`)
    t.match(records.at(-1), { level: 40, msg: 'caching paused: low disk space', reason: FULL })
    disk.free = c.steps[0]?.free ?? 0
    disk.release()
    await guard.check()
    for (const s of c.steps) {
      disk.free = s.free
      await guard.check()
      t.equal(guard.status().admitting, s.admitting, `${c.name}: ${(s.free / MiB).toFixed(0)} MiB free: ${s.admitting ? 'admitting' : 'paused'}`)
    }
  }
})

void t.test('reportNoSpace() on a disk that turns out to have room resumes with the confirming check', async (t) => {
  // Say EDQUOT on a file system with space left: the check finds it and caching resumes.
  const { guard, disk } = setup()
  disk.free = 100 * GiB
  guard.reportNoSpace()
  t.equal(guard.admit(), false)
  await guard.check()
  t.same(guard.status(), { admitting: true, reason: null, freeSpace: 100 * GiB, minimumFreeSpace: 10 * GiB, checkedAt: guard.status().checkedAt })
})

void t.test('reportNoSpace() while already paused keeps the first reason', async (t) => {
  const { guard, disk } = setup()
  disk.free = 5 * GiB
  await guard.check()
  guard.reportNoSpace()
  t.equal(guard.status().reason, below('5.0 GiB', '10.0 GiB'))
  await guard.check()
  t.equal(guard.status().reason, below('5.0 GiB', '10.0 GiB'))
})

void t.test('disable(reason): never admits again, and says why', async (t) => {
  const reason = 'cache.dir /cache is not writable (EACCES)'
  const { guard, disk, clock } = setup()
  await guard.check()
  guard.disable(reason)
  t.same(guard.status(), { admitting: false, reason, freeSpace: 100 * GiB, minimumFreeSpace: 10 * GiB, checkedAt: clock.now })
  for (const free of [100 * GiB, 1 * GiB, 0, 1000 * GiB]) {
    disk.free = free
    clock.now += 5000
    t.equal(guard.admit(), false, `${free / GiB} GiB free: not admitting`)
    await guard.check()
    t.equal(guard.status().reason, reason, `${free / GiB} GiB free: the disable reason stays`)
    t.equal(guard.status().freeSpace, free, 'free space is still measured')
  }
  guard.reportNoSpace()
  await guard.check()
  t.same(guard.status().reason, reason, 'reportNoSpace does not replace it')
  t.equal(guard.status().admitting, false)

  const early = setup()
  early.guard.disable('no cache dir')
  t.same(early.guard.status(), { admitting: false, reason: 'no cache dir', freeSpace: null, minimumFreeSpace: 10 * GiB, checkedAt: null }, 'disabled before any check')
})

void t.test('isNoSpace: ENOSPC and EDQUOT, up to five errors deep', async (t) => {
  const sysErr = (code: string): Error => Object.assign(new Error(code), { code })
  const wrap = (err: unknown, depth: number): unknown => {
    let e = err
    for (let i = 0; i < depth; i++) e = new Error(`wrap ${i}`, { cause: e })
    return e
  }
  const cases: { name: string; err: unknown; want: boolean }[] = [
    { name: 'ENOSPC', err: sysErr('ENOSPC'), want: true },
    { name: 'EDQUOT', err: sysErr('EDQUOT'), want: true },
    { name: 'EIO', err: sysErr('EIO'), want: false },
    { name: 'enospc (case)', err: sysErr('enospc'), want: false },
    { name: 'no code', err: new Error('no space left on device'), want: false },
    { name: 'ENOSPC as the cause of a cause', err: wrap(sysErr('ENOSPC'), 2), want: true },
    { name: 'ENOSPC four wrappers down (fifth error)', err: wrap(sysErr('ENOSPC'), 4), want: true },
    { name: 'ENOSPC five wrappers down (sixth error)', err: wrap(sysErr('EDQUOT'), 5), want: false },
    { name: 'a plain object with code ENOSPC', err: { code: 'ENOSPC' }, want: false },
    { name: 'an Error caused by a plain object', err: new Error('x', { cause: { code: 'ENOSPC' } }), want: false },
    { name: 'the string ENOSPC', err: 'ENOSPC', want: false },
    { name: 'undefined', err: undefined, want: false },
    { name: 'null', err: null, want: false },
    { name: 'a numeric code', err: Object.assign(new Error('x'), { code: 28 }), want: false },
  ]
  for (const c of cases) t.equal(DiskGuard.isNoSpace(c.err), c.want, c.name)
  // A cause cycle ends at the depth limit instead of looping.
  const a = new Error('a')
  const b = new Error('b', { cause: a })
  Object.assign(a, { cause: b })
  t.equal(DiskGuard.isNoSpace(a), false, 'a cause cycle')
})

void t.test('start(): a first check, then one per interval; stop() ends them', async (t) => {
  const { guard, disk } = setup({ intervalMs: 10 })
  t.teardown(() => {
    guard.stop()
  })
  disk.free = 1 * GiB
  await guard.start()
  t.equal(disk.reads, 1, 'start() awaited the first check')
  t.equal(guard.status().admitting, false, 'and its verdict is in place')
  disk.free = 100 * GiB
  const deadline = performance.now() + 2000
  while (disk.reads < 3 && performance.now() < deadline) await sleep(5)
  t.ok(disk.reads >= 3, 'the interval keeps checking')
  t.equal(guard.status().admitting, true, 'an interval check resumed caching')
  guard.stop()
  const after = disk.reads
  await sleep(50) // five intervals: a short fixed wait, there is nothing to poll for
  t.equal(disk.reads, after, 'no checks after stop()')
})

void t.test('the default reader: statfs(2) on a real directory', async (t) => {
  const dir = t.testdir()
  const cases: { name: string; min: number; admitting: boolean }[] = [
    { name: 'minimum 0', min: 0, admitting: true },
    { name: 'a minimum no disk has', min: Number.MAX_SAFE_INTEGER, admitting: false },
  ]
  for (const c of cases) {
    const { log } = logSink()
    const guard = new DiskGuard({ dir, minimumFreeSpace: c.min, intervalMs: 60_000, log })
    await guard.check()
    const s = guard.status()
    t.ok(typeof s.freeSpace === 'number' && Number.isInteger(s.freeSpace) && s.freeSpace >= 0, `${c.name}: a byte count`)
    t.type(s.checkedAt, 'number')
    t.equal(s.admitting, c.admitting, c.name)
  }
  const { log, records } = logSink()
  const missing = new DiskGuard({ dir: path.join(dir, 'missing'), minimumFreeSpace: 0, intervalMs: 60_000, log })
  await missing.check()
  t.equal(missing.status().freeSpace, null, 'a missing directory: nothing measured')
  t.match(records.at(-1), { msg: 'cannot measure free disk space', err: { code: 'ENOENT' } })
})

void t.test('reportNoSpace() on a small file system: the floor is capped at half its size', async (t) => {
  const { guard, disk } = setup({ minimumFreeSpace: MiB, totalBytes: () => Promise.resolve(64 * MiB) })
  disk.free = 8 * MiB
  await guard.check()
  guard.reportNoSpace()
  t.equal(guard.admit(), false, 'paused')
  disk.free = 32 * MiB - 1
  await guard.check()
  t.equal(guard.status().admitting, false, 'not yet: under half of 64 MiB')
  disk.free = 60 * MiB
  await guard.check()
  t.equal(guard.status().admitting, true, 'resumed once half the file system is free (64 MiB never could be)')
})

void t.test('reportWriteFailure() (EIO): pause at once, resume at the first good check one interval later', async (t) => {
  const { guard, clock, records } = setup()
  await guard.check()
  guard.reportWriteFailure(Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' }))
  t.equal(guard.status().admitting, false, 'paused at once')
  t.match(guard.status().reason, /a cache write failed: EIO/)
  t.ok(records.some((r) => r.msg === 'caching paused: low disk space'), 'logged')
  clock.now += 30_000
  await guard.check()
  t.equal(guard.status().admitting, false, 'not within one check interval')
  clock.now += 30_000
  await guard.check()
  t.equal(guard.status().admitting, true, 'resumed')
})
