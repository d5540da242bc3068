import t from 'tap'
import { clientOf, TrustedProxies } from '../../../src/front/forwarded.js'
import { authorize } from '../../../src/rest/auth.js'

const balancers = new TrustedProxies(['10.0.0.0/8', '192.0.2.7/32', 'fd00::/8'])
const none = new TrustedProxies([])

void t.test('TrustedProxies matches addresses in its blocks, IPv4-mapped too', (t) => {
  t.ok(balancers.has('10.1.2.3'))
  t.ok(balancers.has('::ffff:10.1.2.3'))
  t.ok(balancers.has('192.0.2.7'))
  t.notOk(balancers.has('192.0.2.8'))
  t.ok(balancers.has('fd00::1'))
  t.notOk(balancers.has('fe80::1'))
  t.notOk(balancers.has(undefined))
  t.notOk(balancers.has('not-an-ip'))
  t.notOk(none.has('10.1.2.3'))
  t.end()
})

void t.test('headers from an untrusted peer are ignored', (t) => {
  const forged = { 'x-forwarded-for': '127.0.0.1', 'x-forwarded-proto': 'https' }
  t.same(clientOf('198.51.100.9', false, forged, balancers), { client: '198.51.100.9', clientProto: 'http' })
  t.same(clientOf('::ffff:198.51.100.9', true, forged, none), { client: '198.51.100.9', clientProto: 'https' })
  t.same(clientOf(undefined, false, forged, balancers), { client: undefined, clientProto: 'http' })
  t.end()
})

void t.test('behind trusted balancers the client is the right-most untrusted hop', (t) => {
  t.same(clientOf('10.0.0.2', false, { 'x-forwarded-for': '203.0.113.5', 'x-forwarded-proto': 'https' }, balancers), {
    client: '203.0.113.5',
    clientProto: 'https',
  })
  // A client's own forged entry sits left of what the balancer appended: not believed.
  t.same(clientOf('10.0.0.2', false, { 'x-forwarded-for': '127.0.0.1, 203.0.113.5, 10.0.0.3' }, balancers), {
    client: '203.0.113.5',
    clientProto: 'http',
  })
  t.same(clientOf('10.0.0.2', false, { 'x-forwarded-for': ['203.0.113.5', '10.0.0.3'] }, balancers).client, '203.0.113.5')
  // All hops trusted: the left-most one.
  t.same(clientOf('10.0.0.2', false, { 'x-forwarded-for': '10.0.0.9, 10.0.0.3' }, balancers).client, '10.0.0.9')
  // Garbage stops the walk at the last good hop.
  t.same(clientOf('10.0.0.2', false, { 'x-forwarded-for': 'junk, 10.0.0.3' }, balancers).client, '10.0.0.3')
  t.same(clientOf('10.0.0.2', false, {}, balancers), { client: '10.0.0.2', clientProto: 'http' })
  t.same(clientOf('10.0.0.2', true, { 'x-forwarded-proto': 'gopher' }, balancers).clientProto, 'https')
  t.same(clientOf('10.0.0.2', false, { 'x-forwarded-proto': 'HTTPS, http' }, balancers).clientProto, 'https')
  t.end()
})

void t.test('the REST loopback rule takes the socket address only: a forged X-Forwarded-For cannot pass it', (t) => {
  // authorize() has no parameter for forwarded headers; what a trusted balancer
  // says goes to the log line (clientOf), never into this decision.
  const fromBalancer = clientOf('10.0.0.2', false, { 'x-forwarded-for': '127.0.0.1' }, balancers)
  t.equal(fromBalancer.client, '127.0.0.1', 'the log would show the forwarded address')
  t.match(authorize(null, undefined, '10.0.0.2'), { ok: false, status: 403 }, 'the REST rule still sees the balancer')
  t.match(authorize(null, undefined, '198.51.100.9'), { ok: false, status: 403 })
  t.match(authorize(null, undefined, '::ffff:127.0.0.1'), { ok: true, by: 'loopback' })
  t.end()
})
