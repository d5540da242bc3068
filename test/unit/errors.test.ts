import { readdirSync, readFileSync, statSync } from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { ERRORS, ProtocolError, ProxyError, UpstreamStatusError } from '../../src/errors.js'

const SRC = path.resolve(import.meta.dirname, '../../src')

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = path.join(dir, name)
    return statSync(p).isDirectory() ? sources(p) : p.endsWith('.ts') ? [p] : []
  })
}

void t.test('every error code used in src/ is in the catalogue, and every catalogued code is used', (t) => {
  const used = new Set<string>()
  for (const file of sources(SRC)) {
    let text = readFileSync(file, 'utf8')
    // The catalogue itself is not a use.
    if (file === path.join(SRC, 'errors.ts')) text = text.replace(/export const ERRORS = \{[\s\S]*?\} as const/, '')
    for (const m of text.matchAll(/'(ERR_[A-Z0-9_]+)'/g)) used.add(m[1] ?? '')
  }
  const catalogued = new Set(Object.keys(ERRORS))
  t.same([...used].filter((c) => !catalogued.has(c)), [], 'no code outside the catalogue')
  t.same([...catalogued].filter((c) => !used.has(c)), [], 'no code the source never raises')
  t.end()
})

void t.test('status and exposure come from the catalogue', (t) => {
  const e = new ProtocolError('ERR_PROTOCOL_BAD_PATH', 'bad')
  t.equal(e.statusCode, 400)
  t.equal(e.expose, true)
  const hidden = new ProxyError('ERR_CACHE_READ_FAILED', '/var/cache/x: EIO')
  t.equal(hidden.statusCode, 500)
  t.equal(hidden.expose, false, 'cache faults never reach a client')
  t.equal(new UpstreamStatusError(404, '').statusCode, 404, "an upstream's own status is relayed")
  t.equal(new UpstreamStatusError(302, '').statusCode, 502, 'a non-error status is not')
  for (const [code, entry] of Object.entries(ERRORS)) {
    t.ok(entry.status >= 400 && entry.status < 600, `${code}: an error status`)
    t.ok(entry.meaning.length > 0, `${code}: says what it means`)
  }
  t.end()
})
