/**
 * The embedded upstream's Git LFS locks (git-lfs `docs/api/locking.md`):
 * create, list, verify and unlock, held in memory per repository, with
 * single-branch semantics (the `ref` is accepted and not used, as in the
 * spec's first version). No I/O: the LFS server reads and writes the JSON.
 */
import { randomUUID } from 'node:crypto'

export interface LfsLock {
  id: string
  path: string
  locked_at: string
  owner: { name: string }
}

export interface LocksAnswer {
  status: number
  body: Record<string, unknown>
}

const MAX_LIMIT = 100

export class LfsLocks {
  /** repository -> lock id -> lock, in creation order. */
  readonly #locks = new Map<string, Map<string, LfsLock>>()
  readonly #now: () => number

  constructor(now: () => number = Date.now) {
    this.#now = now
  }

  /**
   * Answer `<repo>.git/info/lfs/<path>`: `locks` (GET: list, POST: create),
   * `locks/verify` (POST) or `locks/<id>/unlock` (POST). `owner` is the
   * authenticated user's name; `body` the parsed JSON body (null for GET).
   */
  answer(repo: string, method: string, path: string, query: URLSearchParams, body: unknown, owner: string): LocksAnswer {
    const locks = this.#repo(repo)
    if (path === 'locks' && method === 'GET') return this.#list(locks, query)
    if (method !== 'POST') return { status: 405, body: { message: `${method} is not allowed here` } }
    const fields = isRecord(body) ? body : {}
    if (path === 'locks') return this.#create(locks, fields, owner)
    if (path === 'locks/verify') return this.#verify(locks, fields, owner)
    const unlock = /^locks\/([^/]+)\/unlock$/.exec(path)
    if (unlock?.[1] !== undefined) return this.#unlock(locks, decodeURIComponent(unlock[1]), fields, owner)
    return { status: 404, body: { message: 'Not found' } }
  }

  #list(locks: Map<string, LfsLock>, query: URLSearchParams): LocksAnswer {
    const path = query.get('path')
    const id = query.get('id')
    const matching = [...locks.values()].filter((l) => (path === null || path === '' || l.path === path) && (id === null || id === '' || l.id === id))
    const { items, next } = page(matching, query.get('cursor'), query.get('limit'))
    return { status: 200, body: { locks: items, ...nextCursor(next) } }
  }

  #create(locks: Map<string, LfsLock>, fields: Record<string, unknown>, owner: string): LocksAnswer {
    const path = fields['path']
    if (typeof path !== 'string' || path === '') return { status: 422, body: { message: 'path must be a non-empty string' } }
    const existing = [...locks.values()].find((l) => l.path === path)
    if (existing !== undefined) return { status: 409, body: { lock: existing, message: 'already created lock' } }
    const lock: LfsLock = {
      id: randomUUID(),
      path,
      locked_at: new Date(this.#now()).toISOString().replace(/\.\d{3}Z$/, 'Z'),
      owner: { name: owner },
    }
    locks.set(lock.id, lock)
    return { status: 201, body: { lock } }
  }

  #verify(locks: Map<string, LfsLock>, fields: Record<string, unknown>, owner: string): LocksAnswer {
    const cursor = typeof fields['cursor'] === 'string' ? fields['cursor'] : null
    const limit = typeof fields['limit'] === 'number' ? String(fields['limit']) : null
    const { items, next } = page([...locks.values()], cursor, limit)
    return {
      status: 200,
      body: {
        ours: items.filter((l) => l.owner.name === owner),
        theirs: items.filter((l) => l.owner.name !== owner),
        ...nextCursor(next),
      },
    }
  }

  #unlock(locks: Map<string, LfsLock>, id: string, fields: Record<string, unknown>, owner: string): LocksAnswer {
    const lock = locks.get(id)
    if (lock === undefined) return { status: 404, body: { message: 'Lock not found' } }
    if (lock.owner.name !== owner && fields['force'] !== true) {
      return { status: 403, body: { message: `lock is owned by ${lock.owner.name}; use force to delete it` } }
    }
    locks.delete(id)
    return { status: 200, body: { lock } }
  }

  #repo(repo: string): Map<string, LfsLock> {
    let locks = this.#locks.get(repo)
    if (locks === undefined) {
      locks = new Map()
      this.#locks.set(repo, locks)
    }
    return locks
  }
}

/** One page of `all` from the offset `cursor` (a decimal string), and the next page's cursor if any. */
function page(all: LfsLock[], cursor: string | null, limit: string | null): { items: LfsLock[]; next: string | null } {
  const start = cursor !== null && /^\d+$/.test(cursor) ? Number(cursor) : 0
  const wanted = limit !== null && /^\d+$/.test(limit) ? Number(limit) : MAX_LIMIT
  const end = start + Math.min(Math.max(wanted, 1), MAX_LIMIT)
  return { items: all.slice(start, end), next: end < all.length ? String(end) : null }
}

function nextCursor(next: string | null): { next_cursor?: string } {
  return next === null ? {} : { next_cursor: next }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}
