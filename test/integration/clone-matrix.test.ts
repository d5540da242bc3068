/**
 * Issue 2's matrix: the real git client through the proxy against a real
 * `git http-backend`, protocol v0, v1 and v2, with the clone cache off
 * (pure pass-through) and on (the default). Every outcome is checked for
 * real: `git fsck` and refs equal to the upstream's.
 */
import path from 'node:path'
import t from 'tap'
import { git, gitHome, gitOk, parseRefList } from '../helpers/git.js'
import { startTestProxy } from '../helpers/proxy.js'
import { addCommitDirect, createBareRepo } from '../helpers/repo.js'
import { startTestUpstream } from '../helpers/upstream.js'

for (const cache of ['off', 'on'] as const) {
  void t.test(`clone matrix, cache ${cache}`, async (t) => {
    const dir = t.testdir()
    const home = gitHome(dir)
    const upstream = await startTestUpstream(t, dir)
    const bare = await createBareRepo(home, upstream.root, 'team/app.git', {
      commits: 4,
      branches: ['feature'],
      tags: ['v1.0'],
    })
    const proxy = await startTestProxy(t, dir, upstream.url, {
      'scm-cache.upload-pack.enabled': cache === 'on' ? 'true' : 'false',
    })
    const url = `${proxy.url}/team/app.git`
    const upstreamRefs = parseRefList(await gitOk(home, ['-C', bare, 'for-each-ref', '--format=%(objectname) %(refname)']))

    for (const version of [0, 1, 2]) {
      const pv = ['-c', `protocol.version=${version}`]
      await t.test(`v${version}`, async (t) => {
        const base = path.join(dir, `v${version}`)

        await t.test('clone', async (t) => {
          const target = `${base}-full`
          await gitOk(home, [...pv, 'clone', '-q', url, target])
          await gitOk(home, ['-C', target, 'fsck', '--strict'])
          const got = parseRefList(await gitOk(home, ['-C', target, 'for-each-ref', '--format=%(objectname) %(refname)']))
          t.equal(got.get('refs/remotes/origin/main'), upstreamRefs.get('refs/heads/main'))
          t.equal(got.get('refs/remotes/origin/feature'), upstreamRefs.get('refs/heads/feature'))
          t.equal(got.get('refs/tags/v1.0'), upstreamRefs.get('refs/tags/v1.0'))
        })

        await t.test('clone --depth 1', async (t) => {
          const target = `${base}-shallow`
          await gitOk(home, [...pv, 'clone', '-q', '--depth', '1', url, target])
          await gitOk(home, ['-C', target, 'fsck'])
          t.equal((await gitOk(home, ['-C', target, 'rev-list', '--count', 'HEAD'])).trim(), '1')
          t.equal((await gitOk(home, ['-C', target, 'rev-parse', 'HEAD'])).trim(), upstreamRefs.get('refs/heads/main'))
        })

        await t.test('clone --filter=blob:none', async (t) => {
          const target = `${base}-partial`
          const r = await git(home, [...pv, 'clone', '-q', '--filter=blob:none', url, target])
          t.equal(r.code, 0, r.stderr)
          await gitOk(home, ['-C', target, 'fsck'])
          t.equal((await gitOk(home, ['-C', target, 'config', 'remote.origin.promisor'])).trim(), 'true')
          t.equal((await gitOk(home, ['-C', target, 'rev-parse', 'HEAD'])).trim(), upstreamRefs.get('refs/heads/main'))
        })

        await t.test('clone --single-branch --branch feature', async (t) => {
          const target = `${base}-branch`
          await gitOk(home, [...pv, 'clone', '-q', '--single-branch', '--branch', 'feature', url, target])
          await gitOk(home, ['-C', target, 'fsck', '--strict'])
          const got = parseRefList(await gitOk(home, ['-C', target, 'for-each-ref', '--format=%(objectname) %(refname)', 'refs/remotes']))
          t.same([...got.keys()], ['refs/remotes/origin/feature'])
          t.equal(got.get('refs/remotes/origin/feature'), upstreamRefs.get('refs/heads/feature'))
        })

        await t.test('ls-remote', async (t) => {
          const got = parseRefList(await gitOk(home, [...pv, 'ls-remote', url]))
          for (const [ref, oid] of upstreamRefs) t.equal(got.get(ref), oid, ref)
        })

        await t.test('fetch of new commits', async (t) => {
          const target = `${base}-full`
          const tip = await addCommitDirect(home, bare, 'main', `new-v${version}.txt`, version)
          await gitOk(home, ['-C', target, ...pv, 'fetch', '-q', 'origin'])
          t.equal((await gitOk(home, ['-C', target, 'rev-parse', 'origin/main'])).trim(), tip)
          await gitOk(home, ['-C', target, 'fsck', '--strict'])
          upstreamRefs.set('refs/heads/main', tip)
        })
      })
    }
  })
}
