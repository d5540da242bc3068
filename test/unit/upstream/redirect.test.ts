import t from 'tap'
import { rewriteLocation } from '../../../src/upstream/redirect.js'

const root = new URL('http://git.example.com:8080/')
const scm = new URL('https://git.example.com/scm/')

void t.test('a Location into the upstream base comes back as the same path on the proxy', (t) => {
  const requested = new URL('http://git.example.com:8080/old/app.git/info/refs?service=git-upload-pack')
  for (const [location, base, expected] of [
    ['http://git.example.com:8080/app.git/info/refs?service=git-upload-pack', root, '/app.git/info/refs?service=git-upload-pack'],
    ['HTTP://GIT.example.com:8080/app.git/info/refs', root, '/app.git/info/refs'],
    ['/app.git/info/refs?service=git-upload-pack', root, '/app.git/info/refs?service=git-upload-pack'],
    ['../../new.git/info/refs', root, '/old/new.git/info/refs'],
    ['https://git.example.com/scm/team/app.git/info/refs?service=git-upload-pack', scm, '/team/app.git/info/refs?service=git-upload-pack'],
    ['https://git.example.com:443/scm/app.git/', scm, '/app.git/'],
    ['https://git.example.com/scm', scm, '/'],
    ['/scm/app.git/info/refs', scm, '/app.git/info/refs'],
    ['http://git.example.com:8080/a.git/info/refs#frag', root, '/a.git/info/refs#frag'],
  ] as const) {
    t.equal(rewriteLocation(location, base === scm ? new URL('https://git.example.com/scm/x.git/info/refs') : requested, base), expected, location)
  }
  t.end()
})

void t.test('every other Location is relayed', (t) => {
  const requested = new URL('https://git.example.com/scm/app.git/info/refs')
  for (const location of [
    'https://sso.example.com/login?next=/scm/app.git',
    'http://git.example.com/scm/app.git/info/refs', // another scheme is another origin
    'https://git.example.com:8443/scm/app.git/info/refs',
    'https://git.example.com/other/app.git/info/refs', // outside the base path
    'https://git.example.com/scmx/app.git',
    'mailto:admin@example.com',
  ]) {
    t.equal(rewriteLocation(location, requested, scm), location, location)
  }
  t.end()
})

void t.test('a relative Location outside the base is made absolute to the upstream', (t) => {
  const requested = new URL('https://git.example.com/scm/app.git/info/refs')
  t.equal(rewriteLocation('/login?next=x', requested, scm), 'https://git.example.com/login?next=x')
  t.equal(rewriteLocation('//cdn.example.com/x', requested, scm), 'https://cdn.example.com/x')
  t.end()
})

void t.test('a Location that is not a URL is left alone', (t) => {
  t.equal(rewriteLocation('http://[bad', new URL('http://git.example.com/'), root), 'http://[bad')
  t.end()
})
