/**
 * CacheBody.copyTo of an entry reader: to a real TCP socket, with the read
 * buffers recycled once the socket has written them.
 */
import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import net from 'node:net'
import t, { type Test } from 'tap'
import { memoryBody } from '../../../src/cache/body.js'
import { EntryReader, READ_CHUNK, WholeBody, type ReadSource } from '../../../src/cache/entry-reader.js'

/**
 * A complete in-memory entry; records every buffer a read went into. Reads
 * complete in a later turn of the event loop, as file reads do.
 */
function memorySource(data: Buffer): { src: ReadSource; buffers: Set<ArrayBufferLike>; released: Promise<number> } {
  const buffers = new Set<ArrayBufferLike>()
  let release!: (n: number) => void
  const released = new Promise<number>((resolve) => (release = resolve))
  const src: ReadSource = {
    read: async (buf, position) => {
      await new Promise((resolve) => setImmediate(resolve))
      buffers.add(buf.buffer)
      const n = Math.min(buf.length, data.length - position)
      data.copy(buf, 0, position, position + n)
      return n
    },
    available: () => data.length,
    complete: () => true,
    release: async (delivered) => {
      release(delivered)
    },
  }
  return { src, buffers, released }
}

/** A TCP connection on 127.0.0.1: the client end to write to, the server end to read from. */
async function socketPair(t: Test): Promise<{ client: net.Socket; server: net.Socket }> {
  const listener = net.createServer()
  listener.listen(0, '127.0.0.1')
  await once(listener, 'listening')
  const port = (listener.address() as net.AddressInfo).port
  const accepted = once(listener, 'connection') as Promise<[net.Socket]>
  const client = net.connect(port, '127.0.0.1')
  const [server] = await accepted
  t.teardown(() => {
    client.destroy()
    server.destroy()
    listener.close()
  })
  return { client, server }
}

void t.test('copies every byte through a slow reader, reusing a few buffers', async (t) => {
  const data = randomBytes(8 * 1024 * 1024 + 123)
  const { src, buffers, released } = memorySource(data)
  const { client, server } = await socketPair(t)
  const hash = createHash('sha256')
  let received = 0
  server.on('data', (chunk: Buffer) => {
    hash.update(chunk)
    received += chunk.length
    // A slow client: the proxy's writes back up and it has to wait for drain.
    server.pause()
    setTimeout(() => server.resume(), 1)
  })
  const ended = once(server, 'end')
  const bytes = await new EntryReader(src).copyTo(client, new AbortController().signal, true)
  await ended
  t.equal(bytes, data.length, 'bytes counted')
  t.equal(received, data.length, 'bytes received')
  t.equal(hash.digest('hex'), createHash('sha256').update(data).digest('hex'), 'bytes exact')
  t.equal(await released, data.length, 'the reader was released with every byte delivered')
  const reads = Math.ceil(data.length / READ_CHUNK)
  t.ok(buffers.size <= 4, `${reads} reads went into ${buffers.size} buffers`)
})

void t.test('a client that goes away fails the copy and releases the reader', async (t) => {
  const data = randomBytes(16 * 1024 * 1024)
  const { src, released } = memorySource(data)
  const { client, server } = await socketPair(t)
  server.once('data', () => server.destroy())
  await t.rejects(new EntryReader(src).copyTo(client, new AbortController().signal, true))
  t.ok((await released) < data.length, 'not everything was delivered')
})

void t.test('an abort signal stops the copy', async (t) => {
  const data = randomBytes(16 * 1024 * 1024)
  const { src, released } = memorySource(data)
  const { client, server } = await socketPair(t)
  server.pause() // nothing drains: the copy waits
  const ac = new AbortController()
  const copying = new EntryReader(src).copyTo(client, ac.signal, true)
  setTimeout(() => { ac.abort(new Error('client gone')); }, 50)
  await t.rejects(copying, { message: 'client gone' })
  t.ok((await released) < data.length)
})

void t.test('chunks the reader did not make are not taken back', async (t) => {
  const { src } = memorySource(Buffer.alloc(10))
  const reader = new EntryReader(src)
  reader.recycle(Buffer.alloc(READ_CHUNK))
  const chunks: Buffer[] = []
  for await (const c of reader) chunks.push(c as Buffer)
  t.equal(Buffer.concat(chunks).length, 10)
})

void t.test('a whole body: taken at once, or copied like a stream', async (t) => {
  const data = randomBytes(1000)
  const closes: number[] = []
  const taken = new WholeBody(data, (n) => closes.push(n))
  t.equal(taken.whole(), data, 'the buffer itself')
  t.equal(taken.whole(), data, 'asked again: the same buffer')
  await once(taken, 'close')
  t.same(closes, [data.length], 'counted as delivered, once')

  const copied = new WholeBody(data, (n) => closes.push(n))
  t.equal(copied.stream, copied)
  const { client, server } = await socketPair(t)
  const parts: Buffer[] = []
  server.on('data', (chunk: Buffer) => parts.push(chunk))
  const ended = once(server, 'end')
  t.equal(await copied.copyTo(client, new AbortController().signal, true), data.length)
  await ended
  t.ok(Buffer.concat(parts).equals(data), 'bytes exact')
})

void t.test('a memory body (a hot hit): whole, or copied, no stream made for whole()', async (t) => {
  const data = randomBytes(1000)
  t.equal(memoryBody(data).whole(), data)
  const { client, server } = await socketPair(t)
  const parts: Buffer[] = []
  server.on('data', (chunk: Buffer) => parts.push(chunk))
  const ended = once(server, 'end')
  t.equal(await memoryBody(data).copyTo(client, new AbortController().signal, true), data.length)
  await ended
  t.ok(Buffer.concat(parts).equals(data), 'bytes exact')
  const chunks: Buffer[] = []
  for await (const c of memoryBody(data).stream) chunks.push(c as Buffer)
  t.ok(Buffer.concat(chunks).equals(data), 'as a stream')
})

void t.test('a file body is never whole', async (t) => {
  const { src, released } = memorySource(Buffer.alloc(10))
  const reader = new EntryReader(src)
  t.equal(reader.whole(), null)
  t.equal(reader.stream, reader)
  reader.destroy()
  t.equal(await released, 0, 'destroyed unread: nothing delivered')
})
