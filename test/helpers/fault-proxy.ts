/**
 * A small HTTP forwarder put between the proxy and the real upstream to
 * inject faults into upload-pack responses: throttle them, or cut the
 * connection after N bytes. Everything else is forwarded untouched.
 */
import http from 'node:http'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import type { Test } from 'tap'

export interface FaultPlan {
  /** Bytes per 50 ms tick for upload-pack POST responses; 0 = no throttle. */
  bytesPerTick: number
  /** Destroy the upload-pack response after this many bytes; null = never. */
  cutAfter: number | null
  /** How many upload-pack responses the plan applies to (then it stops). */
  times: number
}

export interface FaultProxy {
  url: string
  plan: FaultPlan
  /** pack-carrying upload-pack responses started so far */
  uploadPacks: number
}

export async function startFaultProxy(t: Test, upstreamUrl: string, plan: FaultPlan): Promise<FaultProxy> {
  const target = new URL(upstreamUrl)
  const state: FaultProxy = { url: '', plan, uploadPacks: 0 }
  const server = http.createServer((req, res) => {
    const isUploadPack = req.method === 'POST' && (req.url ?? '').endsWith('/git-upload-pack')
    let bodyHead = ''
    const up = http.request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
      (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers)
        // A pack is asked for by v2 `command=fetch` or a v0/v1 body with wants (not ls-refs).
        const isPack = isUploadPack && !bodyHead.includes('command=ls-refs') && bodyHead.includes('want ')
        const faulty = isPack && state.plan.times > 0
        if (isPack) state.uploadPacks++
        if (!faulty) {
          upRes.on('data', (c: Buffer) => res.write(c))
          upRes.on('end', () => res.end())
          return
        }
        state.plan.times--
        const { bytesPerTick, cutAfter } = state.plan
        let sent = 0
        const queue: Buffer[] = []
        let ended = false
        upRes.on('data', (c: Buffer) => queue.push(c))
        upRes.on('end', () => { ended = true })
        const tick = setInterval(() => {
          let budget = bytesPerTick > 0 ? bytesPerTick : Number.MAX_SAFE_INTEGER
          while (budget > 0 && queue.length > 0) {
            const head = queue[0]!
            const take = head.subarray(0, Math.min(budget, cutAfter === null ? budget : cutAfter - sent))
            if (take.length === 0) break
            res.write(take)
            sent += take.length
            budget -= take.length
            if (take.length === head.length) queue.shift()
            else queue[0] = head.subarray(take.length)
          }
          if (cutAfter !== null && sent >= cutAfter) {
            clearInterval(tick)
            res.socket?.destroy()
            upRes.destroy()
            return
          }
          if (ended && queue.length === 0) {
            clearInterval(tick)
            res.end()
          }
        }, 50)
        res.on('close', () => { clearInterval(tick) })
      },
    )
    up.on('error', () => res.destroy())
    req.on('data', (c: Buffer) => {
      if (bodyHead.length < 65536) bodyHead += c.toString('latin1')
      up.write(c)
    })
    req.on('end', () => up.end())
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  t.teardown(async () => {
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => { resolve() }))
  })
  return state
}
