import { readdirSync } from 'node:fs'
import path from 'node:path'

/** Files under `<cacheDir>/entries` or `<cacheDir>/tmp` (recursively; none if the folder is missing). */
export function cacheFiles(cacheDir: string, sub: 'entries' | 'tmp'): string[] {
  const out: string[] = []
  const walk = (d: string): void => {
    let entries
    try {
      entries = readdirSync(d, { withFileTypes: true })
    } catch {
      return
    }
    for (const e of entries) {
      if (e.isDirectory()) walk(path.join(d, e.name))
      else out.push(path.join(d, e.name))
    }
  }
  walk(path.join(cacheDir, sub))
  return out
}
