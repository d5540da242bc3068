/**
 * Test certificates, made with the openssl command line at test time: a root
 * CA, an intermediate CA, and leaf certificates for 127.0.0.1 signed by the
 * intermediate, so the served file is a chain (leaf, then intermediate) that
 * a client trusting only the root accepts.
 */
import { execFileSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'

export interface TestPki {
  /** Root CA certificate (PEM file): what clients trust. */
  readonly caFile: string
  /** Make a leaf for 127.0.0.1/localhost; files `<name>.pem` (leaf + intermediate) and `<name>.key`. */
  leaf(name: string): TestLeaf
}

export interface TestLeaf {
  readonly certFile: string
  readonly keyFile: string
  /** The leaf's serial number, upper-case hex as node's `getPeerCertificate()` reports it. */
  readonly serial: string
}

export function hasOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

function openssl(dir: string, args: string[]): string {
  return execFileSync('openssl', args, { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
}

const KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes']

export function makePki(dir: string): TestPki {
  writeFileSync(
    path.join(dir, 'ext.cnf'),
    [
      '[ca]',
      'basicConstraints = critical, CA:TRUE, pathlen:0',
      'keyUsage = critical, keyCertSign, cRLSign',
      '[leaf]',
      'basicConstraints = critical, CA:FALSE',
      'keyUsage = critical, digitalSignature',
      'extendedKeyUsage = serverAuth',
      'subjectAltName = IP:127.0.0.1, DNS:localhost',
      '',
    ].join('\n'),
  )
  openssl(dir, [
    'req', '-x509', ...KEY, '-keyout', 'root.key', '-out', 'root.pem', '-days', '2', '-subj', '/CN=scm-cache test root',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ])
  openssl(dir, ['req', ...KEY, '-keyout', 'inter.key', '-out', 'inter.csr', '-subj', '/CN=scm-cache test intermediate'])
  openssl(dir, [
    'x509', '-req', '-in', 'inter.csr', '-CA', 'root.pem', '-CAkey', 'root.key', '-set_serial', '1',
    '-out', 'inter.pem', '-days', '2', '-extfile', 'ext.cnf', '-extensions', 'ca',
  ])
  let serial = 100
  return {
    caFile: path.join(dir, 'root.pem'),
    leaf(name) {
      serial++
      openssl(dir, ['req', ...KEY, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`])
      openssl(dir, [
        'x509', '-req', '-in', `${name}.csr`, '-CA', 'inter.pem', '-CAkey', 'inter.key', '-set_serial', String(serial),
        '-out', `${name}.leaf.pem`, '-days', '2', '-extfile', 'ext.cnf', '-extensions', 'leaf',
      ])
      const chain = readFileSync(path.join(dir, `${name}.leaf.pem`), 'utf8') + readFileSync(path.join(dir, 'inter.pem'), 'utf8')
      writeFileSync(path.join(dir, `${name}.pem`), chain)
      return {
        certFile: path.join(dir, `${name}.pem`),
        keyFile: path.join(dir, `${name}.key`),
        serial: serial.toString(16).toUpperCase().padStart(2, '0'),
      }
    },
  }
}
