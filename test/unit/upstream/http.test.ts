/**
 * Header filtering and error mapping of the HTTP upstream
 * (src/upstream/http.ts): what is forwarded to the upstream, what is
 * relayed back, and which UpstreamError an undici failure becomes.
 */
import type { IncomingHttpHeaders } from 'node:http'
import t from 'tap'
import { errors as undiciErrors } from 'undici'
import { UpstreamError } from '../../../src/errors.js'
import { forwardRequestHeaders, mapUpstreamError, relayResponseHeaders } from '../../../src/upstream/http.js'

/** RFC 9110 §7.6.1 hop-by-hop headers, plus the ones the proxy owns. */
const HOP_BY_HOP = [
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
  'expect',
  'http2-settings',
]

/** What git 2.39 sends on a v2 POST through curl. */
const GIT_POST: IncomingHttpHeaders = {
  host: 'proxy.example:8080',
  'user-agent': 'git/2.39.5',
  accept: 'application/x-git-upload-pack-result',
  'accept-encoding': 'deflate, gzip, br, zstd',
  'accept-language': 'en-US, *;q=0.9',
  pragma: 'no-cache',
  'git-protocol': 'version=2',
  'content-type': 'application/x-git-upload-pack-request',
  'content-length': '197',
  authorization: 'Basic dXNlcjpzZWNyZXQ=',
}

void t.test('forwardRequestHeaders: a real git request', async (t) => {
  t.same(forwardRequestHeaders(GIT_POST), {
    'user-agent': 'git/2.39.5',
    accept: 'application/x-git-upload-pack-result',
    'accept-language': 'en-US, *;q=0.9',
    pragma: 'no-cache',
    'git-protocol': 'version=2',
    'content-type': 'application/x-git-upload-pack-request',
    'content-length': '197',
    authorization: 'Basic dXNlcjpzZWNyZXQ=',
  })
})

void t.test('forwardRequestHeaders: what is dropped and what is kept', async (t) => {
  const cases: { name: string; headers: IncomingHttpHeaders; want: Record<string, string> }[] = [
    ...HOP_BY_HOP.map((h) => ({ name: `hop-by-hop ${h}`, headers: { [h]: 'v', 'x-keep': '1' }, want: { 'x-keep': '1' } })),
    // The proxy parses and stores response bodies: it asks for them uncompressed.
    { name: 'accept-encoding', headers: { 'accept-encoding': 'gzip', 'x-keep': '1' }, want: { 'x-keep': '1' } },
    { name: 'accept-encoding identity', headers: { 'accept-encoding': 'identity' }, want: {} },
    // A compressed request body goes as it is.
    { name: 'content-encoding kept', headers: { 'content-encoding': 'gzip' }, want: { 'content-encoding': 'gzip' } },
    { name: 'headers listed in Connection', headers: { connection: 'close, X-Custom, ,Foo ', 'x-custom': 'a', foo: 'b', bar: 'c' }, want: { bar: 'c' } },
    { name: 'Connection may list a credential header', headers: { connection: 'authorization', authorization: 'Bearer t' }, want: {} },
    { name: 'Connection may list git-protocol', headers: { connection: 'Git-Protocol', 'git-protocol': 'version=2' }, want: {} },
    { name: 'Connection listing nothing else', headers: { connection: 'keep-alive', 'x-a': '1' }, want: { 'x-a': '1' } },
    { name: 'an empty Connection', headers: { connection: '', 'x-a': '1' }, want: { 'x-a': '1' } },
    { name: 'arrays joined with ", "', headers: { 'x-forwarded-for': ['10.0.0.1', '10.0.0.2'] }, want: { 'x-forwarded-for': '10.0.0.1, 10.0.0.2' } },
    { name: 'an empty array', headers: { 'x-list': [] }, want: { 'x-list': '' } },
    { name: 'undefined values skipped', headers: { 'x-a': undefined, 'x-b': '2' }, want: { 'x-b': '2' } },
    { name: 'empty values kept', headers: { 'x-empty': '' }, want: { 'x-empty': '' } },
    { name: 'names lower-cased', headers: { 'X-Mixed-Case': 'v', Authorization: 'Basic x' }, want: { 'x-mixed-case': 'v', authorization: 'Basic x' } },
    { name: 'hop-by-hop names in upper case', headers: { 'Transfer-Encoding': 'chunked', 'Proxy-Authorization': 'Basic p', TE: 'trailers' }, want: {} },
    { name: 'cookies forwarded', headers: { cookie: 'a=1; b=2' }, want: { cookie: 'a=1; b=2' } },
    { name: 'nothing', headers: {}, want: {} },
  ]
  for (const c of cases) t.same(forwardRequestHeaders(c.headers), c.want, c.name)
})

void t.test('relayResponseHeaders: what is dropped and what is kept', async (t) => {
  const cases: { name: string; headers: Record<string, string | string[]>; want: Record<string, string | string[]> }[] = [
    {
      name: 'a real git http-backend answer',
      headers: {
        'content-type': 'application/x-git-upload-pack-result',
        'cache-control': 'no-cache, max-age=0, must-revalidate',
        expires: 'Fri, 01 Jan 1980 00:00:00 GMT',
        pragma: 'no-cache',
        'transfer-encoding': 'chunked',
        connection: 'keep-alive',
        'keep-alive': 'timeout=5',
        date: 'Tue, 21 Nov 2026 14:01:57 GMT',
      },
      want: {
        'content-type': 'application/x-git-upload-pack-result',
        'cache-control': 'no-cache, max-age=0, must-revalidate',
        expires: 'Fri, 01 Jan 1980 00:00:00 GMT',
        pragma: 'no-cache',
        date: 'Tue, 21 Nov 2026 14:01:57 GMT',
      },
    },
    ...HOP_BY_HOP.map((h) => ({ name: `hop-by-hop ${h}`, headers: { [h]: 'v', 'x-keep': '1' }, want: { 'x-keep': '1' } })),
    { name: 'headers listed in Connection', headers: { connection: 'close, X-Trace', 'x-trace': 't', 'x-keep': '1' }, want: { 'x-keep': '1' } },
    { name: 'Connection as an array', headers: { connection: ['close', 'x-a'], 'x-a': '1', 'x-b': '2' }, want: { 'x-b': '2' } },
    // Arrays stay arrays: set-cookie must not be joined.
    { name: 'set-cookie stays an array', headers: { 'set-cookie': ['a=1', 'b=2'] }, want: { 'set-cookie': ['a=1', 'b=2'] } },
    { name: 'www-authenticate kept', headers: { 'www-authenticate': 'Basic realm="git"' }, want: { 'www-authenticate': 'Basic realm="git"' } },
    { name: 'content-encoding and content-length kept', headers: { 'content-encoding': 'gzip', 'content-length': '10' }, want: { 'content-encoding': 'gzip', 'content-length': '10' } },
    { name: 'accept-encoding is only dropped on requests', headers: { 'accept-encoding': 'gzip', vary: 'Accept-Encoding' }, want: { 'accept-encoding': 'gzip', vary: 'Accept-Encoding' } },
    { name: 'names lower-cased', headers: { 'Content-Type': 'text/plain', 'Keep-Alive': 'x' }, want: { 'content-type': 'text/plain' } },
    // Only a lower-case `connection` key is read for the list (undici always
    // gives lower-case names): a mixed-case one is dropped itself but the
    // headers it lists are kept.
    { name: 'a mixed-case Connection key', headers: { Connection: 'x-a', 'x-a': '1' }, want: { 'x-a': '1' } },
    { name: 'nothing', headers: {}, want: {} },
  ]
  for (const c of cases) t.same(relayResponseHeaders(c.headers), c.want, c.name)
})

void t.test('mapUpstreamError: each failure to one UpstreamError, the original as cause', async (t) => {
  const ORIGIN = 'http://upstream.example:8080'
  const sys = (code: string): Error => Object.assign(new Error(`connect ${code} 127.0.0.1:1`), { code })
  const cases: { name: string; err: unknown; code: string; status: number; message: string }[] = [
    { name: 'headers timeout', err: new undiciErrors.HeadersTimeoutError(), code: 'ERR_UPSTREAM_TIMEOUT', status: 504, message: `upstream ${ORIGIN} timed out` },
    { name: 'body timeout', err: new undiciErrors.BodyTimeoutError(), code: 'ERR_UPSTREAM_TIMEOUT', status: 504, message: `upstream ${ORIGIN} timed out` },
    // A connect timeout is "unreachable" (DESIGN: upstream.connect-timeout), not a timeout.
    {
      name: 'connect timeout',
      err: new undiciErrors.ConnectTimeoutError(),
      code: 'ERR_UPSTREAM_UNAVAILABLE',
      status: 502,
      message: `upstream ${ORIGIN} unreachable (UND_ERR_CONNECT_TIMEOUT)`,
    },
    { name: "undici's RequestAbortedError", err: new undiciErrors.RequestAbortedError(), code: 'ERR_UPSTREAM_ABORTED', status: 502, message: 'request aborted' },
    { name: 'a DOMException AbortError (signal.abort())', err: new DOMException('aborted', 'AbortError'), code: 'ERR_UPSTREAM_ABORTED', status: 502, message: 'request aborted' },
    // AbortSignal.timeout()'s reason is a TimeoutError DOMException: a timeout, not "unreachable (23)".
    { name: 'a DOMException TimeoutError (AbortSignal.timeout)', err: new DOMException('timed out', 'TimeoutError'), code: 'ERR_UPSTREAM_TIMEOUT', status: 504, message: `upstream ${ORIGIN} timed out` },
    { name: 'connection refused', err: sys('ECONNREFUSED'), code: 'ERR_UPSTREAM_UNAVAILABLE', status: 502, message: `upstream ${ORIGIN} unreachable (ECONNREFUSED)` },
    { name: 'DNS failure', err: sys('ENOTFOUND'), code: 'ERR_UPSTREAM_UNAVAILABLE', status: 502, message: `upstream ${ORIGIN} unreachable (ENOTFOUND)` },
    { name: 'socket closed', err: new undiciErrors.SocketError('other side closed'), code: 'ERR_UPSTREAM_UNAVAILABLE', status: 502, message: `upstream ${ORIGIN} unreachable (UND_ERR_SOCKET)` },
    { name: 'an Error without a code', err: new Error('odd'), code: 'ERR_UPSTREAM_UNAVAILABLE', status: 502, message: `upstream ${ORIGIN} unreachable (unknown)` },
    { name: 'a numeric code', err: Object.assign(new Error('odd'), { code: 7 }), code: 'ERR_UPSTREAM_UNAVAILABLE', status: 502, message: `upstream ${ORIGIN} unreachable (7)` },
    { name: 'a thrown string', err: 'boom', code: 'ERR_UPSTREAM_UNAVAILABLE', status: 502, message: `upstream ${ORIGIN} unreachable (unknown)` },
    { name: 'undefined', err: undefined, code: 'ERR_UPSTREAM_UNAVAILABLE', status: 502, message: `upstream ${ORIGIN} unreachable (unknown)` },
    { name: 'a plain object with a code', err: { code: 'ECONNRESET' }, code: 'ERR_UPSTREAM_UNAVAILABLE', status: 502, message: `upstream ${ORIGIN} unreachable (unknown)` },
  ]
  for (const c of cases) {
    const mapped = mapUpstreamError(c.err, ORIGIN)
    t.ok(mapped instanceof UpstreamError, `${c.name}: an UpstreamError`)
    t.match(mapped, { code: c.code, statusCode: c.status, message: c.message, expose: true }, c.name)
    t.equal(mapped.cause, c.err, `${c.name}: the original is the cause`)
  }
  t.match(
    mapUpstreamError(new undiciErrors.HeadersTimeoutError(), ORIGIN, 2000),
    {
      code: 'ERR_UPSTREAM_TIMEOUT',
      statusCode: 504,
      message: `upstream ${ORIGIN} unreachable: no response headers within 2 s (upstream.connect-timeout)`,
    },
    'with upstream.connect-timeout, no headers in time names the upstream as unreachable',
  )
  const own = new UpstreamError('ERR_UPSTREAM_SSH', 'refused')
  t.equal(mapUpstreamError(own, ORIGIN), own, 'an UpstreamError passes through as it is')
})
