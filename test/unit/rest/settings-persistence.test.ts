/** `SettingsFile` and the settings file format (src/settings.ts). */
import { mkdirSync, readFileSync, readdirSync, rmdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { logSink } from '../../helpers/log-sink.js'
import { SettingsFile, parseSettingsFile, toFileContent } from '../../../src/settings.js'

void t.test('save then load round-trips, atomically replacing the file', async (t) => {
  const dir = path.join(t.testdir(), 'cache')
  const { log } = logSink()
  const file = path.join(dir, 'settings.json')
  const p = new SettingsFile({ file, log })
  t.same(await p.load(), {}, 'no file: no overrides')
  await p.save({ refsEnabled: true, refsTtl: 30, protocols: ['SSH'] })
  t.same(await p.load(), { refsEnabled: true, refsTtl: 30, protocols: ['SSH'] })
  t.same(JSON.parse(readFileSync(file, 'utf8')), {
    version: 1,
    overrides: { 'scm-cache.protocols': ['SSH'], 'scm-cache.refs.enabled': true, 'scm-cache.refs.ttl': 30 },
  })
  await Promise.all([p.save({ uploadPackTtl: 1 }), p.save({ uploadPackTtl: 2 }), p.save({ uploadPackTtl: 3 })])
  t.same(await p.load(), { uploadPackTtl: 3 }, 'concurrent saves: the last one called wins')
  t.same(readdirSync(dir), ['settings.json'], 'no temp file left')
  await p.save({})
  t.same(await p.load(), {})
})

void t.test('a file that cannot be used is logged and ignored', async (t) => {
  const dir = t.testdir()
  const file = path.join(dir, 'settings.json')
  for (const text of ['', '{', 'null', '[]', '{"overrides":{}}', '{"version":2,"overrides":{}}', '{"version":1}', '{"version":1,"overrides":[]}']) {
    writeFileSync(file, text)
    const { log, records } = logSink()
    t.same(await new SettingsFile({ file, log }).load(), {}, JSON.stringify(text))
    t.equal(records.filter((r) => r.level === 40).length, 1, 'one warning')
  }
  mkdirSync(path.join(dir, 'is-a-dir'))
  const { log, records } = logSink()
  t.same(await new SettingsFile({ file: path.join(dir, 'is-a-dir'), log }).load(), {}, 'unreadable')
  t.equal(records.filter((r) => r.level === 40).length, 1)
})

void t.test('a save that fails rejects and leaves the old file', async (t) => {
  const dir = t.testdir()
  const file = path.join(dir, 'settings.json')
  const { log } = logSink()
  const p = new SettingsFile({ file, log })
  await p.save({ refsTtl: 5 })
  mkdirSync(`${file}.tmp`) // the temp file cannot be created
  await t.rejects(p.save({ refsTtl: 6 }))
  t.same(await p.load(), { refsTtl: 5 }, 'the old file is intact')
  rmdirSync(`${file}.tmp`)
  await p.save({ refsTtl: 7 })
  t.same(await p.load(), { refsTtl: 7 }, 'the queue goes on after a failure')
})

void t.test('parseSettingsFile checks every value like the config file', async (t) => {
  const parse = (overrides: Record<string, unknown>): ReturnType<typeof parseSettingsFile> =>
    parseSettingsFile(JSON.stringify({ version: 1, overrides }))
  t.same(parse({ 'scm-cache.protocols': ['ssh', 'HTTP', 'SSH'] }), { ok: true, values: { protocols: ['HTTP', 'SSH'] }, skipped: [] }, 'normalised')
  t.same(parse({ 'scm-cache.protocols': [] }), { ok: true, values: { protocols: [] }, skipped: [] }, 'none is a value')
  t.same(parse({ 'scm-cache.upload-pack.enabled': false, 'scm-cache.upload-pack.ttl': 31536000 }), {
    ok: true,
    values: { uploadPackEnabled: false, uploadPackTtl: 31536000 },
    skipped: [],
  })
  for (const [key, value] of [
    ['scm-cache.refs.ttl', 0],
    ['scm-cache.refs.ttl', 1.5],
    ['scm-cache.refs.ttl', 31536001],
    ['scm-cache.refs.ttl', '60'],
    ['scm-cache.refs.enabled', 'true'],
    ['scm-cache.refs.enabled', 1],
    ['scm-cache.protocols', ['FTP']],
    ['scm-cache.protocols', 'HTTP'],
    ['scm-cache.protocols', [1]],
    ['scm-cache.minimum.free.space', 1],
    ['refsTtl', 5],
  ] as const) {
    const r = parse({ [key]: value })
    t.match(r, { ok: true, values: {}, skipped: [String] }, `${key}=${JSON.stringify(value)} skipped`)
  }
  t.same(toFileContent({ refsTtl: 9, protocols: [] }), { version: 1, overrides: { 'scm-cache.protocols': [], 'scm-cache.refs.ttl': 9 } })
})
