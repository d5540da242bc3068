/**
 * AuthMemo (src/cache/auth-memo.ts): which credentials the upstream accepted
 * for which repository, for how long, and one upstream check at a time per
 * (repository, credential).
 *
 * Expiry runs on the injected clock: the TTL tests move it. A credential is
 * an opaque text here (service/access.ts makes it: '' is anonymous).
 */
import { setImmediate as tick } from 'node:timers/promises'
import t from 'tap'
import { AuthMemo } from '../../../src/cache/auth-memo.js'

const HOUR = 3_600_000
const REPO = 'group/app.git'
const BASIC = 'Basic dXNlcjpzZWNyZXQ='
/** service/access.ts's id of an anonymous request. */
const ANON = ''

/** Whether `p` has settled after the microtask queue and one macrotask have run. */
async function isSettled(p: Promise<unknown>): Promise<boolean> {
  let done = false
  void p.then(
    () => (done = true),
    () => (done = true),
  )
  await tick()
  return done
}

void t.test('accept, isAccepted, reject, clear', async (t) => {
  const memo = new AuthMemo({ ttlMs: HOUR })
  t.equal(memo.isAccepted(REPO, BASIC), false, 'nothing on record at first')
  memo.accept(REPO, BASIC)
  t.equal(memo.isAccepted(REPO, BASIC), true, 'accepted')
  memo.accept(REPO, BASIC)
  t.equal(memo.isAccepted(REPO, BASIC), true, 'accepting twice is harmless')
  memo.reject(REPO, BASIC)
  t.equal(memo.isAccepted(REPO, BASIC), false, 'rejected')
  memo.reject(REPO, BASIC)
  memo.reject('never/seen.git', ANON)
  t.pass('rejecting what is not on record is harmless')
  memo.accept(REPO, BASIC)
  memo.accept('other.git', ANON)
  memo.clear()
  t.equal(memo.isAccepted(REPO, BASIC), false, 'clear forgets everything')
  t.equal(memo.isAccepted('other.git', ANON), false)
})

void t.test('repositories and credentials are apart', async (t) => {
  const cases: { name: string; accepted: [string, string]; asked: [string, string]; same: boolean }[] = [
    { name: 'same repository and credential', accepted: [REPO, BASIC], asked: [REPO, BASIC], same: true },
    { name: 'another repository', accepted: [REPO, BASIC], asked: ['group/other.git', BASIC], same: false },
    { name: 'repository case', accepted: [REPO, BASIC], asked: ['Group/App.git', BASIC], same: false },
    { name: 'repository with and without .git', accepted: [REPO, BASIC], asked: ['group/app', BASIC], same: false },
    { name: 'another credential', accepted: [REPO, BASIC], asked: [REPO, 'Basic b3RoZXI6c2VjcmV0'], same: false },
    { name: 'credential case (Basic vs basic)', accepted: [REPO, BASIC], asked: [REPO, BASIC.replace('Basic', 'basic')], same: false },
    { name: 'credential with a trailing space', accepted: [REPO, BASIC], asked: [REPO, `${BASIC} `], same: false },
    { name: 'bearer vs basic of the same token', accepted: [REPO, 'Bearer abc'], asked: [REPO, 'Basic abc'], same: false },
    { name: 'anonymous, then anonymous', accepted: [REPO, ANON], asked: [REPO, ANON], same: true },
    { name: 'anonymous accepted, a credential asked', accepted: [REPO, ANON], asked: [REPO, BASIC], same: false },
    { name: 'a credential accepted, anonymous asked', accepted: [REPO, BASIC], asked: [REPO, ANON], same: false },
    { name: 'anonymous vs the word "anonymous"', accepted: [REPO, ANON], asked: [REPO, 'anonymous'], same: false },
    { name: 'anonymous vs "ANON"', accepted: [REPO, ANON], asked: [REPO, 'ANON'], same: false },
    // The fields are joined with NUL, which no repository path can hold
    // (toRepoPath refuses control characters); inputs that do hold one run
    // together. Pinned so that a change of encoding is a visible decision.
    { name: 'NUL-joined fields run together (unreachable)', accepted: ['a', 'b\0c'], asked: ['a\0b', 'c'], same: true },
  ]
  for (const c of cases) {
    const memo = new AuthMemo({ ttlMs: HOUR, max: 16 })
    memo.accept(...c.accepted)
    t.equal(memo.isAccepted(...c.asked), c.same, c.name)
    t.equal(await memo.settled(...c.asked), c.same, `${c.name} (settled)`)
  }
})

void t.test('reject forgets one (repository, credential) only', async (t) => {
  const memo = new AuthMemo({ ttlMs: HOUR })
  memo.accept(REPO, BASIC)
  memo.accept(REPO, ANON)
  memo.accept('other.git', BASIC)
  memo.reject(REPO, BASIC)
  t.equal(memo.isAccepted(REPO, BASIC), false)
  t.equal(memo.isAccepted(REPO, ANON), true, 'anonymous on the same repository stays')
  t.equal(memo.isAccepted('other.git', BASIC), true, 'the same credential on another repository stays')
})

void t.test('expiry after ttlMs on the injected clock', async (t) => {
  let now = 1_000_000
  const memo = new AuthMemo({ ttlMs: 1000, now: () => now })
  memo.accept(REPO, BASIC)
  t.equal(memo.isAccepted(REPO, BASIC), true, 'accepted at once')
  now += 999
  t.equal(memo.isAccepted(REPO, BASIC), true, 'still accepted 1 ms before the TTL')
  t.equal(await memo.settled(REPO, BASIC), true)
  now += 1
  t.equal(memo.isAccepted(REPO, BASIC), false, 'expired at the TTL')
  t.equal(await memo.settled(REPO, BASIC), false, 'settled says no once expired')
  memo.accept(REPO, BASIC)
  now += 999
  t.equal(memo.isAccepted(REPO, BASIC), true, 'a fresh acceptance starts a new TTL')
})

void t.test('a per-entry ttlMs overrides the memo TTL', async (t) => {
  let now = 0
  const memo = new AuthMemo({ ttlMs: 3_600_000, now: () => now })
  memo.accept(REPO, BASIC, 30)
  memo.accept(REPO, ANON)
  now += 30
  t.equal(memo.isAccepted(REPO, BASIC), false, 'the short entry expires')
  t.equal(memo.isAccepted(REPO, ANON), true, 'the entry on the memo TTL stays')

  const short = new AuthMemo({ ttlMs: 30, now: () => now })
  short.accept(REPO, BASIC, HOUR)
  short.accept(REPO, ANON)
  now += 30
  t.equal(short.isAccepted(REPO, ANON), false, 'the entry on the short memo TTL expires')
  t.equal(short.isAccepted(REPO, BASIC), true, 'the long per-entry TTL outlives it')
  short.accept('zero.git', ANON, 0)
  t.equal(short.isAccepted('zero.git', ANON), false, 'ttlMs 0 is over at once')
})

void t.test('max: the least recently used acceptance goes first', async (t) => {
  const memo = new AuthMemo({ ttlMs: HOUR, max: 2 })
  memo.accept('a.git', ANON)
  memo.accept('b.git', ANON)
  t.equal(memo.isAccepted('a.git', ANON), true, 'a is now the most recently used')
  memo.accept('c.git', ANON)
  t.equal(memo.isAccepted('b.git', ANON), false, 'b was evicted')
  t.equal(memo.isAccepted('a.git', ANON), true)
  t.equal(memo.isAccepted('c.git', ANON), true)
})

void t.test('beginCheck: one check per (repository, credential) at a time', async (t) => {
  const memo = new AuthMemo({ ttlMs: HOUR })
  const end = memo.beginCheck(REPO, BASIC)
  if (end === null) throw new Error('the first check must begin')
  t.equal(memo.beginCheck(REPO, BASIC), null, 'a second check of the same pair waits')
  const others: [string, string][] = [
    [REPO, ANON],
    [REPO, 'Basic b3RoZXI6c2VjcmV0'],
    ['group/other.git', BASIC],
  ]
  for (const [r, c] of others) {
    const e = memo.beginCheck(r, c)
    t.type(e, 'function', `a check of ${r} / ${JSON.stringify(c)} runs alongside`)
    e?.()
  }
  end()
  end()
  t.pass('ending twice is harmless')
  const again = memo.beginCheck(REPO, BASIC)
  t.type(again, 'function', 'once ended, a new check may begin')
  again?.()
  t.equal(memo.isAccepted(REPO, BASIC), false, 'beginning and ending a check records no verdict')
})

void t.test('settled: without a check it answers at once', async (t) => {
  const memo = new AuthMemo({ ttlMs: HOUR })
  t.equal(await memo.settled(REPO, BASIC), false, 'nothing on record')
  memo.accept(REPO, BASIC)
  t.equal(await memo.settled(REPO, BASIC), true, 'accepted')
  // Accepted and a check running: no wait.
  const end = memo.beginCheck(REPO, BASIC)
  t.equal(await isSettled(memo.settled(REPO, BASIC)), true, 'an accepted pair does not wait for a running check')
  end?.()
})

void t.test('concurrent checks wait for one verdict', async (t) => {
  const cases: { name: string; verdict: 'accept' | 'reject' | 'none'; want: boolean }[] = [
    { name: 'the upstream accepted', verdict: 'accept', want: true },
    { name: 'the upstream refused', verdict: 'reject', want: false },
    { name: 'the check ended without a verdict (say, upstream unreachable)', verdict: 'none', want: false },
  ]
  for (const c of cases) {
    const memo = new AuthMemo({ ttlMs: HOUR })
    const end = memo.beginCheck(REPO, BASIC)
    if (end === null) throw new Error('the first check must begin')
    // Twenty requests arrive while the first one asks the upstream.
    const waiters = Array.from({ length: 20 }, () => memo.settled(REPO, BASIC))
    const unrelated = memo.settled(REPO, ANON)
    t.equal(await isSettled(Promise.race(waiters)), false, `${c.name}: the waiters wait`)
    t.equal(await isSettled(unrelated), true, `${c.name}: another credential does not wait`)
    t.equal(memo.beginCheck(REPO, BASIC), null, `${c.name}: none of them starts a check`)
    if (c.verdict === 'accept') memo.accept(REPO, BASIC)
    if (c.verdict === 'reject') memo.reject(REPO, BASIC)
    end()
    t.same(await Promise.all(waiters), Array<boolean>(20).fill(c.want), `${c.name}: every waiter gets the verdict`)
  }
})

void t.test('waiters read the verdict when they wake, not when the check ends', async (t) => {
  const memo = new AuthMemo({ ttlMs: HOUR })
  const end = memo.beginCheck(REPO, BASIC)
  const waiter = memo.settled(REPO, BASIC)
  end?.()
  // Recorded just after the end, in the same tick: the waiter resumes in a
  // later microtask and so still sees it.
  memo.accept(REPO, BASIC)
  t.equal(await waiter, true, 'a same-tick accept after end() still counts')
  t.equal(memo.isAccepted(REPO, BASIC), true)
})

void t.test('acceptedWithin: the acceptance time counts beyond the TTL (outage mode); a refusal forgets it', (t) => {
  const clock = { now: 1_000_000 }
  const memo = new AuthMemo({ ttlMs: 300_000, now: () => clock.now })
  memo.accept('P/a.git', 'cred')
  clock.now += 301_000
  t.equal(memo.isAccepted('P/a.git', 'cred'), false, 'past auth.ttl')
  t.equal(memo.acceptedWithin('P/a.git', 'cred', 3_600_000), true, 'within auth.outage-ttl')
  t.equal(memo.acceptedWithin('P/b.git', 'cred', 3_600_000), false, 'another repository')
  t.equal(memo.acceptedWithin('P/a.git', 'other', 3_600_000), false, 'another credential')
  clock.now += 3_600_000
  t.equal(memo.acceptedWithin('P/a.git', 'cred', 3_600_000), false, 'past auth.outage-ttl')
  memo.accept('P/a.git', 'cred')
  memo.reject('P/a.git', 'cred')
  t.equal(memo.acceptedWithin('P/a.git', 'cred', 3_600_000), false, 'a refusal forgets it')
  t.end()
})
