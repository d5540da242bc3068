/** Waiting for a condition, with a deadline: tests never sleep a fixed time for the proxy. */
import { setTimeout as sleep } from 'node:timers/promises'

/** Resolves once `cond` holds; rejects naming `what` after `ms`. */
export async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const deadline = performance.now() + ms
  for (;;) {
    if (await cond()) return
    if (performance.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await sleep(10)
  }
}
