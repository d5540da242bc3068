/**
 * The clone cache, end to end: real git clients, a real git http-backend
 * upstream, and the upstream's own trace2 log counting its pack generations.
 */
import path from 'node:path'
import t from 'tap'
import { cacheFiles } from '../helpers/cache-files.js'
import { git, gitHome, gitOk, parseRefList } from '../helpers/git.js'
import { gitRequestLines } from '../helpers/log-sink.js'
import { startTestProxy } from '../helpers/proxy.js'
import { addCommitDirect, commitFile, createBareRepo } from '../helpers/repo.js'
import { startTestUpstream } from '../helpers/upstream.js'

const entryFiles = (cacheDir: string): string[] => cacheFiles(cacheDir, 'entries')

void t.test('a burst of 20 identical clones makes one upstream pack generation', async (t) => {
  const dir = t.testdir()
  const home = gitHome(dir)
  const upstream = await startTestUpstream(t, dir)
  await createBareRepo(home, upstream.root, 'app.git', { commits: 30, fileSize: 20_000, tags: ['v1'] })
  const proxy = await startTestProxy(t, dir, upstream.url)
  const url = `${proxy.url}/app.git`

  const clones = Array.from({ length: 20 }, (_, i) => path.join(dir, `c${i}`))
  const results = await Promise.all(clones.map((c) => git(home, ['-c', 'protocol.version=2', 'clone', '-q', url, c])))
  for (const r of results) t.equal(r.code, 0, r.stderr)
  t.equal(await upstream.packObjects(), 1, 'one pack-objects run upstream')
  t.equal(upstream.fetchPosts().length, 1, 'one upload-pack fetch reached the upstream')
  const refs = await Promise.all(clones.map((c) => gitOk(home, ['-C', c, 'for-each-ref', '--format=%(objectname) %(refname)'])))
  t.equal(new Set(refs).size, 1, 'all 20 clones have identical refs')
  for (const c of clones.slice(0, 3)) await gitOk(home, ['-C', c, 'fsck', '--strict'])
  t.equal(entryFiles(proxy.cacheDir).length, 1, 'one entry on disk')
  const lines = gitRequestLines(proxy.logs).filter((l) => l['cmd'] === 'fetch' || l['cmd'] === 'upload-pack')
  const counts = { miss: 0, join: 0, hit: 0 }
  for (const l of lines) {
    const c = l['cache']
    if (c === 'miss' || c === 'join' || c === 'hit') counts[c]++
  }
  t.equal(counts.miss, 1, 'one miss')
  t.equal(counts.miss + counts.join + counts.hit, 20, 'every clone was answered by the cache')

  await t.test('warm clone: zero upstream pack generations', async (t) => {
    const before = await upstream.packObjects()
    const target = path.join(dir, 'warm')
    await gitOk(home, ['-c', 'protocol.version=2', 'clone', '-q', url, target])
    t.equal(await upstream.packObjects(), before)
    await gitOk(home, ['-C', target, 'fsck', '--strict'])
    await proxy.settled()
    t.equal(gitRequestLines(proxy.logs).at(-1)?.['cache'], 'hit')
  })

  await t.test('v0 clone of the same commit is a separate entry; v1 shares it', async (t) => {
    await gitOk(home, ['-c', 'protocol.version=0', 'clone', '-q', url, path.join(dir, 'v0')])
    t.equal(entryFiles(proxy.cacheDir).length, 2, 'v2 and v0 entries')
    const before = await upstream.packObjects()
    await gitOk(home, ['-c', 'protocol.version=1', 'clone', '-q', url, path.join(dir, 'v1')])
    t.equal(await upstream.packObjects(), before, 'v1 hit the v0 entry')
    await gitOk(home, ['-C', path.join(dir, 'v1'), 'fsck', '--strict'])
  })
})

void t.test('shallow and partial clones hit; fetch with haves passes through', async (t) => {
  const dir = t.testdir()
  const home = gitHome(dir)
  const upstream = await startTestUpstream(t, dir)
  const bare = await createBareRepo(home, upstream.root, 'app.git', { commits: 5, branches: ['feature'] })
  const proxy = await startTestProxy(t, dir, upstream.url)
  const url = `${proxy.url}/app.git`

  for (const version of [0, 2]) {
    for (const [name, args] of [
      ['depth', ['--depth', '1']],
      ['filter', ['--filter=blob:none', '--no-checkout']],
      ['branch', ['--single-branch', '--branch', 'feature']],
    ] as const) {
      await t.test(`v${version} ${name}`, async (t) => {
        const a = path.join(dir, `v${version}-${name}-a`)
        const b = path.join(dir, `v${version}-${name}-b`)
        await gitOk(home, ['-c', `protocol.version=${version}`, 'clone', '-q', ...args, url, a])
        const before = await upstream.packObjects()
        await gitOk(home, ['-c', `protocol.version=${version}`, 'clone', '-q', ...args, url, b])
        t.equal(await upstream.packObjects(), before, 'second clone made no pack upstream')
        await gitOk(home, ['-C', b, 'fsck'])
        t.equal(
          (await gitOk(home, ['-C', b, 'rev-parse', 'HEAD'])).trim(),
          (await gitOk(home, ['-C', a, 'rev-parse', 'HEAD'])).trim(),
        )
        if (name === 'depth') t.equal((await gitOk(home, ['-C', b, 'rev-list', '--count', 'HEAD'])).trim(), '1')
      })
    }
  }

  await t.test('the CI pattern: init + fetch --depth=1 origin <sha>, twice', async (t) => {
    const sha = (await gitOk(home, ['-C', bare, 'rev-parse', 'main'])).trim()
    for (const n of [1, 2]) {
      const w = path.join(dir, `ci-${n}`)
      await gitOk(home, ['init', '-q', w])
      await gitOk(home, ['-C', w, 'remote', 'add', 'origin', url])
      const before = await upstream.packObjects()
      await gitOk(home, ['-C', w, '-c', 'protocol.version=2', 'fetch', '-q', '--depth=1', 'origin', `+${sha}:refs/remotes/origin/main`])
      await gitOk(home, ['-C', w, 'fsck'])
      t.equal((await gitOk(home, ['-C', w, 'rev-parse', 'refs/remotes/origin/main'])).trim(), sha)
      if (n === 2) t.equal(await upstream.packObjects(), before, 'second CI checkout hit')
    }
  })

  await t.test('fetch with haves: the second identical fetch is answered from the cache (fetch-cache.test.ts)', async (t) => {
    const tip = await addCommitDirect(home, bare, 'main', 'more.txt', 1)
    for (const n of [1, 2]) {
      const w = path.join(dir, `haves-${n}`)
      await gitOk(home, ['clone', '-q', '--single-branch', '--branch', 'feature', url, w])
      const before = upstream.fetchPosts().length
      await gitOk(home, ['-C', w, 'fetch', '-q', 'origin', 'main'])
      await proxy.settled()
      const fetches = gitRequestLines(proxy.logs).filter((l) => l['cmd'] === 'fetch')
      if (n === 1) t.ok(upstream.fetchPosts().length > before, 'the first fetch reached the upstream')
      else {
        t.equal(upstream.fetchPosts().length, before, 'the second did not')
        t.equal(fetches.at(-1)?.['cache'], 'hit', 'a hit')
      }
      t.equal((await gitOk(home, ['-C', w, 'rev-parse', 'FETCH_HEAD'])).trim(), tip, `fetch ${n} got the new main`)
      await gitOk(home, ['-C', w, 'fsck'])
    }
  })
})

void t.test('a push through the proxy, then a clone: the new commit, never the old pack', async (t) => {
  const dir = t.testdir()
  const home = gitHome(dir)
  const upstream = await startTestUpstream(t, dir)
  await createBareRepo(home, upstream.root, 'app.git', { commits: 2 })
  const proxy = await startTestProxy(t, dir, upstream.url)
  const url = `${proxy.url}/app.git`
  const work = path.join(dir, 'work')
  await gitOk(home, ['clone', '-q', url, work])
  await gitOk(home, ['clone', '-q', url, path.join(dir, 'warm')])
  t.equal(entryFiles(proxy.cacheDir).length, 1)
  await commitFile(home, work, 'new.txt', 'new\n', 'new commit', 50)
  await gitOk(home, ['-C', work, 'push', '-q', 'origin', 'main'])
  const tip = (await gitOk(home, ['-C', work, 'rev-parse', 'HEAD'])).trim()
  t.equal(entryFiles(proxy.cacheDir).length, 0, 'the push dropped the repository\'s entries')
  const after = path.join(dir, 'after')
  await gitOk(home, ['clone', '-q', url, after])
  t.equal((await gitOk(home, ['-C', after, 'rev-parse', 'HEAD'])).trim(), tip)
  const remote = parseRefList(await gitOk(home, ['ls-remote', url]))
  t.equal(remote.get('refs/heads/main'), tip)
})
