/**
 * TLS on the HTTP front (src/front/tls.ts): the certificate, key and CA
 * files are checked with an error naming the key, the file and the fault;
 * a reload with bad files keeps the certificate served; the first byte of a
 * connection decides between the TLS handshake, a readable 400 for plain
 * HTTP, and a closed connection for anything else or for silence.
 * Certificates are made with openssl at test time (test/helpers/tls.ts).
 */
import { once } from 'node:events'
import { readFileSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import net from 'node:net'
import path from 'node:path'
import tls from 'node:tls'
import t from 'tap'
import { ConfigError } from '../../../src/errors.js'
import { createTlsServer, readCaFile, readTlsFiles, reloadTls } from '../../../src/front/tls.js'
import { hasOpenssl, makePki, type TestLeaf, type TestPki } from '../../helpers/tls.js'

const skip = hasOpenssl() ? false : 'openssl is not installed: cannot make test certificates'

const CORRUPT_PEM = '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n'

async function refusal(p: Promise<unknown>): Promise<Error | null> {
  return p.then(
    () => null,
    (err: unknown) => (err instanceof Error ? err : new Error(String(err))),
  )
}

void t.test('certificate, key and CA files', { skip }, async (t) => {
  const dir = t.testdir()
  const pki = makePki(dir)
  const leaf = pki.leaf('server')
  const other = pki.leaf('other')
  const file = (name: string, text: string): string => {
    const f = path.join(dir, name)
    writeFileSync(f, text)
    return f
  }
  const missing = path.join(dir, 'missing.pem')
  const notPem = file('not.pem', 'just text\n')
  const corrupt = file('corrupt.pem', CORRUPT_PEM)

  await t.test('readTlsFiles', async (t) => {
    const cases: { name: string; cert: string; key: string; want: RegExp | null }[] = [
      { name: 'a matching pair', cert: leaf.certFile, key: leaf.keyFile, want: null },
      { name: 'the certificate missing', cert: missing, key: leaf.keyFile, want: /^proxy\.http\.tls\.cert: cannot read .*missing\.pem: ENOENT/ },
      { name: 'the key missing', cert: leaf.certFile, key: missing, want: /^proxy\.http\.tls\.key: cannot read .*missing\.pem: ENOENT/ },
      { name: 'the certificate a directory', cert: dir, key: leaf.keyFile, want: /^proxy\.http\.tls\.cert: cannot read .*EISDIR/ },
      { name: 'the certificate not PEM', cert: notPem, key: leaf.keyFile, want: /^proxy\.http\.tls\.cert: .*not\.pem is not a PEM file$/ },
      { name: 'the key not PEM', cert: leaf.certFile, key: notPem, want: /^proxy\.http\.tls\.key: .*not\.pem is not a PEM file$/ },
      { name: 'the key of another certificate', cert: leaf.certFile, key: other.keyFile, want: /are not a usable certificate and key: / },
      { name: 'a corrupt certificate', cert: corrupt, key: leaf.keyFile, want: /are not a usable certificate and key: / },
      { name: 'the two swapped', cert: leaf.keyFile, key: leaf.certFile, want: /are not a usable certificate and key: / },
    ]
    for (const c of cases) {
      const p = readTlsFiles({ cert: c.cert, key: c.key })
      if (c.want === null) {
        const ctx = await p
        t.match(ctx, { cert: /BEGIN CERTIFICATE/, key: /BEGIN PRIVATE KEY/ }, c.name)
        continue
      }
      const err = await refusal(p)
      t.ok(err instanceof ConfigError, `${c.name}: a ConfigError`)
      t.match(err?.message, c.want, c.name)
    }
  })

  await t.test('readCaFile', async (t) => {
    const cases: { name: string; file: string; want: RegExp | null }[] = [
      { name: 'a CA certificate', file: pki.caFile, want: null },
      { name: 'missing', file: missing, want: /^upstream\.http\.ca: cannot read .*ENOENT/ },
      { name: 'not PEM', file: notPem, want: /^upstream\.http\.ca: .* is not a PEM file$/ },
      { name: 'a corrupt certificate', file: corrupt, want: /^upstream\.http\.ca .*corrupt\.pem holds no usable CA certificate: / },
      { name: 'a good certificate, then a corrupt one', file: file('mixed.pem', readFileSync(pki.caFile, 'utf8') + CORRUPT_PEM), want: /holds no usable CA certificate/ },
      { name: 'two good certificates', file: file('two.pem', readFileSync(pki.caFile, 'utf8') + readFileSync(leaf.certFile, 'utf8')), want: null },
      { name: 'a private key, no certificate', file: leaf.keyFile, want: /holds no usable CA certificate: no BEGIN CERTIFICATE block$/ },
    ]
    for (const c of cases) {
      const p = readCaFile(c.file)
      if (c.want === null) {
        t.match(await p, /BEGIN CERTIFICATE/, c.name)
        continue
      }
      const err = await refusal(p)
      t.ok(err instanceof ConfigError, `${c.name}: a ConfigError`)
      t.match(err?.message, c.want, c.name)
    }
  })
})

/** Opens a raw TCP connection to `port`, writes `bytes` (if any), and collects what comes back until it closes. */
async function rawExchange(port: number, bytes: Buffer | null): Promise<{ answer: string; ms: number }> {
  const started = performance.now()
  const socket = net.connect(port, '127.0.0.1')
  await once(socket, 'connect')
  const chunks: Buffer[] = []
  socket.on('data', (c: Buffer) => chunks.push(c))
  socket.on('error', () => undefined) // a reset counts as closed
  if (bytes !== null) socket.write(bytes)
  await once(socket, 'close')
  return { answer: Buffer.concat(chunks).toString('latin1'), ms: performance.now() - started }
}

async function servedSerial(port: number, ca: string): Promise<string> {
  const socket = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost' })
  await once(socket, 'secureConnect')
  const serial = socket.getPeerCertificate().serialNumber
  socket.destroy()
  return serial
}

async function listen(server: http.Server): Promise<number> {
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  return address.port
}

void t.test('the TLS server', { skip }, async (t) => {
  const dir = t.testdir()
  const pki: TestPki = makePki(dir)
  const first: TestLeaf = pki.leaf('first')
  const second: TestLeaf = pki.leaf('second')
  const ca = await readCaFile(pki.caFile)
  const server = createTlsServer(
    await readTlsFiles({ cert: first.certFile, key: first.keyFile }),
    (_req, res) => {
      res.end('hello over tls\n')
    },
    { connectionsCheckingInterval: 1000, firstByteTimeoutMs: 150 },
  )
  const port = await listen(server)
  t.teardown(() => {
    server.close()
  })

  await t.test('a TLS client is served', async (t) => {
    const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      https
        .get({ host: '127.0.0.1', port, ca, servername: 'localhost', path: '/' }, (r) => {
          let body = ''
          r.on('data', (c: Buffer) => (body += c.toString()))
          r.on('end', () => {
            resolve({ status: r.statusCode ?? 0, body })
          })
        })
        .on('error', reject)
    })
    t.same(res, { status: 200, body: 'hello over tls\n' })
    t.equal(await servedSerial(port, ca), first.serial)
  })

  await t.test('the first byte decides', async (t) => {
    const cases: { name: string; bytes: Buffer | null; want: RegExp | '' }[] = [
      { name: 'a plain HTTP request: a readable 400', bytes: Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), want: /^HTTP\/1\.1 400 Bad Request\r\n[\s\S]*Connection: close\r\n\r\nThis port speaks HTTPS/ },
      { name: 'a plain POST with a body', bytes: Buffer.from('POST /x.git/git-upload-pack HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc'), want: /^HTTP\/1\.1 400 .*[\s\S]*Use an https:\/\/ URL\.\n$/ },
      { name: 'a long method name', bytes: Buffer.from('PROPPATCH / HTTP/1.1\r\n\r\n'), want: /^HTTP\/1\.1 400 / },
      { name: 'lower-case "get": not HTTP, closed', bytes: Buffer.from('get / HTTP/1.1\r\n\r\n'), want: '' },
      { name: 'binary junk: closed', bytes: Buffer.from([0x00, 0x01, 0x02, 0x03]), want: '' },
      { name: 'an SSH banner: closed', bytes: Buffer.from('SSH-2.0-OpenSSH_9.6\r\n'), want: '' },
      { name: 'a method with no space after it: closed', bytes: Buffer.from('GETTING'), want: '' },
      { name: 'silence: closed after the first-byte timeout', bytes: null, want: '' },
    ]
    for (const c of cases) {
      const { answer, ms } = await rawExchange(port, c.bytes)
      if (c.want === '') t.equal(answer, '', c.name)
      else t.match(answer, c.want, c.name)
      if (c.bytes === null) t.ok(ms >= 100, `${c.name}: not before the timeout (${Math.round(ms)} ms)`)
    }
    t.equal(await servedSerial(port, ca), first.serial, 'TLS clients are still served afterwards')
  })

  await t.test('reloadTls', async (t) => {
    const plain = http.createServer()
    t.match(await refusal(reloadTls(plain, { cert: second.certFile, key: second.keyFile })), { message: 'the HTTP front does not speak TLS' }, 'a plain HTTP front: refused')

    const bad = await refusal(reloadTls(server, { cert: second.certFile, key: first.keyFile }))
    t.ok(bad instanceof ConfigError, 'a mismatched pair: a ConfigError')
    t.equal(await servedSerial(port, ca), first.serial, 'and the certificate served is unchanged')

    const missing = await refusal(reloadTls(server, { cert: path.join(dir, 'gone.pem'), key: second.keyFile }))
    t.match(missing?.message, /cannot read/, 'a missing file: refused')
    t.equal(await servedSerial(port, ca), first.serial, 'unchanged')

    const open = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost' })
    await once(open, 'secureConnect')
    await reloadTls(server, { cert: second.certFile, key: second.keyFile })
    t.equal(await servedSerial(port, ca), second.serial, 'new connections get the new certificate')
    t.equal(open.getPeerCertificate().serialNumber, first.serial, 'an open one keeps its own')
    t.notOk(open.destroyed, 'and stays open')
    open.destroy()
  })

  await t.test('closing the server drops connections that never spoke', async (t) => {
    const own = createTlsServer(await readTlsFiles({ cert: first.certFile, key: first.keyFile }), () => undefined, {
      connectionsCheckingInterval: 1000,
      firstByteTimeoutMs: 60_000,
    })
    const ownPort = await listen(own)
    const silent = net.connect(ownPort, '127.0.0.1')
    silent.on('error', () => undefined)
    await once(silent, 'connect')
    await new Promise((resolve) => setImmediate(resolve))
    const closed = once(silent, 'close')
    const started = performance.now()
    own.close()
    await closed
    t.ok(performance.now() - started < 5000, 'closed at once, not after the 60 s first-byte timeout')
  })
})
