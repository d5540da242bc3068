/**
 * A real OpenSSH sshd as the SSH upstream in tests (git-protocol-notes §8):
 * its own host key, config and authorized_keys, on a free loopback port, as
 * the current user, serving the bare repositories under `root` with the
 * login shell's `git-upload-pack '<path>'`. Every git process it runs logs
 * trace2 events into `trace2Dir`, so pack generations can be counted.
 * Killed at teardown.
 */
import { execFile, spawn } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'
import type { Test } from 'tap'
import { git, gitHome, gitOk, type GitResult } from './git.js'
import { freePort } from './proxy-process.js'
import { startTestProxy, type TestProxy } from './proxy.js'
import { startTestUpstream, type TestUpstream } from './upstream.js'

const execFileP = promisify(execFile)

export const SSHD = '/usr/sbin/sshd'

export interface TestSshd {
  port: number
  /** `ssh://user@127.0.0.1:port<root>`: the proxy's `upstream.ssh.url`. */
  url: string
  /** The proxy's private key towards this sshd. */
  proxyKey: string
  /** known_hosts file with this sshd's host key. */
  knownHosts: string
  close(): Promise<void>
}

/** A new ed25519 key pair at `file`; returns the public key line. */
export async function sshKeygen(file: string): Promise<string> {
  mkdirSync(path.dirname(file), { recursive: true })
  await execFileP('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', path.basename(file), '-f', file])
  return readFileSync(`${file}.pub`, 'utf8').trim()
}

export async function startTestSshd(t: Test, dir: string, opts: { root: string; trace2Dir: string }): Promise<TestSshd> {
  const base = path.join(dir, 'sshd')
  mkdirSync(base, { recursive: true })
  mkdirSync(opts.trace2Dir, { recursive: true })
  try {
    mkdirSync('/run/sshd', { recursive: true }) // sshd's privilege-separation directory
  } catch {
    // Not root: sshd then runs without privilege separation and needs none.
  }
  const hostKey = path.join(base, 'ssh_host_ed25519_key')
  const hostPub = await sshKeygen(hostKey)
  const proxyKey = path.join(base, 'proxy_key')
  const proxyPub = await sshKeygen(proxyKey)
  const authorizedKeys = path.join(base, 'authorized_keys')
  writeFileSync(authorizedKeys, `${proxyPub}\n`)
  const port = await freePort()
  const knownHosts = path.join(base, 'known_hosts')
  writeFileSync(knownHosts, `[127.0.0.1]:${port} ${hostPub.split(' ').slice(0, 2).join(' ')}\n`)
  const user = os.userInfo().username
  const setEnv = [
    `GIT_TRACE2_EVENT=${opts.trace2Dir}`,
    'GIT_CONFIG_NOSYSTEM=1',
    'GIT_CONFIG_GLOBAL=/dev/null',
    'GIT_CONFIG_COUNT=3',
    'GIT_CONFIG_KEY_0=uploadpack.allowFilter',
    'GIT_CONFIG_VALUE_0=true',
    'GIT_CONFIG_KEY_1=uploadpack.allowAnySHA1InWant',
    'GIT_CONFIG_VALUE_1=true',
    'GIT_CONFIG_KEY_2=safe.directory',
    'GIT_CONFIG_VALUE_2=*',
  ]
  const config = path.join(base, 'sshd_config')
  writeFileSync(
    config,
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${hostKey}`,
      'PidFile none',
      `AuthorizedKeysFile ${authorizedKeys}`,
      'StrictModes no',
      'UsePAM no',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PubkeyAuthentication yes',
      user === 'root' ? 'PermitRootLogin yes' : '',
      'AcceptEnv GIT_PROTOCOL',
      'MaxStartups 100:30:200',
      `SetEnv ${setEnv.join(' ')}`,
      'LogLevel ERROR',
      '',
    ].join('\n'),
  )
  let output = ''
  const child = spawn(SSHD, ['-D', '-e', '-f', config], { stdio: ['ignore', 'pipe', 'pipe'] })
  child.stdout.on('data', (c: Buffer) => (output += c.toString()))
  child.stderr.on('data', (c: Buffer) => (output += c.toString()))
  const exited = new Promise<void>((resolve) => child.once('exit', () => { resolve() }))
  const close = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM')
      await exited
    }
  }
  t.teardown(close)
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`sshd exited early:\n${output}`)
    if (await canConnect(port)) break
    if (i > 200) throw new Error(`sshd did not start:\n${output}`)
    await sleep(25)
  }
  return { port, url: `ssh://${user}@127.0.0.1:${port}${opts.root}`, proxyKey, knownHosts, close }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1')
    s.once('connect', () => {
      s.destroy()
      resolve(true)
    })
    s.once('error', () => { resolve(false) })
  })
}

/** GIT_SSH_COMMAND for a git client using `key` against the proxy's SSH front. */
export function gitSshCommand(key: string): string {
  const q = (s: string): string => `'${s.replace(/'/g, "'\\''")}'`
  return ['ssh', ...sshClientArgs(key)].map((a) => (a === key ? q(a) : a)).join(' ')
}

/** The OpenSSH client options for `key` against the proxy's SSH front. */
export function sshClientArgs(key: string): string[] {
  return ['-i', key, '-o', 'IdentitiesOnly=yes', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR']
}

/**
 * The SSH test bed: a real sshd upstream and a git http-backend upstream
 * over the same bare repositories (and the same trace2 folder, so pack
 * generations are counted across both), the proxy with its SSH front, and a
 * git client key in the proxy's authorized_keys.
 */
export interface SshBed {
  dir: string
  home: string
  upstream: TestUpstream
  sshd: TestSshd
  proxy: TestProxy
  /** The client key listed (without options) in the proxy's authorized_keys. */
  clientKey: string
  /** `ssh://git@127.0.0.1:<port>/<repo>` on the proxy's SSH front. */
  sshUrl(repo: string): string
  /** git with GIT_SSH_COMMAND using `key` (default: clientKey). */
  git(args: string[], opts?: { key?: string; cwd?: string }): Promise<GitResult>
  gitOk(args: string[], opts?: { key?: string; cwd?: string }): Promise<string>
}

export async function startSshBed(
  t: Test,
  opts: { settings?: Record<string, string>; extraKeys?: { name: string; options: string }[] } = {},
): Promise<SshBed & { keys: Record<string, string> }> {
  const dir = t.testdir()
  const home = gitHome(dir)
  const upstream = await startTestUpstream(t, dir)
  const sshd = await startTestSshd(t, dir, { root: upstream.root, trace2Dir: path.join(dir, 'trace2') })
  const clientKey = path.join(dir, 'keys', 'client')
  const lines = [await sshKeygen(clientKey)]
  const keys: Record<string, string> = {}
  for (const k of opts.extraKeys ?? []) {
    keys[k.name] = path.join(dir, 'keys', k.name)
    lines.push(`${k.options} ${await sshKeygen(keys[k.name] ?? '')}`)
  }
  const authorizedKeys = path.join(dir, 'keys', 'authorized_keys')
  writeFileSync(authorizedKeys, `# test keys\n${lines.join('\n')}\n`)
  const proxy = await startTestProxy(t, dir, upstream.url, {
    'upstream.ssh.url': sshd.url,
    'upstream.ssh.key': sshd.proxyKey,
    'upstream.ssh.known-hosts': sshd.knownHosts,
    'proxy.ssh.host': '127.0.0.1',
    'proxy.ssh.port': '0',
    'proxy.ssh.authorized-keys': authorizedKeys,
    ...opts.settings,
  })
  const front = proxy.proxy.sshUrl
  if (front === null) throw new Error('the SSH front did not start')
  const port = new URL(front).port
  const run = (args: string[], o: { key?: string; cwd?: string } = {}): Promise<GitResult> =>
    git(home, args, { env: { GIT_SSH_COMMAND: gitSshCommand(o.key ?? clientKey) }, ...(o.cwd === undefined ? {} : { cwd: o.cwd }) })
  return {
    dir,
    home,
    upstream,
    sshd,
    proxy,
    clientKey,
    keys,
    sshUrl: (repo) => `ssh://git@127.0.0.1:${port}/${repo}`,
    git: run,
    gitOk: async (args, o = {}) => {
      const r = await run(args, o)
      if (r.code !== 0) throw new Error(`git ${args.join(' ')} exited ${r.code}:\n${r.stderr}`)
      return r.stdout
    },
  }
}

/** Refs of a bare repository, as `ls-remote` prints them. */
export async function bareRefs(home: string, bare: string): Promise<string> {
  return gitOk(home, ['ls-remote', bare])
}
