import { createHmac, randomBytes } from 'node:crypto'
import t from 'tap'
import ssh2 from 'ssh2'
import { generateEd25519KeyPair } from '../../../src/front/ssh-host-key.js'
import { checkHostKey, parseKnownHosts } from '../../../src/upstream/ssh.js'

const { utils } = ssh2
const key = generateEd25519KeyPair().public
const other = generateEd25519KeyPair().public
const blob = (line: string): Buffer => {
  const k = utils.parseKey(line)
  if (k instanceof Error) throw k
  return k.getPublicSSH()
}
const hashed = (name: string): string => {
  const salt = randomBytes(20)
  return `|1|${salt.toString('base64')}|${createHmac('sha1', salt).update(name).digest('base64')}`
}

void t.test('host key checks against known_hosts', async (t) => {
  const entries = parseKnownHosts(
    [`# c`, `[127.0.0.1]:2222 ${key}`, `git.example.com,10.0.0.1 ${key}`, `${hashed('[hashed.example]:7999')} ${key}`, ''].join('\n'),
  )
  t.equal(entries.length, 3)
  t.equal(checkHostKey(entries, '127.0.0.1', 2222, blob(key)), 'ok')
  t.equal(checkHostKey(entries, '127.0.0.1', 2222, blob(other)), 'changed')
  t.equal(checkHostKey(entries, '127.0.0.1', 22, blob(key)), 'unknown', 'the port is part of the name')
  t.equal(checkHostKey(entries, 'git.example.com', 22, blob(key)), 'ok')
  t.equal(checkHostKey(entries, '10.0.0.1', 22, blob(key)), 'ok')
  t.equal(checkHostKey(entries, 'hashed.example', 7999, blob(key)), 'ok')
  t.equal(checkHostKey(entries, 'hashed.example', 7999, blob(other)), 'changed')
  t.equal(checkHostKey([], 'git.example.com', 22, blob(key)), 'unknown')
})

void t.test('wildcards, negation and revoked keys', async (t) => {
  const entries = parseKnownHosts([`*.example.com,!bad.example.com ${key}`, `@revoked * ${other}`].join('\n'))
  t.equal(checkHostKey(entries, 'git.example.com', 22, blob(key)), 'ok')
  t.equal(checkHostKey(entries, 'bad.example.com', 22, blob(key)), 'unknown')
  t.equal(checkHostKey(entries, 'git.example.com', 22, blob(other)), 'revoked')
})
