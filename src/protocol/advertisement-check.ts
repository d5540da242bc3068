/**
 * A streaming check that an answer is a well-formed upload-pack ref
 * advertisement, and of which protocol version (DESIGN §3.1: only a real
 * Git answer proves access; §2: an answer is stored only under the version
 * the upstream actually spoke). Pure: bytes in, a verdict out.
 *
 *   http form, v0/v1:  # service=git-upload-pack  0000  [version 1]
 *                      <oid> <ref>\0<caps>  (<oid> <ref> | shallow <oid>)*  0000
 *   http form, v2:     version 2  <capability>+  0000
 *   ssh form:          the same without the `# service=` section
 *
 * Anything after the final flush, an `ERR` packet, a malformed packet or a
 * line that is none of these fails the check. `push()` never throws;
 * `finish()` reports the first problem.
 */
import { errorMessage, PktLineDecoder, packetText, type Packet } from './pkt-line.js'
import type { ProtocolVersion } from './git-protocol-header.js'
import { isObjectId } from './request-values.js'

type State = 'service' | 'service-flush' | 'version' | 'first-ref' | 'refs' | 'capabilities' | 'done'

export type AdvertisementVerdict = { ok: true; version: ProtocolVersion } | { ok: false; reason: string }

export class AdvertisementChecker {
  readonly #decoder = new PktLineDecoder()
  #state: State
  #version: ProtocolVersion = 0
  #failure: string | null = null

  /** `http`: the smart-HTTP body of `GET info/refs?service=git-upload-pack`; `ssh`: what upload-pack says first. */
  constructor(form: 'http' | 'ssh') {
    this.#state = form === 'http' ? 'service' : 'version'
  }

  push(chunk: Uint8Array): void {
    if (this.#failure !== null) return
    try {
      for (const packet of this.#decoder.push(chunk)) {
        if (!this.#step(packet)) return
      }
    } catch (err) {
      this.#failure = err instanceof Error ? err.message : String(err)
    }
  }

  finish(): AdvertisementVerdict {
    if (this.#failure !== null) return { ok: false, reason: this.#failure }
    if (this.#decoder.pending > 0) return { ok: false, reason: 'advertisement ends inside a packet' }
    if (this.#state !== 'done') return { ok: false, reason: 'advertisement ends before its final flush' }
    return { ok: true, version: this.#version }
  }

  #fail(reason: string): void {
    this.#failure ??= reason
  }

  /** False once the check has failed. */
  #step(packet: Packet): boolean {
    this.#advance(packet)
    return this.#failure === null
  }

  #advance(packet: Packet): void {
    if (this.#state === 'done') {
      this.#fail('data after the final flush')
      return
    }
    if (packet.kind === 'data') {
      const err = errorMessage(packet.payload)
      if (err !== null) {
        this.#fail(`upstream sent ERR: ${err.slice(0, 200)}`)
        return
      }
    }
    const text = packet.kind === 'data' ? packetText(packet.payload) : null
    switch (this.#state) {
      case 'service':
        if (text === '# service=git-upload-pack') this.#state = 'service-flush'
        else if (text === 'version 2') this.#beginV2()
        else this.#fail('not a git-upload-pack advertisement')
        return
      case 'service-flush':
        if (packet.kind === 'flush') this.#state = 'version'
        else this.#fail('no flush after the # service line')
        return
      case 'version':
        if (text === 'version 2') {
          this.#beginV2()
          return
        }
        if (text === 'version 1') {
          this.#version = 1
          this.#state = 'first-ref'
          return
        }
        this.#state = 'first-ref'
        this.#firstRef(packet, text)
        return
      case 'first-ref':
        this.#firstRef(packet, text)
        return
      case 'refs':
        this.#ref(packet, text)
        return
      case 'capabilities':
        if (packet.kind === 'flush') this.#state = 'done'
        else if (text === null || text === '' || text.includes('\0')) this.#fail('bad line in the capability advertisement')
        return
    }
  }

  #beginV2(): void {
    this.#version = 2
    this.#state = 'capabilities'
  }

  #firstRef(packet: Packet, text: string | null): void {
    if (packet.kind === 'flush') {
      // An empty advertisement (upload-pack of an empty repository with
      // nothing to say); git itself sends `capabilities^{}` instead.
      this.#state = 'done'
      return
    }
    const nul = text?.indexOf('\0') ?? -1
    if (text === null || nul < 0) {
      this.#fail('the first ref line carries no capabilities')
      return
    }
    this.#state = 'refs'
    this.#ref(packet, text.slice(0, nul))
  }

  #ref(packet: Packet, text: string | null): void {
    if (packet.kind === 'flush') {
      this.#state = 'done'
      return
    }
    if (text === null) {
      this.#fail(`unexpected ${packet.kind} packet in the ref list`)
      return
    }
    const space = text.indexOf(' ')
    const first = text.slice(0, space)
    const rest = text.slice(space + 1)
    const ok = space > 0 && rest !== '' && !rest.includes('\0') && (first === 'shallow' ? isObjectId(rest) : isObjectId(first))
    if (!ok) this.#fail('bad ref line in the advertisement')
  }
}
