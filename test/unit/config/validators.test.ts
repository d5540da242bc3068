import t from 'tap'
import * as v from '../../../src/config/validators.js'
import type { Validator } from '../../../src/config/validators.js'

const ctx = { cwd: '/srv/proxy' }

/** The parsed value, or null when the validator rejects `raw` (no validator yields null). */
function parsed<T>(validator: Validator<T>, raw: string): T | null {
  const result = validator.parse(raw, ctx)
  return result.ok ? result.value : null
}

function table<T>(
  name: string,
  validator: Validator<T>,
  good: readonly (readonly [string, T])[],
  bad: readonly string[],
): void {
  void t.test(name, (t) => {
    for (const [raw, value] of good)
      t.same(parsed(validator, raw), value, `accepts ${JSON.stringify(raw)}`)
    for (const raw of bad) t.equal(parsed(validator, raw), null, `rejects ${JSON.stringify(raw)}`)
    t.ok(validator.allowed.length > 0, 'says what is allowed')
    t.end()
  })
}

table(
  'seconds',
  v.seconds,
  [
    ['1', 1],
    ['60', 60],
    ['0060', 60],
    ['31536000', 31_536_000],
  ],
  ['', '0', '-1', '31536001', 'abc', '1.5', '1e3', '+5', '0x10', '60s', '9007199254740993'],
)

table(
  'port',
  v.port,
  [
    ['0', 0],
    ['7990', 7990],
    ['65535', 65535],
  ],
  ['', '-1', '65536', 'http', '80.0', ' 80x'],
)

table(
  'boolean',
  v.boolean,
  [
    ['true', true],
    ['TRUE', true],
    ['False', false],
    ['false', false],
  ],
  ['', 'yes', 'no', '1', '0', 'on', 'truee'],
)

table(
  'bytes',
  v.bytes,
  [
    ['0', 0],
    ['1073741824', 1_073_741_824],
    ['1b', 1],
    ['1B', 1],
    ['1k', 1024],
    ['1K', 1024],
    ['2kb', 2048],
    ['2KiB', 2048],
    ['512m', 512 * 1024 ** 2],
    ['512 MB', 512 * 1024 ** 2],
    ['3MiB', 3 * 1024 ** 2],
    ['1g', 1024 ** 3],
    ['1GB', 1024 ** 3],
    ['1gib', 1024 ** 3],
    ['2t', 2 * 1024 ** 4],
    ['2TiB', 2 * 1024 ** 4],
  ],
  [
    '',
    '-1',
    '1.5g',
    'g',
    '1p',
    '1kk',
    '1 k b',
    '1ib',
    '1iB',
    '1e9',
    'lots',
    '9007199254740992',
    '8388608t',
  ],
)

table(
  'protocols',
  v.protocols,
  [
    ['HTTP,SSH', ['HTTP', 'SSH']],
    ['ssh, http', ['HTTP', 'SSH']],
    ['Http', ['HTTP']],
    ['SSH', ['SSH']],
    ['http,HTTP,ssh,Ssh', ['HTTP', 'SSH']],
    ['', []],
    [' , ', []],
    ['HTTP,', ['HTTP']],
  ],
  ['HTTPS', 'GIT', 'HTTP;SSH', 'HTTP SSH', 'all'],
)

table(
  'host',
  v.host,
  [
    ['0.0.0.0', '0.0.0.0'],
    ['::', '::'],
    ['localhost', 'localhost'],
    ['proxy.example.com', 'proxy.example.com'],
  ],
  ['', 'a b', 'http://x', 'user@host', 'a/b'],
)

table(
  'file',
  v.file,
  [
    ['keys/id_ed25519', '/srv/proxy/keys/id_ed25519'],
    ['/etc/ssh/known_hosts', '/etc/ssh/known_hosts'],
    ['../x', '/srv/x'],
  ],
  ['', 'a\0b'],
)

table(
  'directory',
  v.directory,
  [
    ['./data/cache', '/srv/proxy/data/cache'],
    ['/var/cache/scm', '/var/cache/scm'],
  ],
  [''],
)

table(
  'pathPrefix',
  v.pathPrefix,
  [
    ['', ''],
    ['/', ''],
    ['scm', 'scm'],
    ['scm/', 'scm'],
    ['/scm/', 'scm'],
    ['a/b', 'a/b'],
    ['//git/x//', 'git/x'],
  ],
  ['a//b', '../x', 'a/./b', 'a b', 'a\\b', 'a?b', 'a%2e'],
)

table('username', v.username, [['admin', 'admin']], ['a:b'])

table('secret', v.secret, [['s3cr3t ', 's3cr3t ']], [''])

table(
  'drainSeconds',
  v.drainSeconds,
  [
    ['0', 0],
    ['10', 10],
    ['3600', 3600],
  ],
  ['', '-1', '3601', '1.5', '10s'],
)

table(
  'cidrs',
  v.cidrs,
  [
    ['10.0.0.0/8', ['10.0.0.0/8']],
    [' 192.0.2.7 , ,fd00::/8', ['192.0.2.7/32', 'fd00::/8']],
    ['::1', ['::1/128']],
    ['0.0.0.0/0', ['0.0.0.0/0']],
    ['FD00::/8', ['fd00::/8']],
  ],
  ['', ',', '10.0.0.0/33', '::/129', '10.0.0/8', 'example.com', '10.0.0.0/8/1', '10.0.0.0/x', '10.0.0.0/-1'],
)

void t.test('secret validators are marked secret, others are not', (t) => {
  t.equal(v.secret.secret, true)
  for (const validator of [
    v.seconds,
    v.bytes,
    v.boolean,
    v.protocols,
    v.httpUrl,
    v.sshUrl,
    v.username,
    v.cidrs,
    v.drainSeconds,
  ]) {
    t.equal(validator.secret, false)
  }
  t.end()
})

void t.test('httpUrl', (t) => {
  const href = (raw: string): string | null => parsed(v.httpUrl, raw)?.href ?? null
  t.equal(href('http://git.example.com'), 'http://git.example.com/')
  t.equal(href('https://git.example.com/'), 'https://git.example.com/')
  t.equal(href('https://git.example.com:8443/bitbucket'), 'https://git.example.com:8443/bitbucket/')
  t.equal(href('HTTPS://Git.Example.com/x/'), 'https://git.example.com/x/')
  t.equal(href('http://user:pw@h/'), null, 'credentials in the URL would be sent for every client')
  t.equal(href('http://user@h/'), null)
  for (const bad of [
    '',
    'git.example.com',
    'ftp://h/',
    'ssh://git@h',
    'http://',
    'http:h',
    'http://h/?a=1',
    'http://h/#x',
    'http://h:99999/',
  ]) {
    t.equal(href(bad), null, `rejects ${JSON.stringify(bad)}`)
  }
  t.end()
})

void t.test('sshUrl', (t) => {
  const href = (raw: string): string | null => parsed(v.sshUrl, raw)?.href ?? null
  t.equal(href('ssh://git@host:7999'), 'ssh://git@host:7999')
  t.equal(href('ssh://git@host'), 'ssh://git@host:22', 'the port defaults to 22')
  t.equal(href('ssh://git@host:7999/scm/'), 'ssh://git@host:7999/scm', 'drops the trailing slash')
  t.equal(href('ssh://git@[::1]:2222/x'), 'ssh://git@[::1]:2222/x')
  for (const bad of [
    '',
    'git@host:repo.git',
    'http://git@host',
    'ssh://host:22',
    'ssh://git:pw@host:22',
    'ssh://git@host:0',
    'ssh://git@:22',
    'ssh://git@host:22?x',
    'ssh://git@host:22#x',
    'ssh://git@host:70000',
  ]) {
    t.equal(href(bad), null, `rejects ${JSON.stringify(bad)}`)
  }
  t.end()
})
