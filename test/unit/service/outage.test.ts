/** Outage (src/service/outage.ts): what counts as unreachable, how long it is remembered, what is kept. */
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { Writable } from 'node:stream'
import t from 'tap'
import type { Test } from 'tap'
import { LastGood } from '../../../src/cache/last-good.js'
import { UpstreamError, UpstreamStatusError } from '../../../src/errors.js'
import { Outage, REMEMBER_DOWN_MS } from '../../../src/service/outage.js'
import { progressMarker, withOutageProgress, OUTAGE_PROGRESS } from '../../../src/service/outage-progress.js'
import { memoryBody } from '../../../src/cache/body.js'
import { encodePacket, encodeFlush } from '../../../src/protocol/pkt-line.js'
import { logSink } from '../../helpers/log-sink.js'
import { until } from '../../helpers/wait.js'

const KEY = 'a'.repeat(64)

function devNull(): Writable {
  return new Writable({
    write(_c, _e, cb) {
      cb()
    },
  })
}

async function setup(t: Test): Promise<{ outage: Outage; clock: { now: number }; lastGood: LastGood }> {
  const { log } = logSink()
  const clock = { now: 1_700_000_000_000 }
  const lastGood = new LastGood(t.testdir(), log)
  await lastGood.init()
  const outage = new Outage({ enabled: true, outageTtlMs: 3_600_000, lastGood, log, now: () => clock.now, upstreamName: 'http://up' })
  return { outage, clock, lastGood }
}

void t.test('unreachable: refused/reset, no headers in time, 502/503/504; not a 404 or an abort', (t) => {
  t.equal(Outage.isUnreachable(new UpstreamError('ERR_UPSTREAM_UNAVAILABLE', 'refused')), true)
  t.equal(Outage.isUnreachable(new UpstreamError('ERR_UPSTREAM_TIMEOUT', 'no headers')), true)
  for (const s of [502, 503, 504]) t.equal(Outage.isUnreachable(new UpstreamStatusError(s, '')), true, String(s))
  t.equal(Outage.isUnreachable(new UpstreamStatusError(404, '')), false)
  t.equal(Outage.isUnreachable(new UpstreamError('ERR_UPSTREAM_ABORTED', 'client left')), false)
  t.equal(Outage.isUnreachable(new Error('x', { cause: new UpstreamError('ERR_UPSTREAM_UNAVAILABLE', 'deep') })), true, 'as a cause')
  t.equal(Outage.isUnreachable(new Error('other')), false)
  t.end()
})

void t.test('down is remembered for a few seconds; an answer ends it at once', async (t) => {
  const { outage, clock } = await setup(t)
  t.equal(outage.status().upstreamReachable, true)
  outage.down('refused')
  t.equal(outage.remembersDown(), true)
  t.match(outage.status(), { upstreamReachable: false, since: clock.now, reason: 'refused' })
  clock.now += REMEMBER_DOWN_MS - 1
  t.equal(outage.remembersDown(), true, 'within the window: do not wait on it again')
  clock.now += 1
  t.equal(outage.remembersDown(), false, 'after it: try the upstream again')
  t.equal(outage.status().upstreamReachable, false, 'still an outage until something answers')
  outage.up()
  t.match(outage.status(), { upstreamReachable: true, since: null, reason: null })
  t.match(outage.error('this pack').message, /upstream http:\/\/up is unreachable: this pack cannot be answered/)
  t.equal(outage.error('x').statusCode, 503)
})

void t.test('keep(): a body that ends whole and valid is saved atomically and survives; another repository cannot read it', async (t) => {
  const { outage, lastGood } = await setup(t)
  const body = Buffer.concat([encodePacket('hello\n'), encodeFlush()])
  await pipeline(outage.keep('P/a.git', KEY, Readable.from([body.subarray(0, 3), body.subarray(3)]), () => true), devNull())
  await until(async () => (await lastGood.load('P/a.git', KEY)) !== null, 'the copy is written')
  t.same(await lastGood.load('P/a.git', KEY), body)
  t.equal(await lastGood.load('P/other.git', KEY), null, 'the key never answers for another repository')
  await pipeline(outage.keep('P/a.git', KEY, Readable.from([Buffer.from('bad')]), () => false), devNull())
  t.same(await lastGood.load('P/a.git', KEY), body, 'an invalid body does not replace the good one')
})

void t.test('the progress line goes after NAK (v0) / packfile (v2), once, only when asked for', async (t) => {
  const v0 = Buffer.concat([encodePacket(`want ${'1'.repeat(40)} side-band-64k ofs-delta\n`), encodeFlush(), encodePacket('done\n')])
  t.equal(progressMarker(0, v0), 'NAK\n')
  const quiet = Buffer.concat([encodePacket(`want ${'1'.repeat(40)} side-band-64k no-progress\n`), encodeFlush(), encodePacket('done\n')])
  t.equal(progressMarker(0, quiet), null)
  const answer = Buffer.concat([encodePacket('NAK\n'), encodePacket(Buffer.from('\x01PACK')), encodeFlush()])
  const out: Buffer[] = []
  const body = withOutageProgress(memoryBody(answer), 'NAK\n')
  for await (const c of body.stream) out.push(c as Buffer)
  const text = Buffer.concat(out).toString('latin1')
  t.equal(text.split(OUTAGE_PROGRESS).length - 1, 1)
  t.ok(text.startsWith('0008NAK\n'), 'after the NAK line')
})
