/**
 * The ref cache over SSH (issue 4): real OpenSSH and git through the SSH
 * front, a real sshd upstream. Upstream advertisements are counted as
 * upload-pack processes: every one writes its own trace2 file (and every
 * one starts with an advertisement).
 */
import { readdir, readFile } from 'node:fs/promises'
import path from 'node:path'
import t from 'tap'
import { gitOk, parseRefList } from '../helpers/git.js'
import { gitRequestLines } from '../helpers/log-sink.js'
import { addCommitDirect, commitFile, createBareRepo } from '../helpers/repo.js'
import { bareRefs, startSshBed, type SshBed } from '../helpers/sshd.js'

/** upload-pack processes the upstreams ran so far. */
async function uploadPacks(bed: SshBed): Promise<number> {
  const dir = path.join(bed.dir, 'trace2')
  let n = 0
  for (const file of await readdir(dir).catch(() => [])) {
    const text = await readFile(path.join(dir, file), 'utf8').catch(() => '')
    if (/"event":"cmd_name","[^}]*"name":"upload-pack"/.test(text)) n++
  }
  return n
}

async function inBatches<T>(n: number, width: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = []
  for (let i = 0; i < n; i += width) {
    out.push(...(await Promise.all(Array.from({ length: Math.min(width, n - i) }, (_, j) => fn(i + j)))))
  }
  return out
}

const sorted = (m: Map<string, string>): [string, string][] => [...m].sort((a, b) => a[0].localeCompare(b[0]))

void t.test('refs caching on over SSH', async (t) => {
  const bed = await startSshBed(t, {
    settings: { 'scm-cache.refs.enabled': 'true', 'scm-cache.refs.ttl': '300', 'proxy.ssh.allow-push': 'true' },
  })
  const bare = await createBareRepo(bed.home, bed.upstream.root, 'app.git', { commits: 4, branches: ['feature'], tags: ['v1'] })
  const url = bed.sshUrl('app.git')
  const sshLines = (): Record<string, unknown>[] => gitRequestLines(bed.proxy.logs).filter((l) => l['proto'] === 'ssh')

  for (const version of [2, 0, 1]) {
    await t.test(`v${version}: 20 ls-remote within the TTL, one upstream advertisement`, async (t) => {
      const expected = parseRefList(await bareRefs(bed.home, bare))
      const before = await uploadPacks(bed)
      const linesBefore = sshLines().length
      const ls = (): Promise<string> => bed.gitOk(['-c', `protocol.version=${version}`, 'ls-remote', url])
      // The first poll alone (it may be the proxy key's access check), then 19 in batches.
      const outs = [await ls(), ...(await inBatches(19, 5, ls))]
      for (const out of outs) t.same(sorted(parseRefList(out)), sorted(expected), 'the upstream\'s refs')
      t.equal((await uploadPacks(bed)) - before, 1, 'one upstream upload-pack for 20 polls')
      const lines = sshLines().slice(linesBefore)
      if (version === 2) {
        const lsRefs = lines.filter((l) => l['cmd'] === 'ls-refs')
        t.equal(lsRefs.length, 20)
        t.equal(lsRefs.filter((l) => l['cache'] === 'hit').length, 19, 'ls-refs: 19 hits')
      } else {
        t.equal(lines.length, 20)
        t.equal(lines.filter((l) => l['cache'] === 'hit').length, 19, 'advertisement: 19 hits')
        t.ok(lines.every((l) => l['status'] === 0 && l['version'] === version))
      }
    })
  }

  await t.test('clones from the cached advertisement need no upstream session', async (t) => {
    for (const version of [2, 0]) {
      const pv = ['-c', `protocol.version=${version}`]
      await bed.gitOk([...pv, 'clone', '-q', url, path.join(bed.dir, `warm-v${version}`)])
      const before = await uploadPacks(bed)
      const target = path.join(bed.dir, `clone-v${version}`)
      await bed.gitOk([...pv, 'clone', '-q', url, target])
      t.equal((await uploadPacks(bed)) - before, 0, `v${version}: advertisement, ls-refs and pack all from the cache`)
      await gitOk(bed.home, ['-C', target, 'fsck', '--strict'])
      const got = parseRefList(await gitOk(bed.home, ['-C', target, 'for-each-ref', '--format=%(objectname) %(refname)']))
      const upstream = parseRefList(await bareRefs(bed.home, bare))
      t.equal(got.get('refs/remotes/origin/main'), upstream.get('refs/heads/main'))
      t.equal(got.get('refs/remotes/origin/feature'), upstream.get('refs/heads/feature'))
      t.equal(got.get('refs/tags/v1'), upstream.get('refs/tags/v1'))
    }
  })

  await t.test('a push through the proxy, then ls-remote: the new tip at once', async (t) => {
    const work = path.join(bed.dir, 'clone-v2')
    await commitFile(bed.home, work, 'pushed.txt', 'pushed\n', 'pushed', 60)
    await bed.gitOk(['push', '-q', 'origin', 'main'], { cwd: work })
    const tip = (await gitOk(bed.home, ['-C', work, 'rev-parse', 'HEAD'])).trim()
    t.equal((await gitOk(bed.home, ['-C', bare, 'rev-parse', 'main'])).trim(), tip, 'the push reached the upstream')
    for (const version of [2, 0]) {
      const refs = parseRefList(await bed.gitOk(['-c', `protocol.version=${version}`, 'ls-remote', url]))
      t.equal(refs.get('refs/heads/main'), tip, `v${version} ls-remote shows the pushed tip`)
    }
  })

  await t.test('ls-refs entries are shared with HTTP (same bytes)', async (t) => {
    // The SSH polls above filled the ls-refs entry for "no prefixes".
    const before = gitRequestLines(bed.proxy.logs).length
    const viaHttp = parseRefList(await gitOk(bed.home, ['-c', 'protocol.version=2', 'ls-remote', `${bed.proxy.url}/app.git`]))
    const viaSsh = parseRefList(await bed.gitOk(['-c', 'protocol.version=2', 'ls-remote', url]))
    t.same(sorted(viaHttp), sorted(viaSsh))
    t.same(sorted(viaHttp), sorted(parseRefList(await bareRefs(bed.home, bare))))
    const httpLsRefs = gitRequestLines(bed.proxy.logs)
      .slice(before)
      .filter((l) => l['proto'] === 'http' && l['cmd'] === 'ls-refs')
    t.equal(httpLsRefs.length, 1)
    t.equal(httpLsRefs[0]?.['cache'], 'hit', 'HTTP ls-refs hit the entry an SSH poll made')
  })

  await t.test('fetches with haves negotiate with a lazily opened upstream session', async (t) => {
    // Move main on through the proxy (which also drops the ref entries).
    const pusher = path.join(bed.dir, 'clone-v2')
    await commitFile(bed.home, pusher, 'second.txt', 'second\n', 'second', 61)
    await bed.gitOk(['push', '-q', 'origin', 'main'], { cwd: pusher })
    const tip = (await gitOk(bed.home, ['-C', bare, 'rev-parse', 'main'])).trim()
    for (const version of [0, 2]) {
      // Warm the ref cache for this version, so the fetch sees a cached advertisement.
      await bed.gitOk(['-c', `protocol.version=${version}`, 'ls-remote', url])
      const target = path.join(bed.dir, `warm-v${version}`)
      const linesBefore = sshLines().length
      await bed.gitOk(['-c', `protocol.version=${version}`, 'fetch', '-q', 'origin'], { cwd: target })
      t.equal((await gitOk(bed.home, ['-C', target, 'rev-parse', 'origin/main'])).trim(), tip, `v${version} fetch got the new tip`)
      await gitOk(bed.home, ['-C', target, 'fsck', '--strict'])
      const lines = sshLines().slice(linesBefore)
      const fetch = lines.filter((l) => (version === 2 ? l['cmd'] === 'fetch' : true)).at(-1)
      // v0: the negotiation goes to the upstream session; v2: a fetch-cache fill (its own exec).
      t.equal(fetch?.['cache'], version === 0 ? 'bypass' : 'miss', 'the negotiation went to the upstream')
      t.equal(fetch?.['status'], 0)
      if (version === 2) {
        // fetch's ref-prefix set differs from ls-remote's: its own entry (a miss here).
        t.not(lines.find((l) => l['cmd'] === 'ls-refs')?.['cache'] ?? 'bypass', 'bypass', 'ls-refs through the ref cache')
      }
    }
  })

  await t.test('a push that bypassed the proxy, seen by a lazily opened session, drops the ref entries', async (t) => {
    const pusher = path.join(bed.dir, 'clone-v2')
    await commitFile(bed.home, pusher, 'third.txt', 'third\n', 'third', 62)
    await bed.gitOk(['push', '-q', 'origin', 'main'], { cwd: pusher })
    const tipA = (await gitOk(bed.home, ['-C', bare, 'rev-parse', 'main'])).trim()
    const v0 = ['-c', 'protocol.version=0']
    t.equal(parseRefList(await bed.gitOk([...v0, 'ls-remote', url])).get('refs/heads/main'), tipA, 'cached: tip A')
    const tipB = await addCommitDirect(bed.home, bare, 'main', 'direct.txt', 1)
    t.equal(parseRefList(await bed.gitOk([...v0, 'ls-remote', url])).get('refs/heads/main'), tipA, 'within the TTL: still tip A')
    // A fetch with haves (warm-v0 is behind tip A) opens session A lazily; its advertisement shows tip B.
    const target = path.join(bed.dir, 'warm-v0')
    await bed.gitOk([...v0, 'fetch', '-q', 'origin'], { cwd: target })
    t.equal((await gitOk(bed.home, ['-C', target, 'rev-parse', 'origin/main'])).trim(), tipA, 'the fetch got what the client was shown')
    await gitOk(bed.home, ['-C', target, 'fsck', '--strict'])
    t.equal(parseRefList(await bed.gitOk([...v0, 'ls-remote', url])).get('refs/heads/main'), tipB, 'the next poll: tip B')
  })
})

void t.test('refs caching off: every SSH poll reaches the upstream', async (t) => {
  const bed = await startSshBed(t)
  const bare = await createBareRepo(bed.home, bed.upstream.root, 'app.git', { commits: 2, tags: ['v1'] })
  const expected = parseRefList(await bareRefs(bed.home, bare))
  for (const version of [2, 0]) {
    const before = await uploadPacks(bed)
    for (let i = 0; i < 5; i++) {
      const out = await bed.gitOk(['-c', `protocol.version=${version}`, 'ls-remote', bed.sshUrl('app.git')])
      t.same(sorted(parseRefList(out)), sorted(expected))
    }
    t.equal((await uploadPacks(bed)) - before, 5, `v${version}: 5 polls, 5 upstream upload-packs`)
  }
})
