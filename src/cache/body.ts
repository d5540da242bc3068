/**
 * The body the store hands out for a hit, a miss or a join: whoever sends
 * it calls its methods, and never asks what kind of body it is.
 *
 * Copying to a client (an HTTP response, an SSH channel) goes through
 * `copyTo`, which reuses a file body's read buffers. Through `pipeline`,
 * every 64 KiB read of an entry is a new Buffer, and V8 frees such external
 * memory only after tens of megabytes of it have piled up: 32 clones
 * streaming from the cache grew the proxy by ~60 MB. Here each chunk goes
 * back to its reader once `dest` has written it (the write callback: the
 * socket, or ssh2's cipher, is done with the bytes), so a transfer cycles
 * through a few buffers.
 *
 * A body is used one way: `whole()`, `copyTo()`, or reading `stream`
 * (waiting for its first byte on `stream` is fine before any of them). A
 * body that is never read to the end must be destroyed (`stream.destroy()`):
 * it holds an fd until then.
 */
import { Readable, type Writable } from 'node:stream'
import { finished, pipeline } from 'node:stream/promises'

export interface CacheBody {
  /**
   * Writes the body to `dest`, waiting for 'drain' when it asks, and ends
   * `dest` when `end` is set. Resolves with the bytes written; rejects when
   * the body fails, `dest` closes or fails first, or `signal` fires, and
   * the body is destroyed then.
   */
  copyTo(dest: Writable, signal: AbortSignal, end: boolean): Promise<number>
  /**
   * The whole body when it is held in memory (a small, hot entry), counted
   * as delivered, and the stream is closed (asking again gives the same
   * buffer); null for a body read from a file (nothing happens then). One
   * write instead of a stream per request is what keeps a cached poll
   * cheap.
   */
  whole(): Buffer | null
  /** The body as a stream: for waiting on its first byte, or for the few callers that parse it. */
  readonly stream: Readable
}

/**
 * A body held in memory that the store has counted already (`hotHit`): no
 * stream unless one is asked for, so that a cached poll is one buffer.
 */
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

/**
 * The copy behind `CacheBody.copyTo`, for a body that is a Readable of
 * Buffers. `recycle` gets each chunk back once `dest` has written it.
 */
export async function copyReadable(
  body: Readable,
  dest: Writable,
  signal: AbortSignal,
  end: boolean,
  recycle?: (chunk: Buffer) => void,
): Promise<number> {
  // Set from event handlers: a property, so that narrowing does not assume it stays null across awaits.
  const state: { failure: Error | null; wake: (() => void) | null; ended: boolean } = { failure: null, wake: null, ended: false }
  const failed = (): boolean => state.failure !== null
  const fail = (err: Error): void => {
    state.failure ??= err
    body.destroy()
    state.wake?.()
  }
  const onAbort = (): void => {
    fail(signal.reason instanceof Error ? signal.reason : new Error('aborted'))
  }
  const onClose = (): void => {
    // Not `writableFinished`: a socket whose peer went away ends itself.
    if (!state.ended) fail(new Error('the client connection closed'))
  }
  const onError = (err: Error): void => {
    fail(err)
  }
  const onDrain = (): void => {
    state.wake?.()
  }
  signal.addEventListener('abort', onAbort)
  dest.on('close', onClose)
  dest.on('error', onError)
  dest.on('drain', onDrain)
  let bytes = 0
  try {
    if (signal.aborted) onAbort()
    // A body's chunks are Buffers: entry readers and whole bodies push nothing else.
    for await (const chunk of body as AsyncIterable<Buffer>) {
      if (failed()) break
      bytes += chunk.length
      const more = dest.write(
        chunk,
        recycle === undefined
          ? undefined
          : () => {
              recycle(chunk)
            },
      )
      if (!more && !failed()) {
        await new Promise<void>((resolve) => {
          state.wake = resolve
        })
        state.wake = null
      }
    }
    if (state.failure !== null) throw state.failure
    if (end) {
      state.ended = true
      dest.end()
      await finished(dest)
    }
    return bytes
  } catch (err) {
    body.destroy()
    throw state.failure ?? err
  } finally {
    signal.removeEventListener('abort', onAbort)
    dest.off('close', onClose)
    dest.off('error', onError)
    dest.off('drain', onDrain)
  }
}
