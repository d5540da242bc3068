/** OverrideWriter: saved before applied, one change at a time. */
import t from 'tap'
import { loadConfig } from '../../../src/config/load.js'
import { OverrideWriter } from '../../../src/rest/overrides.js'
import { Settings, type MutableValues, type SettingsPersistence } from '../../../src/settings.js'
import { logSink } from '../../helpers/log-sink.js'

function memory(opts: { fail?: () => boolean; delayMs?: () => number } = {}): SettingsPersistence & { saved: Partial<MutableValues>[] } {
  const saved: Partial<MutableValues>[] = []
  return {
    saved,
    load: async () => ({}),
    save: async (values) => {
      await new Promise((r) => setTimeout(r, opts.delayMs?.() ?? 0))
      if (opts.fail?.() === true) throw new Error('disk on fire')
      saved.push(values)
    },
  }
}

const config = loadConfig({ argv: [], env: { SCM_CACHE_SCM_CACHE_REFS_TTL: '60' }, cwd: '/nonexistent' })

void t.test('a change is saved, then applied, then logged', async (t) => {
  const settings = new Settings(config)
  const p = memory()
  const { log, records } = logSink()
  const w = new OverrideWriter({ settings, persistence: p, log })
  await w.set('refsTtl', 30, 'admin')
  t.equal(settings.get('refsTtl'), 30)
  t.same(p.saved, [{ refsTtl: 30 }])
  t.match(records.at(-1), { level: 30, setting: 'scm-cache.refs.ttl', value: 30, by: 'admin' })
  await w.update('protocols', (cur) => cur.filter((x) => x !== 'SSH'), 'admin')
  t.match(records.at(-1), { setting: 'scm-cache.protocols', value: 'HTTP', by: 'admin' })
  await w.drop('refsTtl', 'admin')
  t.equal(settings.get('refsTtl'), 60)
  t.same(p.saved.at(-1), { protocols: ['HTTP'] })
  t.match(records.at(-1), { setting: 'scm-cache.refs.ttl', value: 60, overridden: true })
})

void t.test('a change that cannot be saved changes nothing', async (t) => {
  const settings = new Settings(config)
  let fail = true
  const w = new OverrideWriter({ settings, persistence: memory({ fail: () => fail }), log: logSink().log })
  await t.rejects(w.set('refsEnabled', true, 'x'), /disk on fire/)
  t.equal(settings.get('refsEnabled'), false)
  t.same(settings.overrides(), {})
  fail = false
  await w.set('refsEnabled', true, 'x')
  t.equal(settings.get('refsEnabled'), true, 'later changes still run')
})

void t.test('concurrent changes run one at a time: none is lost', async (t) => {
  const settings = new Settings(config)
  let d = 30
  const p = memory({ delayMs: () => (d -= 5) })
  const w = new OverrideWriter({ settings, persistence: p, log: logSink().log })
  await Promise.all([
    w.set('refsEnabled', true, 'a'),
    w.set('refsTtl', 5, 'b'),
    w.update('protocols', () => ['SSH'], 'c'),
    w.set('uploadPackTtl', 9, 'd'),
  ])
  const all = { refsEnabled: true, refsTtl: 5, protocols: ['SSH'], uploadPackTtl: 9 }
  t.same(p.saved.at(-1), all, 'the last save holds every change')
  t.same(settings.overrides(), all)
})
