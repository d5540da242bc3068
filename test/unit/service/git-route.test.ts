/**
 * classifyGitRequest (src/front/git-route.ts): smart and dumb HTTP Git URLs
 * to repository + endpoint; null for what is no Git endpoint (404); a
 * ProtocolError for a bad path. (The repeated `service=` parameter is left
 * to the tests of its coming change.)
 */
import t, { type Test } from 'tap'
import { ProtocolError } from '../../../src/errors.js'
import { classifyGitRequest, type GitRoute } from '../../../src/service/git-route.js'

const OID40 = 'a'.repeat(40)
const OID64 = 'b'.repeat(64)

interface Case {
  name: string
  method: string
  path: string
  search?: string
  want: GitRoute | null
}

const adv = (repo: string, service: 'git-upload-pack' | 'git-receive-pack'): GitRoute =>
  ({ repo, endpoint: { kind: 'advertisement', service } }) as GitRoute // RepoPath is a branded string
const rpc = (repo: string, service: 'git-upload-pack' | 'git-receive-pack'): GitRoute =>
  ({ repo, endpoint: { kind: 'rpc', service } }) as GitRoute // as above
const dumb = (repo: string, subPath: string): GitRoute => ({ repo, endpoint: { kind: 'dumb', subPath } }) as GitRoute // as above

function run(t: Test, cases: Case[]): void {
  for (const c of cases) t.same(classifyGitRequest(c.method, c.path, c.search ?? ''), c.want, `${c.method} ${c.path}${c.search ?? ''}: ${c.name}`)
}

void t.test('smart HTTP endpoints', async (t) => {
  const up = '?service=git-upload-pack'
  const rp = '?service=git-receive-pack'
  run(t, [
    { name: 'upload-pack advertisement', method: 'GET', path: '/group/app.git/info/refs', search: up, want: adv('group/app.git', 'git-upload-pack') },
    { name: 'receive-pack advertisement', method: 'GET', path: '/group/app.git/info/refs', search: rp, want: adv('group/app.git', 'git-receive-pack') },
    { name: 'HEAD of the advertisement', method: 'HEAD', path: '/app.git/info/refs', search: up, want: adv('app.git', 'git-upload-pack') },
    { name: 'other query parameters beside', method: 'GET', path: '/app.git/info/refs', search: '?x=1&service=git-upload-pack&y', want: adv('app.git', 'git-upload-pack') },
    { name: 'without .git', method: 'GET', path: '/group/app/info/refs', search: up, want: adv('group/app', 'git-upload-pack') },
    { name: 'deeply nested', method: 'GET', path: '/a/b/c/d/app.git/info/refs', search: up, want: adv('a/b/c/d/app.git', 'git-upload-pack') },
    { name: 'upload-pack RPC', method: 'POST', path: '/group/app.git/git-upload-pack', want: rpc('group/app.git', 'git-upload-pack') },
    { name: 'receive-pack RPC', method: 'POST', path: '/group/app.git/git-receive-pack', want: rpc('group/app.git', 'git-receive-pack') },
    { name: 'RPC with a query', method: 'POST', path: '/app.git/git-upload-pack', search: '?x=1', want: rpc('app.git', 'git-upload-pack') },
    { name: 'an encoded space in the repository', method: 'POST', path: '/my%20app.git/git-upload-pack', want: rpc('my app.git', 'git-upload-pack') },
    { name: 'an encoded slash is a slash', method: 'POST', path: '/group%2Fapp.git/git-upload-pack', want: rpc('group/app.git', 'git-upload-pack') },
    { name: 'non-ASCII, percent-encoded UTF-8', method: 'GET', path: '/%C3%BC.git/info/refs', search: up, want: adv('ü.git', 'git-upload-pack') },
    { name: 'leading double slash', method: 'GET', path: '//app.git/info/refs', search: up, want: adv('app.git', 'git-upload-pack') },
  ])
})

void t.test('methods', async (t) => {
  const up = '?service=git-upload-pack'
  run(t, [
    { name: 'GET of an RPC endpoint', method: 'GET', path: '/app.git/git-upload-pack', want: null },
    { name: 'HEAD of an RPC endpoint', method: 'HEAD', path: '/app.git/git-receive-pack', want: null },
    { name: 'PUT of an RPC endpoint', method: 'PUT', path: '/app.git/git-upload-pack', want: null },
    { name: 'POST of the advertisement', method: 'POST', path: '/app.git/info/refs', search: up, want: null },
    { name: 'POST of dumb info/refs', method: 'POST', path: '/app.git/info/refs', want: null },
    { name: 'POST of HEAD', method: 'POST', path: '/app.git/HEAD', want: null },
    { name: 'DELETE of an object', method: 'DELETE', path: `/app.git/objects/aa/${OID40.slice(2)}`, want: null },
    // Only POST is excluded for the advertisement: other methods are classified as a GET would be.
    { name: 'PUT of the advertisement is no Git request', method: 'PUT', path: '/app.git/info/refs', search: up, want: null },
    { name: 'OPTIONS of dumb info/refs is no Git request', method: 'OPTIONS', path: '/app.git/info/refs', want: null },
    // Methods are compared as Node gives them (upper case).
    { name: 'lower-case post', method: 'post', path: '/app.git/git-upload-pack', want: null },
    { name: 'lower-case get of HEAD', method: 'get', path: '/app.git/HEAD', want: null },
  ])
})

void t.test('advertisement with an unsupported service', async (t) => {
  const cases: { name: string; search: string; message: string }[] = [
    { name: 'upload-archive', search: '?service=git-upload-archive', message: 'unsupported service "git-upload-archive"' },
    { name: 'empty', search: '?service=', message: 'unsupported service ""' },
    { name: 'case', search: '?service=GIT-UPLOAD-PACK', message: 'unsupported service "GIT-UPLOAD-PACK"' },
    { name: 'trailing space', search: '?service=git-upload-pack%20', message: 'unsupported service "git-upload-pack "' },
    { name: 'long value, cut to 40 characters', search: `?service=${'x'.repeat(100)}`, message: `unsupported service "${'x'.repeat(40)}"` },
    { name: 'quotes escaped', search: '?service=a"b', message: 'unsupported service "a\\"b"' },
  ]
  for (const c of cases) {
    t.throws(
      () => classifyGitRequest('GET', '/app.git/info/refs', c.search),
      { constructor: ProtocolError, code: 'ERR_PROTOCOL_BAD_SERVICE', message: c.message, statusCode: 400 },
      c.name,
    )
  }
})

void t.test('dumb HTTP paths', async (t) => {
  const ok = (sub: string, name: string, method = 'GET'): Case => ({ name, method, path: `/app.git/${sub}`, want: dumb('app.git', sub) })
  const no = (sub: string, name: string): Case => ({ name, method: 'GET', path: `/app.git/${sub}`, want: null })
  run(t, [
    ok('info/refs', 'info/refs without a service'),
    ok('info/refs', 'HEAD of info/refs', 'HEAD'),
    ok('HEAD', 'HEAD'),
    ok('HEAD', 'HEAD by HEAD', 'HEAD'),
    ok('info/packs', 'info/packs'),
    ok('objects/info/alternates', 'alternates'),
    ok('objects/info/http-alternates', 'http-alternates'),
    ok('objects/info/packs', 'objects/info/packs'),
    ok(`objects/aa/${OID40.slice(2)}`, 'a loose sha1 object'),
    ok(`objects/bb/${OID64.slice(2)}`, 'a loose sha256 object'),
    ok(`objects/pack/pack-${OID40}.pack`, 'a sha1 pack'),
    ok(`objects/pack/pack-${OID40}.idx`, 'a sha1 index'),
    ok(`objects/pack/pack-${OID64}.pack`, 'a sha256 pack'),
    no(`objects/aa/${OID40.slice(3)}`, 'a loose object one digit short'),
    no(`objects/aa/${OID40.slice(2)}0`, 'a loose object one digit long'),
    no(`objects/AA/${'A'.repeat(38)}`, 'an upper-case loose object'),
    no(`objects/pack/pack-${OID40}.keep`, 'a .keep file'),
    no(`objects/pack/pack-${OID40}.rev`, 'a .rev file'),
    no('objects/pack/pack-1234.pack', 'a pack with a short name'),
    no('objects/info/commit-graph', 'another objects/info file'),
    no('info/exclude', 'another info file'),
    no('info/refs/', 'info/refs with a trailing slash'),
    no('HEAD/', 'HEAD with a trailing slash'),
    no('ORIG_HEAD', 'ORIG_HEAD'),
    no('config', 'config'),
    no('refs/heads/main', 'a loose ref'),
    no('packed-refs', 'packed-refs'),
    no('description', 'description'),
    no('hooks/pre-receive', 'hooks'),
  ])
})

void t.test('paths that name no Git endpoint', async (t) => {
  const up = '?service=git-upload-pack'
  run(t, [
    { name: 'the root', method: 'GET', path: '/', want: null },
    { name: 'empty', method: 'GET', path: '', want: null },
    { name: 'a repository alone', method: 'GET', path: '/app.git', want: null },
    { name: 'a repository with a slash', method: 'GET', path: '/app.git/', want: null },
    { name: 'info/refs without a repository', method: 'GET', path: '/info/refs', search: up, want: null },
    { name: 'an RPC without a repository', method: 'POST', path: '/git-upload-pack', want: null },
    { name: 'no leading slash', method: 'GET', path: 'app.git/info/refs', search: up, want: null },
    { name: 'an RPC with a suffix', method: 'POST', path: '/app.git/git-upload-pack/x', want: null },
    { name: 'an RPC name in other case', method: 'POST', path: '/app.git/Git-Upload-Pack', want: null },
    { name: 'the REST API', method: 'GET', path: '/rest/scm-cache/latest/caches', want: null },
    // The repository part is matched shortest-first, so a repository path with
    // an `objects/` or `info/` segment in it is read as a dumb sub-path of its
    // first segment and is no endpoint at all. Pinned as it is.
    // A repository may have folders named objects or info in its path.
    { name: 'a repository under an "objects" group', method: 'GET', path: '/team/objects/app.git/info/refs', search: up, want: adv('team/objects/app.git', 'git-upload-pack') },
    { name: 'a repository under an "info" group', method: 'POST', path: '/team/info/app.git/git-upload-pack', want: rpc('team/info/app.git', 'git-upload-pack') },
    { name: 'a repository called "objects"', method: 'POST', path: '/team/objects/git-upload-pack', want: rpc('team/objects', 'git-upload-pack') },
    { name: 'a group "info" at the root works', method: 'POST', path: '/info/app.git/git-upload-pack', want: rpc('info/app.git', 'git-upload-pack') },
    { name: 'a group "HEAD" works', method: 'POST', path: '/HEAD/app.git/git-upload-pack', want: rpc('HEAD/app.git', 'git-upload-pack') },
  ])
})

void t.test('bad paths throw ERR_PROTOCOL_BAD_PATH', async (t) => {
  const cases: { name: string; method?: string; path: string; search?: string; message: RegExp }[] = [
    { name: 'dot-dot', path: '/../app.git/info/refs', message: /"\.\." segment/ },
    { name: 'dot-dot inside', path: '/group/../app.git/git-upload-pack', method: 'POST', message: /"\.\." segment/ },
    { name: 'dot', path: '/./app.git/info/refs', message: /"\." or/ },
    { name: 'encoded dot-dot %2e%2e', path: '/%2e%2e/app.git/info/refs', message: /"\.\." segment/ },
    { name: 'encoded dot-dot %2E%2E', path: '/group/%2E%2E/app.git/info/refs', message: /"\.\." segment/ },
    { name: 'half-encoded dot-dot', path: '/group/.%2e/app.git/info/refs', message: /"\.\." segment/ },
    { name: 'encoded slash and dot-dot', path: '/group%2f..%2fapp.git/info/refs', message: /"\.\." segment/ },
    { name: 'double encoding %252e', path: '/%252e%252e/app.git/info/refs', message: /forbidden character/ },
    { name: 'an encoded percent', path: '/a%25b.git/info/refs', message: /forbidden character/ },
    { name: 'an encoded NUL', path: '/a%00b.git/info/refs', message: /forbidden character/ },
    { name: 'a raw NUL', path: '/a\u0000b.git/info/refs', message: /forbidden character/ },
    { name: 'an encoded newline', path: '/a%0ab.git/info/refs', message: /forbidden character/ },
    { name: 'an encoded DEL', path: '/a%7fb.git/info/refs', message: /forbidden character/ },
    { name: 'a raw backslash', path: '/group\\app.git/info/refs', message: /forbidden character/ },
    { name: 'an encoded backslash', path: '/group%5capp.git/info/refs', message: /forbidden character/ },
    { name: 'backslash dot-dot', path: '/..%5c..%5capp.git/info/refs', message: /forbidden character/ },
    { name: 'an empty segment', path: '/group//app.git/info/refs', message: /empty/ },
    { name: 'a bad percent-encoding', path: '/a%zz.git/info/refs', message: /not valid percent-encoding/ },
    { name: 'a lone percent', path: '/a%.git/info/refs', message: /not valid percent-encoding/ },
    { name: 'invalid UTF-8', path: '/a%ff.git/info/refs', message: /not valid percent-encoding/ },
    { name: 'a segment of 256 characters', path: `/${'s'.repeat(256)}/info/refs`, message: /segment too long/ },
    { name: 'a repository path of 1025 characters', path: `/${'a/'.repeat(512)}b/info/refs`, message: /longer than 1024/ },
    { name: 'a URL of 4097 characters', path: `/${'a'.repeat(4096)}`, search: '', message: /too long/ },
    { name: 'path and query together over 4096', path: '/app.git/info/refs', search: `?service=git-upload-pack&x=${'y'.repeat(4096)}`, message: /too long/ },
  ]
  for (const c of cases) {
    t.throws(
      () => classifyGitRequest(c.method ?? 'GET', c.path, c.search ?? '?service=git-upload-pack'),
      { constructor: ProtocolError, code: 'ERR_PROTOCOL_BAD_PATH', message: c.message, statusCode: 400 },
      c.name,
    )
  }
  // Up to the limits it is fine.
  t.same(classifyGitRequest('POST', `/${'s'.repeat(255)}/git-upload-pack`, ''), rpc('s'.repeat(255), 'git-upload-pack'), 'a segment of 255')
  const repo1024 = `${'a/'.repeat(511)}bb`
  t.equal(repo1024.length, 1024)
  t.same(classifyGitRequest('POST', `/${repo1024}/git-upload-pack`, ''), rpc(repo1024, 'git-upload-pack'), 'a repository path of 1024')
  const path4096 = `/app.git/${'x'.repeat(4096 - '/app.git/'.length)}`
  t.equal(classifyGitRequest('GET', path4096, ''), null, 'a URL of exactly 4096 characters is measured, then not matched')
})

void t.test('the Git LFS API under <repo>/info/lfs/', (t) => {
  const lfs = (repo: string, subPath: string): GitRoute => ({ repo, endpoint: { kind: 'lfs', subPath } }) as GitRoute // as above
  for (const method of ['GET', 'HEAD', 'POST', 'PUT']) {
    t.same(classifyGitRequest(method, '/group/app.git/info/lfs/objects/batch', ''), lfs('group/app.git', 'info/lfs/objects/batch'), method)
  }
  const oid = 'a'.repeat(64)
  t.same(classifyGitRequest('GET', `/app.git/info/lfs/objects/${oid}`, ''), lfs('app.git', `info/lfs/objects/${oid}`))
  t.same(classifyGitRequest('POST', '/app.git/info/lfs/locks/verify', ''), lfs('app.git', 'info/lfs/locks/verify'))
  t.equal(classifyGitRequest('DELETE', '/app.git/info/lfs/locks', ''), null, 'other methods are no Git request')
  t.throws(() => classifyGitRequest('GET', '/../x.git/info/lfs/objects/batch', ''), /segment/)
  t.end()
})
