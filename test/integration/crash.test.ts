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

void t.test('kill -9 during fills, 20 times with restarts: each clone succeeds or fails naming the cause, no partial entry is ever served', async (t) => {
  const dir = t.testdir()
  const home = gitHome(dir)
  const upstream = await startTestUpstream(t, dir)
  const bare = await createBareRepo(home, upstream.root, 'app.git', { commits: 12, fileSize: 30_000 })
  const want = (await gitOk(home, ['-C', bare, 'rev-parse', 'main'])).trim()
  const fault = await startFaultProxy(t, upstream.url, { bytesPerTick: 8000, cutAfter: null, times: 0 })
  const cacheDir = path.join(dir, 'cache')
  const env = { SCM_CACHE_UPSTREAM_HTTP_URL: fault.url, SCM_CACHE_CACHE_DIR: cacheDir }
  const size = (f: string): number => {
    try {
      return statSync(f).size
    } catch {
      return 0 // renamed or removed meanwhile
    }
  }
  let packSize = 0
  let killedMidFill = 0
  const rounds = 20
  for (let i = 0; i < rounds; i++) {
    const proxy = await startProxyProcess(t, env)
    t.same(cacheFiles(cacheDir, 'tmp'), [], `round ${i}: leftovers swept at start-up`)
    // Whatever the last kill left, a clone through the restarted proxy is whole.
    const check = path.join(dir, `check-${i}`)
    const ok = await git(home, ['clone', '-q', `${proxy.url}/app.git`, check])
    t.equal(ok.code, 0, `round ${i}: the clone after the restart succeeds ${ok.stderr}`)
    await gitOk(home, ['-C', check, 'fsck', '--strict'])
    t.equal((await gitOk(home, ['-C', check, 'rev-parse', 'origin/main'])).trim(), want)
    if (packSize === 0) {
      await until(() => cacheFiles(cacheDir, 'entries').length === 1, 'the first entry')
      packSize = size(cacheFiles(cacheDir, 'entries')[0] ?? '')
    }
    // Empty the cache so the next clone fills, throttled, and kill the proxy part-way through.
    const cleared = await fetch(`${proxy.url}/rest/scm-cache/latest/caches`, { method: 'DELETE' })
    t.equal(cleared.status, 204)
    fault.plan.times = 1
    const clone = spawnGit(home, ['clone', '-q', `${proxy.url}/app.git`, path.join(dir, `during-${i}`)])
    let finished = false
    void clone.done.then(() => (finished = true))
    const at = Math.floor((packSize * ((i % 10) + 1)) / 11)
    await until(() => finished || cacheFiles(cacheDir, 'tmp').some((f) => size(f) >= at), `round ${i}: a fill past ${at} bytes`)
    proxy.child.kill('SIGKILL')
    await proxy.exited
    const during = await clone.done
    fault.plan.times = 0
    if (during.code === 0) {
      await gitOk(home, ['-C', path.join(dir, `during-${i}`), 'fsck', '--strict'])
    } else {
      killedMidFill++
      t.match(during.stderr, /early EOF|RPC failed|unexpected disconnect|transfer closed|remote end hung up|Connection reset|Failed to connect|Empty reply/i, `round ${i}: git names the cause`)
    }
    for (const f of cacheFiles(cacheDir, 'entries')) t.ok(size(f) > 0, `round ${i}: only whole entries (recovery checks the trailer at start-up)`)
  }
  t.ok(killedMidFill >= rounds / 2, `${killedMidFill} of ${rounds} kills landed mid-fill`)
})
