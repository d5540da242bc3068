import fc from 'fast-check'
import t from 'tap'
import type { ObjectFormat } from '../../../src/protocol/pack-verifier.js'
import { PktStreamChecker } from '../../../src/protocol/pkt-stream-check.js'
import { UploadPackResponseChecker } from '../../../src/protocol/upload-pack-response.js'
import type {
  Sideband,
  UploadPackResponseCheckerOptions,
  UploadPackResponseResult,
} from '../../../src/protocol/upload-pack-response.js'
import {
  DELIM,
  FLUSH,
  chunkingArb,
  cut,
  garbageArb,
  grammarTextArb,
  holds,
  mutate,
  mutationsArb,
  pkt,
} from './fixtures/properties.js'
import {
  checkResponse,
  fixture,
  syntheticPack,
} from './fixtures/transcripts.js'

const check = checkResponse

const makePack = (
  objects: number,
  body: Uint8Array,
  version: 2 | 3,
  format: ObjectFormat,
): Buffer => syntheticPack(version, objects, body, format)

// arbitraries are built once: building one (stringMatching above all) costs more than drawing from it
const HEX = {
  sha1: fc.stringMatching(/^[0-9a-f]{40}$/),
  sha256: fc.stringMatching(/^[0-9a-f]{64}$/),
}
const hexArb = (format: ObjectFormat): fc.Arbitrary<string> => HEX[format]

/** A packet in the stream (or the raw pack), whether the checker stores it, and whether it carries pack bytes. */
interface Part {
  raw: Buffer
  stored: boolean
  pack: boolean
}
const kept = (raw: Buffer): Part => ({ raw, stored: true, pack: false })
const dropped = (raw: Buffer): Part => ({ raw, stored: false, pack: false })
const packData = (raw: Buffer): Part => ({ raw, stored: true, pack: true })

/** Progress and keepalive packets, to be inserted at `at` (taken modulo the gaps available). */
interface Noise {
  at: number
  packet: Buffer
}
const progressArb = fc
  .stringMatching(/^[ -~]{0,40}[\r\n]?$/)
  .map((s) => pkt(`\x02${s}`))
const noiseArbs = [false, true].map((sidebandAll) =>
  fc.array(
    fc.record({
      at: fc.nat(),
      packet: fc.oneof(
        fc.constant(pkt('\x01')), // keepalive
        progressArb,
        ...(sidebandAll ? [fc.constant(pkt('\x02'))] : []),
      ),
    }),
    { maxLength: 6 },
  ),
)
const noiseArb = (sidebandAll: boolean): fc.Arbitrary<Noise[]> =>
  noiseArbs[sidebandAll ? 1 : 0] ?? fc.constant([])

/** `parts` with the noise inserted in the gaps from `from` to `to` (part indexes). */
function withNoise(
  parts: Part[],
  noise: Noise[],
  from: number,
  to: number,
): Part[] {
  const out = [...parts]
  for (const n of [...noise].sort((a, b) => b.at - a.at)) {
    const gaps = to - from + 1
    out.splice(from + (n.at % gaps), 0, dropped(n.packet))
  }
  return out
}

/** The pack as channel-1 packets of at most `max` bytes in total, cut as `cuts` says. */
function sidebandPack(pack: Buffer, cuts: number[], max: number): Part[] {
  const step = max - 5
  const points = [...new Set(cuts.map((c) => c % pack.length))]
    .filter((p) => p > 0)
    .sort((a, b) => a - b)
  const out: Part[] = []
  let from = 0
  for (const p of [...points, pack.length]) {
    for (let at = from; at < p; at += step) {
      out.push(
        packData(
          pkt(
            Buffer.concat([
              Buffer.of(1),
              pack.subarray(at, Math.min(at + step, p)),
            ]),
          ),
        ),
      )
    }
    from = Math.max(from, p)
  }
  return out
}

interface Expected {
  parts: Part[]
  opts: UploadPackResponseCheckerOptions
  result: UploadPackResponseResult
}

const packBodyArb = fc.tuple(
  fc.nat({ max: 50 }),
  fc.uint8Array({ maxLength: 3000 }),
  fc.constantFrom<2 | 3>(2, 3),
)
const packArb = (
  format: ObjectFormat,
): fc.Arbitrary<{ pack: Buffer; objects: number }> =>
  packBodyArb.map(([objects, body, version]) => ({
    pack: makePack(objects, body, version, format),
    objects,
  }))

type ShallowLine = { word: 'shallow' | 'unshallow'; oid: string }
const shallowListArbs = {
  sha1: fc.array(
    fc.record({
      word: fc.constantFrom<'shallow' | 'unshallow'>('shallow', 'unshallow'),
      oid: HEX.sha1,
    }),
    { maxLength: 4 },
  ),
  sha256: fc.array(
    fc.record({
      word: fc.constantFrom<'shallow' | 'unshallow'>('shallow', 'unshallow'),
      oid: HEX.sha256,
    }),
    { maxLength: 4 },
  ),
}
const shallowListArb = (format: ObjectFormat): fc.Arbitrary<ShallowLine[]> =>
  shallowListArbs[format]
const refNameArb = fc.stringMatching(/^refs\/[!-~]{1,20}$/)
const uriArb = fc.webUrl()

const formatArb = fc.constantFrom<ObjectFormat>('sha1', 'sha256')

/** A v0/v1 response: [shallow section 0000] ACK/NAK lines, then the pack (side-band or raw). */
const v0For = (format: ObjectFormat): fc.Arbitrary<Expected> =>
  fc
    .record({
      sideband: fc.constantFrom<Sideband>('none', 'side-band', 'side-band-64k'),
      shallows: fc.option(shallowListArb(format)),
      acks: fc.array(
        fc
          .tuple(
            hexArb(format),
            fc.constantFrom('', ' common', ' ready', ' continue'),
          )
          .map(([o, s]) => `ACK ${o}${s}`),
        { maxLength: 4 },
      ),
      last: fc.oneof(
        fc.constant('NAK'),
        hexArb(format).map((o) => `ACK ${o}`),
      ),
      pack: packArb(format),
      cuts: fc.array(fc.nat(), { maxLength: 8 }),
      noise: noiseArb(false),
      lf: fc.boolean(),
    })
    .map((m): Expected => {
      const line = (s: string): Part => kept(pkt(m.lf ? `${s}\n` : s))
      const head: Part[] = []
      if (m.shallows !== null) {
        head.push(
          ...m.shallows.map((s) => line(`${s.word} ${s.oid}`)),
          kept(FLUSH),
        )
      }
      head.push(...[...m.acks, m.last].map(line))
      const opts: UploadPackResponseCheckerOptions = {
        protocol: 'v0',
        sideband: m.sideband,
        expectPack: true,
        objectFormat: format,
      }
      const result: UploadPackResponseResult = {
        ok: true,
        packObjects: m.pack.objects,
        shallow: (m.shallows ?? [])
          .filter((s) => s.word === 'shallow')
          .map((s) => s.oid),
        unshallow: (m.shallows ?? [])
          .filter((s) => s.word === 'unshallow')
          .map((s) => s.oid),
      }
      if (m.sideband === 'none')
        return { parts: [...head, packData(m.pack.pack)], opts, result }
      const pack = sidebandPack(
        m.pack.pack,
        m.cuts,
        m.sideband === 'side-band' ? 1000 : 65520,
      )
      const body = withNoise([...pack, kept(FLUSH)], m.noise, 0, pack.length)
      return { parts: [...head, ...body], opts, result }
    })
const v0Arb = fc.oneof(v0For('sha1'), v0For('sha256'))

/** A v2 fetch response with any of the optional sections, in order, then packfile. */
const v2For = (
  format: ObjectFormat,
  sidebandAll: boolean,
): fc.Arbitrary<Expected> =>
  fc
    .record({
      acks: fc.option(
        fc.array(
          fc.oneof(
            fc.constant('NAK'),
            hexArb(format).map((o) => `ACK ${o}`),
          ),
          { maxLength: 3 },
        ),
      ),
      shallowInfo: fc.option(shallowListArb(format)),
      wantedRefs: fc.option(
        fc.array(
          fc.tuple(hexArb(format), refNameArb).map(([o, r]) => `${o} ${r}`),
          { maxLength: 3 },
        ),
      ),
      packfileUris: fc.option(
        fc.array(
          fc.tuple(HEX.sha1, uriArb).map(([h, u]) => `${h} ${u}`),
          { maxLength: 2 },
        ),
      ),
      pack: packArb(format),
      cuts: fc.array(fc.nat(), { maxLength: 8 }),
      noise: noiseArb(sidebandAll),
      lf: fc.boolean(),
    })
    .map((m): Expected => {
      const line = (s: string): Part =>
        kept(pkt(`${sidebandAll ? '\x01' : ''}${s}${m.lf ? '\n' : ''}`))
      const head: Part[] = []
      const section = (name: string, lines: string[] | null): void => {
        if (lines === null) return
        head.push(line(name), ...lines.map(line), kept(DELIM))
      }
      section('acknowledgments', m.acks === null ? null : [...m.acks, 'ready'])
      const shallows = m.shallowInfo ?? []
      section(
        'shallow-info',
        m.shallowInfo === null
          ? null
          : shallows.map((s) => `${s.word} ${s.oid}`),
      )
      section('wanted-refs', m.wantedRefs)
      section('packfile-uris', m.packfileUris)
      head.push(line('packfile'))
      const pack = sidebandPack(m.pack.pack, m.cuts, 65520)
      const all = [...head, ...pack, kept(FLUSH)]
      // without sideband-all, progress and keepalives come only inside the packfile section
      const parts = sidebandAll
        ? withNoise(all, m.noise, 0, all.length - 1)
        : withNoise(all, m.noise, head.length, all.length - 1)
      return {
        parts,
        opts: {
          protocol: 'v2',
          sideband: 'none',
          expectPack: true,
          objectFormat: format,
          sidebandAll,
        },
        result: {
          ok: true,
          packObjects: m.pack.objects,
          shallow: shallows
            .filter((s) => s.word === 'shallow')
            .map((s) => s.oid),
          unshallow: shallows
            .filter((s) => s.word === 'unshallow')
            .map((s) => s.oid),
        },
      }
    })
const v2Arb = fc.oneof(
  v2For('sha1', false),
  v2For('sha1', true),
  v2For('sha256', false),
  v2For('sha256', true),
)

const responseArb = fc.oneof(v0Arb, v2Arb)
const join = (parts: Part[]): Buffer => Buffer.concat(parts.map((p) => p.raw))

void t.test('responses from a model', (t) => {
  holds(
    t,
    'pass under any chunking; stored = the input without progress and keepalives',
    fc.property(responseArb, chunkingArb, (e, chunking) => {
      const input = join(e.parts)
      const run = check(cut(input, chunking), e.opts)
      const stored = join(e.parts.filter((p) => p.stored))
      return (
        fc.stringify(run.result) === fc.stringify(e.result) &&
        run.stored.equals(stored)
      )
    }),
    { numRuns: 500 },
  )
  holds(
    t,
    'a stored response is stored unchanged',
    fc.property(responseArb, (e) => {
      const once = check([join(e.parts)], e.opts)
      const again = check([once.stored], e.opts)
      return (
        fc.stringify(again.result) === fc.stringify(e.result) &&
        again.stored.equals(once.stored)
      )
    }),
    { numRuns: 200 },
  )
  holds(
    t,
    'any changed pack byte, a response cut short, an ERR or band-3 packet, a repeated v2 section: it fails',
    fc.property(
      responseArb,
      fc.nat(),
      fc.constantFrom('flip', 'cut', 'err', 'fatal', 'repeat'),
      fc.integer({ min: 1, max: 255 }),
      (e, at, how, xor) => {
        let parts = e.parts
        const packIndexes = parts.flatMap((p, i) => (p.pack ? [i] : []))
        switch (how) {
          case 'flip': {
            const i = packIndexes[at % packIndexes.length] ?? 0
            const raw = Buffer.from(parts[i]?.raw ?? Buffer.alloc(0))
            const first =
              e.opts.sideband === 'none' && e.opts.protocol === 'v0' ? 0 : 5
            const j = first + (at % (raw.length - first))
            raw[j] = (raw[j] ?? 0) ^ xor
            parts = parts.map((p, k) => (k === i ? packData(raw) : p))
            break
          }
          case 'repeat': {
            // v2: the first section (up to its 0001) once more
            const d = parts.findIndex((p) => p.raw.equals(DELIM))
            if (e.opts.protocol !== 'v2' || d < 0) return true
            return !check([join([...parts.slice(0, d + 1), ...parts])], e.opts)
              .result.ok
          }
          case 'cut': {
            const input = join(parts)
            const run = check([input.subarray(0, at % input.length)], e.opts)
            return !run.result.ok
          }
          case 'err':
          case 'fatal': {
            // ERR anywhere; band 3 where side-band applies: among the pack packets
            const first = how === 'err' ? 0 : (packIndexes[0] ?? 0)
            const i = first + (at % (parts.length - first))
            const bad =
              how === 'err'
                ? pkt('ERR upload-pack: not our ref\n')
                : pkt('\x03fatal: out of memory\n')
            if (
              how === 'fatal' &&
              e.opts.protocol === 'v0' &&
              e.opts.sideband === 'none'
            )
              return true
            parts = [...parts.slice(0, i), kept(bad), ...parts.slice(i)]
            const run = check([join(parts)], e.opts)
            return !run.result.ok
          }
        }
        return !check([join(parts)], e.opts).result.ok
      },
    ),
    { numRuns: 500 },
  )
  t.end()
})

/**
 * The result without the one detail that depends on the chunking: "N bytes
 * after the final flush" counts the bytes of the chunk that held them.
 */
function sameAnyChunking(
  result: UploadPackResponseResult,
): UploadPackResponseResult {
  if (result.ok) return result
  return {
    ok: false,
    reason: result.reason.replace(
      /^\d+ bytes after the final flush/,
      'bytes after the final flush',
    ),
  }
}

const optionsArb: fc.Arbitrary<UploadPackResponseCheckerOptions> = fc.record({
  protocol: fc.constantFrom<'v0' | 'v2'>('v0', 'v2'),
  sideband: fc.constantFrom<Sideband>('none', 'side-band', 'side-band-64k'),
  expectPack: fc.boolean(),
  objectFormat: formatArb,
  sidebandAll: fc.boolean(),
})

const captured = [
  'http-v0-clone/02',
  'http-v0-depth1/03',
  'http-v0-fetch/02',
  'http-v2-clone/03',
  'http-v2-fetch/03',
  'http-v2-depth1/03',
  'http-v2-features/03',
].map((name) => fixture(`${name}-git-upload-pack.res.bin`))

void t.test('arbitrary input', (t) => {
  const inputArb = fc.oneof(
    { weight: 2, arbitrary: garbageArb },
    {
      weight: 2,
      arbitrary: fc
        .tuple(responseArb, mutationsArb)
        .map(([e, m]) => mutate(join(e.parts), m)),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(fc.constantFrom(...captured), mutationsArb)
        .map(([b, m]) => mutate(b, m)),
    },
  )
  holds(
    t,
    'push() and finish() never throw; the result does not depend on the chunking; stored bytes neither, when ok',
    fc.property(inputArb, optionsArb, chunkingArb, (input, opts, chunking) => {
      const whole = check([input], opts)
      const parts = check(cut(input, chunking), opts)
      if (
        fc.stringify(sameAnyChunking(parts.result)) !==
        fc.stringify(sameAnyChunking(whole.result))
      )
        return false
      return !whole.result.ok || parts.stored.equals(whole.stored)
    }),
    { numRuns: 1000 },
  )
  holds(
    t,
    'finish() is idempotent, and push() after it hands the input back',
    fc.property(inputArb, optionsArb, garbageArb, (input, opts, more) => {
      const checker = new UploadPackResponseChecker(opts)
      checker.push(input)
      const result = fc.stringify(checker.finish())
      return (
        checker.push(more).equals(more) &&
        fc.stringify(checker.finish()) === result
      )
    }),
    { numRuns: 300 },
  )
  t.end()
})

void t.test('PktStreamChecker', (t) => {
  const finish = (parts: Buffer[]): ReturnType<PktStreamChecker['finish']> => {
    const checker = new PktStreamChecker()
    for (const part of parts) checker.push(part)
    return checker.finish()
  }
  const lineArb = grammarTextArb
    .filter((s) => !s.startsWith('ERR '))
    .map((s) => pkt(Buffer.from(s, 'utf8')))
  holds(
    t,
    'well-framed packets ending in a flush pass, under any chunking; anything else fails, under any chunking',
    fc.property(
      fc.array(
        fc.oneof(
          { weight: 5, arbitrary: lineArb },
          { weight: 1, arbitrary: fc.constantFrom(FLUSH, DELIM) },
        ),
        { maxLength: 10 },
      ),
      fc.constantFrom('ok', 'err', 'no-flush', 'cut', 'garbage'),
      garbageArb,
      chunkingArb,
      (packets, how, garbage, chunking) => {
        const good = Buffer.concat([...packets, FLUSH])
        const input = {
          ok: good,
          err: Buffer.concat([...packets, pkt('ERR access denied\n'), FLUSH]),
          'no-flush': Buffer.concat([...packets, pkt('x\n')]),
          cut: good.subarray(0, good.length - 1),
          garbage,
        }[how]
        const whole = finish([input])
        const parts = finish(cut(input, chunking))
        // only the verdict: which of two problems is reported can depend on the chunks
        // ("0008ERR " then "\0\0\0\0": ERR in 1-byte chunks, a bad length in one)
        if (parts.ok !== whole.ok) return false
        return how === 'ok' ? whole.ok : how === 'garbage' || !whole.ok
      },
    ),
    { numRuns: 500 },
  )
  t.end()
})
