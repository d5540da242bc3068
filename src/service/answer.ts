import type { Readable } from 'node:stream'
import type { UpstreamResponse } from '../upstream/http.js'

/** What a cache service answers a front (upload-pack and refs alike). */
export type CacheAnswer =
  /** Not cacheable, or caching off: the caller streams the request through. */
  | { kind: 'pass'; reason: string }
  /** The upstream refused the credential: relay this response as is. */
  | { kind: 'refused'; response: UpstreamResponse }
  /** A body from the cache or a fill. */
  | { kind: 'body'; how: 'hit' | 'miss' | 'join'; body: Readable }
