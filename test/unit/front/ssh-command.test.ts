import t from 'tap'
import { parseSshCommand, quoteArgument, unquoteArgument } from '../../../src/front/ssh-command.js'

void t.test('accepted commands', async (t) => {
  const cases: [string, string, string][] = [
    ["git-upload-pack '/repo.git'", 'git-upload-pack', 'repo.git'],
    ["git upload-pack '/repo.git'", 'git-upload-pack', 'repo.git'],
    ["git-receive-pack '/repo.git'", 'git-receive-pack', 'repo.git'],
    ["git receive-pack '/team/app.git'", 'git-receive-pack', 'team/app.git'],
    ["git-upload-pack 'repo.git'", 'git-upload-pack', 'repo.git'],
    ["git-upload-pack '~alice/repo.git'", 'git-upload-pack', '~alice/repo.git'],
    ["git-upload-pack '/~alice/repo.git'", 'git-upload-pack', '~alice/repo.git'],
    ["git-upload-pack '/it'\\''s repo'\\!'.git'", 'git-upload-pack', "it's repo!.git"],
    ["git-upload-pack '/a'\\''b'", 'git-upload-pack', "a'b"],
  ]
  for (const [command, service, path] of cases) {
    t.same(parseSshCommand(command), { ok: true, service, path }, command)
  }
})

void t.test('refused commands: a message, nothing parsed', async (t) => {
  const cases: [string, RegExp][] = [
    ["git-upload-pack '/x.git'; rm -rf /", /malformed path argument/],
    ["git-upload-pack '/x.git' && rm -rf /", /malformed path argument/],
    ["git-upload-pack '/x.git' '/y.git'", /malformed path argument/],
    ["git-upload-pack '/x.git", /malformed path argument/],
    ["git-upload-pack '/x.git'\\", /malformed path argument/],
    ["git-upload-pack '/x'\\n'.git'", /malformed path argument/],
    ["git-upload-pack \"/x.git\"", /unsupported command/],
    ['git-upload-pack /x.git', /unsupported command/],
    ["git-upload-pack  '/x.git'", /unsupported command/],
    [" git-upload-pack '/x.git'", /unsupported command/],
    ["git-upload-archive '/x.git'", /git-upload-archive is not supported/],
    ["git upload-archive '/x.git'", /git-upload-archive is not supported/],
    ["sh -c 'id'", /unsupported command/],
    ['rm -rf /', /unsupported command/],
    ['', /unsupported command/],
    ["git-upload-pack '/../etc.git'", /not valid/],
    ["git-upload-pack '/a/./b.git'", /not valid/],
    ["git-upload-pack '//etc/passwd'", /not valid/],
    ["git-upload-pack ''", /not valid/],
    ["git-upload-pack '/'", /not valid/],
    ["git-upload-pack '/a\u0000b.git'", /not valid/],
    ["git-upload-pack '/a%2e%2e.git'", /not valid/],
    ["git-upload-pack '/a\\b.git'", /not valid/],
    [`git-upload-pack '/${'a'.repeat(5000)}'`, /too long/],
  ]
  for (const [command, message] of cases) {
    const r = parseSshCommand(command)
    t.equal(r.ok, false, JSON.stringify(command.slice(0, 60)))
    if (!r.ok) {
      t.match(r.message, message)
      // eslint-disable-next-line no-control-regex -- control characters must never reach the client raw
      t.notMatch(r.message, /[\u0000-\u001f]/)
    }
  }
})

void t.test('quoting round-trips the way git quotes', async (t) => {
  for (const s of ['/repo.git', "it's", 'a!b', "'!'", '', 'sp ace', '$(x)`y`']) {
    t.equal(unquoteArgument(quoteArgument(s)), s, s)
  }
  t.equal(quoteArgument("/it's repo!.git"), "'/it'\\''s repo'\\!'.git'")
  t.equal(unquoteArgument("'a'\\'"), null, 'an escape must reopen a quoted run')
  t.equal(unquoteArgument("'a' 'b'"), null)
  t.equal(unquoteArgument('a'), null)
})
