import { readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parse } from 'dot-properties'
import t from 'tap'
import { renderDefaultsFile } from '../../../src/config/defaults-file.js'
import { KEY_SPECS } from '../../../src/config/keys.js'
import { describeConfig, loadConfig } from '../../../src/config/load.js'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..')
const SHIPPED = path.join(ROOT, 'config/scm-cache.properties')
const shipped = readFileSync(SHIPPED, 'utf8')

const REGENERATE =
  'regenerate it: npx tsx --eval "import(\'./src/config/defaults-file.ts\').then((m) => process.stdout.write(m.renderDefaultsFile()))" > config/scm-cache.properties'

void t.test('the shipped file is the one generated from the key table', (t) => {
  t.equal(shipped, renderDefaultsFile(), `config/scm-cache.properties is stale: ${REGENERATE}`)
  t.end()
})

void t.test('the shipped file lists every key, commented out, with its default', (t) => {
  const lines = shipped.split('\n')
  for (const spec of KEY_SPECS) {
    const at = lines.findIndex((line) =>
      new RegExp(`^#${spec.key.replace(/\./g, '\\.')}\\s*=`).test(line),
    )
    t.ok(at > 0, `${spec.key} is listed`)
    const uncommented = parse(lines[at]?.slice(1) ?? '')
    t.equal(uncommented[spec.key], spec.default ?? '', `${spec.key} shows its default`)
    t.match(lines[at - 1], /^# \S/, `${spec.key} has a comment above it`)
  }
  t.end()
})

function defaultsIn(cwd: string): Record<string, unknown> {
  return describeConfig(loadConfig({ argv: [], env: {}, cwd }))
}

void t.test('loading the shipped file as-is gives exactly the defaults', (t) => {
  const dir = t.testdir({ config: { 'scm-cache.properties': shipped }, empty: {} })
  const withFile = defaultsIn(dir)
  t.equal(withFile['configFile'], path.join(dir, 'config/scm-cache.properties'))
  t.equal(withFile['cache.dir'], path.join(dir, 'data/cache'))
  const withoutFile = defaultsIn(path.join(dir, 'empty'))
  t.same(
    { ...withFile, configFile: null, 'cache.dir': null },
    { ...withoutFile, configFile: null, 'cache.dir': null },
  )
  t.end()
})

void t.test('uncommenting every key also gives exactly the defaults', (t) => {
  const uncommented = shipped.replace(/^#(?=[a-z])/gm, '')
  const dir = t.testdir({ config: { 'scm-cache.properties': uncommented }, empty: {} })
  t.same(
    { ...defaultsIn(dir), configFile: null, 'cache.dir': null },
    { ...defaultsIn(path.join(dir, 'empty')), configFile: null, 'cache.dir': null },
  )
  t.end()
})
