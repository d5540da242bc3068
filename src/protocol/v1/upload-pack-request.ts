/**
 * The client's side of a v0/v1 upload-pack exchange (gitprotocol-pack): the
 * body of a smart-HTTP `POST git-upload-pack`, or everything the client sends
 * over ssh after the advertisement.
 *
 *   want <oid>[ <capabilities>]     first want carries the capability list
 *   want <oid> ...
 *   shallow <oid> / deepen <n> / deepen-since <t> / deepen-not <rev> / filter <spec>
 *   0000
 *   have <oid> ... 0000 have <oid> ...   blocks separated by flushes
 *   done
 *
 * Real git sends some lines without the trailing LF (`deepen 1`); both forms
 * are accepted. Any line upload-pack would reject is a ProtocolError
 * (`ERR_PROTOCOL_BAD_REQUEST`) naming the line and its byte offset.
 */
import { ProtocolError } from '../../errors.js'
import { PktLineFramer, packetText } from '../pkt-line.js'
import type { Frame } from '../pkt-line.js'
import {
  isObjectId,
  parseDepth,
  parseTimestamp,
  quoteLine,
} from '../request-values.js'

export interface UploadPackRequestV1 {
  /** In the order received, duplicates kept. */
  wants: string[]
  /**
   * The words after the first want's oid. upload-pack honours capability
   * words on any want line; words on later lines (git never sends them) are
   * appended here so that nothing that changes the response goes unseen.
   */
  capabilities: string[]
  shallows: string[]
  deepen: number | null
  deepenSince: number | null
  deepenNot: string[]
  /** The `deepen-relative` capability (or, leniently, a `deepen-relative` line). */
  deepenRelative: boolean
  filter: string | null
  /** In the order received, across all blocks. */
  haves: string[]
  /** A `done` line ended the request. */
  done: boolean
  /** The want section was closed by a flush (false for an empty or cut-off body). */
  flushesAfterWants: boolean
  /**
   * Flushes after the one that closed the want section. A stateless
   * upload-pack answers the first of them and exits, so a cacheable
   * negotiation round has exactly one (and no `done`).
   */
  haveFlushes: number
}

type State = 'wants' | 'haves' | 'done' | 'empty'

function badLine(frame: Frame, text: string, why: string): ProtocolError {
  return new ProtocolError(
    'ERR_PROTOCOL_BAD_REQUEST',
    `${why} at offset ${frame.offset}: ${quoteLine(text)}`,
    { offset: frame.offset },
  )
}

function badPacket(frame: Frame, why: string): ProtocolError {
  return new ProtocolError(
    'ERR_PROTOCOL_BAD_REQUEST',
    `${why} at offset ${frame.offset}`,
    {
      offset: frame.offset,
    },
  )
}

/** `rest` of `<keyword> <rest>`, or null if `text` is not that keyword with a value. */
function valueOf(text: string, keyword: string): string | null {
  return text.startsWith(`${keyword} `) ? text.slice(keyword.length + 1) : null
}

export function parseUploadPackRequestV1(body: Buffer): UploadPackRequestV1 {
  const req: UploadPackRequestV1 = {
    wants: [],
    capabilities: [],
    shallows: [],
    deepen: null,
    deepenSince: null,
    deepenNot: [],
    deepenRelative: false,
    filter: null,
    haves: [],
    done: false,
    flushesAfterWants: false,
    haveFlushes: 0,
  }
  const framer = new PktLineFramer()
  framer.write(body)
  let state: State = 'wants'
  for (let frame = framer.next(); frame !== null; frame = framer.next()) {
    if (state === 'done' || state === 'empty') {
      throw badPacket(
        frame,
        state === 'done'
          ? 'data after "done"'
          : 'data after an empty want list',
      )
    }
    if (frame.length === 1 || frame.length === 2) {
      throw badPacket(
        frame,
        `unexpected ${frame.length === 1 ? 'delim' : 'response-end'} packet`,
      )
    }
    if (frame.length === 0) {
      if (state === 'wants') {
        req.flushesAfterWants = true
        state = req.wants.length === 0 ? 'empty' : 'haves'
      } else {
        req.haveFlushes++
      }
      continue
    }
    const text = packetText(frame.raw.subarray(4))
    state =
      state === 'wants'
        ? wantSectionLine(req, frame, text)
        : haveSectionLine(req, frame, text)
  }
  if (framer.pending > 0) {
    throw new ProtocolError(
      'ERR_PROTOCOL_TRUNCATED',
      `request ended inside a pkt-line at offset ${framer.offset}`,
      { offset: framer.offset },
    )
  }
  if (
    req.deepen !== null &&
    (req.deepenSince !== null || req.deepenNot.length > 0)
  ) {
    throw new ProtocolError(
      'ERR_PROTOCOL_BAD_REQUEST',
      'deepen and deepen-since (or deepen-not) cannot be used together',
    )
  }
  return req
}

function wantSectionLine(
  req: UploadPackRequestV1,
  frame: Frame,
  text: string,
): State {
  const want = valueOf(text, 'want')
  if (want !== null) {
    const space = want.indexOf(' ')
    const oid = space < 0 ? want : want.slice(0, space)
    if (!isObjectId(oid)) {
      throw badLine(frame, text, 'bad object id in want line')
    }
    req.wants.push(oid)
    if (space >= 0) {
      for (const word of want.slice(space + 1).split(' ')) {
        if (word !== '') req.capabilities.push(word)
      }
    }
    if (req.capabilities.includes('deepen-relative')) req.deepenRelative = true
    return 'wants'
  }
  const shallow = valueOf(text, 'shallow')
  if (shallow !== null) {
    if (!isObjectId(shallow)) {
      throw badLine(frame, text, 'bad object id in shallow line')
    }
    req.shallows.push(shallow)
    return 'wants'
  }
  const deepen = valueOf(text, 'deepen')
  if (deepen !== null) {
    const depth = parseDepth(deepen)
    if (depth === null) throw badLine(frame, text, 'bad deepen line')
    req.deepen = depth
    return 'wants'
  }
  const since = valueOf(text, 'deepen-since')
  if (since !== null) {
    const t = parseTimestamp(since)
    if (t === null) throw badLine(frame, text, 'bad deepen-since line')
    req.deepenSince = t
    return 'wants'
  }
  const not = valueOf(text, 'deepen-not')
  if (not !== null) {
    if (not === '') throw badLine(frame, text, 'bad deepen-not line')
    req.deepenNot.push(not)
    return 'wants'
  }
  if (text === 'deepen-relative') {
    req.deepenRelative = true
    return 'wants'
  }
  const filter = valueOf(text, 'filter')
  if (filter !== null) {
    if (filter === '') throw badLine(frame, text, 'bad filter line')
    if (req.filter !== null) throw badLine(frame, text, 'second filter line')
    req.filter = filter
    return 'wants'
  }
  if (text === 'done' || text.startsWith('have ')) {
    throw badLine(
      frame,
      text,
      'have/done before the flush that ends the want list',
    )
  }
  throw badLine(frame, text, 'unexpected line in the want list')
}

function haveSectionLine(
  req: UploadPackRequestV1,
  frame: Frame,
  text: string,
): State {
  const have = valueOf(text, 'have')
  if (have !== null) {
    if (!isObjectId(have)) {
      throw badLine(frame, text, 'bad object id in have line')
    }
    req.haves.push(have)
    return 'haves'
  }
  if (text === 'done') {
    req.done = true
    return 'done'
  }
  throw badLine(frame, text, 'unexpected line in the have list')
}
