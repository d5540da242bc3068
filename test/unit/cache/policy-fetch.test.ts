/**
 * The policy for incremental fetches (DESIGN §2, docs/protocol.md): which
 * v0/v1 and v2 requests with haves or `shallow` lines are cacheable, and
 * which fields change their key. Bodies go through the real parsers, as
 * the fronts call the policy. Clone keys are pinned byte for byte to what
 * they were before fetches became cacheable.
 */
import t, { type Test } from 'tap'
import { decideFetchV2, decideUploadPackV1, fetchCacheKey, type FetchKeyParts, type UploadPackDecision } from '../../../src/cache/policy.js'
import { parseUploadPackRequestV1 } from '../../../src/protocol/v1/upload-pack-request.js'
import { parseCommandRequestV2, parseFetchArgsV2 } from '../../../src/protocol/v2/command-request.js'
import { DELIM, FLUSH, fixture, pkt, repo } from '../protocol/fixtures/transcripts.js'

const REPO = 'group/app.git'
const A = repo.mainParent
const B = repo.first
const C = repo.feature

/** What git 2.39.5 put after the first want of a fetch over HTTP. */
const HTTP_CAPS = ['multi_ack_detailed', 'no-done', 'side-band-64k', 'thin-pack', 'no-progress', 'ofs-delta', 'deepen-since', 'deepen-not', 'agent=git/2.39.5']

interface V1 {
  wants: string[]
  caps: string[]
  lines: string[]
  haves: string[]
  /** 'done', 'flush' (a negotiation round), or nothing after the haves. */
  end: 'done' | 'flush' | 'none'
}

const V1_BASE: V1 = { wants: [repo.main], caps: HTTP_CAPS, lines: [], haves: [A, B], end: 'done' }

function v1Body(r: V1): Buffer {
  const [first, ...rest] = r.wants
  const parts: Buffer[] = []
  if (first !== undefined) parts.push(pkt(`want ${[first, ...r.caps].join(' ')}\n`))
  for (const w of rest) parts.push(pkt(`want ${w}\n`))
  for (const l of r.lines) parts.push(pkt(`${l}\n`))
  parts.push(FLUSH)
  for (const h of r.haves) parts.push(pkt(`have ${h}\n`))
  if (r.end === 'done') parts.push(pkt('done\n'))
  if (r.end === 'flush') parts.push(FLUSH)
  return Buffer.concat(parts)
}

const decideV1 = (r: V1 | Buffer, repoPath = REPO): UploadPackDecision =>
  decideUploadPackV1(repoPath, parseUploadPackRequestV1(Buffer.isBuffer(r) ? r : v1Body(r)))
const v1 = (o: Partial<V1>): V1 => ({ ...V1_BASE, ...o })

const V2_CAPS = ['agent=git/2.39.5', 'object-format=sha1']
const V2_BASE = ['thin-pack', 'no-progress', 'ofs-delta', `want ${repo.main}`, `have ${A}`, `have ${B}`]

function v2Body(args: string[], caps = V2_CAPS): Buffer {
  return Buffer.concat([pkt('command=fetch\n'), ...caps.map((c) => pkt(`${c}\n`)), DELIM, ...args.map((a) => pkt(`${a}\n`)), FLUSH])
}

function decideV2(args: string[] | Buffer, caps = V2_CAPS, repoPath = REPO): UploadPackDecision {
  const cmd = parseCommandRequestV2(Buffer.isBuffer(args) ? args : v2Body(args, caps))
  if (cmd === null) throw new Error('empty request')
  return decideFetchV2(repoPath, cmd.capabilities, parseFetchArgsV2(cmd.args))
}

function keyOf(d: UploadPackDecision): string {
  if (!d.cacheable) throw new Error(`expected a cacheable request, got: ${d.reason}`)
  return d.key
}

interface Row {
  field: string
  changes: boolean
  a: () => string
  b: () => string
}

function checkRows(t: Test, rows: Row[]): void {
  for (const row of rows) {
    const a = row.a()
    const b = row.b()
    t.match(a, /^[0-9a-f]{64}$/, `${row.field}: a sha256 hex key`)
    if (row.changes) t.not(a, b, `${row.field}: changes the key`)
    else t.equal(a, b, `${row.field}: same key`)
  }
}

const without = (caps: string[], ...drop: string[]): string[] => caps.filter((c) => !drop.includes(c))
const swap = (args: string[], from: string, to: string): string[] => args.map((a) => (a === from ? to : a))

void t.test('clone keys are byte-identical to the ones before fetch caching', async (t) => {
  // Computed with the policy of commit 792e942 (clones only) on the same captures.
  const body = (name: string): Buffer => fixture(`http-${name}-git-upload-pack.req.bin`)
  const pinned: [string, 'v0' | 'v2', string][] = [
    ['v0-clone/02', 'v0', '802c3e99d3da618e06dd12141578d0729379d2d9df219b9278b0f112e96f0efd'],
    ['v0-depth1/02', 'v0', '20fa627c1a6af84528ac3802c881c48b7df0cee8d02454621b4a1521dbe49e85'],
    ['v0-depth1/03', 'v0', '8c4b468baebd53396a452a15c2aef0c6b7fa198498d99c6184e8d84fff846a75'],
    ['v0-filter/02', 'v0', '166f566aa004437b83ffc2c4ea9be28c36d16caace45dd0ef86759af493dbbef'],
    ['v0-since/02', 'v0', '89824f9149c65fe2a0e221e50d0c8402a0de6bff0896ab45e263641e88f3c696'],
    ['v1-clone/02', 'v0', '802c3e99d3da618e06dd12141578d0729379d2d9df219b9278b0f112e96f0efd'],
    ['v2-clone/03', 'v2', '114475183c8101f059e907535d339e79202b245c412dd55b94357aca652a38a3'],
    ['v2-depth1/03', 'v2', '326139f3e7729dc749626cd497427dd7c71114297b1c80fa6d7427e95831b195'],
    ['v2-filter/03', 'v2', 'f8e6bae73cdde084f00befea153de21a9dbcf47346d82185fe19a2655543d5af'],
    ['v2-since/03', 'v2', '08a38478911deecbd717c95973c4ff0714d4b04621ebf459c3fe662da718286b'],
  ]
  for (const [name, family, key] of pinned) {
    const d = family === 'v0' ? decideV1(body(name), 'team/app.git') : decideV2(body(name), V2_CAPS, 'team/app.git')
    t.match(d, { cacheable: true, fetch: false, negotiation: false }, `${name}: a clone`)
    t.equal(keyOf(d), key, `${name}: same key as before`)
  }
})

void t.test('real git 2.39 fetch bodies', async (t) => {
  const body = (name: string): Buffer => fixture(`http-${name}-git-upload-pack.req.bin`)
  t.match(decideV1(body('v0-fetch/02')), { cacheable: true, family: 'v0', fetch: true, negotiation: false, expectPack: true, noDone: true })
  t.match(decideV2(body('v2-fetch/03')), { cacheable: true, family: 'v2', fetch: true, negotiation: true, expectPack: true })
})

void t.test('v0/v1 fetch: which fields change the key', async (t) => {
  const k = (r: V1, repoPath = REPO) => () => keyOf(decideV1(r, repoPath))
  const base = k(V1_BASE)
  const clone = k(v1({ haves: [] }))
  const rows: Row[] = [
    { field: 'repository', changes: true, a: base, b: k(V1_BASE, 'group/other.git') },
    { field: 'a fetch vs the clone of the same wants', changes: true, a: base, b: clone },
    { field: 'haves: another set', changes: true, a: base, b: k(v1({ haves: [A, C] })) },
    { field: 'haves: a subset', changes: true, a: base, b: k(v1({ haves: [A] })) },
    { field: 'haves: order', changes: false, a: base, b: k(v1({ haves: [B, A] })) },
    { field: 'haves: duplicates', changes: false, a: base, b: k(v1({ haves: [A, B, A] })) },
    { field: 'wants: order and duplicates', changes: false, a: k(v1({ wants: [repo.main, C] })), b: k(v1({ wants: [C, repo.main, C] })) },
    { field: 'shallow lines', changes: true, a: base, b: k(v1({ lines: [`shallow ${A}`] })) },
    { field: 'shallow lines: another set', changes: true, a: k(v1({ lines: [`shallow ${A}`] })), b: k(v1({ lines: [`shallow ${B}`] })) },
    { field: 'shallow lines: order', changes: false, a: k(v1({ lines: [`shallow ${A}`, `shallow ${B}`] })), b: k(v1({ lines: [`shallow ${B}`, `shallow ${A}`] })) },
    { field: 'deepen', changes: true, a: k(v1({ lines: [`shallow ${A}`, 'deepen 1'] })), b: k(v1({ lines: [`shallow ${A}`, 'deepen 2'] })) },
    { field: 'deepen-since', changes: true, a: base, b: k(v1({ lines: ['deepen-since 1704326400'] })) },
    { field: 'deepen-relative', changes: true, a: k(v1({ lines: [`shallow ${A}`, 'deepen 1'] })), b: k(v1({ caps: [...HTTP_CAPS, 'deepen-relative'], lines: [`shallow ${A}`, 'deepen 1'] })) },
    { field: 'filter', changes: true, a: base, b: k(v1({ lines: ['filter blob:none'] })) },
    { field: 'thin-pack', changes: true, a: base, b: k(v1({ caps: without(HTTP_CAPS, 'thin-pack') })) },
    { field: 'multi_ack_detailed -> multi_ack', changes: true, a: base, b: k(v1({ caps: [...without(HTTP_CAPS, 'multi_ack_detailed'), 'multi_ack'] })) },
    { field: 'multi_ack_detailed -> none', changes: true, a: base, b: k(v1({ caps: without(HTTP_CAPS, 'multi_ack_detailed') })) },
    { field: 'multi_ack_detailed beside multi_ack', changes: false, a: base, b: k(v1({ caps: [...HTTP_CAPS, 'multi_ack'] })) },
    { field: 'no-done', changes: true, a: base, b: k(v1({ caps: without(HTTP_CAPS, 'no-done') })) },
    { field: 'done vs a negotiation round', changes: true, a: base, b: k(v1({ end: 'flush' })) },
    { field: 'include-tag', changes: true, a: base, b: k(v1({ caps: [...HTTP_CAPS, 'include-tag'] })) },
    { field: 'ofs-delta', changes: true, a: base, b: k(v1({ caps: without(HTTP_CAPS, 'ofs-delta') })) },
    { field: 'side-band-64k -> side-band', changes: true, a: base, b: k(v1({ caps: [...without(HTTP_CAPS, 'side-band-64k'), 'side-band'] })) },
    { field: 'object-format', changes: true, a: base, b: k(v1({ caps: [...HTTP_CAPS, 'object-format=sha256'], wants: [repo.sha256Main], haves: [] , lines: [`shallow ${repo.sha256Main}`] })) },
    { field: 'no-progress', changes: false, a: base, b: k(v1({ caps: without(HTTP_CAPS, 'no-progress') })) },
    { field: 'agent', changes: false, a: base, b: k(v1({ caps: [...without(HTTP_CAPS, 'agent=git/2.39.5'), 'agent=git/2.55.0'] })) },
    { field: 'session-id', changes: false, a: base, b: k(v1({ caps: [...HTTP_CAPS, 'session-id=abc'] })) },
    { field: 'capability order', changes: false, a: base, b: k(v1({ caps: [...HTTP_CAPS].reverse() })) },
    { field: 'deepen-since/deepen-not words', changes: false, a: base, b: k(v1({ caps: without(HTTP_CAPS, 'deepen-since', 'deepen-not') })) },
    {
      field: 'shallow-list step vs the same request with done',
      changes: true,
      a: k(v1({ lines: [`shallow ${A}`, 'deepen 1'], haves: [], end: 'none' })),
      b: k(v1({ lines: [`shallow ${A}`, 'deepen 1'], haves: [], end: 'done' })),
    },
  ]
  checkRows(t, rows)
})

void t.test('v0/v1 fetch: what a decision says, and what stays uncacheable', async (t) => {
  t.match(decideV1(V1_BASE), { cacheable: true, fetch: true, negotiation: false, expectPack: true, noDone: true })
  t.match(decideV1(v1({ end: 'flush' })), { cacheable: true, fetch: true, negotiation: true, expectPack: true, noDone: true })
  t.match(decideV1(v1({ end: 'flush', caps: without(HTTP_CAPS, 'no-done') })), { negotiation: true, noDone: false })
  t.match(decideV1(v1({ haves: [], lines: [`shallow ${A}`, 'deepen 1'], end: 'none' })), { cacheable: true, fetch: true, expectPack: false })
  t.match(decideV1(v1({ haves: [], lines: [`shallow ${A}`], end: 'done' })), { cacheable: true, fetch: true, expectPack: true })
  const no = (r: V1 | Buffer, reason: string, name: string): void => {
    t.same(decideV1(r), { cacheable: false, reason }, name)
  }
  no(v1({ lines: ['deepen-not refs/heads/old'] }), 'deepen-not names a ref', 'deepen-not with haves')
  no(v1({ end: 'none' }), 'haves without a closing flush', 'haves and neither flush nor done')
  no(v1({ end: 'flush', caps: without(HTTP_CAPS, 'multi_ack_detailed') }), 'negotiation without multi_ack', 'a round without multi-ack')
  no(Buffer.concat([v1Body(v1({ end: 'flush' })), pkt(`have ${C}\n`), FLUSH]), 'more than one negotiation round', 'two flushes after haves')
  no(Buffer.concat([v1Body(v1({ end: 'flush' })), pkt('done\n')]), 'flush before done', 'a flush, then done')
  no(v1({ caps: [...HTTP_CAPS, 'object-format=sha512'] }), 'unknown object-format', 'object-format')
})

void t.test('v2 fetch: which fields change the key', async (t) => {
  const k = (args: string[], caps = V2_CAPS, repoPath = REPO) => () => keyOf(decideV2(args, caps, repoPath))
  const base = k(V2_BASE)
  const done = [...V2_BASE, 'done']
  const rows: Row[] = [
    { field: 'repository', changes: true, a: base, b: k(V2_BASE, V2_CAPS, 'group/other.git') },
    { field: 'a fetch vs the clone of the same wants', changes: true, a: k(done), b: k(done.filter((a) => !a.startsWith('have '))) },
    { field: 'haves: another set', changes: true, a: base, b: k(swap(V2_BASE, `have ${B}`, `have ${C}`)) },
    { field: 'haves: a subset', changes: true, a: base, b: k(V2_BASE.filter((a) => a !== `have ${B}`)) },
    { field: 'haves: order', changes: false, a: base, b: k(['thin-pack', 'no-progress', 'ofs-delta', `want ${repo.main}`, `have ${B}`, `have ${A}`]) },
    { field: 'haves: duplicates', changes: false, a: base, b: k([...V2_BASE, `have ${A}`]) },
    { field: 'argument order', changes: false, a: base, b: k([...V2_BASE].reverse()) },
    { field: 'shallow lines', changes: true, a: base, b: k([...V2_BASE, `shallow ${A}`]) },
    { field: 'shallow lines: order', changes: false, a: k([...V2_BASE, `shallow ${A}`, `shallow ${B}`]), b: k([...V2_BASE, `shallow ${B}`, `shallow ${A}`]) },
    { field: 'deepen', changes: true, a: k([...V2_BASE, `shallow ${A}`, 'deepen 1']), b: k([...V2_BASE, `shallow ${A}`, 'deepen 2']) },
    { field: 'deepen --unshallow', changes: true, a: k([...V2_BASE, `shallow ${A}`, 'deepen 1']), b: k([...V2_BASE, `shallow ${A}`, 'deepen 2147483647']) },
    { field: 'deepen-since', changes: true, a: base, b: k([...V2_BASE, 'deepen-since 1704326400']) },
    { field: 'deepen-relative', changes: true, a: k([...V2_BASE, `shallow ${A}`, 'deepen 1']), b: k([...V2_BASE, `shallow ${A}`, 'deepen 1', 'deepen-relative']) },
    { field: 'filter', changes: true, a: base, b: k([...V2_BASE, 'filter blob:none']) },
    { field: 'thin-pack', changes: true, a: base, b: k(V2_BASE.filter((a) => a !== 'thin-pack')) },
    { field: 'done', changes: true, a: base, b: k(done) },
    { field: 'wait-for-done', changes: true, a: base, b: k([...V2_BASE, 'wait-for-done']) },
    { field: 'include-tag', changes: true, a: base, b: k([...V2_BASE, 'include-tag']) },
    { field: 'ofs-delta', changes: true, a: base, b: k(V2_BASE.filter((a) => a !== 'ofs-delta')) },
    { field: 'no-progress', changes: false, a: base, b: k(V2_BASE.filter((a) => a !== 'no-progress')) },
    { field: 'agent', changes: false, a: base, b: k(V2_BASE, ['agent=git/2.55.0', 'object-format=sha1']) },
    { field: 'session-id', changes: false, a: base, b: k(V2_BASE, [...V2_CAPS, 'session-id=abc']) },
    { field: 'object-format sha1 implied', changes: false, a: base, b: k(V2_BASE, ['agent=git/2.39.5']) },
  ]
  checkRows(t, rows)
})

void t.test('v2 fetch: what a decision says, and what stays uncacheable', async (t) => {
  t.match(decideV2(V2_BASE), { cacheable: true, family: 'v2', fetch: true, negotiation: true, expectPack: true })
  t.match(decideV2([...V2_BASE, 'done']), { cacheable: true, fetch: true, negotiation: false })
  t.match(decideV2([...V2_BASE, 'wait-for-done']), { cacheable: true, fetch: true, negotiation: true })
  // An already-shallow client without haves: straight to the pack (no acknowledgments).
  t.match(decideV2([`want ${repo.main}`, `shallow ${A}`, 'deepen 1']), { cacheable: true, fetch: true, negotiation: false })
  const no = (args: string[], reason: string, caps = V2_CAPS): void => {
    t.same(decideV2(args, caps), { cacheable: false, reason }, reason)
  }
  no([...V2_BASE, 'deepen-not refs/heads/old'], 'deepen-not names a ref')
  no([...V2_BASE, 'want-ref refs/heads/main'], 'want-ref names refs')
  no([...V2_BASE, 'packfile-uris https'], 'packfile-uris')
  no([...V2_BASE, 'sideband-all'], 'sideband-all')
  no(V2_BASE, 'server-option', [...V2_CAPS, 'server-option=ci'])
  // --negotiate-only (push negotiation): haves and no wants.
  no([`have ${A}`, 'wait-for-done'], 'no wants')
})

void t.test('fetchCacheKey: every part is in the key', async (t) => {
  const base: FetchKeyParts = {
    repo: REPO,
    family: 'v2',
    step: 'negotiation',
    objectFormat: 'sha1',
    wants: [repo.main],
    sideband: 'side-band-64k',
    ofsDelta: true,
    includeTag: false,
    deepen: null,
    deepenSince: null,
    deepenRelative: false,
    filter: null,
    haves: [A],
    shallows: [],
    thinPack: true,
    multiAck: null,
    noDone: null,
    done: false,
    waitForDone: false,
  }
  const variants: [string, Partial<FetchKeyParts>][] = [
    ['repo', { repo: 'x/y.git' }],
    ['family', { family: 'v0' }],
    ['step', { step: 'pack' }],
    ['objectFormat', { objectFormat: 'sha256' }],
    ['wants', { wants: [C] }],
    ['sideband', { sideband: 'side-band' }],
    ['ofsDelta', { ofsDelta: false }],
    ['includeTag', { includeTag: true }],
    ['deepen', { deepen: 1 }],
    ['deepenSince', { deepenSince: 1 }],
    ['deepenRelative', { deepenRelative: true }],
    ['filter', { filter: 'blob:none' }],
    ['haves', { haves: [B] }],
    ['shallows', { shallows: [A] }],
    ['thinPack', { thinPack: false }],
    ['multiAck', { multiAck: 'multi_ack' }],
    ['noDone', { noDone: true }],
    ['done', { done: true }],
    ['waitForDone', { waitForDone: true }],
  ]
  const k0 = fetchCacheKey(base)
  for (const [field, v] of variants) t.not(fetchCacheKey({ ...base, ...v }), k0, field)
  t.equal(fetchCacheKey({ ...base, haves: [A, A] }), k0, 'haves de-duplicated')
})
