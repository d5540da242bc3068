/**
 * DESIGN §3.1: cached data goes only to a credential the upstream accepted
 * for that repository within auth.ttl. Checked with real git and with raw
 * POSTs that skip the advertisement, as a hostile client would.
 */
import path from 'node:path'
import t from 'tap'
import { encodeDelim, encodeFlush, encodePacket } from '../../src/protocol/pkt-line.js'
import { manualClock } from '../helpers/clock.js'
import { git, gitHome, gitOk } from '../helpers/git.js'
import { gitRequestLines } from '../helpers/log-sink.js'
import { startTestProxy } from '../helpers/proxy.js'
import { createBareRepo } from '../helpers/repo.js'
import { startTestUpstream } from '../helpers/upstream.js'

const basic = (user: string, pass: string): string => `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`

/** A v2 clone's fetch request, as git 2.39 sends it. */
function fetchBody(oid: string): Buffer {
  return Buffer.concat([
    encodePacket('command=fetch\n'),
    encodePacket('agent=git/2.39.5\n'),
    encodePacket('object-format=sha1\n'),
    encodeDelim(),
    encodePacket('thin-pack\n'),
    encodePacket('no-progress\n'),
    encodePacket('ofs-delta\n'),
    encodePacket(`want ${oid}\n`),
    encodePacket('done\n'),
    encodeFlush(),
  ])
}

void t.test('private repository: cached packs only for accepted credentials', async (t) => {
  const dir = t.testdir()
  const home = gitHome(dir)
  const secret = { username: 'alice', password: 'first-password' }
  const upstream = await startTestUpstream(t, dir, { basicAuth: (repo) => (repo === 'private.git' ? secret : null) })
  const bare = await createBareRepo(home, upstream.root, 'private.git', { commits: 3 })
  const oid = (await gitOk(home, ['-C', bare, 'rev-parse', 'main'])).trim()
  const clock = manualClock()
  const proxy = await startTestProxy(t, dir, upstream.url, { 'auth.ttl': '1' }, { now: clock.now })
  const host = new URL(proxy.url).host

  // Alice fills the cache.
  await gitOk(home, ['clone', '-q', `http://alice:${secret.password}@${host}/private.git`, path.join(dir, 'alice')])
  const post = (authorization: string | null): Promise<Response> =>
    fetch(`${proxy.url}/private.git/git-upload-pack`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-git-upload-pack-request',
        accept: 'application/x-git-upload-pack-result',
        'git-protocol': 'version=2',
        ...(authorization === null ? {} : { authorization }),
      },
      body: fetchBody(oid),
    })

  await t.test('git: anonymous and wrong password get the upstream\'s 401', async (t) => {
    const anon = await git(home, ['clone', `http://${host}/private.git`, path.join(dir, 'anon')])
    t.not(anon.code, 0)
    t.match(anon.stderr, /could not read Username/)
    const wrong = await git(home, ['clone', `http://alice:nope@${host}/private.git`, path.join(dir, 'wrong')])
    t.not(wrong.code, 0)
    t.match(wrong.stderr, /Authentication failed/)
  })

  await t.test('raw POST of a cached request without the advertisement first', async (t) => {
    const anon = await post(null)
    t.equal(anon.status, 401, 'anonymous: 401')
    t.match(anon.headers.get('www-authenticate') ?? '', /Basic realm/, 'with the upstream\'s WWW-Authenticate')
    t.notMatch(Buffer.from(await anon.arrayBuffer()).toString('latin1'), 'PACK', 'and no pack')

    const wrong = await post(basic('alice', 'nope'))
    t.equal(wrong.status, 401, 'wrong password: 401')
    await wrong.arrayBuffer()

    const good = await post(basic('alice', secret.password))
    t.equal(good.status, 200)
    t.match(Buffer.from(await good.arrayBuffer()).toString('latin1'), 'PACK', 'the right credential gets the pack')
    const hits = gitRequestLines(proxy.logs).filter((l) => l['cache'] === 'hit')
    t.ok(hits.length >= 1, 'from the cache')
  })

  await t.test('after auth.ttl the credential is checked again', async (t) => {
    secret.password = 'rotated-password'
    const stillCached = await post(basic('alice', 'first-password'))
    // Within the TTL the old acceptance still stands (by design, bounded by auth.ttl=1s).
    t.equal(stillCached.status, 200, 'within auth.ttl the earlier acceptance stands')
    await stillCached.arrayBuffer()
    clock.advance(1000)
    const stale = await post(basic('alice', 'first-password'))
    t.equal(stale.status, 401, 'the revoked password is refused after auth.ttl')
    await stale.arrayBuffer()
    const rotated = await post(basic('alice', 'rotated-password'))
    t.equal(rotated.status, 200, 'the new password works')
    await rotated.arrayBuffer()
  })
})
