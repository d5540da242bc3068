/**
 * The cache policy (src/cache/policy.ts): which upload-pack and ls-refs
 * requests are cacheable, and which request fields change the key. Inputs
 * are pkt-line bodies put through the real parsers, the way the fronts call
 * the policy. Each key row says whether changing the field changes the key,
 * with git 2.39's evidence from git-protocol-notes.md §5.
 */
import t, { type Test } from 'tap'
import {
  advertisementKey,
  cacheKey,
  decideFetchV2,
  decideLsRefs,
  decideUploadPackV1,
  type UploadPackDecision,
} from '../../../src/cache/policy.js'
import { ProtocolError } from '../../../src/errors.js'
import { parseUploadPackRequestV1 } from '../../../src/protocol/v1/upload-pack-request.js'
import { parseCommandRequestV2, parseFetchArgsV2 } from '../../../src/protocol/v2/command-request.js'
import { DELIM, FLUSH, fixture, pkt, repo } from '../protocol/fixtures/transcripts.js'

const REPO = 'group/app.git'

/** What git 2.39.5 put after the first want of a full clone over HTTP. */
const GIT_CAPS = [
  'multi_ack_detailed',
  'no-done',
  'side-band-64k',
  'thin-pack',
  'ofs-delta',
  'deepen-since',
  'deepen-not',
  'agent=git/2.39.5',
]

// ---------------------------------------------------------------- builders

interface V1Request {
  wants: string[]
  /** The words after the first want's oid. */
  caps: string[]
  /** shallow / deepen / deepen-since / deepen-not / filter lines, after the wants. */
  lines?: string[]
  haves?: string[]
  /** Default true. */
  done?: boolean
}

/** A v0/v1 `POST git-upload-pack` body as git writes it. */
function v1Body(r: V1Request): Buffer {
  const [first, ...rest] = r.wants
  const parts: Buffer[] = []
  if (first !== undefined) parts.push(pkt(`want ${[first, ...r.caps].join(' ')}\n`))
  for (const w of rest) parts.push(pkt(`want ${w}\n`))
  for (const l of r.lines ?? []) parts.push(pkt(`${l}\n`))
  parts.push(FLUSH)
  for (const h of r.haves ?? []) parts.push(pkt(`have ${h}\n`))
  if (r.done ?? true) parts.push(pkt('done\n'))
  return Buffer.concat(parts)
}

const V1: V1Request = { wants: [repo.main, repo.feature], caps: GIT_CAPS }
const v1With = (o: Partial<V1Request>): V1Request => ({ ...V1, ...o })
const capsWithout = (...drop: string[]): string[] => GIT_CAPS.filter((c) => !drop.includes(c))
const capsWith = (...add: string[]): string[] => [...GIT_CAPS, ...add]

function decideV1(r: V1Request | Buffer, repoPath = REPO): UploadPackDecision {
  return decideUploadPackV1(repoPath, parseUploadPackRequestV1(Buffer.isBuffer(r) ? r : v1Body(r)))
}

interface V2Request {
  caps: string[]
  args: string[]
}

/** A v2 `command=fetch` body. */
function v2Body(r: V2Request, command = 'fetch'): Buffer {
  return Buffer.concat([
    pkt(`command=${command}\n`),
    ...r.caps.map((c) => pkt(`${c}\n`)),
    DELIM,
    ...r.args.map((a) => pkt(`${a}\n`)),
    FLUSH,
  ])
}

function decideV2(r: V2Request | Buffer, repoPath = REPO): UploadPackDecision {
  const cmd = parseCommandRequestV2(Buffer.isBuffer(r) ? r : v2Body(r))
  if (cmd === null) throw new Error('empty v2 request')
  return decideFetchV2(repoPath, cmd.capabilities, parseFetchArgsV2(cmd.args))
}

const V2_CAPS = ['agent=git/2.39.5', 'object-format=sha1']
const V2: V2Request = {
  caps: V2_CAPS,
  args: ['thin-pack', 'ofs-delta', `want ${repo.main}`, `want ${repo.feature}`, 'done'],
}
const v2Args = (...args: string[]): V2Request => ({ caps: V2_CAPS, args })
const v2Plus = (...extra: string[]): V2Request => ({ caps: V2_CAPS, args: [...V2.args, ...extra] })

function keyOf(d: UploadPackDecision): string {
  if (!d.cacheable) throw new Error(`expected a cacheable request, got: ${d.reason}`)
  return d.key
}

function lsRefsKey(d: ReturnType<typeof decideLsRefs>): string {
  if (!d.cacheable) throw new Error(`expected a cacheable ls-refs, got: ${d.reason}`)
  return d.key
}

/** One row of a key table: two requests that differ in one field. */
interface KeyRow {
  field: string
  /** Does changing `field` change the key? */
  changes: boolean
  a: () => string
  b: () => string
}

function checkKeyTable(t: Test, rows: KeyRow[]): void {
  for (const row of rows) {
    const a = row.a()
    const b = row.b()
    t.match(a, /^[0-9a-f]{64}$/, `${row.field}: a sha256 hex key`)
    if (row.changes) t.not(a, b, `${row.field}: changes the key`)
    else t.equal(a, b, `${row.field}: same key`)
  }
}

// ---------------------------------------------------------------- v0/v1

void t.test('decideUploadPackV1: which fields change the key', async (t) => {
  const k = (r: V1Request, repoPath = REPO) => () => keyOf(decideV1(r, repoPath))
  const base = k(V1)
  const rows: KeyRow[] = [
    // pitfall 15: the repository (canonical upstream path) is in every key, exact text.
    { field: 'repository', changes: true, a: base, b: k(V1, 'group/other.git') },
    { field: 'repository case', changes: true, a: base, b: k(V1, 'Group/App.git') },
    { field: 'want set', changes: true, a: base, b: k(v1With({ wants: [repo.main] })) },
    // reordered/duplicated wants gave the same sha256 from git.
    { field: 'want order', changes: false, a: base, b: k(v1With({ wants: [repo.feature, repo.main] })) },
    { field: 'duplicate want', changes: false, a: base, b: k(v1With({ wants: [repo.main, repo.feature, repo.main] })) },
    // ofs-delta: 6230 vs 6720 bytes.
    { field: 'ofs-delta', changes: true, a: base, b: k(v1With({ caps: capsWithout('ofs-delta') })) },
    // include-tag: 6106 vs 6230 bytes.
    { field: 'include-tag', changes: true, a: base, b: k(v1With({ caps: capsWith('include-tag') })) },
    // side-band mode: none / side-band / side-band-64k frame differently.
    {
      field: 'side-band-64k -> side-band',
      changes: true,
      a: base,
      b: k(v1With({ caps: [...capsWithout('side-band-64k'), 'side-band'] })),
    },
    {
      field: 'side-band -> no side-band',
      changes: true,
      a: k(v1With({ caps: [...capsWithout('side-band-64k'), 'side-band'] })),
      b: k(v1With({ caps: capsWithout('side-band-64k') })),
    },
    // upload-pack takes side-band-64k when both are asked for.
    { field: 'side-band beside side-band-64k', changes: false, a: base, b: k(v1With({ caps: capsWith('side-band') })) },
    // object-format: sha1 vs sha256; sha1 is the default.
    { field: 'object-format=sha1 spelled out', changes: false, a: base, b: k(v1With({ caps: capsWith('object-format=sha1') })) },
    {
      field: 'object-format sha1 -> sha256',
      changes: true,
      a: k({ wants: [repo.sha256Main], caps: GIT_CAPS }),
      b: k({ wants: [repo.sha256Main], caps: capsWith('object-format=sha256') }),
    },
    // deepen <n>, deepen-since <t>: in the key.
    { field: 'deepen added', changes: true, a: base, b: k(v1With({ lines: ['deepen 1'] })) },
    { field: 'deepen 1 -> 2', changes: true, a: k(v1With({ lines: ['deepen 1'] })), b: k(v1With({ lines: ['deepen 2'] })) },
    // deterministic per timestamp; one --shallow-since sent 1704632879 and 1704632884 five seconds apart.
    {
      field: 'deepen-since t -> t+5',
      changes: true,
      a: k(v1With({ lines: ['deepen-since 1704632879'] })),
      b: k(v1With({ lines: ['deepen-since 1704632884'] })),
    },
    { field: 'deepen-since added', changes: true, a: base, b: k(v1With({ lines: ['deepen-since 1704632879'] })) },
    // filter: exact text; blob:none = blob:limit=0 byte-for-byte, but not normalised.
    { field: 'filter added', changes: true, a: base, b: k(v1With({ lines: ['filter blob:none'] })) },
    {
      field: 'filter blob:none -> blob:limit=0',
      changes: true,
      a: k(v1With({ lines: ['filter blob:none'] })),
      b: k(v1With({ lines: ['filter blob:limit=0'] })),
    },
    // The `filter` capability word itself (git lists it when it sends a filter line) is not a key field.
    {
      field: 'filter capability word',
      changes: false,
      a: k(v1With({ lines: ['filter blob:none'] })),
      b: k(v1With({ caps: capsWith('filter'), lines: ['filter blob:none'] })),
    },
    // thin-pack: no effect without haves (same hash).
    { field: 'thin-pack', changes: false, a: base, b: k(v1With({ caps: capsWithout('thin-pack') })) },
    // no-progress: only channel 2 differs (61 packets vs 0); dropped, channel 2 stripped before storing.
    { field: 'no-progress', changes: false, a: base, b: k(v1With({ caps: capsWith('no-progress') })) },
    // multi_ack*: negotiation only; dropped.
    {
      field: 'multi_ack_detailed -> multi_ack',
      changes: false,
      a: base,
      b: k(v1With({ caps: [...capsWithout('multi_ack_detailed'), 'multi_ack'] })),
    },
    { field: 'multi_ack_detailed dropped', changes: false, a: base, b: k(v1With({ caps: capsWithout('multi_ack_detailed') })) },
    // no-done: sent over HTTP, not ssh; dropped.
    { field: 'no-done', changes: false, a: base, b: k(v1With({ caps: capsWithout('no-done') })) },
    // agent=, session-id= (new every run, observed): dropped.
    {
      field: 'agent',
      changes: false,
      a: base,
      b: k(v1With({ caps: [...capsWithout('agent=git/2.39.5'), 'agent=JGit/6.0'] })),
    },
    { field: 'session-id', changes: false, a: base, b: k(v1With({ caps: capsWith('session-id=1234-abcd') })) },
    // 2.39 adds the words deepen-since deepen-not even to full clones.
    { field: 'deepen-since/deepen-not words', changes: false, a: base, b: k(v1With({ caps: capsWithout('deepen-since', 'deepen-not') })) },
    { field: 'capability order', changes: false, a: base, b: k(v1With({ caps: [...GIT_CAPS].reverse() })) },
    // The first POST of a v0 depth exchange (no done) is answered with the shallow list only.
    {
      field: 'depth exchange: preflight (no done) -> final (done)',
      changes: true,
      a: k(v1With({ lines: ['deepen 1'], done: false })),
      b: k(v1With({ lines: ['deepen 1'] })),
    },
  ]
  checkKeyTable(t, rows)
})

void t.test('decideUploadPackV1 on real git 2.39 bodies', async (t) => {
  const body = (name: string): Buffer => fixture(`http-${name}-git-upload-pack.req.bin`)
  // v0 and v1 POST bodies are identical and share entries (the v1 capture also asked for no-progress).
  t.equal(keyOf(decideV1(body('v0-clone/02'))), keyOf(decideV1(body('v1-clone/02'))), 'v0 and v1 clone share one key')
  const preflight = decideV1(body('v0-depth1/02'))
  const final = decideV1(body('v0-depth1/03'))
  t.match(preflight, { cacheable: true, expectPack: false, family: 'v0' }, 'depth preflight: only the shallow list')
  t.match(final, { cacheable: true, expectPack: true, family: 'v0' }, 'depth final: a pack')
  t.not(keyOf(preflight), keyOf(final), 'the two depth steps are apart')
  t.match(decideV1(body('v0-filter/02')), { cacheable: true }, 'filter clone')
  t.match(decideV1(body('v0-since/02')), { cacheable: true, expectPack: false }, 'shallow-since preflight')
  t.match(decideV1(body('v0-fetch/02')), { cacheable: true, fetch: true, negotiation: false, expectPack: true }, 'incremental fetch (policy-fetch.test.ts)')
})

void t.test('decideUploadPackV1: what a cacheable decision says', async (t) => {
  const cases: { name: string; req: V1Request; want: Record<string, unknown> }[] = [
    {
      name: 'git clone over HTTP',
      req: V1,
      want: { cacheable: true, family: 'v0', sideband: 'side-band-64k', objectFormat: 'sha1', expectPack: true },
    },
    { name: 'side-band', req: v1With({ caps: [...capsWithout('side-band-64k'), 'side-band'] }), want: { sideband: 'side-band' } },
    { name: 'no side-band', req: v1With({ caps: capsWithout('side-band-64k') }), want: { sideband: 'none' } },
    { name: 'no capabilities at all', req: v1With({ caps: [] }), want: { cacheable: true, sideband: 'none', objectFormat: 'sha1' } },
    { name: 'sha256', req: { wants: [repo.sha256Main], caps: capsWith('object-format=sha256') }, want: { objectFormat: 'sha256' } },
    { name: 'deepen without done', req: v1With({ lines: ['deepen 1'], done: false }), want: { expectPack: false } },
    { name: 'deepen-since without done', req: v1With({ lines: ['deepen-since 1704326400'], done: false }), want: { expectPack: false } },
    { name: 'deepen with done', req: v1With({ lines: ['deepen 3'] }), want: { expectPack: true } },
  ]
  for (const c of cases) t.match(decideV1(c.req), c.want, c.name)
})

void t.test('decideUploadPackV1: every reason not to cache', async (t) => {
  const cases: { name: string; body: Buffer; reason: string }[] = [
    { name: 'a lone flush', body: FLUSH, reason: 'no wants' },
    { name: 'an empty body', body: Buffer.alloc(0), reason: 'no wants' },
    // Haves and shallow lines are incremental fetches: policy-fetch.test.ts.
    { name: 'haves without done or flush', body: v1Body(v1With({ haves: [repo.mainParent], done: false })), reason: 'haves without a closing flush' },
    { name: 'deepen-not', body: v1Body(v1With({ lines: ['deepen-not refs/heads/old'] })), reason: 'deepen-not names a ref' },
    { name: 'negotiation without done', body: v1Body(v1With({ done: false })), reason: 'negotiation without done' },
    { name: 'object-format=sha512', body: v1Body(v1With({ caps: capsWith('object-format=sha512') })), reason: 'unknown object-format' },
    { name: 'object-format= empty', body: v1Body(v1With({ caps: capsWith('object-format=') })), reason: 'unknown object-format' },
    { name: 'object-format=SHA1 (case)', body: v1Body(v1With({ caps: capsWith('object-format=SHA1') })), reason: 'unknown object-format' },
    // Checks run in a fixed order: the first that fails names the reason.
    {
      name: 'haves and shallow and deepen-not: deepen-not',
      body: v1Body(v1With({ lines: [`shallow ${repo.first}`, 'deepen-not main'], haves: [repo.mainParent] })),
      reason: 'deepen-not names a ref',
    },
  ]
  for (const c of cases) t.same(decideV1(c.body), { cacheable: false, reason: c.reason }, c.name)
})

void t.test('decideUploadPackV1 behind the v1 parser: malformed bodies never reach the policy', async (t) => {
  const want = (rest: string): Buffer => pkt(`want ${rest}\n`)
  const cases: { name: string; body: Buffer; code: string }[] = [
    { name: 'short object id', body: Buffer.concat([want('123'), FLUSH, pkt('done\n')]), code: 'ERR_PROTOCOL_BAD_REQUEST' },
    { name: 'upper-case object id', body: Buffer.concat([want(repo.main.toUpperCase()), FLUSH, pkt('done\n')]), code: 'ERR_PROTOCOL_BAD_REQUEST' },
    { name: 'deepen 010 (octal to upload-pack)', body: v1Body(v1With({ lines: ['deepen 010'] })), code: 'ERR_PROTOCOL_BAD_REQUEST' },
    { name: 'deepen 0', body: v1Body(v1With({ lines: ['deepen 0'] })), code: 'ERR_PROTOCOL_BAD_REQUEST' },
    { name: 'deepen 2^32+1 (truncated to 1 by upload-pack)', body: v1Body(v1With({ lines: ['deepen 4294967297'] })), code: 'ERR_PROTOCOL_BAD_REQUEST' },
    { name: 'two filters', body: v1Body(v1With({ lines: ['filter blob:none', 'filter tree:0'] })), code: 'ERR_PROTOCOL_BAD_REQUEST' },
    { name: 'deepen with deepen-since', body: v1Body(v1With({ lines: ['deepen 1', 'deepen-since 1'] })), code: 'ERR_PROTOCOL_BAD_REQUEST' },
    { name: 'done before the flush', body: Buffer.concat([want(repo.main), pkt('done\n')]), code: 'ERR_PROTOCOL_BAD_REQUEST' },
    { name: 'data after done', body: Buffer.concat([v1Body(V1), pkt(`have ${repo.first}\n`)]), code: 'ERR_PROTOCOL_BAD_REQUEST' },
    { name: 'delim packet', body: Buffer.concat([want(repo.main), DELIM]), code: 'ERR_PROTOCOL_BAD_REQUEST' },
    { name: 'cut inside a pkt-line', body: v1Body(V1).subarray(0, 20), code: 'ERR_PROTOCOL_TRUNCATED' },
    { name: 'non-hex length', body: Buffer.from('00zzwant'), code: 'ERR_PROTOCOL_BAD_LENGTH' },
  ]
  for (const c of cases) {
    t.throws(() => decideV1(c.body), { constructor: ProtocolError, code: c.code }, c.name)
  }
})

void t.test('decideUploadPackV1 trusts its input: cut-off bodies and hand-made requests', async (t) => {
  // Wants and a deepen line, then nothing: no flush, no done. The parser
  // accepts it (flushesAfterWants false) and the policy files it under the
  // depth preflight's key, though upload-pack would answer it with an error.
  const cut = Buffer.concat([pkt(`want ${repo.main} ${GIT_CAPS.join(' ')}\n`), pkt('deepen 1\n')])
  t.equal(parseUploadPackRequestV1(cut).flushesAfterWants, false)
  t.equal(
    keyOf(decideV1(cut)),
    keyOf(decideV1(v1With({ wants: [repo.main], lines: ['deepen 1'], done: false }))),
    'a body cut before its flush shares the depth preflight key',
  )
  // The policy does not validate object ids: that is the parser's job.
  const handMade = { ...parseUploadPackRequestV1(v1Body(V1)), wants: ['not-an-oid'] }
  t.match(decideUploadPackV1(REPO, handMade), { cacheable: true }, 'a hand-made request with a bad oid')
})

// ---------------------------------------------------------------- v2

void t.test('decideFetchV2: which fields change the key', async (t) => {
  const k = (r: V2Request, repoPath = REPO) => () => keyOf(decideV2(r, repoPath))
  const base = k(V2)
  const rows: KeyRow[] = [
    // pitfall 15: repository always in the key.
    { field: 'repository', changes: true, a: base, b: k(V2, 'group/other.git') },
    { field: 'want set', changes: true, a: base, b: k(v2Args('thin-pack', 'ofs-delta', `want ${repo.main}`, 'done')) },
    // reordered/duplicated wants gave the same sha256.
    {
      field: 'want order',
      changes: false,
      a: base,
      b: k(v2Args('thin-pack', 'ofs-delta', `want ${repo.feature}`, `want ${repo.main}`, 'done')),
    },
    { field: 'duplicate want', changes: false, a: base, b: k(v2Plus(`want ${repo.main}`)) },
    // ofs-delta: 6230 vs 6720 bytes.
    { field: 'ofs-delta', changes: true, a: base, b: k(v2Args('thin-pack', `want ${repo.main}`, `want ${repo.feature}`, 'done')) },
    // include-tag: 6106 vs 6230 bytes.
    { field: 'include-tag', changes: true, a: base, b: k(v2Plus('include-tag')) },
    { field: 'deepen added', changes: true, a: base, b: k(v2Plus('deepen 1')) },
    { field: 'deepen 1 -> 2', changes: true, a: k(v2Plus('deepen 1')), b: k(v2Plus('deepen 2')) },
    { field: 'deepen-since t -> t+5', changes: true, a: k(v2Plus('deepen-since 1704632879')), b: k(v2Plus('deepen-since 1704632884')) },
    // filter: exact text, not normalised.
    { field: 'filter added', changes: true, a: base, b: k(v2Plus('filter blob:none')) },
    { field: 'filter blob:none -> blob:limit=0', changes: true, a: k(v2Plus('filter blob:none')), b: k(v2Plus('filter blob:limit=0')) },
    // thin-pack, done, wait-for-done: no effect without haves (same hash; server skips straight to the pack).
    { field: 'thin-pack', changes: false, a: base, b: k(v2Args('ofs-delta', `want ${repo.main}`, `want ${repo.feature}`, 'done')) },
    { field: 'done', changes: false, a: base, b: k(v2Args('thin-pack', 'ofs-delta', `want ${repo.main}`, `want ${repo.feature}`)) },
    { field: 'wait-for-done', changes: false, a: base, b: k(v2Plus('wait-for-done')) },
    // no-progress: only channel 2 differs (61 packets vs 0); dropped.
    { field: 'no-progress', changes: false, a: base, b: k(v2Plus('no-progress')) },
    // agent, session-id: dropped.
    { field: 'agent', changes: false, a: base, b: k({ caps: ['agent=JGit/6.0', 'object-format=sha1'], args: V2.args }) },
    { field: 'session-id', changes: false, a: base, b: k({ caps: [...V2_CAPS, 'session-id=abcd-1234'], args: V2.args }) },
    { field: 'no capabilities at all', changes: false, a: base, b: k({ caps: [], args: V2.args }) },
    // object-format: sha1 vs sha256; sha1 is the default.
    { field: 'object-format=sha1 left out', changes: false, a: base, b: k({ caps: ['agent=git/2.39.5'], args: V2.args }) },
    {
      field: 'object-format sha1 -> sha256',
      changes: true,
      a: k({ caps: ['object-format=sha1'], args: [`want ${repo.sha256Main}`, 'done'] }),
      b: k({ caps: ['object-format=sha256'], args: [`want ${repo.sha256Main}`, 'done'] }),
    },
    // argument order: dropped.
    { field: 'argument order', changes: false, a: base, b: k(v2Args(...[...V2.args].reverse())) },
    { field: 'capability order', changes: false, a: base, b: k({ caps: [...V2_CAPS].reverse(), args: V2.args }) },
  ]
  checkKeyTable(t, rows)
})

void t.test('v0 and v2 families are apart', async (t) => {
  // Same wants and the same pack-shaping options, but the envelopes differ
  // (v0: `NAK` then side-band; v2: a `packfile` section): one entry per family.
  const v0 = keyOf(decideV1(v1With({ caps: ['side-band-64k', 'ofs-delta'] })))
  const v2 = keyOf(decideV2(v2Args('ofs-delta', `want ${repo.main}`, `want ${repo.feature}`, 'done')))
  t.not(v0, v2)
  const body = (name: string): Buffer => fixture(`http-${name}-git-upload-pack.req.bin`)
  t.not(keyOf(decideV1(body('v0-clone/02'))), keyOf(decideV2(body('v2-clone/03'))), 'real v0 and v2 clones of the same refs')
})

void t.test('decideFetchV2 on real git 2.39 bodies', async (t) => {
  const body = (name: string): Buffer => fixture(`http-${name}-git-upload-pack.req.bin`)
  const cases: { name: string; want: Record<string, unknown> }[] = [
    { name: 'v2-clone/03', want: { cacheable: true, family: 'v2', sideband: 'side-band-64k', objectFormat: 'sha1', expectPack: true } },
    { name: 'v2-depth1/03', want: { cacheable: true, expectPack: true } },
    { name: 'v2-filter/03', want: { cacheable: true } },
    { name: 'v2-since/03', want: { cacheable: true } },
    { name: 'v2-fetch/03', want: { cacheable: true, fetch: true, negotiation: true, expectPack: true } },
  ]
  for (const c of cases) t.match(decideV2(body(c.name)), c.want, c.name)
})

void t.test('decideFetchV2: every reason not to cache', async (t) => {
  const w = `want ${repo.main}`
  const cases: { name: string; req: V2Request; reason: string }[] = [
    { name: 'no arguments', req: v2Args(), reason: 'no wants' },
    { name: 'only done', req: v2Args('done'), reason: 'no wants' },
    { name: 'want-ref only', req: v2Args('want-ref refs/heads/main', 'done'), reason: 'no wants' },
    // Haves and shallow lines are incremental fetches: policy-fetch.test.ts.
    { name: 'deepen-not', req: v2Args(w, 'deepen-not refs/heads/old', 'done'), reason: 'deepen-not names a ref' },
    { name: 'want-ref beside a want', req: v2Args(w, 'want-ref refs/heads/main', 'done'), reason: 'want-ref names refs' },
    { name: 'packfile-uris', req: v2Args(w, 'packfile-uris https', 'done'), reason: 'packfile-uris' },
    { name: 'sideband-all', req: v2Args(w, 'sideband-all', 'done'), reason: 'sideband-all' },
    { name: 'unknown flag', req: v2Args(w, 'bogus', 'done'), reason: 'unknown fetch argument bogus' },
    { name: 'unknown keyword with a value', req: v2Args(w, 'bogus some value', 'done'), reason: 'unknown fetch argument bogus' },
    // A known keyword without its value is unknown to the parser.
    { name: 'want without an oid', req: v2Args(w, 'want', 'done'), reason: 'unknown fetch argument want' },
    { name: 'server-option', req: { caps: [...V2_CAPS, 'server-option=ci'], args: [w, 'done'] }, reason: 'server-option' },
    { name: 'empty server-option', req: { caps: [...V2_CAPS, 'server-option='], args: [w, 'done'] }, reason: 'server-option' },
    { name: 'object-format=sha512', req: { caps: ['object-format=sha512'], args: [w, 'done'] }, reason: 'unknown object-format' },
    { name: 'object-format= empty', req: { caps: ['object-format='], args: [w, 'done'] }, reason: 'unknown object-format' },
    { name: 'object-format=SHA256 (case)', req: { caps: ['object-format=SHA256'], args: [w, 'done'] }, reason: 'unknown object-format' },
    // Argument checks come before capability checks.
    {
      name: 'haves and server-option: server-option',
      req: { caps: [...V2_CAPS, 'server-option=x'], args: [w, `have ${repo.first}`, 'done'] },
      reason: 'server-option',
    },
  ]
  for (const c of cases) t.same(decideV2(c.req), { cacheable: false, reason: c.reason }, c.name)
})

void t.test('decideFetchV2 edge cases pinned as they are', async (t) => {
  const w = `want ${repo.main}`
  // The first object-format line wins; a later contradicting one is ignored.
  t.match(decideV2({ caps: ['object-format=sha1', 'object-format=sha256'], args: [w, 'done'] }), {
    cacheable: true,
    objectFormat: 'sha1',
  })
  // `done` is not required in v2: git 2.39 sends the pack without it when there are no haves.
  t.match(decideV2(v2Args(w)), { cacheable: true, expectPack: true })
})

void t.test('decideFetchV2 behind the v2 parser: malformed bodies never reach the policy', async (t) => {
  const w = `want ${repo.main}`
  const cases: { name: string; body: Buffer; code: string }[] = [
    { name: 'short object id', body: v2Body(v2Args('want 123', 'done')), code: 'ERR_PROTOCOL_BAD_REQUEST' },
    { name: 'deepen 010', body: v2Body(v2Args(w, 'deepen 010')), code: 'ERR_PROTOCOL_BAD_REQUEST' },
    { name: 'deepen-since -1', body: v2Body(v2Args(w, 'deepen-since -1')), code: 'ERR_PROTOCOL_BAD_REQUEST' },
    { name: 'two filters', body: v2Body(v2Args(w, 'filter blob:none', 'filter tree:0')), code: 'ERR_PROTOCOL_BAD_REQUEST' },
    { name: 'empty filter', body: v2Body(v2Args(w, 'filter ')), code: 'ERR_PROTOCOL_BAD_REQUEST' },
    { name: 'deepen with deepen-not', body: v2Body(v2Args(w, 'deepen 1', 'deepen-not main')), code: 'ERR_PROTOCOL_BAD_REQUEST' },
    { name: 'no final flush', body: v2Body(v2Args(w)).subarray(0, -4), code: 'ERR_PROTOCOL_TRUNCATED' },
    { name: 'data after the final flush', body: Buffer.concat([v2Body(v2Args(w)), pkt('done\n')]), code: 'ERR_PROTOCOL_BAD_REQUEST' },
    { name: 'second delim', body: Buffer.concat([pkt('command=fetch\n'), DELIM, DELIM, FLUSH]), code: 'ERR_PROTOCOL_BAD_REQUEST' },
    { name: 'no command', body: Buffer.concat([pkt('agent=x\n'), DELIM, pkt(`${w}\n`), FLUSH]), code: 'ERR_PROTOCOL_BAD_REQUEST' },
  ]
  for (const c of cases) {
    t.throws(() => decideV2(c.body), { constructor: ProtocolError, code: c.code }, c.name)
  }
})

// ---------------------------------------------------------------- cacheKey

type KeyParts = Parameters<typeof cacheKey>[0]

/** The parts decideUploadPackV1 puts in the key for the V1 request above. */
const BASE_PARTS: KeyParts = {
  repo: REPO,
  family: 'v0',
  step: 'pack',
  objectFormat: 'sha1',
  wants: [repo.main, repo.feature],
  sideband: 'side-band-64k',
  ofsDelta: true,
  includeTag: false,
  deepen: null,
  deepenSince: null,
  filter: null,
}

void t.test('cacheKey: every part is in the key, wants as a set', async (t) => {
  const base = BASE_PARTS
  const k = (o: Partial<KeyParts>) => () => cacheKey({ ...base, ...o })
  const b = k({})
  const rows: KeyRow[] = [
    { field: 'repo', changes: true, a: b, b: k({ repo: 'group/other.git' }) },
    { field: 'family', changes: true, a: b, b: k({ family: 'v2' }) },
    { field: 'step', changes: true, a: b, b: k({ step: 'shallow-list' }) },
    { field: 'objectFormat', changes: true, a: b, b: k({ objectFormat: 'sha256' }) },
    { field: 'sideband 64k -> side-band', changes: true, a: b, b: k({ sideband: 'side-band' }) },
    { field: 'sideband -> none', changes: true, a: k({ sideband: 'side-band' }), b: k({ sideband: 'none' }) },
    { field: 'ofsDelta', changes: true, a: b, b: k({ ofsDelta: false }) },
    { field: 'includeTag', changes: true, a: b, b: k({ includeTag: true }) },
    { field: 'deepen', changes: true, a: b, b: k({ deepen: 1 }) },
    { field: 'deepenSince', changes: true, a: b, b: k({ deepenSince: 1704632879 }) },
    { field: 'deepen vs deepenSince of the same number', changes: true, a: k({ deepen: 5 }), b: k({ deepenSince: 5 }) },
    // null and 0 are kept apart (JSON null vs 0), though the parsers never produce deepen 0.
    { field: 'deepenSince null -> 0', changes: true, a: b, b: k({ deepenSince: 0 }) },
    { field: 'filter', changes: true, a: b, b: k({ filter: 'blob:none' }) },
    { field: 'filter empty string vs none', changes: true, a: b, b: k({ filter: '' }) },
    { field: 'wants order', changes: false, a: b, b: k({ wants: [repo.feature, repo.main] }) },
    { field: 'wants duplicates', changes: false, a: b, b: k({ wants: [repo.main, repo.main, repo.feature] }) },
    { field: 'wants added', changes: true, a: b, b: k({ wants: [repo.main, repo.feature, repo.first] }) },
    // The parts are JSON-encoded, so no two different inputs run together.
    { field: 'wants ["a,b"] vs ["a","b"]', changes: true, a: k({ wants: ['a,b'] }), b: k({ wants: ['a', 'b'] }) },
    { field: 'repo with a quote', changes: true, a: k({ repo: 'a","v0' }), b: k({ repo: 'a' }) },
  ]
  checkKeyTable(t, rows)
  t.equal(cacheKey(base), cacheKey({ ...base }), 'deterministic')
  // cacheKey validates nothing: an empty want list still hashes.
  t.match(cacheKey({ ...base, wants: [] }), /^[0-9a-f]{64}$/)
})

void t.test('cacheKey is what decideUploadPackV1 and decideFetchV2 use', async (t) => {
  const base = BASE_PARTS
  t.equal(keyOf(decideV1(V1)), cacheKey(base), 'v0/v1')
  t.equal(keyOf(decideV2(V2)), cacheKey({ ...base, family: 'v2' }), 'v2')
  t.equal(
    keyOf(decideV1(v1With({ lines: ['deepen 1'], done: false }))),
    cacheKey({ ...base, step: 'shallow-list', deepen: 1 }),
    'v0 depth preflight',
  )
})

// ---------------------------------------------------------------- ref advertisements

void t.test('advertisementKey: per repository and protocol version', async (t) => {
  const k = (r: string, v: 0 | 1 | 2) => () => advertisementKey(r, v)
  const rows: KeyRow[] = [
    // v1 adds a `version 1` line; v2 answers with capabilities only.
    { field: 'version 0 -> 1', changes: true, a: k(REPO, 0), b: k(REPO, 1) },
    { field: 'version 1 -> 2', changes: true, a: k(REPO, 1), b: k(REPO, 2) },
    { field: 'version 0 -> 2', changes: true, a: k(REPO, 0), b: k(REPO, 2) },
    { field: 'repository', changes: true, a: k(REPO, 0), b: k('group/other.git', 0) },
    { field: 'repository case', changes: true, a: k(REPO, 0), b: k('Group/App.git', 0) },
    { field: 'asked twice', changes: false, a: k(REPO, 2), b: k(REPO, 2) },
  ]
  checkKeyTable(t, rows)
  const first = advertisementKey(REPO, 1)
  // The memo holds 10,000 keys and then starts over; the keys stay the same.
  for (let i = 0; i < 10_001; i++) advertisementKey(`fill/${i}.git`, 0)
  t.equal(advertisementKey(REPO, 1), first, 'same key after the memo was cleared')
  t.not(advertisementKey(REPO, 2), lsRefsKey(decideLsRefs(REPO, [], [])), 'the v2 advertisement is apart from ls-refs')
})

void t.test('decideLsRefs: which arguments change the key', async (t) => {
  const body = fixture('http-v2-lsremote/02-git-upload-pack.req.bin')
  const cmd = parseCommandRequestV2(body)
  if (cmd === null) throw new Error('empty fixture')
  t.equal(cmd.command, 'ls-refs')
  const real = () => lsRefsKey(decideLsRefs(REPO, cmd.capabilities, cmd.args))
  const k = (args: string[], caps: string[] = V2_CAPS, repoPath = REPO) => () => lsRefsKey(decideLsRefs(repoPath, caps, args))
  const ci = ['peel', 'symrefs', 'unborn', 'ref-prefix HEAD', 'ref-prefix refs/heads/', 'ref-prefix refs/tags/']
  const rows: KeyRow[] = [
    { field: 'real git ls-remote (peel symrefs unborn)', changes: false, a: real, b: k(['peel', 'symrefs', 'unborn']) },
    { field: 'repository', changes: true, a: k(ci), b: k(ci, V2_CAPS, 'group/other.git') },
    // Sorted, de-duplicated arguments.
    { field: 'argument order', changes: false, a: k(ci), b: k([...ci].reverse()) },
    { field: 'duplicate ref-prefix', changes: false, a: k(ci), b: k([...ci, 'ref-prefix HEAD']) },
    { field: 'trailing LF on an argument', changes: false, a: k(ci), b: k(ci.map((a) => `${a}\n`)) },
    { field: 'peel', changes: true, a: k(ci), b: k(ci.filter((a) => a !== 'peel')) },
    { field: 'symrefs', changes: true, a: k(ci), b: k(ci.filter((a) => a !== 'symrefs')) },
    { field: 'unborn', changes: true, a: k(ci), b: k(ci.filter((a) => a !== 'unborn')) },
    { field: 'ref-prefix set', changes: true, a: k(ci), b: k(ci.filter((a) => a !== 'ref-prefix refs/tags/')) },
    // Unknown arguments are not refused: they go into the key verbatim.
    { field: 'unknown argument', changes: true, a: k(ci), b: k([...ci, 'bogus']) },
    { field: 'agent', changes: false, a: k(ci), b: k(ci, ['agent=JGit/6.0', 'object-format=sha1']) },
    { field: 'session-id', changes: false, a: k(ci), b: k(ci, [...V2_CAPS, 'session-id=abcd']) },
    { field: 'object-format=sha1 left out', changes: false, a: k(ci), b: k(ci, []) },
    { field: 'object-format sha1 -> sha256', changes: true, a: k(ci), b: k(ci, ['object-format=sha256']) },
  ]
  checkKeyTable(t, rows)
  t.not(
    lsRefsKey(decideLsRefs(REPO, V2_CAPS, ci)),
    keyOf(decideV2(V2)),
    'ls-refs and fetch keys are apart',
  )
})

void t.test('decideLsRefs: every reason not to cache', async (t) => {
  const cases: { name: string; caps: string[]; reason: string }[] = [
    { name: 'server-option', caps: [...V2_CAPS, 'server-option=ci'], reason: 'server-option' },
    { name: 'empty server-option', caps: ['server-option='], reason: 'server-option' },
    { name: 'object-format=sha512', caps: ['object-format=sha512'], reason: 'unknown object-format' },
    { name: 'object-format= empty', caps: ['object-format='], reason: 'unknown object-format' },
    { name: 'server-option and bad object-format: server-option first', caps: ['object-format=x', 'server-option=y'], reason: 'server-option' },
  ]
  for (const c of cases) t.same(decideLsRefs(REPO, c.caps, ['peel']), { cacheable: false, reason: c.reason }, c.name)
  t.match(decideLsRefs(REPO, V2_CAPS, []), { cacheable: true }, 'no arguments at all')
})
