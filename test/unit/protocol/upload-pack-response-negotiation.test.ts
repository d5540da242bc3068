/**
 * The upload-pack answer checker on negotiation rounds (the `negotiation`
 * option, docs/protocol.md "Answers without a pack"): complete without a
 * pack only in the shapes upload-pack writes, and never when a `ready`
 * promised a pack that did not come.
 */
import t from 'tap'
import type { UploadPackResponseCheckerOptions } from '../../../src/protocol/upload-pack-response.js'
import { DELIM, FLUSH, checkResponse as check, chunkings, fixture, pkt, repo, syntheticPack } from './fixtures/transcripts.js'

const V0: UploadPackResponseCheckerOptions = { protocol: 'v0', sideband: 'side-band-64k', expectPack: true, negotiation: true }
const V2: UploadPackResponseCheckerOptions = { protocol: 'v2', sideband: 'none', expectPack: true, negotiation: true }
const A = repo.mainParent
const B = repo.first

const packPackets = (): Buffer => Buffer.concat([pkt(Buffer.concat([Buffer.from([1]), syntheticPack(2, 0)])), FLUSH])

void t.test('v2: acknowledgments without ready are a complete answer', async (t) => {
  const answers: [string, Buffer][] = [
    ['NAK', Buffer.concat([pkt('acknowledgments\n'), pkt('NAK\n'), FLUSH])],
    ['ACKs', Buffer.concat([pkt('acknowledgments\n'), pkt(`ACK ${A}\n`), pkt(`ACK ${B}\n`), FLUSH])],
  ]
  for (const [name, body] of answers) {
    for (const { name: how, parts } of chunkings(body)) {
      const run = check(parts, V2)
      t.same(run.result, { ok: true, packObjects: 0, shallow: [], unshallow: [] }, `${name}, ${how}`)
      t.same(run.stored, body, `${name}, ${how}: stored as sent`)
    }
    t.match(check([body], { ...V2, negotiation: false }).result, { ok: false, reason: 'response has no pack' }, `${name}: not without the option`)
  }
})

void t.test('v2: a real fetch answer (acknowledgments, ready, packfile) passes with the option', async (t) => {
  const body = fixture('http-v2-fetch/03-git-upload-pack.res.bin')
  t.match(check([body], V2).result, { ok: true }, 'with negotiation')
  t.match(check([body], { ...V2, negotiation: false }).result, { ok: true }, 'without')
})

void t.test('v2: ready must be followed by the pack', async (t) => {
  const readyFlush = Buffer.concat([pkt('acknowledgments\n'), pkt(`ACK ${A}\n`), pkt('ready\n'), FLUSH])
  t.match(check([readyFlush], V2).result, { ok: false, reason: /flush after "ready"/ })
  const readyCut = Buffer.concat([pkt('acknowledgments\n'), pkt(`ACK ${A}\n`), pkt('ready\n'), DELIM])
  t.match(check([readyCut], V2).result, { ok: false, reason: /ended before the final flush/ })
  const readyNoPack = Buffer.concat([pkt('acknowledgments\n'), pkt('ready\n'), DELIM, pkt('packfile\n'), FLUSH])
  t.match(check([readyNoPack], V2).result, { ok: false, reason: 'response has no pack' })
  const cut = Buffer.concat([pkt('acknowledgments\n'), pkt(`ACK ${A}\n`)])
  t.match(check([cut], V2).result, { ok: false }, 'cut inside the section')
})

void t.test('v0: ACK lines ending in NAK, then the end of the body', async (t) => {
  const answers: [string, Buffer, UploadPackResponseCheckerOptions][] = [
    ['NAK only', pkt('NAK\n'), V0],
    ['multi_ack_detailed', Buffer.concat([pkt(`ACK ${A} common\n`), pkt(`ACK ${B} common\n`), pkt('NAK\n')]), V0],
    ['multi_ack', Buffer.concat([pkt(`ACK ${A} continue\n`), pkt('NAK\n')]), V0],
    ['ready without no-done', Buffer.concat([pkt(`ACK ${A} common\n`), pkt(`ACK ${A} ready\n`), pkt('NAK\n')]), V0],
    ['shallow list first', Buffer.concat([pkt(`shallow ${A}\n`), FLUSH, pkt(`ACK ${B} common\n`), pkt('NAK\n')]), V0],
    ['no side-band', Buffer.concat([pkt(`ACK ${A} common\n`), pkt('NAK\n')]), { ...V0, sideband: 'none' }],
  ]
  for (const [name, body, opts] of answers) {
    for (const { name: how, parts } of chunkings(body)) {
      const run = check(parts, opts)
      t.match(run.result, { ok: true, packObjects: 0 }, `${name}, ${how}`)
      t.same(run.stored, body, `${name}, ${how}: stored as sent`)
    }
    t.match(check([body], { ...opts, negotiation: false }).result, { ok: false }, `${name}: not without the option`)
  }
})

void t.test('v0: what is not a complete negotiation answer', async (t) => {
  const no = (name: string, body: Buffer, opts = V0): void => {
    t.match(check([body], opts).result, { ok: false }, name)
  }
  no('empty', Buffer.alloc(0))
  no('ends after an ACK (cut before NAK)', Buffer.concat([pkt(`ACK ${A} common\n`), pkt(`ACK ${B} common\n`)]))
  no('ends inside a packet', Buffer.concat([pkt(`ACK ${A} common\n`), pkt('NAK\n').subarray(0, 5)]))
  // no-done: after ACK ready + NAK come ACK <oid> and the pack (get_common_commits).
  no('no-done: ready, NAK and nothing more', Buffer.concat([pkt(`ACK ${A} ready\n`), pkt('NAK\n')]), { ...V0, noDone: true })
  no('no-done: ready, NAK, ACK, no pack', Buffer.concat([pkt(`ACK ${A} ready\n`), pkt('NAK\n'), pkt(`ACK ${A}\n`)]), { ...V0, noDone: true })
  no('shallow list only', Buffer.concat([pkt(`shallow ${A}\n`), FLUSH]))
  no('ERR', Buffer.concat([pkt(`ACK ${A} common\n`), pkt('ERR upload-pack: not our ref\n')]))
})

void t.test('v0: no-done, ready, and the pack in the same answer', async (t) => {
  const body = Buffer.concat([pkt(`ACK ${A} common\n`), pkt(`ACK ${A} ready\n`), pkt('NAK\n'), pkt(`ACK ${A}\n`), packPackets()])
  t.match(check([body], { ...V0, noDone: true }).result, { ok: true, packObjects: 0 })
  t.match(check([fixture('http-v0-fetch/02-git-upload-pack.res.bin')], { ...V0, noDone: true }).result, { ok: true }, 'real git 2.39 fetch answer')
})
