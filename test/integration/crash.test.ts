/** Kill -9 of the proxy in the middle of a fill, then a restart on the same cache directory. */
import path from 'node:path'
import { statSync } from 'node:fs'
import t from 'tap'
import { until } from '../helpers/wait.js'
import { cacheFiles } from '../helpers/cache-files.js'
import { git, gitHome, gitOk, spawnGit } from '../helpers/git.js'
import { startFaultProxy } from '../helpers/fault-proxy.js'
import { startProxyProcess } from '../helpers/proxy-process.js'
import { createBareRepo } from '../helpers/repo.js'
import { startTestUpstream } from '../helpers/upstream.js'

void t.test('kill -9 mid-fill: after a restart no partial entry is served and leftovers are gone', async (t) => {
  const dir = t.testdir()
  const home = gitHome(dir)
  const upstream = await startTestUpstream(t, dir)
  await createBareRepo(home, upstream.root, 'app.git', { commits: 12, fileSize: 30_000 })
  const fault = await startFaultProxy(t, upstream.url, { bytesPerTick: 2000, cutAfter: null, times: 1 })
  const cacheDir = path.join(dir, 'cache')
  const env = { SCM_CACHE_UPSTREAM_HTTP_URL: fault.url, SCM_CACHE_CACHE_DIR: cacheDir }

  const first = await startProxyProcess(t, env)
  const clone = spawnGit(home, ['clone', '-q', `${first.url}/app.git`, path.join(dir, 'during')])
  // Until the fill has written some of the pack.
  const written = (f: string): number => {
    try {
      return statSync(f).size
    } catch {
      return 0 // renamed or removed meanwhile
    }
  }
  await until(() => cacheFiles(cacheDir, 'tmp').some((f) => written(f) > 10_000), 'a fill to be under way')
  t.equal(cacheFiles(cacheDir, 'tmp').length, 1, 'a fill was being written')
  first.child.kill('SIGKILL')
  await first.exited
  const during = await clone.done
  t.not(during.code, 0, 'the clone in flight failed')
  t.same(cacheFiles(cacheDir, 'entries'), [], 'no entry was published')

  const second = await startProxyProcess(t, env)
  t.same(cacheFiles(cacheDir, 'tmp'), [], 'leftovers swept at start-up')
  const after = path.join(dir, 'after')
  const r = await git(home, ['clone', '-q', `${second.url}/app.git`, after])
  t.equal(r.code, 0, r.stderr)
  await gitOk(home, ['-C', after, 'fsck', '--strict'])
  t.match(second.output(), /"cache":"miss"/, 'served by a fresh fill, not a partial entry')
  t.equal(cacheFiles(cacheDir, 'entries').length, 1)
})
