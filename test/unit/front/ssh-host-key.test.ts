import { statSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import t from 'tap'
import ssh2 from 'ssh2'
import { HOST_KEY_FILE, loadHostKey } from '../../../src/front/ssh.js'
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

void t.test('the configured key, or a clear error', async (t) => {
  const dir = t.testdir()
  const { log } = logSink()
  const file = path.join(dir, 'key')
  const key = utils.generateKeyPairSync('ed25519').private
  writeFileSync(file, key)
  t.equal((await loadHostKey(file, dir, log)).toString(), key)
  writeFileSync(file, 'not a key')
  await t.rejects(loadHostKey(file, dir, log), /proxy\.ssh\.host-key: .* is not a private key/)
  await t.rejects(loadHostKey(path.join(dir, 'missing'), dir, log), /proxy\.ssh\.host-key: cannot read/)
})
