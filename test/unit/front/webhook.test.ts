/**
 * Push webhooks (src/front/webhook.ts): `verify` checks the signature
 * header of each hosting server over the exact body bytes, and
 * `repositoryCandidates` reads the repository paths a payload names.
 */
import { createHmac } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'
import t from 'tap'
import { repositoryCandidates, verify } from '../../../src/front/webhook.js'

const SECRET = 'webhook-secret-ü'
const BODY = Buffer.from('{"ref":"refs/heads/main","repository":{"full_name":"owner/app"}}')
const hex = (body: Buffer = BODY, secret: string = SECRET): string => createHmac('sha256', secret).update(body).digest('hex')
const HEX = hex()

const check = (headers: IncomingHttpHeaders, body: Buffer = BODY, secret: string = SECRET) => verify({ headers }, body, secret)

void t.test('verify: every scheme, right and wrong', async (t) => {
  const cases: { name: string; headers: IncomingHttpHeaders; body?: Buffer; want: ReturnType<typeof verify> }[] = [
    // Forgejo and Gitea: the bare hex HMAC-SHA256 of the body.
    { name: 'forgejo', headers: { 'x-forgejo-signature': HEX }, want: { ok: true, scheme: 'forgejo' } },
    { name: 'forgejo, upper-case hex', headers: { 'x-forgejo-signature': HEX.toUpperCase() }, want: { ok: true, scheme: 'forgejo' } },
    { name: 'forgejo, surrounding whitespace', headers: { 'x-forgejo-signature': ` \t${HEX} ` }, want: { ok: true, scheme: 'forgejo' } },
    { name: 'forgejo, wrong', headers: { 'x-forgejo-signature': hex(Buffer.from('other')) }, want: { ok: false, reason: 'bad forgejo signature' } },
    { name: 'forgejo, with a sha256= prefix', headers: { 'x-forgejo-signature': `sha256=${HEX}` }, want: { ok: false, reason: 'bad forgejo signature' } },
    { name: 'forgejo, empty', headers: { 'x-forgejo-signature': '' }, want: { ok: false, reason: 'bad forgejo signature' } },
    { name: 'forgejo, cut short', headers: { 'x-forgejo-signature': HEX.slice(0, 63) }, want: { ok: false, reason: 'bad forgejo signature' } },
    { name: 'forgejo, inner space', headers: { 'x-forgejo-signature': `${HEX.slice(0, 32)} ${HEX.slice(32)}` }, want: { ok: false, reason: 'bad forgejo signature' } },
    { name: 'gitea', headers: { 'x-gitea-signature': HEX }, want: { ok: true, scheme: 'gitea' } },
    { name: 'gitea, upper-case hex', headers: { 'x-gitea-signature': HEX.toUpperCase() }, want: { ok: true, scheme: 'gitea' } },
    { name: 'gitea, wrong secret', headers: { 'x-gitea-signature': hex(BODY, 'other') }, want: { ok: false, reason: 'bad gitea signature' } },
    // GitHub: `sha256=<hex>` in X-Hub-Signature-256.
    { name: 'github', headers: { 'x-hub-signature-256': `sha256=${HEX}` }, want: { ok: true, scheme: 'github' } },
    { name: 'github, all upper case', headers: { 'x-hub-signature-256': `SHA256=${HEX.toUpperCase()}` }, want: { ok: true, scheme: 'github' } },
    { name: 'github, whitespace', headers: { 'x-hub-signature-256': `  sha256=${HEX}\n` }, want: { ok: true, scheme: 'github' } },
    { name: 'github, bare hex', headers: { 'x-hub-signature-256': HEX }, want: { ok: false, reason: 'bad github signature' } },
    { name: 'github, sha1= prefix', headers: { 'x-hub-signature-256': `sha1=${HEX}` }, want: { ok: false, reason: 'bad github signature' } },
    { name: 'github, wrong', headers: { 'x-hub-signature-256': `sha256=${'0'.repeat(64)}` }, want: { ok: false, reason: 'bad github signature' } },
    // Bitbucket Server: `sha256=<hex>` in X-Hub-Signature.
    { name: 'bitbucket', headers: { 'x-hub-signature': `sha256=${HEX}` }, want: { ok: true, scheme: 'bitbucket' } },
    { name: 'bitbucket, upper case', headers: { 'x-hub-signature': `SHA256=${HEX.toUpperCase()}` }, want: { ok: true, scheme: 'bitbucket' } },
    {
      name: "bitbucket header holding GitHub's legacy sha1",
      headers: { 'x-hub-signature': `sha1=${createHmac('sha1', SECRET).update(BODY).digest('hex')}` },
      want: { ok: false, reason: 'bad bitbucket signature' },
    },
    // GitHub sends both; the sha256 header is read first.
    {
      name: 'github with its legacy sha1 header beside',
      headers: { 'x-hub-signature-256': `sha256=${HEX}`, 'x-hub-signature': 'sha1=deadbeef' },
      want: { ok: true, scheme: 'github' },
    },
    // GitLab: the secret itself, case-sensitive.
    { name: 'gitlab', headers: { 'x-gitlab-token': SECRET }, want: { ok: true, scheme: 'gitlab' } },
    { name: 'gitlab, whitespace', headers: { 'x-gitlab-token': ` ${SECRET} ` }, want: { ok: true, scheme: 'gitlab' } },
    { name: 'gitlab, other case', headers: { 'x-gitlab-token': SECRET.toUpperCase() }, want: { ok: false, reason: 'bad gitlab signature' } },
    { name: 'gitlab, the HMAC instead of the secret', headers: { 'x-gitlab-token': HEX }, want: { ok: false, reason: 'bad gitlab signature' } },
    { name: 'gitlab, a prefix of the secret', headers: { 'x-gitlab-token': SECRET.slice(0, 5) }, want: { ok: false, reason: 'bad gitlab signature' } },
    { name: 'gitlab, empty', headers: { 'x-gitlab-token': '' }, want: { ok: false, reason: 'bad gitlab signature' } },
    // Missing.
    { name: 'no header', headers: {}, want: { ok: false, reason: 'no signature header' } },
    { name: 'unrelated headers only', headers: { 'x-signature': HEX, authorization: `Bearer ${SECRET}` }, want: { ok: false, reason: 'no signature header' } },
    // Node lower-cases incoming header names; verify reads only lower-case keys.
    { name: 'a mixed-case key (never from Node)', headers: { 'X-Gitlab-Token': SECRET }, want: { ok: false, reason: 'no signature header' } },
    // The first header present decides; a wrong one does not fall through to the next.
    {
      name: 'wrong forgejo beside a right github',
      headers: { 'x-forgejo-signature': 'bad', 'x-hub-signature-256': `sha256=${HEX}` },
      want: { ok: false, reason: 'bad forgejo signature' },
    },
    {
      name: 'wrong gitea beside a right gitlab token',
      headers: { 'x-gitea-signature': 'bad', 'x-gitlab-token': SECRET },
      want: { ok: false, reason: 'bad gitea signature' },
    },
    {
      name: 'right forgejo beside a wrong gitea (Forgejo sends both)',
      headers: { 'x-forgejo-signature': HEX, 'x-gitea-signature': 'bad' },
      want: { ok: true, scheme: 'forgejo' },
    },
    // Repeated headers: the first value counts.
    { name: 'two values, the first right', headers: { 'x-gitlab-token': [SECRET, 'x'] }, want: { ok: true, scheme: 'gitlab' } },
    { name: 'two values, the first wrong', headers: { 'x-gitlab-token': ['x', SECRET] }, want: { ok: false, reason: 'bad gitlab signature' } },
    // The signature covers the exact bytes.
    { name: 'body changed by one byte', headers: { 'x-gitea-signature': HEX }, body: Buffer.from(BODY.toString().replace('main', 'mainx')), want: { ok: false, reason: 'bad gitea signature' } },
    { name: 'body with a trailing newline', headers: { 'x-gitea-signature': HEX }, body: Buffer.concat([BODY, Buffer.from('\n')]), want: { ok: false, reason: 'bad gitea signature' } },
    { name: 'empty body, its own signature', headers: { 'x-gitea-signature': hex(Buffer.alloc(0)) }, body: Buffer.alloc(0), want: { ok: true, scheme: 'gitea' } },
  ]
  for (const c of cases) t.same(check(c.headers, c.body), c.want, c.name)
})

void t.test('verify: a different secret refuses every scheme', async (t) => {
  const headers: IncomingHttpHeaders[] = [
    { 'x-forgejo-signature': HEX },
    { 'x-gitea-signature': HEX },
    { 'x-hub-signature-256': `sha256=${HEX}` },
    { 'x-hub-signature': `sha256=${HEX}` },
    { 'x-gitlab-token': SECRET },
  ]
  for (const h of headers) {
    t.match(check(h, BODY, SECRET), { ok: true }, `${Object.keys(h).join()}: right secret`)
    t.match(check(h, BODY, 'another secret'), { ok: false }, `${Object.keys(h).join()}: other secret`)
  }
})

void t.test('repositoryCandidates: payload shapes of each server', async (t) => {
  const cases: { name: string; payload: unknown; base?: string; prefix?: string; want: string[] }[] = [
    {
      name: 'GitHub push',
      payload: {
        ref: 'refs/heads/main',
        repository: {
          full_name: 'owner/app',
          clone_url: 'https://github.example/owner/app.git',
          html_url: 'https://github.example/owner/html-only',
          ssh_url: 'git@github.example:owner/ssh-only.git',
        },
      },
      want: ['owner/app.git', 'owner/app'],
    },
    {
      name: 'GitLab push (project and repository)',
      payload: {
        object_kind: 'push',
        project: { path_with_namespace: 'group/sub/app', git_http_url: 'https://gitlab.example/group/sub/app.git' },
        repository: { git_http_url: 'https://gitlab.example/group/sub/app.git', name: 'app' },
      },
      want: ['group/sub/app.git', 'group/sub/app'],
    },
    {
      name: 'Gitea / Forgejo push',
      payload: { repository: { full_name: 'org/tool', clone_url: 'https://gitea.example/org/tool.git' } },
      want: ['org/tool.git', 'org/tool'],
    },
    {
      name: 'Bitbucket Server push, with the scm path prefix',
      payload: {
        eventKey: 'repo:refs_changed',
        repository: {
          slug: 'app',
          project: { key: 'PROJ' },
          links: {
            clone: [
              { href: 'ssh://git@bitbucket.example:7999/proj/app.git', name: 'ssh' },
              { href: 'https://bitbucket.example/scm/proj/app.git', name: 'http' },
            ],
          },
        },
      },
      prefix: 'scm',
      // The clone URL lower-cases the project key; the name keeps it.
      want: ['scm/proj/app.git', 'scm/proj/app', 'PROJ/app.git', 'PROJ/app', 'scm/PROJ/app.git', 'scm/PROJ/app'],
    },
    {
      name: 'Bitbucket Server, no prefix configured',
      payload: { repository: { slug: 'app', project: { key: 'PROJ' } } },
      want: ['PROJ/app.git', 'PROJ/app'],
    },
    {
      name: 'the path prefix goes in front of names, not of clone URLs',
      payload: { repository: { full_name: 'owner/app', clone_url: 'https://h.example/owner/app.git' } },
      prefix: '/git-prefix/',
      want: ['owner/app.git', 'owner/app', 'git-prefix/owner/app.git', 'git-prefix/owner/app'],
    },
    {
      name: 'a full name already ending in .git',
      payload: { repository: { full_name: 'owner/app.git' } },
      want: ['owner/app.git', 'owner/app'],
    },
    {
      name: 'a full name with a leading slash',
      payload: { repository: { full_name: '/owner/app' } },
      want: ['owner/app.git', 'owner/app'],
    },
    {
      name: 'http_url',
      payload: { repository: { http_url: 'http://h.example/a/b.git' } },
      want: ['a/b.git', 'a/b'],
    },
  ]
  for (const c of cases) t.same(repositoryCandidates(c.payload, c.base ?? '/', c.prefix ?? ''), c.want, c.name)
})

void t.test('repositoryCandidates: the upstream base path is stripped from clone URLs', async (t) => {
  const url = (p: string): unknown => ({ repository: { clone_url: `https://h.example${p}` } })
  const cases: { name: string; base: string; path: string; want: string[] }[] = [
    { name: 'base /git/', base: '/git/', path: '/git/owner/app.git', want: ['owner/app.git', 'owner/app'] },
    { name: 'base /git (no trailing slash)', base: '/git', path: '/git/owner/app.git', want: ['owner/app.git', 'owner/app'] },
    { name: 'base git (no slashes)', base: 'git', path: '/git/owner/app.git', want: ['owner/app.git', 'owner/app'] },
    { name: 'base //git// (extra slashes)', base: '//git//', path: '/git/owner/app.git', want: ['owner/app.git', 'owner/app'] },
    { name: 'base empty', base: '', path: '/owner/app.git', want: ['owner/app.git', 'owner/app'] },
    { name: 'base /a/b/', base: '/a/b/', path: '/a/b/owner/app.git', want: ['owner/app.git', 'owner/app'] },
    // Not under the base: the whole path is kept.
    { name: 'URL outside the base', base: '/git/', path: '/other/owner/app.git', want: ['other/owner/app.git', 'other/owner/app'] },
    // Whole segments only: /gitlab/ is not under /git/.
    { name: 'base is a string prefix of the first segment', base: '/git/', path: '/gitlab/app.git', want: ['gitlab/app.git', 'gitlab/app'] },
    { name: 'base case differs', base: '/git/', path: '/GIT/owner/app.git', want: ['GIT/owner/app.git', 'GIT/owner/app'] },
    // Percent-decoded once.
    { name: 'an encoded space', base: '/', path: '/owner/my%20app.git', want: ['owner/my app.git', 'owner/my app'] },
    // The URL parser resolves dot segments, %2e%2e included, before decoding.
    { name: 'an encoded dot-dot segment', base: '/', path: '/owner/%2e%2e/app.git', want: ['app.git', 'app'] },
    { name: 'a query and fragment', base: '/', path: '/owner/app.git?x=1#y', want: ['owner/app.git', 'owner/app'] },
    { name: 'a port', base: '/git/', path: ':8443/git/owner/app.git', want: ['owner/app.git', 'owner/app'] },
  ]
  for (const c of cases) t.same(repositoryCandidates(url(c.path), c.base, ''), c.want, c.name)
})

void t.test('repositoryCandidates: junk gives no candidates, or only the valid ones', async (t) => {
  const long = `${'a'.repeat(1100)}/app`
  const cases: { name: string; payload: unknown; want: string[] }[] = [
    { name: 'null', payload: null, want: [] },
    { name: 'undefined', payload: undefined, want: [] },
    { name: 'a string', payload: 'owner/app', want: [] },
    { name: 'a number', payload: 42, want: [] },
    { name: 'an array', payload: [{ repository: { full_name: 'owner/app' } }], want: [] },
    { name: 'an empty object', payload: {}, want: [] },
    { name: 'repository is a string', payload: { repository: 'owner/app' }, want: [] },
    { name: 'repository is null', payload: { repository: null }, want: [] },
    { name: 'fields of the wrong type', payload: { repository: { full_name: 42, clone_url: ['https://h/a.git'], slug: 1 } }, want: [] },
    { name: 'not a URL', payload: { repository: { clone_url: 'owner/app.git' } }, want: [] },
    { name: 'bad percent-encoding', payload: { repository: { clone_url: 'https://h.example/owner/%zz.git' } }, want: [] },
    { name: 'an encoded NUL', payload: { repository: { clone_url: 'https://h.example/owner/a%00b.git' } }, want: [] },
    { name: 'double encoding (%2525)', payload: { repository: { clone_url: 'https://h.example/owner/a%2525.git' } }, want: [] },
    { name: 'a backslash', payload: { repository: { full_name: 'owner\\app' } }, want: [] },
    { name: 'a dot-dot full name', payload: { repository: { full_name: '../etc/passwd' } }, want: [] },
    { name: 'an empty segment', payload: { repository: { full_name: 'owner//app' } }, want: [] },
    { name: 'a control character', payload: { repository: { full_name: 'owner/a\u0007pp' } }, want: [] },
    { name: 'too long', payload: { repository: { full_name: long } }, want: [] },
    // The URL root is the repository path "" plus .git: only ".git" survives.
    { name: 'a clone URL of the root', payload: { repository: { clone_url: 'https://h.example/' } }, want: ['.git'] },
    // Pinned oddity: an empty full name yields the candidate ".git" (a valid path, naming nothing).
    { name: 'an empty full name', payload: { repository: { full_name: '' } }, want: ['.git'] },
    { name: 'ssh and scp-style clone links are skipped', payload: { repository: { links: { clone: [{ href: 'ssh://git@h/p/a.git' }, { href: 'git@h:p/a.git' }] } } }, want: [] },
    { name: 'links.clone not an array', payload: { repository: { links: { clone: { href: 'https://h.example/p/a.git' } } } }, want: [] },
    { name: 'clone links without href', payload: { repository: { links: { clone: [null, 1, {}, { href: 7 }] } } }, want: [] },
    { name: 'a slug without a project key', payload: { repository: { slug: 'app', project: {} } }, want: [] },
    { name: 'a project key without a slug', payload: { repository: { project: { key: 'PROJ' } } }, want: [] },
    {
      name: 'one good name among bad ones',
      payload: { repository: { full_name: '../x', clone_url: 'nonsense' }, project: { path_with_namespace: 'group/app' } },
      want: ['group/app.git', 'group/app'],
    },
  ]
  for (const c of cases) t.same(repositoryCandidates(c.payload, '/', ''), c.want, c.name)
})
