/**
 * Gzip copies of hot ref entries, for clients that accept them. An
 * advertisement of thousands of refs is hex object ids and ref names, and
 * polling it is what costs a big repository's proxy and network the most:
 * gzip makes it 2-5x smaller. git (through curl), JGit and go-git send
 * `Accept-Encoding: gzip` and decode the answer themselves.
 *
 * The copy is made once per entry, in zlib's thread pool, on the first hit
 * that could use it; until it exists, and for clients that do not accept
 * gzip, the entry goes as it is. A copy lives as long as its entry's body
 * (see GzipCopies), so the store's hot budget bounds both.
 */
import Negotiator from 'negotiator'
import { gzip } from 'node:zlib'

/** Smaller answers go as they are: not worth a round of the client's inflate. */
export const GZIP_MIN_BYTES = 8 * 1024

/** A copy must save at least this fraction to be used. */
const MIN_SAVING = 0.1

type Variant = Buffer | 'pending' | 'identity'

/** Whether an `Accept-Encoding` header admits gzip (q > 0, or a `*` that does). */
export function acceptsGzip(acceptEncoding: string | string[] | undefined): boolean {
  if (acceptEncoding === undefined) return false
  const value = Array.isArray(acceptEncoding) ? acceptEncoding.join(', ') : acceptEncoding
  return new Negotiator({ headers: { 'accept-encoding': value } }).encoding(['gzip', 'identity']) === 'gzip'
}

/**
 * The copies, one per body, kept as long as the body (a WeakMap keyed by
 * it): the store's hot budget bounds both. One per HTTP front.
 */
export class GzipCopies {
  readonly #variants = new WeakMap<Buffer, Variant>()

  /**
   * The gzip copy of `body`, or undefined when there is none yet (this call
   * starts making it) or gzip does not pay for this body.
   */
  copyOf(body: Buffer): Buffer | undefined {
    const v = this.#variants.get(body)
    if (v !== undefined) return typeof v === 'string' ? undefined : v
    this.#variants.set(body, 'pending')
    gzip(body, (err, out) => {
      this.#variants.set(body, err === null && out.length <= body.length * (1 - MIN_SAVING) ? out : 'identity')
    })
    return undefined
  }

  /** What is known of `body`'s copy: none asked for yet, being made, made, or not worth it. */
  state(body: Buffer): 'none' | 'pending' | 'ready' | 'identity' {
    const v = this.#variants.get(body)
    return v === undefined ? 'none' : typeof v === 'string' ? v : 'ready'
  }
}
