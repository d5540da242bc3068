/** Pushes through the proxy (always protocol v0 on the wire): new branch, fast-forward, delete. */
import path from 'node:path'
import t from 'tap'
import { git, gitHome, gitOk, parseRefList } from '../helpers/git.js'
import { startTestProxy } from '../helpers/proxy.js'
import { commitFile, createBareRepo } from '../helpers/repo.js'
import { startTestUpstream } from '../helpers/upstream.js'

void t.test('push through the proxy', async (t) => {
  const dir = t.testdir()
  const home = gitHome(dir)
  const upstream = await startTestUpstream(t, dir)
  const bare = await createBareRepo(home, upstream.root, 'app.git', { commits: 2 })
  const proxy = await startTestProxy(t, dir, upstream.url)
  const url = `${proxy.url}/app.git`
  const work = path.join(dir, 'work')
  await gitOk(home, ['clone', '-q', url, work])
  const upstreamRef = async (ref: string): Promise<string | undefined> =>
    parseRefList(await gitOk(home, ['-C', bare, 'for-each-ref', '--format=%(objectname) %(refname)'])).get(ref)

  await t.test('new branch', async (t) => {
    await gitOk(home, ['-C', work, 'checkout', '-q', '-b', 'topic'])
    await commitFile(home, work, 'topic.txt', 'topic\n', 'topic work', 10)
    const r = await git(home, ['-C', work, 'push', 'origin', 'topic'])
    t.equal(r.code, 0, r.stderr)
    t.equal(await upstreamRef('refs/heads/topic'), (await gitOk(home, ['-C', work, 'rev-parse', 'HEAD'])).trim())
  })

  await t.test('fast-forward', async (t) => {
    await gitOk(home, ['-C', work, 'checkout', '-q', 'main'])
    await commitFile(home, work, 'ff.txt', 'ff\n', 'fast-forward', 11)
    await gitOk(home, ['-C', work, 'push', '-q', 'origin', 'main'])
    t.equal(await upstreamRef('refs/heads/main'), (await gitOk(home, ['-C', work, 'rev-parse', 'HEAD'])).trim())
    await gitOk(home, ['-C', bare, 'fsck', '--strict'])
  })

  await t.test('non-fast-forward is rejected by the upstream, and git says so', async (t) => {
    await gitOk(home, ['-C', work, 'reset', '-q', '--hard', 'HEAD~1'])
    await commitFile(home, work, 'diverge.txt', 'x\n', 'diverge', 12)
    const r = await git(home, ['-C', work, 'push', 'origin', 'main'])
    t.not(r.code, 0)
    t.match(r.stderr, /rejected|non-fast-forward/)
  })

  await t.test('delete a branch', async (t) => {
    await gitOk(home, ['-C', work, 'push', '-q', 'origin', '--delete', 'topic'])
    t.equal(await upstreamRef('refs/heads/topic'), undefined)
    const remote = parseRefList(await gitOk(home, ['ls-remote', url]))
    t.notOk(remote.has('refs/heads/topic'))
  })
})
