/**
 * A cached answer's body as the fronts take it: written to a destination
 * (`copyTo`, reusing the cache's read buffers), or, when it is whole in
 * memory already (a hot ref entry), as one buffer (`whole`), so that a
 * cached poll is one write. No front tests what kind of stream it holds.
 */
import { Readable, type Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { EntryReader, WholeBody } from '../cache/entry-reader.js'
import { copyEntry } from '../io/copy-entry.js'

export interface CacheBody {
  /** The body as a stream, for waiting on its first byte or reading it in full. */
  readonly stream: Readable
  /** The whole body when it is held in memory (counted as delivered); else null. */
  whole(): Buffer | null
  /** Writes the body to `dest` (ending it with `end`); resolves with the bytes written. */
  copyTo(dest: Writable, signal: AbortSignal, end: boolean): Promise<number>
}

/** The body of a store answer. */
export function cacheBodyOf(stream: Readable): CacheBody {
  return {
    stream,
    whole: () => (stream instanceof WholeBody ? stream.takeWhole() : null),
    copyTo: async (dest, signal, end) => {
      if (stream instanceof EntryReader) return copyEntry(stream, dest, signal, end)
      let bytes = 0
      await pipeline(
        stream,
        async function* (source: AsyncIterable<Buffer>) {
          for await (const chunk of source) {
            bytes += chunk.length
            yield chunk
          }
        },
        dest,
        { signal, end },
      )
      return bytes
    },
  }
}

/** A body held in memory (a hot entry the store counted already). */
export function memoryBody(buf: Buffer): CacheBody {
  let stream: Readable | undefined
  return {
    get stream() {
      stream ??= Readable.from([buf])
      return stream
    },
    whole: () => buf,
    copyTo: async (dest, signal, end) => {
      await pipeline(Readable.from([buf]), dest, { signal, end })
      return buf.length
    },
  }
}
