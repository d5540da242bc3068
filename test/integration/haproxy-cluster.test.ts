/**
 * Three proxies behind HAProxy, started from the shipped deploy/haproxy.cfg
 * (DESIGN §10): a repository lives on one node, a node's loss makes only its
 * repositories cold, a node that gets SIGTERM drains out of rotation while
 * its clone finishes. Real HAProxy, real git, real upstream, all on loopback.
 */
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { cacheFiles } from '../helpers/cache-files.js'
import { startFaultProxy } from '../helpers/fault-proxy.js'
import { gitHome, git, gitOk, spawnGit } from '../helpers/git.js'
import { haproxyBinary, NO_HAPROXY, startHaproxy } from '../helpers/haproxy.js'
import { freePort, startProxyProcess, type ProxyProcess } from '../helpers/proxy-process.js'
import { createBareRepo } from '../helpers/repo.js'
import { startTestUpstream, type TestUpstream } from '../helpers/upstream.js'

/** Seconds a node drains after SIGTERM (the default is 10; the checks here run every 100 ms). */
const DRAIN_SECONDS = 2

/**
 * Six repositories that `balance hash` + `hash-type consistent` over the
 * server ids 1..3 puts on all three nodes (r0, r2, r4 on node1, r1, r3 on
 * node3, r5 on node2); the test checks the spread rather than trusting this.
 */
const SIX = ['r0.git', 'r1.git', 'r2.git', 'r3.git', 'r4.git', 'r5.git']

interface Node {
  name: string
  proc: ProxyProcess
  cacheDir: string
}

/** How many git requests for `repo` each node has logged. */
function requestsPerNode(nodes: readonly Node[], repo: string): number[] {
  return nodes.map((node) =>
    node.proc
      .output()
      .split('\n')
      .filter((line) => line.includes('"msg":"git request"') && line.includes(`"repo":"${repo}"`)).length,
  )
}

/** Nodes that served `repo` at all. */
function nodesServing(nodes: readonly Node[], repo: string): string[] {
  return requestsPerNode(nodes, repo).flatMap((n, i) => (n > 0 ? [nodes[i]?.name ?? '?'] : []))
}

function sum(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0)
}

/** Upstream pack generations (fetch POSTs) per repository. */
function generations(upstream: TestUpstream, repos: readonly string[]): Record<string, number> {
  const posts = upstream.fetchPosts()
  return Object.fromEntries(repos.map((repo) => [repo, posts.filter((r) => r.url.startsWith(`/${repo}/`)).length]))
}

void t.test('three nodes behind HAProxy from deploy/haproxy.cfg', { skip: haproxyBinary() === null ? NO_HAPROXY : false }, async (t) => {
  const dir = t.testdir()
  const home = gitHome(dir)
  const upstream = await startTestUpstream(t, dir)
  for (const repo of ['burst.git', ...SIX]) await createBareRepo(home, upstream.root, repo, { commits: 3 })
  // Incompressible content: ~400 KB of pack, a few seconds through the throttle below.
  await createBareRepo(home, upstream.root, 'slow.git', { commits: 12, fileSize: 30_000 })
  // Every node reaches the upstream through this forwarder, which can slow one pack down.
  const fault = await startFaultProxy(t, upstream.url, { bytesPerTick: 0, cutAfter: null, times: 0 })

  const nodes: Node[] = await Promise.all(
    [1, 2, 3].map(async (i) => {
      const cacheDir = path.join(dir, `node${i}`, 'cache')
      const proc = await startProxyProcess(t, {
        SCM_CACHE_UPSTREAM_HTTP_URL: fault.url,
        SCM_CACHE_CACHE_DIR: cacheDir,
        SCM_CACHE_PROXY_SHUTDOWN_DRAIN: String(DRAIN_SECONDS),
        SCM_CACHE_PROXY_HTTP_TRUSTED_PROXIES: '127.0.0.1',
      })
      return { name: `node${i}`, proc, cacheDir }
    }),
  )
  const ssh = await Promise.all([1, 2, 3].map(async () => `127.0.0.1:${await freePort()}`))
  const lb = await startHaproxy(
    t,
    [0, 1, 2].map((i) => ({ http: new URL(nodes[i]?.proc.url ?? '').host, ssh: ssh[i] ?? '' })) as [
      { http: string; ssh: string },
      { http: string; ssh: string },
      { http: string; ssh: string },
    ],
  )
  const clone = async (repo: string, n: number | string): Promise<void> => {
    const target = path.join(dir, 'clones', `${repo}-${n}`)
    const r = await git(home, ['clone', '-q', '--no-checkout', `${lb.url}/${repo}`, target])
    if (r.code !== 0) throw new Error(`clone of ${repo} through HAProxy failed:\n${r.stderr}`)
  }

  await t.test('the admin REST API and /metrics are not reachable through the balancer', async (t) => {
    for (const p of ['/rest/scm-cache/latest/caches', '/rest/scm-cache/latest/webhook', '/metrics']) {
      const res = await fetch(`${lb.url}${p}`)
      await res.arrayBuffer()
      t.equal(res.status, 403, p)
    }
    const ready = await fetch(`${lb.url}/readyz`)
    t.equal(ready.status, 200, '/readyz passes (answered by a node)')
  })

  await t.test('a burst of 16 clones of one repository: one node, one upstream pack generation', async (t) => {
    const packsBefore = await upstream.packObjects()
    await Promise.all(Array.from({ length: 16 }, (_, i) => clone('burst.git', i)))
    t.equal(generations(upstream, ['burst.git'])['burst.git'], 1, 'one upload-pack fetch reached the upstream')
    t.equal((await upstream.packObjects()) - packsBefore, 1, 'one pack-objects run upstream')
    t.same(nodesServing(nodes, 'burst.git').length, 1, `every request went to one node (${nodesServing(nodes, 'burst.git').join(', ')})`)
  })

  const home0: Record<string, string> = {}
  await t.test('six repositories spread over the nodes, each on exactly one', async (t) => {
    await Promise.all(SIX.map((repo) => clone(repo, 'first')))
    for (const repo of SIX) {
      const serving = nodesServing(nodes, repo)
      t.equal(serving.length, 1, `${repo} lives on one node (${serving.join(', ')})`)
      home0[repo] = serving[0] ?? '?'
    }
    const used = new Set(Object.values(home0))
    t.equal(used.size, 3, `all three nodes hold repositories: ${JSON.stringify(home0)}`)
    t.same(generations(upstream, SIX), Object.fromEntries(SIX.map((r) => [r, 1])), 'each repository fetched upstream once')
    // A second round is answered from each node's cache.
    await Promise.all(SIX.map((repo) => clone(repo, 'second')))
    t.same(generations(upstream, SIX), Object.fromEntries(SIX.map((r) => [r, 1])), 'a second round is all hits')
  })

  // The node holding r1 and r3 (checked above) is killed.
  const victim = nodes.find((n) => n.name === home0['r1.git'])
  await t.test('kill -9 one node: only its repositories go cold, every clone succeeds', { skip: victim === undefined }, async (t) => {
    if (victim === undefined) return
    const lost = SIX.filter((repo) => home0[repo] === victim.name)
    const kept = SIX.filter((repo) => home0[repo] !== victim.name)
    t.ok(lost.length > 0 && kept.length > 0, `${victim.name} held ${lost.join(', ')}`)
    const before = generations(upstream, SIX)
    victim.proc.child.kill('SIGKILL')
    await victim.proc.exited
    // Before HAProxy's checks notice, a refused connection is retried on another node.
    await Promise.all(SIX.map((repo) => clone(repo, 'after-kill')))
    await lb.waitDown(victim.name)
    await Promise.all(SIX.map((repo) => clone(repo, 'after-down')))
    const after = generations(upstream, SIX)
    for (const repo of kept) t.equal(after[repo], before[repo], `${repo} stayed warm on ${home0[repo]}`)
    for (const repo of lost) t.ok((after[repo] ?? 0) > (before[repo] ?? 0), `${repo} was cold once on its new node`)
    // Settled: each lost repository now lives on one surviving node, and is warm there.
    await Promise.all(SIX.map((repo) => clone(repo, 'settled')))
    t.same(generations(upstream, SIX), after, 'once moved, the lost repositories are warm on their new nodes')
  })

  await t.test('SIGTERM a node during a clone: the clone finishes, the balancer moves on within the drain', async (t) => {
    const alive = nodes.filter((n) => n.proc.child.exitCode === null && n.proc.child.signalCode === null)
    // ~60 KB/s: the transfer outlasts the drain, so it goes on after the node stopped accepting.
    fault.plan.bytesPerTick = 3000
    fault.plan.times = 1
    const target = path.join(dir, 'clones', 'slow')
    const slow = spawnGit(home, ['clone', '-q', `${lb.url}/slow.git`, target])
    let node: Node | undefined
    for (let i = 0; i < 400 && node === undefined; i++) {
      node = alive.find((n) => cacheFiles(n.cacheDir, 'tmp').length > 0)
      if (node === undefined) await sleep(20)
    }
    if (node === undefined) {
      slow.kill()
      t.fail('the slow clone never started a fill')
      return
    }
    const draining = node
    const other = alive.find((n) => n !== draining)
    draining.proc.child.kill('SIGTERM')
    const termAt = Date.now()
    let downAfter: number | null = null
    void lb.waitDown(draining.name).then(() => (downAfter = Date.now() - termAt), () => undefined)
    // The signal reaches the node's event loop a moment later: poll, briefly.
    let ready = await fetch(`${draining.proc.url}/readyz`)
    for (let i = 0; i < 100 && ready.status !== 503; i++) {
      await ready.arrayBuffer()
      await sleep(10)
      ready = await fetch(`${draining.proc.url}/readyz`)
    }
    t.equal(ready.status, 503, `/readyz fails at once (${Date.now() - termAt} ms after SIGTERM)`)
    t.match(await ready.json(), { reason: /draining/ })

    // New requests for the same repository reach the other node within the
    // drain. Each request is logged by exactly one node (a little after its
    // answer): wait for that line to tell which.
    let movedAfter: number | null = null
    const pair = other === undefined ? [draining] : [draining, other]
    while (movedAfter === null && Date.now() - termAt < DRAIN_SECONDS * 1000 + 3000) {
      const before = requestsPerNode(pair, 'slow.git')
      const sentAt = Date.now() - termAt
      const res = await fetch(`${lb.url}/slow.git/info/refs?service=git-upload-pack`)
      await res.arrayBuffer()
      t.equal(res.status, 200, 'every request is answered meanwhile')
      let after = requestsPerNode(pair, 'slow.git')
      for (let i = 0; i < 100 && sum(after) === sum(before); i++) {
        await sleep(10)
        after = requestsPerNode(pair, 'slow.git')
      }
      if ((after[1] ?? 0) > (before[1] ?? 0)) movedAfter = sentAt
      else await sleep(20)
    }
    t.ok(movedAfter !== null && movedAfter < DRAIN_SECONDS * 1000, `HAProxy sent new requests elsewhere after ${movedAfter} ms (marked down after ${downAfter} ms)`)
    t.ok(draining.proc.child.exitCode === null, 'the draining node still runs while its clone transfers')

    const r = await slow.done
    t.equal(r.code, 0, `the clone finished ${Date.now() - termAt} ms after SIGTERM ${r.stderr}`)
    await gitOk(home, ['-C', target, 'fsck', '--strict'])
    t.equal(await draining.proc.exited, 0, `the drained node exits 0 (${Date.now() - termAt} ms after SIGTERM)`)
    t.match(draining.proc.output(), /draining: \/readyz fails/)
  })
})
