/**
 * The smart-HTTP front as a transport (src/front/http.ts), on a real HTTP
 * server with a stand-in for the HttpGitService (the service and the Git
 * exchanges have their own tests): which requests it takes, what it answers
 * for a bad Git path, while closing, for service failures before the first
 * byte, and for a request body that stalls (408 and the connection cut).
 */
import { once } from 'node:events'
import http from 'node:http'
import net from 'node:net'
import { Readable } from 'node:stream'
import t, { type Test } from 'tap'
import { BusyError, ProtocolError } from '../../../src/errors.js'
import { GitHttpFront } from '../../../src/front/http.js'
import type { HttpAnswer, HttpGitRequest, HttpGitService } from '../../../src/service/http-git.js'
import { logSink, type LogRecord } from '../../helpers/log-sink.js'

type Answer = (req: HttpGitRequest) => Promise<HttpAnswer>

interface Front {
  front: GitHttpFront
  port: number
  seen: HttpGitRequest[]
  records: LogRecord[]
}

async function startFront(t: Test, answer: Answer): Promise<Front> {
  const { log, records } = logSink()
  const seen: HttpGitRequest[] = []
  // Only `answer` is used by the front: the rest of the service is not needed here.
  const service = {
    answer: (req: HttpGitRequest) => {
      seen.push(req)
      return answer(req)
    },
  } as unknown as HttpGitService
  const front = new GitHttpFront({ service, log, credentialHeaders: [], bodyPace: { idleMs: 40, minBytes: 1, windowMs: 40 } })
  const server = http.createServer((req, res) => {
    if (front.take(req, res)) return
    res.writeHead(404).end('not git\n')
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  return { front, port: address.port, seen, records }
}

/** Sends `request` as raw bytes and reads until the server closes or `ms` pass. */
async function raw(port: number, request: string, ms = 5000): Promise<string> {
  const socket = net.connect(port, '127.0.0.1')
  socket.on('error', () => undefined)
  const chunks: Buffer[] = []
  socket.on('data', (c: Buffer) => chunks.push(c))
  socket.write(request)
  const timer = setTimeout(() => socket.destroy(), ms)
  await once(socket, 'close')
  clearTimeout(timer)
  return Buffer.concat(chunks).toString('latin1')
}

const upstream = (body: string, status = 200): HttpAnswer => ({
  kind: 'upstream',
  status,
  headers: { 'content-type': 'application/x-git-upload-pack-advertisement' },
  body: Readable.from([Buffer.from(body)]),
})

const ADV = '/team/app.git/info/refs?service=git-upload-pack'

void t.test('which requests the front takes', async (t) => {
  const f = await startFront(t, async () => upstream('adv'))
  const cases: { name: string; method: string; path: string; status: number; body: RegExp; served: boolean }[] = [
    { name: 'an advertisement', method: 'GET', path: ADV, status: 200, body: /^adv$/, served: true },
    { name: 'not a Git path: left to the caller', method: 'GET', path: '/healthz', status: 404, body: /^not git/, served: false },
    { name: 'a method Git never uses: left to the caller', method: 'DELETE', path: ADV, status: 404, body: /^not git/, served: false },
    { name: 'an unsupported service: 400', method: 'GET', path: '/team/app.git/info/refs?service=git-frobnicate', status: 400, body: /unsupported service "git-frobnicate"/, served: false },
    {
      name: 'the service given twice: 400',
      method: 'GET',
      path: '/team/app.git/info/refs?service=git-upload-pack&service=git-receive-pack',
      status: 400,
      body: /more than once/,
      served: false,
    },
  ]
  for (const c of cases) {
    const before = f.seen.length
    const res = await fetch(`http://127.0.0.1:${f.port}${c.path}`, { method: c.method })
    t.equal(res.status, c.status, `${c.name}: ${c.status}`)
    t.match(await res.text(), c.body, c.name)
    t.equal(f.seen.length - before, c.served ? 1 : 0, `${c.name}: ${c.served ? '' : 'not '}handed to the service`)
  }
  t.ok(f.records.some((r) => r.msg === 'bad git path'), 'bad paths are logged')
  const line = f.records.find((r) => r.msg === 'git request')
  t.match(line, { repo: 'team/app.git', proto: 'http', cmd: 'advertisement', status: 200, bytes: 3, cache: 'bypass' }, 'the request line')
})

void t.test('failures before the first byte: the error status, the message only when exposed', async (t) => {
  const cases: { name: string; err: Error; status: number; body: string }[] = [
    { name: 'busy', err: new BusyError('retry later'), status: 503, body: 'retry later\n' },
    { name: 'a bad request', err: new ProtocolError('ERR_PROTOCOL_BAD_GZIP', 'request body is not valid gzip'), status: 400, body: 'request body is not valid gzip\n' },
    { name: 'an unexpected error', err: new Error('internal detail'), status: 502, body: 'proxy error\n' },
  ]
  for (const c of cases) {
    const f = await startFront(t, async () => {
      throw c.err
    })
    const res = await fetch(`http://127.0.0.1:${f.port}${ADV}`)
    t.equal(res.status, c.status, c.name)
    t.equal(await res.text(), c.body, `${c.name}: body`)
    t.equal(f.front.inFlight, 0, `${c.name}: not in flight afterwards`)
  }
})

void t.test('a finish that fails is logged; the answer stands', async (t) => {
  const f = await startFront(t, async () => ({
    ...upstream('adv'),
    finish: async () => {
      throw new Error('release failed')
    },
  }))
  const res = await fetch(`http://127.0.0.1:${f.port}${ADV}`)
  t.equal(res.status, 200)
  t.equal(await res.text(), 'adv')
  t.ok(f.records.some((r) => r.msg === 'finishing a git request failed'))
})

void t.test('closing: new Git requests get 503 and the connection closed', async (t) => {
  const f = await startFront(t, async () => upstream('adv'))
  f.front.close()
  const answer = await raw(f.port, `GET ${ADV} HTTP/1.1\r\nHost: x\r\n\r\n`)
  t.match(answer, /^HTTP\/1\.1 503 /)
  t.match(answer, /\r\nConnection: close\r\n/i)
  t.match(answer, /\r\n\r\n(?:[0-9a-f]+\r\n)?proxy shutting down\n/)
  t.equal(f.seen.length, 0, 'the service is not asked')
})

void t.test('a request body that stalls: 408 with the reason, and the connection cut', async (t) => {
  const f = await startFront(t, async (req) => {
    // The service reads the body; it never ends.
    for await (const chunk of req.body) t.ok(Buffer.isBuffer(chunk))
    return upstream('never')
  })
  const started = performance.now()
  const answer = await raw(
    f.port,
    'POST /team/app.git/git-upload-pack HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-git-upload-pack-request\r\nContent-Length: 1000\r\n\r\n0032want',
  )
  t.match(answer, /^HTTP\/1\.1 408 /, '408')
  t.match(answer, /\r\nConnection: close\r\n/i)
  t.match(answer, /\r\n\r\n(?:[0-9a-f]+\r\n)?no byte of the request body for \d+ s\n/, 'the reason')
  t.ok(performance.now() - started < 4000, 'cut, not left to the client')
  t.ok(f.records.some((r) => r.msg === 'slow request body cut'), 'logged')
})

void t.test('a POST whose body arrives in time is not cut', async (t) => {
  const f = await startFront(t, async (req) => {
    const parts: Buffer[] = []
    for await (const chunk of req.body) parts.push(chunk as Buffer)
    return upstream(`got ${Buffer.concat(parts).length}`)
  })
  const res = await fetch(`http://127.0.0.1:${f.port}/team/app.git/git-upload-pack`, { method: 'POST', body: '0000' })
  t.equal(res.status, 200)
  t.equal(await res.text(), 'got 4')
})
