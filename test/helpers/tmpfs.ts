/**
 * A small, real file system for disk tests: tmpfs mounted (needs root, as
 * on CI) on a fresh folder under the system temp dir, unmounted and removed
 * at teardown. Call it before starting anything that writes to it, so its
 * teardown runs after theirs.
 */
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import type { Test } from 'tap'

export function mountTmpfs(t: Test, sizeBytes: number): string | null {
  const mnt = mkdtempSync(path.join(tmpdir(), 'scm-cache-tmpfs-'))
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeBytes}`, 'tmpfs', mnt], { stdio: 'pipe' })
  } catch {
    rmSync(mnt, { recursive: true, force: true })
    return null
  }
  t.teardown(() => {
    execFileSync('umount', ['-l', mnt], { stdio: 'pipe' })
    rmSync(mnt, { recursive: true, force: true })
  })
  return mnt
}

/** Whether this process may mount tmpfs (root, not in a locked-down container). */
export function canMountTmpfs(): boolean {
  const mnt = mkdtempSync(path.join(tmpdir(), 'scm-cache-tmpfs-probe-'))
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mnt], { stdio: 'pipe' })
    execFileSync('umount', [mnt], { stdio: 'pipe' })
    return true
  } catch {
    return false
  } finally {
    rmSync(mnt, { recursive: true, force: true })
  }
}
