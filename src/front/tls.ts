/**
 * TLS on the HTTP front (`proxy.http.tls.cert` / `proxy.http.tls.key`):
 * an https server for the same request listener, whose certificate can be
 * swapped while it runs (SIGHUP) without touching open connections, and
 * which answers a plain HTTP request sent to it with a readable 400 instead
 * of a failed handshake (as nginx's "The plain HTTP request was sent to
 * HTTPS port").
 */
import { X509Certificate } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import type http from 'node:http'
import https from 'node:https'
import type { Socket } from 'node:net'
import { createSecureContext, type SecureContextOptions } from 'node:tls'
import { ConfigError, toError } from '../errors.js'

export interface TlsFiles {
  /** PEM certificate, optionally followed by its chain. */
  readonly cert: string
  /** PEM private key. */
  readonly key: string
}

/** The first byte of a TLS handshake record. */
const TLS_HANDSHAKE = 0x16


const PLAIN_HTTP_BODY =
  'This port speaks HTTPS: the plain HTTP request was sent to an HTTPS port. Use an https:// URL.\n'

const PLAIN_HTTP_ANSWER = Buffer.from(
  'HTTP/1.1 400 Bad Request\r\n' +
    'Content-Type: text/plain; charset=utf-8\r\n' +
    `Content-Length: ${Buffer.byteLength(PLAIN_HTTP_BODY)}\r\n` +
    'Connection: close\r\n' +
    '\r\n' +
    PLAIN_HTTP_BODY,
)

/**
 * Read the certificate and key and check that they make a usable pair.
 * Throws a ConfigError naming the file and what is wrong.
 */
export async function readTlsFiles(files: TlsFiles): Promise<SecureContextOptions> {
  const [cert, key] = await Promise.all([
    readPem('proxy.http.tls.cert', files.cert),
    readPem('proxy.http.tls.key', files.key),
  ])
  try {
    createSecureContext({ cert, key })
  } catch (err) {
    throw new ConfigError(
      `proxy.http.tls.cert ${files.cert} and proxy.http.tls.key ${files.key} are not a usable certificate and key: ${toError(err).message}`,
      { cause: err },
    )
  }
  return { cert, key }
}

/** Read the CA file of an HTTPS upstream (`upstream.http.ca`) and check it holds PEM certificates. */
export async function readCaFile(file: string): Promise<string> {
  const ca = await readPem('upstream.http.ca', file)
  try {
    // createSecureContext skips a CA block it cannot parse: read each one.
    const blocks = ca.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? []
    if (blocks.length === 0) throw new Error('no BEGIN CERTIFICATE block')
    for (const block of blocks) new X509Certificate(block)
    createSecureContext({ ca })
  } catch (err) {
    throw new ConfigError(`upstream.http.ca ${file} holds no usable CA certificate: ${toError(err).message}`, { cause: err })
  }
  return ca
}

async function readPem(key: string, file: string): Promise<string> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    throw new ConfigError(`${key}: cannot read ${file}: ${toError(err).message}`, { cause: err })
  }
  if (!text.includes('-----BEGIN ')) throw new ConfigError(`${key}: ${file} is not a PEM file`)
  return text
}

/**
 * An https server for `listener`. A connection whose first byte does not
 * start a TLS handshake gets the plain-text 400 above if it looks like
 * HTTP, and is closed.
 */
export function createTlsServer(
  context: SecureContextOptions,
  listener: http.RequestListener,
  opts: { connectionsCheckingInterval: number; firstByteTimeoutMs: number },
): https.Server {
  const server = https.createServer({ ...context, connectionsCheckingInterval: opts.connectionsCheckingInterval }, listener)
  // The TLS server's own 'connection' listener starts the handshake: run it
  // only once the first byte says the client speaks TLS. Data read here is
  // put back, and the TLS socket takes it over (node reads what is buffered
  // in the raw socket before anything else).
  const startTls = server.listeners('connection')
  server.removeAllListeners('connection')
  const waiting = new Set<Socket>()
  server.on('connection', (socket: Socket) => {
    waiting.add(socket)
    socket.setTimeout(opts.firstByteTimeoutMs, () => socket.destroy())
    const done = (): void => {
      waiting.delete(socket)
      socket.setTimeout(0)
      socket.off('close', done)
    }
    socket.once('close', done)
    socket.once('data', (chunk: Buffer) => {
      done()
      socket.pause()
      if (chunk[0] === TLS_HANDSHAKE) {
        socket.unshift(chunk)
        for (const l of startTls) l.call(server, socket)
        return
      }
      answerPlainHttp(socket, chunk)
    })
  })
  // Connections that never said anything are idle ones: close() (which
  // closes idle connections first) and fastify's forceCloseConnections drop
  // them too. Its 'close' event would come too late: it waits for them.
  const closeIdle = server.closeIdleConnections.bind(server)
  server.closeIdleConnections = (): void => {
    for (const socket of waiting) socket.destroy()
    closeIdle()
  }
  return server
}

/** Swap the certificate of a running TLS front: new connections get it, open ones keep theirs. */
export async function reloadTls(server: http.Server, files: TlsFiles): Promise<void> {
  if (!(server instanceof https.Server)) throw new Error('the HTTP front does not speak TLS')
  server.setSecureContext(await readTlsFiles(files))
}

function answerPlainHttp(socket: Socket, first: Buffer): void {
  socket.on('error', () => socket.destroy())
  if (!/^[A-Z]{3,10} /.test(first.subarray(0, 11).toString('latin1'))) {
    socket.destroy()
    return
  }
  // Read and drop whatever else the client sends, so closing does not
  // reset the connection before it has read the answer.
  socket.resume()
  socket.setTimeout(5000, () => socket.destroy())
  socket.end(PLAIN_HTTP_ANSWER)
}
