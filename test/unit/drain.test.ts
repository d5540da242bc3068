import t from 'tap'
import { DrainState, drainAndClose } from '../../src/drain.js'
import { logSink } from '../helpers/log-sink.js'

function target(events: string[]): Parameters<typeof drainAndClose>[0] {
  return {
    beginDrain: () => events.push('drain'),
    close: async () => {
      events.push('close')
    },
    app: {
      server: {
        closeIdleConnections: () => events.push('idle'),
        closeAllConnections: () => events.push('all'),
      },
    },
  }
}

void t.test('DrainState: ready until drained', (t) => {
  const state = new DrainState()
  t.equal(state.problem(), null)
  t.notOk(state.draining)
  state.begin()
  t.ok(state.draining)
  t.match(state.problem(), /draining/)
  t.end()
})

void t.test('drainAndClose: drain first, close after the drain period', async (t) => {
  const events: string[] = []
  const { log, records } = logSink()
  const started = performance.now()
  await drainAndClose(target(events), { reason: 'SIGTERM', drainMs: 150, deadlineMs: 10_000, skip: new AbortController().signal, log })
  t.ok(performance.now() - started >= 140, 'waited for the drain')
  t.same(events, ['drain', 'close'])
  t.match(records.map((r) => r.msg), [/^draining/, /^shutting down/])
})

void t.test('drainAndClose: no drain period, or one cut short', async (t) => {
  const events: string[] = []
  const { log } = logSink()
  await drainAndClose(target(events), { reason: 'SIGTERM', drainMs: 0, deadlineMs: 10_000, skip: new AbortController().signal, log })
  t.same(events, ['drain', 'close'])
  const skip = new AbortController()
  const done = drainAndClose(target([]), { reason: 'SIGTERM', drainMs: 600_000, deadlineMs: 10_000, skip: skip.signal, log })
  skip.abort()
  await done
  t.pass('a second signal ends the drain at once')
})

void t.test('drainAndClose: connections still open at the deadline are cut', async (t) => {
  const events: string[] = []
  const { log } = logSink()
  let release = (): void => undefined
  const slow = { ...target(events), close: () => new Promise<void>((resolve) => (release = resolve)) }
  const done = drainAndClose(slow, { reason: 'SIGTERM', drainMs: 0, deadlineMs: 300, skip: new AbortController().signal, log })
  while (!events.includes('all')) await new Promise((r) => setTimeout(r, 20))
  t.ok(events.includes('idle'), 'idle connections were closed as they went idle')
  release()
  await done
})
