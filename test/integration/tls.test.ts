/**
 * TLS: the HTTP front speaking HTTPS (proxy.http.tls.*), its certificate
 * swapped on SIGHUP without dropping connections, plain HTTP on the TLS port
 * answered with a readable error, and an HTTPS upstream signed by a private
 * CA (upstream.http.ca). Certificates are made with openssl at test time.
 */
import { copyFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { connect, type TLSSocket } from 'node:tls'
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { loadConfig } from '../../src/config/load.js'
import { startProxy } from '../../src/proxy.js'
import { ConfigError } from '../../src/errors.js'
import { startForwarder } from '../helpers/forwarder.js'
import { git, gitHome, gitOk } from '../helpers/git.js'
import { logSink } from '../helpers/log-sink.js'
import { startTestProxy } from '../helpers/proxy.js'
import { startProxyProcess } from '../helpers/proxy-process.js'
import { createBareRepo } from '../helpers/repo.js'
import { hasOpenssl, makePki, type TestLeaf } from '../helpers/tls.js'
import { startTestUpstream } from '../helpers/upstream.js'
import { readFileSync } from 'node:fs'

const skip = hasOpenssl() ? false : 'openssl is not installed: cannot make test certificates'

/** The serial number of the certificate a new TLS connection to `url` is given. */
async function servedSerial(url: string, ca: string): Promise<string> {
  const socket = await openTls(url, ca)
  const serial = socket.getPeerCertificate().serialNumber
  socket.destroy()
  return serial
}

async function openTls(url: string, ca: string): Promise<TLSSocket> {
  const { hostname, port } = new URL(url)
  const socket = connect({ host: hostname, port: Number(port), ca, servername: 'localhost' })
  await once(socket, 'secureConnect')
  return socket
}

/** One HTTP/1.1 request on an open socket; resolves with the status line. */
async function requestOn(socket: TLSSocket, requestPath: string): Promise<string> {
  socket.write(`GET ${requestPath} HTTP/1.1\r\nHost: localhost\r\n\r\n`)
  const [chunk] = (await once(socket, 'data')) as [Buffer] // a 'data' event carries one Buffer
  return chunk.toString('latin1').split('\r\n')[0] ?? ''
}

/** Make `leaf` the files at `into` (what an operator's certificate renewal does). */
function install(leaf: TestLeaf, into: TestLeaf): void {
  copyFileSync(leaf.certFile, into.certFile)
  copyFileSync(leaf.keyFile, into.keyFile)
}

void t.test('HTTPS front', { skip }, async (t) => {
  const dir = t.testdir()
  const home = gitHome(dir)
  const pki = makePki(dir)
  const served = { certFile: path.join(dir, 'served.pem'), keyFile: path.join(dir, 'served.key'), serial: '' }
  const first = pki.leaf('first')
  const second = pki.leaf('second')
  install(first, served)
  const ca = readFileSync(pki.caFile, 'utf8')
  const upstream = await startTestUpstream(t, dir)
  await createBareRepo(home, upstream.root, 'app.git', { commits: 4 })
  const { url, proxy } = await startTestProxy(t, dir, upstream.url, {
    'proxy.http.tls.cert': served.certFile,
    'proxy.http.tls.key': served.keyFile,
  })
  t.match(url, /^https:\/\/127\.0\.0\.1:\d+$/)

  await t.test('git clones over HTTPS, trusting the test CA, v0 and v2 (a certificate chain is served)', async (t) => {
    for (const version of ['0', '2']) {
      const target = path.join(dir, `clone-v${version}`)
      await gitOk(home, ['-c', `http.sslCAInfo=${pki.caFile}`, '-c', `protocol.version=${version}`, 'clone', '-q', `${url}/app.git`, target])
      await gitOk(home, ['-C', target, 'fsck', '--strict'])
      t.pass(`v${version} clone over HTTPS`)
    }
    const untrusted = await git(home, ['clone', '-q', `${url}/app.git`, path.join(dir, 'untrusted')])
    t.not(untrusted.code, 0, 'without the CA git refuses the certificate')
    t.match(untrusted.stderr, /certificate|SSL/i)
  })

  await t.test('plain HTTP on the TLS port gets a readable 400', async (t) => {
    const plain = url.replace('https:', 'http:')
    const res = await fetch(`${plain}/app.git/info/refs?service=git-upload-pack`)
    t.equal(res.status, 400)
    t.match(await res.text(), /plain HTTP request was sent to an HTTPS port/)
    const r = await git(home, ['clone', '-q', `${plain}/app.git`, path.join(dir, 'plain')])
    t.not(r.code, 0)
    t.match(r.stderr, /400/, 'git names the status')
    // The front still serves HTTPS afterwards.
    t.equal(await servedSerial(url, ca), first.serial)
  })

  await t.test('reloadTls: new connections get the new certificate, open ones keep working', async (t) => {
    const open = await openTls(url, ca)
    t.equal(open.getPeerCertificate().serialNumber, first.serial)
    install(second, served)
    t.equal(await proxy.reloadTls(), true)
    t.equal(await servedSerial(url, ca), second.serial, 'a new connection gets the new certificate')
    t.equal(await requestOn(open, '/healthz'), 'HTTP/1.1 200 OK', 'the connection opened before the swap still works')
    open.destroy()
    writeFileSync(served.certFile, 'not a certificate\n')
    await t.rejects(proxy.reloadTls(), ConfigError, 'a broken file is refused')
    t.equal(await servedSerial(url, ca), second.serial, '...and the previous certificate stays in use')
    await gitOk(home, ['-c', `http.sslCAInfo=${pki.caFile}`, 'clone', '-q', `${url}/app.git`, path.join(dir, 'after-reload')])
  })
})

void t.test('SIGHUP reloads the certificate of a running proxy process', { skip }, async (t) => {
  const dir = t.testdir()
  const pki = makePki(dir)
  const served = { certFile: path.join(dir, 'served.pem'), keyFile: path.join(dir, 'served.key'), serial: '' }
  const first = pki.leaf('first')
  const second = pki.leaf('second')
  install(first, served)
  const ca = readFileSync(pki.caFile, 'utf8')
  const upstream = await startTestUpstream(t, dir)
  const proc = await startProxyProcess(
    t,
    {
      SCM_CACHE_UPSTREAM_HTTP_URL: upstream.url,
      SCM_CACHE_CACHE_DIR: path.join(dir, 'cache'),
      SCM_CACHE_PROXY_HTTP_TLS_CERT: served.certFile,
      SCM_CACHE_PROXY_HTTP_TLS_KEY: served.keyFile,
    },
    { tlsCa: ca },
  )
  t.equal(await servedSerial(proc.url, ca), first.serial)
  install(second, served)
  proc.child.kill('SIGHUP')
  let serial = first.serial
  for (let i = 0; i < 200 && serial !== second.serial; i++) {
    await sleep(20)
    serial = await servedSerial(proc.url, ca)
  }
  t.equal(serial, second.serial, 'the new certificate is served after SIGHUP')
  t.match(proc.output(), /TLS certificate and key reloaded/)
  t.equal(proc.child.exitCode, null, 'the process keeps running')
})

void t.test('a certificate and key that do not belong together stop start-up with a clear message', { skip }, async (t) => {
  const dir = t.testdir()
  const pki = makePki(dir)
  const a = pki.leaf('a')
  const b = pki.leaf('b')
  const config = loadConfig({
    argv: [],
    env: {
      SCM_CACHE_CACHE_DIR: path.join(dir, 'cache'),
      SCM_CACHE_PROXY_HTTP_HOST: '127.0.0.1',
      SCM_CACHE_PROXY_HTTP_PORT: '0',
      SCM_CACHE_UPSTREAM_HTTP_URL: 'http://127.0.0.1:9/',
      SCM_CACHE_PROXY_HTTP_TLS_CERT: a.certFile,
      SCM_CACHE_PROXY_HTTP_TLS_KEY: b.keyFile,
    },
    cwd: dir,
  })
  await t.rejects(startProxy(config, logSink().log), {
    name: 'ConfigError',
    message: /proxy\.http\.tls\.cert .* and proxy\.http\.tls\.key .* are not a usable certificate and key/,
  })
})

void t.test('an HTTPS upstream signed by a private CA (upstream.http.ca)', { skip }, async (t) => {
  const dir = t.testdir()
  const home = gitHome(dir)
  const pki = makePki(dir)
  const upstream = await startTestUpstream(t, dir)
  await createBareRepo(home, upstream.root, 'app.git')
  const leaf = pki.leaf('upstream')
  const tlsUpstream = await startForwarder(t, upstream.url, { tls: leaf })
  t.match(tlsUpstream.url, /^https:/)

  const trusting = await startTestProxy(t, path.join(dir, 'a'), tlsUpstream.url, { 'upstream.http.ca': pki.caFile })
  await gitOk(home, ['clone', '-q', `${trusting.url}/app.git`, path.join(dir, 'clone')])
  t.equal((await fetch(`${trusting.url}/readyz`)).status, 200, 'ready: the upstream answers over verified TLS')

  const plain = await startTestProxy(t, path.join(dir, 'b'), tlsUpstream.url)
  const r = await git(home, ['clone', '-q', `${plain.url}/app.git`, path.join(dir, 'refused')])
  t.not(r.code, 0, 'without upstream.http.ca the private certificate is refused, never accepted blindly')
  t.equal((await fetch(`${plain.url}/readyz`)).status, 503)

  const notPem = path.join(dir, 'not-a-ca.pem')
  writeFileSync(notPem, 'hello\n')
  await t.rejects(startTestProxy(t, path.join(dir, 'c'), tlsUpstream.url, { 'upstream.http.ca': notPem }), {
    name: 'ConfigError',
    message: /upstream\.http\.ca: .* is not a PEM file/,
  })
})
