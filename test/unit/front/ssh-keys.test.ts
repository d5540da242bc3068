import t from 'tap'
import ssh2 from 'ssh2'
import { generateEd25519KeyPair } from '../../../src/front/ssh-host-key.js'
import { findAuthorizedKey, globToRegExp, parseAuthorizedKeys, reposAllow } from '../../../src/front/ssh-keys.js'

const { utils } = ssh2
const a = generateEd25519KeyPair().public
const b = generateEd25519KeyPair().public
const c = generateEd25519KeyPair().public
const blob = (line: string): Buffer => {
  const k = utils.parseKey(line)
  if (k instanceof Error) throw k
  return k.getPublicSSH()
}

void t.test('authorized_keys lines', async (t) => {
  const text = [
    '# comment',
    '',
    `${a} alice@laptop`,
    `repos="PROJ/*,team/app",no-pty ${b}`,
    `command="/bin/sh",no-pty ${c}`,
    'ssh-ed25519 not-base64',
    'garbage',
  ].join('\n')
  const parsed = parseAuthorizedKeys(text)
  t.equal(parsed.keys.length, 2)
  t.same(parsed.keys[0]?.repos, null)
  t.equal(parsed.keys[0]?.line, 3)
  t.same(parsed.keys[1]?.repos, ['PROJ/*', 'team/app'])
  t.same(
    parsed.rejected.map((r) => r.line),
    [5, 6, 7],
  )
  t.match(parsed.rejected[0]?.reason, /unsupported option command/)
})

void t.test('keys are found by their public blob', async (t) => {
  const { keys } = parseAuthorizedKeys(`${a}\nrepos="x/*" ${b}\n`)
  t.equal(findAuthorizedKey(keys, blob(a))?.line, 1)
  t.equal(findAuthorizedKey(keys, blob(b))?.line, 2)
  t.equal(findAuthorizedKey(keys, blob(c)), null)
  t.equal(findAuthorizedKey(keys, Buffer.alloc(0)), null)
})

void t.test('repos globs over projectKey/repoSlug', async (t) => {
  t.ok(reposAllow(null, 'anything/at/all'))
  t.ok(reposAllow(['PROJ/*'], 'PROJ/app'))
  t.notOk(reposAllow(['PROJ/*'], 'PROJ/sub/app'), '* stays in one segment')
  t.ok(reposAllow(['PROJ/**'], 'PROJ/sub/app'), '** crosses segments')
  t.notOk(reposAllow(['PROJ/*'], 'PROJX/app'))
  t.notOk(reposAllow(['PROJ/*'], 'proj/app'), 'case-sensitive')
  t.ok(reposAllow(['team/app', 'x/*'], 'team/app'))
  t.notOk(reposAllow(['team/app'], 'team/app2'))
  t.ok(reposAllow(['team/ap?'], 'team/app'))
  t.notOk(reposAllow([], 'team/app'), 'an empty list allows nothing')
  t.notOk(globToRegExp('a.b').test('axb'), 'regex characters are literal')
})
