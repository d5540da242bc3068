/**
 * The SSH front's host key: `proxy.ssh.host-key`, or an ed25519 key
 * generated once and kept as `<cache.dir>/ssh_host_ed25519_key` (0600).
 */
import { constants } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { link, mkdir, open, readFile, unlink } from 'node:fs/promises'
import path from 'node:path'
import ssh2 from 'ssh2'
import { ConfigError } from '../errors.js'
import type { Log } from '../logger.js'

// ssh2 is CommonJS: its exports are properties of the default export under ESM.
const { utils } = ssh2

export const HOST_KEY_FILE = 'ssh_host_ed25519_key'

/**
 * An ed25519 key pair in OpenSSH format that ssh2 itself can read back.
 * ssh2 1.17's generateKeyPairSync drops a leading zero byte of the 32-byte
 * public key (one key in 256), writing a key that its own parser (and
 * OpenSSH) refuse as malformed: such a pair is thrown away and made again.
 */
export function generateEd25519KeyPair(): { private: string; public: string } {
  for (;;) {
    const pair = utils.generateKeyPairSync('ed25519')
    if (!(utils.parseKey(pair.private) instanceof Error) && !(utils.parseKey(pair.public) instanceof Error)) return pair
  }
}

/**
 * The configured host key, or the one generated under `cacheDir` (created on
 * first use). The generated key appears whole or not at all: it is written
 * to a temporary file and linked into place, which never replaces a key
 * another process (a second node on the same directory, a restart racing a
 * start) put there first; whichever won is read back and used by both.
 */
export async function loadHostKey(configured: string | null, cacheDir: string, log: Log): Promise<Buffer> {
  if (configured !== null) {
    const key = await readFile(configured).catch((err: unknown) => {
      throw new ConfigError(`proxy.ssh.host-key: cannot read ${configured}`, { cause: err })
    })
    const parsed = utils.parseKey(key)
    if (parsed instanceof Error) throw new ConfigError(`proxy.ssh.host-key: ${configured} is not a private key: ${parsed.message}`)
    return key
  }
  const file = path.join(cacheDir, HOST_KEY_FILE)
  const existing = await readExistingKey(file, log)
  if (existing !== null) return existing
  const pair = generateEd25519KeyPair()
  try {
    await mkdir(cacheDir, { recursive: true })
    if (await publishOnce(file, pair.private, 0o600)) {
      await publishOnce(`${file}.pub`, `${pair.public}\n`, 0o644)
      log.info({ file }, 'generated the SSH front host key')
    }
    // Else another process made it first: use theirs.
    return (await readExistingKey(file, log)) ?? Buffer.from(pair.private)
  } catch (err) {
    // DESIGN §3.5: an unwritable cache directory must not stop Git. The
    // key lives until the next restart; clients will see it change then.
    log.warn({ err, file }, 'cannot keep the SSH front host key: using a temporary one')
    return Buffer.from(pair.private)
  }
}

/** The key file's contents; null when there is none. One that does not parse is not used (logged). */
async function readExistingKey(file: string, log: Log): Promise<Buffer | null> {
  let key: Buffer
  try {
    key = await readFile(file)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null // readFile fails with a system error
    throw err
  }
  if (!(utils.parseKey(key) instanceof Error)) return key
  log.error({ file }, 'the SSH front host key file is not a private key: using a temporary key (remove the file to have a new one kept)')
  return Buffer.from(generateEd25519KeyPair().private)
}

/**
 * Writes `data` to `file` unless it exists: a temporary file, synced, then
 * linked into place (link(2) fails with EEXIST instead of replacing). True
 * when this call created `file`.
 */
async function publishOnce(file: string, data: string, mode: number): Promise<boolean> {
  const tmp = `${file}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`
  try {
    const fh = await open(tmp, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, mode)
    try {
      await fh.writeFile(data)
      await fh.sync()
    } finally {
      await fh.close()
    }
    await link(tmp, file)
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false // fs calls fail with system errors
    throw err
  } finally {
    await unlink(tmp).catch(() => undefined)
  }
}

