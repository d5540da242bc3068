/**
 * What the cache services (upload-pack, refs) have in common: the request a
 * front hands them, the answer they give back, opening the store with a
 * fall-back to pass-through, and the checked fill.
 */
import type { Readable, Writable } from 'node:stream'
import { Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { CacheError } from '../errors.js'
import type { Log } from '../logger.js'
import type { CacheBody, CacheStoreApi, FillOutcome, OpenRequest } from '../cache/store-api.js'
import type { RepoPath } from '../repository.js'

export type { CacheBody } from '../cache/store-api.js'

/** What a cache service answers a front (upload-pack and refs alike). */
export type CacheAnswer =
  /** Not cacheable, or caching off: the caller streams the request through. */
  | { kind: 'pass'; reason: string }
  /** A body from the cache or a fill. */
  | { kind: 'body'; how: 'hit' | 'miss' | 'join'; body: CacheBody }

/**
 * The transport-specific half of a request, given by the front. The front
 * has proven the client's access to `repo` already (service/access.ts,
 * DESIGN §3.1): the services serve cached answers to whoever they are asked.
 */
export interface CacheRequestBase {
  repo: RepoPath
  /** Which front asks: caching can be switched off per front. */
  front: 'HTTP' | 'SSH'
  /**
   * Sends the request upstream and resolves with the answer body to store
   * (pkt-lines as the server sends them), or rejects (UpstreamStatusError
   * for an unusable answer). Called at most once, for a miss.
   */
  fetchUpstream: (signal: AbortSignal) => Promise<Readable>
}

/**
 * Open `req` in the store. A cache that is unusable (its directory, its
 * state) or not admitting new entries answers `pass`: the request is served
 * through (DESIGN §3.5).
 */
export async function openOrPass(store: CacheStoreApi, log: Log, req: OpenRequest): Promise<CacheAnswer> {
  let result
  try {
    result = await store.open(req)
  } catch (err) {
    if (!(err instanceof CacheError)) throw err
    log.warn({ repo: req.repo, err }, 'cache unusable: request passed through')
    return { kind: 'pass', reason: 'cache unusable' }
  }
  if (result.how === 'bypass') return { kind: 'pass', reason: 'cache not admitting new entries' }
  return { kind: 'body', how: result.how, body: result.body }
}

/** A streaming check of an answer: `push` returns the bytes to store. */
export interface AnswerChecker {
  push(chunk: Buffer): Buffer
  finish(): { ok: true } | { ok: false; reason: string }
}

/**
 * The fill: the upstream's answer through `checker` into `sink`. A complete
 * answer the checker refuses (an upstream ERR, a bad pack) still reaches its
 * clients whole; it is just not stored.
 */
export async function fillChecked(
  req: CacheRequestBase,
  checker: AnswerChecker,
  sink: Writable,
  signal: AbortSignal,
  log: Log,
  info?: Record<string, string>,
): Promise<FillOutcome> {
  const body = await req.fetchUpstream(signal)
  const check = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      cb(null, checker.push(chunk))
    },
  })
  await pipeline(body, check, sink, { signal })
  const verdict = checker.finish()
  if (!verdict.ok) {
    log.warn({ repo: req.repo, reason: verdict.reason }, 'answer not cached')
    return { commit: false, reason: verdict.reason, deliver: true }
  }
  return info === undefined ? { commit: true } : { commit: true, info }
}

/** `answer` with `extra` run after its own `finish` (whether that succeeded or not). */
export function withFinish<A extends { finish?: () => Promise<void> }>(answer: A, extra: () => void | Promise<void>): A {
  const own = answer.finish
  return {
    ...answer,
    finish: async () => {
      try {
        await own?.()
      } finally {
        await extra()
      }
    },
  }
}
