/**
 * The SSH front end to end: the real OpenSSH client driving real git
 * through the proxy, against a real sshd upstream serving bare repositories.
 */
import { execFile, spawn } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import t, { type Test } from 'tap'
import { cacheFiles } from '../helpers/cache-files.js'
import { gitOk, parseRefList } from '../helpers/git.js'
import { gitRequestLines } from '../helpers/log-sink.js'
import { addCommitDirect, commitFile, createBareRepo } from '../helpers/repo.js'
import { bareRefs, gitSshCommand, sshClientArgs, sshKeygen, startSshBed, type SshBed } from '../helpers/sshd.js'

/** fsck, and every ref the clone took from origin equal to the upstream's. */
async function checkClone(t: Test, bed: SshBed, bare: string, clone: string, opts: { shallow?: boolean } = {}): Promise<void> {
  await gitOk(bed.home, ['-C', clone, 'fsck', ...(opts.shallow === true ? [] : ['--strict'])])
  const upstream = parseRefList(await bareRefs(bed.home, bare))
  const local = parseRefList(await gitOk(bed.home, ['-C', clone, 'for-each-ref', '--format=%(objectname) %(refname)']))
  for (const [ref, oid] of local) {
    const name = ref.replace(/^refs\/remotes\/origin\//, 'refs/heads/')
    if (name === 'refs/heads/HEAD') continue
    t.equal(oid, upstream.get(name), `${ref} equals the upstream's ${name}`)
  }
  t.ok(local.size > 0, 'the clone has refs')
}

void t.test('clone, depth, fetch with haves and ls-remote over SSH, v0, v1 and v2', async (t) => {
  const bed = await startSshBed(t)
  const bare = await createBareRepo(bed.home, bed.upstream.root, 'team/app.git', {
    commits: 6,
    branches: ['feature'],
    tags: ['v1'],
    fileSize: 5000,
  })
  const url = bed.sshUrl('team/app.git')

  for (const version of [0, 1, 2]) {
    await t.test(`v${version} clone, then a second clone from cache`, async (t) => {
      const a = path.join(bed.dir, `v${version}-a`)
      const b = path.join(bed.dir, `v${version}-b`)
      await bed.gitOk(['-c', `protocol.version=${version}`, 'clone', '-q', url, a])
      const before = await bed.upstream.packObjects()
      await bed.gitOk(['-c', `protocol.version=${version}`, 'clone', '-q', url, b])
      t.equal(await bed.upstream.packObjects(), before, 'the second clone made no pack upstream')
      await checkClone(t, bed, bare, a)
      await checkClone(t, bed, bare, b)
      await bed.proxy.settled()
      const last = gitRequestLines(bed.proxy.logs).filter((l) => l['proto'] === 'ssh').at(-1)
      t.equal(last?.['cache'], 'hit')
      t.equal(last?.['version'], version)
    })

    await t.test(`v${version} --depth 1, twice`, async (t) => {
      const a = path.join(bed.dir, `v${version}-depth-a`)
      const b = path.join(bed.dir, `v${version}-depth-b`)
      await bed.gitOk(['-c', `protocol.version=${version}`, 'clone', '-q', '--depth', '1', '--no-single-branch', url, a])
      const before = await bed.upstream.packObjects()
      await bed.gitOk(['-c', `protocol.version=${version}`, 'clone', '-q', '--depth', '1', '--no-single-branch', url, b])
      t.equal(await bed.upstream.packObjects(), before, 'the second shallow clone made no pack upstream')
      for (const c of [a, b]) {
        t.equal((await gitOk(bed.home, ['-C', c, 'rev-list', '--count', 'HEAD'])).trim(), '1')
        t.ok(existsSync(path.join(c, '.git', 'shallow')), 'the clone knows it is shallow')
        await checkClone(t, bed, bare, c, { shallow: true })
      }
    })

    await t.test(`v${version} partial clone (--filter=blob:none), twice`, async (t) => {
      const a = path.join(bed.dir, `v${version}-filter-a`)
      const b = path.join(bed.dir, `v${version}-filter-b`)
      await bed.gitOk(['-c', `protocol.version=${version}`, 'clone', '-q', '--filter=blob:none', '--no-checkout', url, a])
      const before = await bed.upstream.packObjects()
      await bed.gitOk(['-c', `protocol.version=${version}`, 'clone', '-q', '--filter=blob:none', '--no-checkout', url, b])
      t.equal(await bed.upstream.packObjects(), before, 'the second partial clone made no pack upstream')
      t.equal(
        (await gitOk(bed.home, ['-C', b, 'rev-parse', 'HEAD'])).trim(),
        (await gitOk(bed.home, ['-C', bare, 'rev-parse', 'main'])).trim(),
      )
    })

    await t.test(`v${version} ls-remote equals the upstream's refs`, async (t) => {
      const remote = await bed.gitOk(['-c', `protocol.version=${version}`, 'ls-remote', url])
      t.same(parseRefList(remote), parseRefList(await bareRefs(bed.home, bare)))
    })
  }

  await t.test('fetch with haves: v0 passes through, v2 rounds are cache fills (several rounds)', async (t) => {
    const clones: Record<number, string> = {}
    for (const version of [0, 2]) {
      clones[version] = path.join(bed.dir, `haves-v${version}`)
      await bed.gitOk(['-c', `protocol.version=${version}`, 'clone', '-q', url, clones[version] ?? ''])
      // Local commits the upstream does not know: the client negotiates over several rounds.
      for (let i = 0; i < 40; i++) {
        await commitFile(bed.home, clones[version] ?? '', `local-${i}.txt`, `local ${version} ${i}\n`, `local ${i}`, 200 + i)
      }
    }
    for (let n = 0; n < 3; n++) await addCommitDirect(bed.home, bare, 'main', `direct-${n}.txt`, n)
    const tip = (await gitOk(bed.home, ['-C', bare, 'rev-parse', 'main'])).trim()
    for (const version of [0, 2]) {
      const c = clones[version] ?? ''
      const before = await bed.upstream.packObjects()
      await bed.gitOk(['-c', `protocol.version=${version}`, 'fetch', '-q', 'origin'], { cwd: c })
      t.equal((await gitOk(bed.home, ['-C', c, 'rev-parse', 'refs/remotes/origin/main'])).trim(), tip, `v${version} fetched the new tip`)
      t.ok((await bed.upstream.packObjects()) > before, `v${version} fetch made its pack upstream`)
      await gitOk(bed.home, ['-C', c, 'fsck', '--strict'])
      await bed.proxy.settled()
      const last = gitRequestLines(bed.proxy.logs).filter((l) => l['proto'] === 'ssh').at(-1)
      // v0/v1 negotiation keeps state in one upload-pack: pass-through; each
      // v2 fetch request is whole, so it is cached (docs/protocol.md).
      t.equal(last?.['cache'], version === 0 ? 'bypass' : 'miss')
    }
  })

  await t.test('shallow clones fetch, deepen and unshallow through the proxy (v0 and v2)', async (t) => {
    for (const version of [0, 2]) {
      const c = path.join(bed.dir, `shallow-v${version}`)
      await bed.gitOk(['-c', `protocol.version=${version}`, 'clone', '-q', '--depth', '1', url, c])
      await addCommitDirect(bed.home, bare, 'main', `shallow-${version}.txt`, 10 + version)
      const tip = (await gitOk(bed.home, ['-C', bare, 'rev-parse', 'main'])).trim()
      await bed.gitOk(['-c', `protocol.version=${version}`, 'fetch', '-q', 'origin'], { cwd: c })
      t.equal((await gitOk(bed.home, ['-C', c, 'rev-parse', 'refs/remotes/origin/main'])).trim(), tip, `v${version} fetch in a shallow clone`)
      await bed.gitOk(['-c', `protocol.version=${version}`, 'fetch', '-q', '--deepen=1', 'origin'], { cwd: c })
      await bed.gitOk(['-c', `protocol.version=${version}`, 'fetch', '-q', '--unshallow', 'origin'], { cwd: c })
      t.notOk(existsSync(path.join(c, '.git', 'shallow')), `v${version} unshallowed`)
      await gitOk(bed.home, ['-C', c, 'fsck', '--strict'])
    }
  })

  await t.test('fetch --depth 1 into a full clone: the cached shallow list, then the upstream negotiates (v0)', async (t) => {
    const c = path.join(bed.dir, 'full-then-depth')
    await bed.gitOk(['-c', 'protocol.version=0', 'clone', '-q', url, c])
    await addCommitDirect(bed.home, bare, 'main', 'full-then-depth.txt', 30)
    const tip = (await gitOk(bed.home, ['-C', bare, 'rev-parse', 'main'])).trim()
    // Once to fill the cache with this depth-1 answer, once to be served its shallow list from it.
    const warm = path.join(bed.dir, 'full-then-depth-warm')
    await bed.gitOk(['-c', 'protocol.version=0', 'clone', '-q', '--depth', '1', '--no-single-branch', url, warm])
    await bed.gitOk(['-c', 'protocol.version=0', 'fetch', '-q', '--depth=1', 'origin'], { cwd: c })
    t.equal((await gitOk(bed.home, ['-C', c, 'rev-parse', 'refs/remotes/origin/main'])).trim(), tip)
    t.ok(
      bed.proxy.logs.some((l) => l.msg === 'shallow list sent from cache; the client negotiates with the upstream'),
      'the shallow list came from the cache and the negotiation from the upstream',
    )
    await gitOk(bed.home, ['-C', c, 'fsck'])
  })

  await t.test('shallow fetch of one commit into an empty repository (CI checkout), v0', async (t) => {
    const sha = (await gitOk(bed.home, ['-C', bare, 'rev-parse', 'main'])).trim()
    for (const n of [1, 2]) {
      const w = path.join(bed.dir, `ci-${n}`)
      await gitOk(bed.home, ['init', '-q', w])
      await gitOk(bed.home, ['-C', w, 'remote', 'add', 'origin', url])
      const before = await bed.upstream.packObjects()
      await bed.gitOk(['-c', 'protocol.version=0', 'fetch', '-q', '--depth=1', 'origin', `+${sha}:refs/remotes/origin/main`], { cwd: w })
      await gitOk(bed.home, ['-C', w, 'fsck'])
      t.equal((await gitOk(bed.home, ['-C', w, 'rev-parse', 'refs/remotes/origin/main'])).trim(), sha)
      if (n === 2) t.equal(await bed.upstream.packObjects(), before, 'the second CI checkout hit')
    }
  })

  await t.test('an unknown repository: the upstream\'s message and a failure', async (t) => {
    const r = await bed.git(['clone', '-q', bed.sshUrl('nope.git'), path.join(bed.dir, 'nope')])
    t.not(r.code, 0)
    t.match(r.stderr, /does not appear to be a git repository|not found/)
  })
})

void t.test('pushes: refused by default, passed through and invalidating when allowed', async (t) => {
  await t.test('refused with a clear message', async (t) => {
    const bed = await startSshBed(t)
    const bare = await createBareRepo(bed.home, bed.upstream.root, 'app.git', { commits: 2 })
    const work = path.join(bed.dir, 'work')
    await bed.gitOk(['clone', '-q', bed.sshUrl('app.git'), work])
    await commitFile(bed.home, work, 'new.txt', 'new\n', 'new', 50)
    const before = (await gitOk(bed.home, ['-C', bare, 'rev-parse', 'main'])).trim()
    const r = await bed.git(['push', '-q', 'origin', 'main'], { cwd: work })
    t.not(r.code, 0)
    t.match(r.stderr, /pushes are not accepted through this SSH proxy/)
    t.equal((await gitOk(bed.home, ['-C', bare, 'rev-parse', 'main'])).trim(), before, 'the upstream did not move')
  })

  await t.test('allowed: the push lands upstream and drops the cache entries', async (t) => {
    const bed = await startSshBed(t, { settings: { 'proxy.ssh.allow-push': 'true' } })
    const bare = await createBareRepo(bed.home, bed.upstream.root, 'app.git', { commits: 2 })
    const work = path.join(bed.dir, 'work')
    await bed.gitOk(['clone', '-q', bed.sshUrl('app.git'), work])
    await bed.gitOk(['clone', '-q', bed.sshUrl('app.git'), path.join(bed.dir, 'warm')])
    t.equal(cacheFiles(bed.proxy.cacheDir, 'entries').length, 1)
    await commitFile(bed.home, work, 'new.txt', 'new\n', 'new', 50)
    await bed.gitOk(['push', '-q', 'origin', 'main'], { cwd: work })
    const tip = (await gitOk(bed.home, ['-C', work, 'rev-parse', 'HEAD'])).trim()
    t.equal((await gitOk(bed.home, ['-C', bare, 'rev-parse', 'main'])).trim(), tip, 'the upstream has the pushed commit')
    t.equal(cacheFiles(bed.proxy.cacheDir, 'entries').length, 0, 'the push dropped the repository\'s entries')
    const after = path.join(bed.dir, 'after')
    await bed.gitOk(['clone', '-q', bed.sshUrl('app.git'), after])
    t.equal((await gitOk(bed.home, ['-C', after, 'rev-parse', 'HEAD'])).trim(), tip)
    await gitOk(bed.home, ['-C', after, 'fsck', '--strict'])
  })
})

void t.test('keys and commands: unknown keys, repos= globs, odd commands', async (t) => {
  const bed = await startSshBed(t, { extraKeys: [{ name: 'team', options: 'repos="team/*",no-pty' }] })
  await createBareRepo(bed.home, bed.upstream.root, 'app.git', { commits: 2 })
  await createBareRepo(bed.home, bed.upstream.root, 'team/app.git', { commits: 2 })

  await t.test('an unknown key is refused', async (t) => {
    const stranger = path.join(bed.dir, 'keys', 'stranger')
    await sshKeygen(stranger)
    const r = await bed.git(['ls-remote', bed.sshUrl('app.git')], { key: stranger })
    t.not(r.code, 0)
    t.match(r.stderr, /Permission denied \(publickey\)/)
  })

  await t.test('a key with repos= reads only matching repositories, cached or not', async (t) => {
    const team = bed.keys['team'] ?? ''
    await bed.gitOk(['clone', '-q', bed.sshUrl('team/app.git'), path.join(bed.dir, 'team-ok')], { key: team })
    // Put app.git in the cache with the unrestricted key first.
    await bed.gitOk(['clone', '-q', bed.sshUrl('app.git'), path.join(bed.dir, 'full')])
    const r = await bed.git(['clone', '-q', bed.sshUrl('app.git'), path.join(bed.dir, 'team-no')], { key: team })
    t.not(r.code, 0)
    t.match(r.stderr, /not found or access denied/)
  })

  await t.test('odd commands are refused and nothing runs', async (t) => {
    const canary = path.join(bed.dir, 'canary')
    writeFileSync(canary, 'alive\n')
    const port = new URL(bed.sshUrl('x')).port
    const commands = [
      `git-upload-pack '/app.git'; rm -f ${canary}`,
      `git-upload-pack '/app.git' && rm -f ${canary}`,
      `rm -f ${canary}`,
      `git-upload-archive '/app.git'`,
      `git-upload-pack '/app.git`,
      `git-upload-pack /app.git`,
      `git-upload-pack '../../etc'`,
    ]
    for (const command of commands) {
      const r = await ssh(bed, port, command)
      t.equal(r.code, 128, `exit status 128 for ${command}`)
      t.match(r.stderr, /scm-cache-proxy: /, 'a message on stderr')
      t.ok(existsSync(canary), 'the canary is still there')
    }
  })
})

function ssh(bed: SshBed, port: string, command: string): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      'sh',
      ['-c', `${gitSshCommand(bed.clientKey)} -p ${port} git@127.0.0.1 "$0"`, command],
      { timeout: 60_000 },
      (err, _stdout, stderr) => {
        resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stderr })
      },
    )
  })
}

void t.test('the upstream host key is checked against upstream.ssh.known-hosts', async (t) => {
  const bed = await startSshBed(t)
  await createBareRepo(bed.home, bed.upstream.root, 'app.git', { commits: 2 })
  const original = readFileSync(bed.sshd.knownHosts, 'utf8')
  const otherKey = path.join(bed.dir, 'keys', 'other-host')
  const otherPub = (await sshKeygen(otherKey)).split(' ').slice(0, 2).join(' ')
  const cases: [string, string, RegExp][] = [
    ['a changed key', `[127.0.0.1]:${bed.sshd.port} ${otherPub}\n`, /does not match upstream\.ssh\.known-hosts/],
    ['an unknown host', `[127.0.0.1]:1 ${original.split(' ').slice(1).join(' ')}`, /is not in upstream\.ssh\.known-hosts/],
  ]
  for (const [name, text, message] of cases) {
    writeFileSync(bed.sshd.knownHosts, text)
    const r = await bed.git(['clone', '-q', bed.sshUrl('app.git'), path.join(bed.dir, name.replace(/ /g, '-'))])
    t.not(r.code, 0, `${name}: the clone fails`)
    t.match(r.stderr, message, `${name}: the client is told why`)
    t.ok(
      bed.proxy.logs.some((l) => l.level === 50 && message.test(String(l.msg))),
      `${name}: logged as an error`,
    )
  }
  writeFileSync(bed.sshd.knownHosts, original)
  await bed.gitOk(['clone', '-q', bed.sshUrl('app.git'), path.join(bed.dir, 'ok')])
})

void t.test('idle SSH connections are closed: one that never authenticates, one that never asks for a command', async (t) => {
  const bed = await startSshBed(t, { settings: { 'proxy.http.idle-timeout': '1' } })
  const port = Number(new URL(bed.sshUrl('x.git')).port)
  // A raw TCP connection that sends nothing at all (not even a version line).
  const started = performance.now()
  const silent = await new Promise<number>((resolve) => {
    const s = net.connect(port, '127.0.0.1')
    s.on('error', () => undefined)
    s.resume()
    s.once('close', () => {
      resolve(performance.now() - started)
    })
  })
  t.ok(silent < 3000, `the silent connection was closed after ${Math.round(silent)} ms`)
  // A real ssh client that authenticates and then asks for nothing (-N).
  const ssh = spawn('ssh', [...sshClientArgs(bed.clientKey), '-N', '-p', String(port), 'git@127.0.0.1'], { stdio: 'ignore' })
  const t0 = performance.now()
  const code = await new Promise<number | null>((resolve) => ssh.once('exit', (c) => { resolve(c) }))
  const waited = performance.now() - t0
  t.ok(waited < 4000, `the session without a command was closed after ${Math.round(waited)} ms (ssh exit ${String(code)})`)
})
