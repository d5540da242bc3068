/**
 * The bench's upstream, in its own process so its CPU (and that of the git
 * processes it runs: `http-backend`, `upload-pack`, `pack-objects`, all
 * reaped children) can be read from /proc/<pid>/stat.
 *
 *   node --import tsx bench/upstream-server.ts <repo-root> <trace2-dir>
 *
 * stdout: `{"type":"ready","url":...}` then one `{"type":"req",...}` line per request.
 */
import { startEmbeddedUpstream } from '../src/upstream/embedded.js'

const [root, trace2Dir] = process.argv.slice(2)
if (root === undefined || trace2Dir === undefined) throw new Error('usage: upstream-server.ts <root> <trace2-dir>')

const upstream = await startEmbeddedUpstream({
  root,
  host: '127.0.0.1',
  trace2Dir,
  onRequest: (rec) => {
    process.stdout.write(`${JSON.stringify({ type: 'req', method: rec.method, url: rec.url, status: rec.status, proto: rec.gitProtocol, bytes: rec.responseBytes, lfs: rec.lfs?.endpoint ?? null })}\n`)
  },
})
process.stdout.write(`${JSON.stringify({ type: 'ready', url: upstream.url })}\n`)

const stop = (): void => {
  upstream.close().then(() => process.exit(0), () => process.exit(1))
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
process.stdin.on('end', stop)
process.stdin.resume()
