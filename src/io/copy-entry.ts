/**
 * Copying a cache entry's body to a client (an HTTP response, an SSH
 * channel) so that its read buffers are reused.
 *
 * Through `pipeline`, every 64 KiB read of an entry is a new Buffer, and V8
 * frees such external memory only after tens of megabytes of it have piled
 * up: 32 clones streaming from the cache grew the proxy by ~60 MB. Here each
 * chunk goes back to its EntryReader once `dest` has written it (the write
 * callback: the socket, or ssh2's cipher, is done with the bytes), so a
 * transfer cycles through a few buffers.
 */
import type { Readable, Writable } from 'node:stream'
import { finished } from 'node:stream/promises'

/** A stream whose chunks can be handed back for reuse once written (the cache's entry readers). */
export interface RecyclingReadable extends Readable {
  recycle(chunk: Buffer): void
}

/**
 * Write `body` to `dest`, waiting for 'drain' when it asks, and end `dest`
 * when `end` is set. Resolves with the bytes written; rejects when the body
 * fails, `dest` closes or fails first, or `signal` fires, and the body is
 * destroyed then.
 */
export async function copyEntry(body: RecyclingReadable, dest: Writable, signal: AbortSignal, end: boolean): Promise<number> {
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
    for await (const chunk of body as AsyncIterable<Buffer>) {
      if (failed()) break
      bytes += chunk.length
      const more = dest.write(chunk, () => {
        body.recycle(chunk)
      })
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
