import t from 'tap'
import { authorize, credentialsMatch, isLoopback, parseBasic, WWW_AUTHENTICATE } from '../../../src/rest/auth.js'

const basic = (s: string): string => `Basic ${Buffer.from(s).toString('base64')}`

void t.test('isLoopback', async (t) => {
  for (const a of ['127.0.0.1', '127.1.2.3', '127.255.255.255', '::1', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1', '::FFFF:127.9.9.9']) {
    t.ok(isLoopback(a), a)
  }
  for (const a of [undefined, '', '10.0.0.1', '192.168.1.1', '128.0.0.1', '::2', '::ffff:10.0.0.1', 'fe80::1', '127.0.0.1.evil', '1127.0.0.1', 'localhost']) {
    t.notOk(isLoopback(a), String(a))
  }
})

void t.test('parseBasic', async (t) => {
  t.same(parseBasic(basic('admin:secret')), { username: 'admin', password: 'secret' })
  t.same(parseBasic(basic('admin:se:cr:et')), { username: 'admin', password: 'se:cr:et' }, 'the first colon splits')
  t.same(parseBasic(basic('admin:')), { username: 'admin', password: '' })
  t.same(parseBasic(`basic   ${Buffer.from('a:b').toString('base64')}`), { username: 'a', password: 'b' }, 'scheme in any case')
  t.same(parseBasic(basic('ädmin:pässword')), { username: 'ädmin', password: 'pässword' }, 'UTF-8')
  for (const h of [undefined, '', 'Basic', 'Basic ', 'Bearer abc', basic('no-colon'), 'Basic !!!', `Digest ${Buffer.from('a:b').toString('base64')}`]) {
    t.equal(parseBasic(h), null, String(h))
  }
})

void t.test('credentialsMatch', async (t) => {
  const expected = { username: 'admin', password: 'secret' }
  t.ok(credentialsMatch(expected, { username: 'admin', password: 'secret' }))
  t.notOk(credentialsMatch(expected, { username: 'admin', password: 'secre' }), 'a prefix')
  t.notOk(credentialsMatch(expected, { username: 'admin', password: 'secret!' }), 'longer')
  t.notOk(credentialsMatch(expected, { username: 'Admin', password: 'secret' }), 'user name case matters')
  t.notOk(credentialsMatch(expected, { username: 'secret', password: 'admin' }))
  t.notOk(credentialsMatch(expected, { username: '', password: '' }))
})

void t.test('authorize', async (t) => {
  const creds = { username: 'admin', password: 'secret' }
  t.same(authorize(creds, basic('admin:secret'), '10.1.2.3'), { ok: true, by: 'admin' }, 'credentials work from anywhere')
  t.match(authorize(creds, undefined, '127.0.0.1'), { ok: false, status: 401 }, 'loopback needs them too once configured')
  t.match(authorize(creds, basic('admin:wrong'), '127.0.0.1'), { ok: false, status: 401 })
  t.same(authorize(null, undefined, '127.0.0.1'), { ok: true, by: 'loopback' })
  t.same(authorize(null, basic('x:y'), '::1'), { ok: true, by: 'loopback' }, 'credentials are not checked when none are configured')
  t.match(authorize(null, undefined, '10.0.0.5'), { ok: false, status: 403, message: /loopback/ })
  t.match(authorize(null, undefined, undefined), { ok: false, status: 403 }, 'no address: refused')
  t.equal(WWW_AUTHENTICATE, 'Basic realm="scm-cache"')
})
