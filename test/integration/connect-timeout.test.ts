/**
 * Issue 16: an upstream that accepts connections but never answers must not
 * hang clients (`upstream.connect-timeout`, DESIGN §3.10), with outage mode
 * off too: the clone fails fast with a message naming the upstream.
 */
import { createServer, type Server, type Socket } from 'node:net'
import path from 'node:path'
import type { Test } from 'tap'
import t from 'tap'
import { git, gitHome } from '../helpers/git.js'
import { startTestProxy } from '../helpers/proxy.js'
import { startSshBed } from '../helpers/sshd.js'

/** A loopback server that accepts connections and never sends a byte. */
async function silentServer(t: Test): Promise<{ port: number; accepted: () => number }> {
  const sockets = new Set<Socket>()
  let accepted = 0
  const server: Server = createServer((socket) => {
    accepted++
    sockets.add(socket)
    socket.on('error', () => undefined)
    socket.on('close', () => sockets.delete(socket))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    for (const s of sockets) s.destroy()
    await new Promise((resolve) => server.close(resolve))
  })
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  return { port: address.port, accepted: () => accepted }
}

void t.test('HTTP: a silent upstream fails the clone in under 5 s, naming the upstream', async (t) => {
  const dir = t.testdir()
  const home = gitHome(dir)
  const silent = await silentServer(t)
  const proxy = await startTestProxy(t, dir, `http://127.0.0.1:${silent.port}`, { 'upstream.connect-timeout': '2' })
  const started = performance.now()
  const r = await git(home, ['clone', `${proxy.url}/app.git`, path.join(dir, 'clone')])
  const seconds = (performance.now() - started) / 1000
  t.not(r.code, 0, 'the clone fails')
  t.ok(seconds < 5, `in ${seconds.toFixed(1)} s`)
  t.ok(silent.accepted() > 0, 'the upstream did accept the connection')
  t.match(r.stderr, /504|unreachable/, `a clear error: ${r.stderr.trim()}`)
  t.match(r.stderr, new RegExp(`127\\.0\\.0\\.1:${silent.port} unreachable: no response headers within 2 s`), 'git prints the proxy\'s message')
})

void t.test('SSH: a silent upstream fails the clone in under 5 s with an ERR naming the upstream', async (t) => {
  const silent = await silentServer(t)
  const bed = await startSshBed(t, {
    settings: { 'upstream.ssh.url': `ssh://git@127.0.0.1:${silent.port}`, 'upstream.connect-timeout': '2' },
  })
  const started = performance.now()
  const r = await bed.git(['clone', bed.sshUrl('app.git'), path.join(bed.dir, 'ssh-clone')])
  const seconds = (performance.now() - started) / 1000
  t.not(r.code, 0, 'the clone fails')
  t.ok(seconds < 5, `in ${seconds.toFixed(1)} s`)
  t.match(r.stderr, /SSH upstream/i, `a clear error: ${r.stderr.trim()}`)
})
