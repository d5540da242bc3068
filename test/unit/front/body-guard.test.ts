/**
 * The request-body pace guard (src/front/body-guard.ts, DESIGN §3.9): a body
 * with no byte for `idleMs`, or fewer than `minBytes` in a `windowMs`, is
 * cut; time the proxy itself spends not reading (the socket paused by
 * backpressure) never counts against the client. The scenarios run on an
 * injected clock: each step sets the clock and the socket, then waits for
 * the guard's next check (it reads the clock once per check).
 */
import net from 'node:net'
import { once } from 'node:events'
import t, { type Test } from 'tap'
import { guardBody, type BodyPace } from '../../../src/front/body-guard.js'
import { until } from '../../helpers/wait.js'

// idle and window ≤ 40 ms: the guard checks every 10 ms of real time.
const PACE: BodyPace = { idleMs: 40, minBytes: 100, windowMs: 120 }
const IDLE = /^no byte of the request body for \d+ s$/
const SLOW = /^request body slower than 100 bytes per \d+ s$/

class FakeSocket {
  bytesRead = 0
  destroyed = false
  paused = false
  isPaused(): boolean {
    return this.paused
  }
}

interface Harness {
  socket: FakeSocket
  body: { socket: FakeSocket; complete: boolean }
  cuts: string[]
  stop: () => void
  /** Clock reads so far: one per check (and one at the start). */
  readonly reads: number
  /** Sets the clock to `at`, then waits for the guard's next check. */
  checkAt(at: number): Promise<void>
  /** Sets the clock to `at` only. */
  setClock(at: number): void
}

function guarded(t: Test, pace: BodyPace = PACE, bytesBefore = 0): Harness {
  const socket = new FakeSocket()
  socket.bytesRead = bytesBefore
  const body = { socket, complete: false }
  const cuts: string[] = []
  let clock = 0
  let reads = 0
  const stop = guardBody(
    body,
    pace,
    (why) => {
      cuts.push(why)
    },
    () => {
      reads++
      return clock
    },
  )
  t.teardown(stop)
  return {
    socket,
    body,
    cuts,
    stop,
    get reads() {
      return reads
    },
    setClock(at) {
      clock = at
    },
    async checkAt(at) {
      clock = at
      const before = reads
      await until(() => reads > before, `a check at ${at} ms`, 5000)
    },
  }
}

interface Step {
  /** Clock (ms since the guard started) at the check. */
  at: number
  /** Body bytes that arrived since the previous check. */
  bytes?: number
  /** Whether the socket is paused (by the proxy's backpressure) at the check. */
  paused?: boolean
  /** The cut expected at this check, or none yet. */
  cut?: RegExp
}

const scenarios: { name: string; pace?: BodyPace; bytesBefore?: number; steps: Step[] }[] = [
  {
    name: 'a body arriving fast is never cut',
    steps: Array.from({ length: 30 }, (_, i) => ({ at: (i + 1) * 10, bytes: 50 })),
  },
  {
    name: 'no byte at all: cut at idleMs, not before',
    steps: [{ at: 20 }, { at: 39 }, { at: 40, cut: IDLE }],
  },
  {
    name: 'each byte restarts the idle time',
    steps: [{ at: 30, bytes: 1 }, { at: 60 }, { at: 69 }, { at: 70, cut: IDLE }],
  },
  {
    name: 'a trickle: bytes keep coming but too few per window',
    steps: [
      { at: 30, bytes: 20 },
      { at: 60, bytes: 20 },
      { at: 90, bytes: 20 },
      { at: 119, bytes: 20 },
      { at: 120, bytes: 19, cut: SLOW },
    ],
  },
  {
    name: 'exactly minBytes in a window is enough, and the window starts over',
    steps: [
      { at: 30, bytes: 40 },
      { at: 60, bytes: 40 },
      { at: 120, bytes: 20 },
      // A new window from 120: 99 bytes by 240 is too few.
      { at: 150, bytes: 33 },
      { at: 180, bytes: 33 },
      { at: 210, bytes: 33 },
      { at: 240, cut: SLOW },
    ],
  },
  {
    name: 'paused by backpressure: the wait is not the client’s',
    steps: [
      { at: 10, bytes: 10 },
      { at: 20, paused: true },
      { at: 500, paused: true },
      { at: 5000, paused: true },
      // Reading again: idle and window count from the last paused check.
      { at: 5030 },
      { at: 5039 },
      { at: 5040, cut: IDLE },
    ],
  },
  {
    name: 'a pause starts the window over',
    steps: [
      { at: 30, bytes: 30 },
      { at: 60, bytes: 30 },
      { at: 90, paused: true },
      { at: 120, bytes: 30 },
      { at: 150, bytes: 30 },
      { at: 180, bytes: 30 },
      // 90 bytes in the window from 90: too few at 210.
      { at: 209, bytes: 0 },
      { at: 210, cut: SLOW },
    ],
  },
  {
    name: 'bytes read while paused still count as arriving',
    steps: [
      { at: 30, bytes: 60, paused: true },
      { at: 60, bytes: 60, paused: true },
      { at: 90, bytes: 10 },
      // The window from 0 held 140 bytes: enough.
      { at: 120, bytes: 10 },
      { at: 159 },
      { at: 160, cut: IDLE },
    ],
  },
  {
    name: 'bytes on the socket before the guard (the headers) are not body bytes',
    bytesBefore: 10_000,
    steps: [
      { at: 30, bytes: 30 },
      { at: 60, bytes: 30 },
      { at: 90, bytes: 30 },
      { at: 120, cut: SLOW },
    ],
  },
  {
    name: 'idle is checked before the rate: a silent client gets the idle reason',
    pace: { idleMs: 40, minBytes: 100, windowMs: 40 },
    steps: [{ at: 40, cut: IDLE }],
  },
]

void t.test('pace scenarios on an injected clock', async (t) => {
  for (const s of scenarios) {
    await t.test(s.name, async (t) => {
      const h = guarded(t, s.pace, s.bytesBefore)
      for (const step of s.steps) {
        h.socket.bytesRead += step.bytes ?? 0
        h.socket.paused = step.paused ?? false
        await h.checkAt(step.at)
        if (step.cut === undefined) {
          t.same(h.cuts, [], `at ${step.at} ms: not cut`)
        } else {
          t.equal(h.cuts.length, 1, `at ${step.at} ms: cut once`)
          t.match(h.cuts[0], step.cut, `at ${step.at} ms: the reason`)
        }
      }
    })
  }
})

/** Waits a few check periods of real time, then tells how many checks ran meanwhile. */
async function checksDuring(h: Harness, ms = 60): Promise<number> {
  const before = h.reads
  await new Promise((resolve) => setTimeout(resolve, ms))
  return h.reads - before
}

void t.test('the guard stops for good', async (t) => {
  const stops: { name: string; end: (h: Harness) => void }[] = [
    {
      name: 'the body completes',
      end: (h) => {
        h.body.complete = true
      },
    },
    {
      name: 'the socket is destroyed',
      end: (h) => {
        h.socket.destroyed = true
      },
    },
    {
      name: 'stop() is called',
      end: (h) => {
        h.stop()
      },
    },
  ]
  for (const s of stops) {
    const h = guarded(t)
    await h.checkAt(10)
    s.end(h)
    h.setClock(10_000) // long silent: any check that still ran would cut
    t.equal(await checksDuring(h), 0, `${s.name}: no more checks`)
    t.same(h.cuts, [], `${s.name}: never cut, however long it is silent`)
  }
})

void t.test('cut at most once: no checks after the cut', async (t) => {
  const h = guarded(t)
  await h.checkAt(40)
  t.equal(h.cuts.length, 1)
  t.equal(await checksDuring(h), 0, 'the timer is cleared')
  t.equal(h.cuts.length, 1)
})

void t.test('the reasons name the pace in seconds', async (t) => {
  // One check at most a second of real time away (the check period is a quarter of the shorter deadline, at most 1 s).
  const cases: { pace: BodyPace; bytes: number; at: number; want: string }[] = [
    { pace: { idleMs: 2000, minBytes: 30 * 1024, windowMs: 4000 }, bytes: 0, at: 2000, want: 'no byte of the request body for 2 s' },
    { pace: { idleMs: 8000, minBytes: 30 * 1024, windowMs: 2000 }, bytes: 1000, at: 2000, want: 'request body slower than 30720 bytes per 2 s' },
  ]
  for (const c of cases) {
    const h = guarded(t, c.pace)
    h.socket.bytesRead += c.bytes
    await h.checkAt(c.at)
    t.same(h.cuts, [c.want])
    h.stop()
  }
})

void t.test('on a real socket, with the default clock', async (t) => {
  const server = net.createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => server.close())
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  const connect = async (): Promise<{ client: net.Socket; socket: net.Socket }> => {
    const accepted = once(server, 'connection') as Promise<[net.Socket]>
    const client = net.connect(address.port, '127.0.0.1')
    const [socket] = await accepted
    t.teardown(() => {
      client.destroy()
      socket.destroy()
    })
    return { client, socket }
  }
  const pace: BodyPace = { idleMs: 40, minBytes: 1, windowMs: 40 }

  await t.test('a client that sends nothing is cut', async (t) => {
    const { socket } = await connect()
    socket.resume()
    const cuts: string[] = []
    const stop = guardBody({ socket, complete: false }, pace, (why) => cuts.push(why))
    t.teardown(stop)
    await until(() => cuts.length > 0, 'the cut')
    t.match(cuts, [IDLE])
  })

  await t.test('a client whose bytes the proxy does not read (paused socket) is not cut', async (t) => {
    const { client, socket } = await connect()
    socket.pause()
    client.write(Buffer.alloc(1 << 20)) // fills the socket buffers; the guard sees a paused socket
    const cuts: string[] = []
    const stop = guardBody({ socket, complete: false }, pace, (why) => cuts.push(why))
    t.teardown(stop)
    await new Promise((resolve) => setTimeout(resolve, 200)) // five idle periods
    t.same(cuts, [], 'not cut while paused')
    socket.resume()
    await until(() => cuts.length > 0, 'the cut once reading resumes and the client stays silent')
    t.match(cuts, [IDLE])
  })
})
