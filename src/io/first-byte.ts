/** Waiting for a body's first byte before committing to an answer. */
import type { Readable } from 'node:stream'

/**
 * Wait until `body` has its first byte (or ends empty): resolves null, and
 * the data stays buffered in the stream for the pipeline that follows. If
 * it fails first, resolves with the error: nothing has been sent yet, so the
 * caller can still choose an HTTP status or a fallback.
 */
export function firstByte(body: Readable): Promise<Error | null> {
  return new Promise((resolve) => {
    const done = (err: Error | null): void => {
      body.off('readable', onReadable)
      body.off('error', onError)
      body.off('end', onEnd)
      resolve(err)
    }
    const onReadable = (): void => {
      done(null)
    }
    const onError = (err: Error): void => {
      done(err)
    }
    const onEnd = (): void => {
      done(null)
    }
    if (body.readableLength > 0 || body.readableEnded) {
      resolve(null)
      return
    }
    if (body.errored !== null) {
      resolve(body.errored)
      return
    }
    body.once('readable', onReadable)
    body.once('error', onError)
    body.once('end', onEnd)
  })
}
