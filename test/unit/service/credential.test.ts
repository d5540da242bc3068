import t from 'tap'
import { credentialOf, SSH_UPSTREAM_KEY } from '../../../src/service/credential.js'

const HEADERS = ['private-token', 'job-token', 'x-auth-token']
const of = (headers: Record<string, string | string[]>, search = '', tls = false): ReturnType<typeof credentialOf> =>
  credentialOf({ headers, search, credentialHeaders: HEADERS, tlsClientCertificate: tls })

void t.test('anonymous: none of the carriers', (t) => {
  for (const [headers, search] of [
    [{}, ''],
    [{ 'user-agent': 'git/2.39.5', 'git-protocol': 'version=2', accept: '*/*' }, ''],
    [{}, '?service=git-upload-pack'],
  ] as const) {
    const c = of(headers, search)
    t.equal(c.anonymous, true, JSON.stringify([headers, search]))
    t.equal(c.id, '')
    t.equal(c.query, '')
  }
  t.end()
})

void t.test('every carrier makes a credential of its own, and only equal ones compare equal', (t) => {
  const cases: [string, Record<string, string>, string][] = [
    ['authorization', { authorization: 'Basic YTpi' }, ''],
    ['cookie', { cookie: 'session=1' }, ''],
    ['another cookie', { cookie: 'session=2' }, ''],
    ['private-token', { 'private-token': 'x' }, ''],
    ['job-token', { 'job-token': 'x' }, ''],
    ['x-auth-token', { 'x-auth-token': 'x' }, ''],
    ['query token', {}, '?token=x'],
    ['another query token', {}, '?token=y'],
    ['query token beside service', {}, '?service=git-upload-pack&token=x&a=b'],
    ['two carriers', { authorization: 'Basic YTpi', cookie: 'session=1' }, ''],
  ]
  const ids = new Set<string>()
  for (const [name, headers, search] of cases) {
    const c = of(headers, search)
    t.equal(c.anonymous, false, name)
    t.notOk(ids.has(c.id), `${name}: a credential of its own`)
    ids.add(c.id)
    t.equal(of(headers, search).id, c.id, `${name}: the same request, the same credential`)
  }
  t.equal(of({}, '?token=x&service=git-upload-pack').query, '?token=x', 'service is not part of it')
  t.equal(of({ cookie: 'a=1', 'user-agent': 'x' }).id, of({ cookie: 'a=1', 'user-agent': 'y' }).id, 'other headers are not part of it')
  t.not(of({ 'x-other': 'secret' }).anonymous, false, 'a header not configured is not a carrier')
  t.same(of({ cookie: 'session=1', authorization: 'Basic x' }).headers, { authorization: 'Basic x', cookie: 'session=1' }, 'the carriers go along with the access check')
  t.end()
})

void t.test('a client certificate is a credential the proxy cannot key', (t) => {
  t.equal(of({}, '', true).cacheable, false)
  t.equal(of({ authorization: 'Basic x' }, '', true).cacheable, false)
  t.equal(of({}).cacheable, true)
  t.end()
})

void t.test('the SSH upstream key is never an HTTP credential', (t) => {
  t.not(SSH_UPSTREAM_KEY.id, of({}).id)
  t.notOk(SSH_UPSTREAM_KEY.id.startsWith('['))
  t.end()
})
