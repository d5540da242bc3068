/** A real upstream for tests: `git http-backend` behind the embedded upstream server. */
import { mkdirSync } from 'node:fs'
import path from 'node:path'
import type { Test } from 'tap'
import {
  countPackObjects,
  startEmbeddedUpstream,
  type UpstreamRequestRecord,
} from '../../src/upstream/embedded.js'
import type { LfsFault, LfsRequestNote } from '../../src/upstream/embedded-lfs.js'
import { gunzipSync } from 'node:zlib'

export interface TestUpstream {
  url: string
  root: string
  requests: UpstreamRequestRecord[]
  /** `git pack-objects` runs so far: the upstream's pack generations. */
  packObjects(): Promise<number>
  /** Upload-pack POSTs that asked for a pack (v0/v1 `want` ... `done`, or v2 `command=fetch`). */
  fetchPosts(): UpstreamRequestRecord[]
  /** Git LFS requests so far, or those to one endpoint (`batch`, `download`, `upload`, `verify`, `locks`). */
  lfsRequests(endpoint?: LfsRequestNote['endpoint']): UpstreamRequestRecord[]
  close(): Promise<void>
}

export async function startTestUpstream(
  t: Test,
  dir: string,
  opts: {
    basicAuth?: (repo: string) => { username: string; password: string } | null
    /** A fault to serve on an LFS object download (called per download, so a test can change its answer). */
    lfsFault?: (repo: string, oid: string) => LfsFault | null
  } = {},
): Promise<TestUpstream> {
  const root = path.join(dir, 'upstream')
  const trace2Dir = path.join(dir, 'trace2')
  mkdirSync(root, { recursive: true })
  mkdirSync(trace2Dir, { recursive: true })
  const requests: UpstreamRequestRecord[] = []
  const server = await startEmbeddedUpstream({
    root,
    trace2Dir,
    onRequest: (rec) => requests.push(rec),
    ...(opts.basicAuth === undefined ? {} : { basicAuth: opts.basicAuth }),
    ...(opts.lfsFault === undefined ? {} : { lfsFault: opts.lfsFault }),
  })
  let closed = false
  const close = async (): Promise<void> => {
    if (closed) return
    closed = true
    await server.close()
  }
  t.teardown(close)
  return {
    url: server.url,
    root,
    requests,
    packObjects: () => countPackObjects(trace2Dir),
    fetchPosts: () =>
      requests.filter((r) => {
        if (r.method !== 'POST' || !r.url.endsWith('/git-upload-pack')) return false
        const body = decodedBody(r)
        return body.includes('command=fetch') || body.includes('want ')
      }),
    lfsRequests: (endpoint) => requests.filter((r) => r.lfs !== null && (endpoint === undefined || r.lfs.endpoint === endpoint)),
    close,
  }
}

export function decodedBody(r: UpstreamRequestRecord): string {
  try {
    return (r.contentEncoding === 'gzip' ? gunzipSync(r.bodyHead) : r.bodyHead).toString('latin1')
  } catch {
    return r.bodyHead.toString('latin1')
  }
}
