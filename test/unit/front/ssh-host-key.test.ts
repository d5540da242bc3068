import { readdirSync, statSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import t from 'tap'
import ssh2 from 'ssh2'
import { generateEd25519KeyPair, HOST_KEY_FILE, loadHostKey } from '../../../src/front/ssh-host-key.js'
import { logSink } from '../../helpers/log-sink.js'

const { utils } = ssh2

void t.test('generated once under cache.dir, 0600, then reused', async (t) => {
  const dir = path.join(t.testdir(), 'cache')
  const { log } = logSink()
  const first = await loadHostKey(null, dir, log)
  const file = path.join(dir, HOST_KEY_FILE)
  t.equal(statSync(file).mode & 0o777, 0o600)
  const parsed = utils.parseKey(first)
  t.notOk(parsed instanceof Error, 'a readable private key')
  t.same(await loadHostKey(null, dir, log), first, 'the same key on the next start')
})

void t.test('starts racing on one empty cache.dir all come up with one whole key', async (t) => {
  for (let round = 0; round < 10; round++) {
    const dir = path.join(t.testdir(), `cache-${round}`)
    const { log } = logSink()
    const keys = await Promise.all(Array.from({ length: 8 }, () => loadHostKey(null, dir, log)))
    const first = keys[0]?.toString()
    t.ok(keys.every((k) => k.toString() === first), `round ${round}: every start uses the same key`)
    t.notOk(utils.parseKey(keys[0] ?? '') instanceof Error, 'a whole, readable key')
    t.same(readdirSync(dir).sort(), [HOST_KEY_FILE, `${HOST_KEY_FILE}.pub`], 'no temporary files left')
  }
})

void t.test('every generated key pair is one ssh2 can read back', async (t) => {
  // ssh2's own generator writes a malformed key about once in 256 tries.
  for (let i = 0; i < 2000; i++) {
    const pair = generateEd25519KeyPair()
    if (utils.parseKey(pair.private) instanceof Error || utils.parseKey(pair.public) instanceof Error) {
      t.fail(`pair ${i} does not parse`)
      return
    }
  }
  t.pass('2000 pairs parse')
})

void t.test('a key file that is not a key is left alone; a temporary key is used', async (t) => {
  const dir = t.testdir()
  const file = path.join(dir, HOST_KEY_FILE)
  writeFileSync(file, 'half a key')
  const { log, records } = logSink()
  const key = await loadHostKey(null, dir, log)
  t.notOk(utils.parseKey(key) instanceof Error, 'a usable key')
  t.ok(records.some((r) => r['level'] === 50 && /not a private key/.test(String(r['msg']))), 'logged as an error')
})

void t.test('the configured key, or a clear error', async (t) => {
  const dir = t.testdir()
  const { log } = logSink()
  const file = path.join(dir, 'key')
  const key = generateEd25519KeyPair().private
  writeFileSync(file, key)
  t.equal((await loadHostKey(file, dir, log)).toString(), key)
  writeFileSync(file, 'not a key')
  await t.rejects(loadHostKey(file, dir, log), /proxy\.ssh\.host-key: .* is not a private key/)
  await t.rejects(loadHostKey(path.join(dir, 'missing'), dir, log), /proxy\.ssh\.host-key: cannot read/)
})
