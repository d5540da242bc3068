/**
 * A protocol v2 command request (gitprotocol-v2):
 *
 *   command=<cmd>           (among the capability lines; serve.c accepts it anywhere there)
 *   <capability>...         agent=, object-format=, session-id=, server-option=...
 *   0001                    optional when there are no arguments
 *   <argument>...
 *   0000
 *
 * A lone `0000` (or nothing) ends the session. Real git sends some lines
 * without the trailing LF (`command=fetch`, `thin-pack`); both forms are
 * accepted, and every returned line has its LF removed.
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

export interface CommandRequestV2 {
  command: string
  /** The lines before `0001`, without the `command=` line. */
  capabilities: string[]
  /** The lines between `0001` and `0000`. */
  args: string[]
}

function bad(message: string, offset?: number): ProtocolError {
  return new ProtocolError(
    'ERR_PROTOCOL_BAD_REQUEST',
    offset === undefined ? message : `${message} at offset ${offset}`,
    offset === undefined ? {} : { offset },
  )
}

/**
 * Parses one complete request. Returns null for an empty body or a lone
 * flush (end of session). Throws ProtocolError for a request without
 * `command=`, with two of them, without the final flush, with an empty line,
 * or with anything after the final flush.
 */
export function parseCommandRequestV2(body: Buffer): CommandRequestV2 | null {
  const framer = new PktLineFramer()
  framer.write(body)
  let command: string | null = null
  const capabilities: string[] = []
  const args: string[] = []
  let section: 'capabilities' | 'args' = 'capabilities'
  let end: Frame | null = null
  for (let frame = framer.next(); frame !== null; frame = framer.next()) {
    if (end !== null) throw bad('data after the final flush', frame.offset)
    if (frame.length === 0) {
      end = frame
      continue
    }
    if (frame.length === 1) {
      if (section === 'args') throw bad('second delim packet', frame.offset)
      section = 'args'
      continue
    }
    if (frame.length === 2) {
      throw bad('unexpected response-end packet', frame.offset)
    }
    const text = packetText(frame.raw.subarray(4))
    if (text === '') throw bad('empty line', frame.offset)
    if (section === 'args') {
      args.push(text)
    } else if (text.startsWith('command=')) {
      if (command !== null) {
        throw bad(`second command ${quoteLine(text)}`, frame.offset)
      }
      command = text.slice('command='.length)
      if (command === '') throw bad('empty command', frame.offset)
    } else {
      capabilities.push(text)
    }
  }
  if (framer.pending > 0) {
    throw new ProtocolError(
      'ERR_PROTOCOL_TRUNCATED',
      `request ended inside a pkt-line at offset ${framer.offset}`,
      { offset: framer.offset },
    )
  }
  const empty =
    command === null && capabilities.length === 0 && section === 'capabilities'
  // nothing at all, or a lone flush as the first and only packet
  if (empty && (framer.offset === 0 || end?.offset === 0)) return null
  if (end === null) {
    throw new ProtocolError(
      'ERR_PROTOCOL_TRUNCATED',
      'request does not end with a flush',
      {
        offset: framer.offset,
      },
    )
  }
  if (command === null) throw bad('request without command=')
  return { command, capabilities, args }
}

/** The values of the `server-option=` capability lines, in order. */
export function serverOptions(capabilities: string[]): string[] {
  const prefix = 'server-option='
  return capabilities
    .filter((c) => c.startsWith(prefix))
    .map((c) => c.slice(prefix.length))
}

export interface FetchArgsV2 {
  wants: string[]
  haves: string[]
  shallows: string[]
  deepen: number | null
  deepenSince: number | null
  deepenNot: string[]
  deepenRelative: boolean
  filter: string | null
  wantRefs: string[]
  done: boolean
  thinPack: boolean
  ofsDelta: boolean
  noProgress: boolean
  includeTag: boolean
  sidebandAll: boolean
  waitForDone: boolean
  /** The value of `packfile-uris <protocols>`. */
  packfileUris: string | null
  /** Argument lines this parser does not know, verbatim. */
  unknown: string[]
}

type FetchFlag =
  | 'done'
  | 'thinPack'
  | 'ofsDelta'
  | 'noProgress'
  | 'includeTag'
  | 'sidebandAll'
  | 'waitForDone'
  | 'deepenRelative'

const FETCH_FLAGS: ReadonlyMap<string, FetchFlag> = new Map([
  ['done', 'done'],
  ['thin-pack', 'thinPack'],
  ['ofs-delta', 'ofsDelta'],
  ['no-progress', 'noProgress'],
  ['include-tag', 'includeTag'],
  ['sideband-all', 'sidebandAll'],
  ['wait-for-done', 'waitForDone'],
  ['deepen-relative', 'deepenRelative'],
])

function splitArg(arg: string): [string, string | null] {
  const space = arg.indexOf(' ')
  return space < 0 ? [arg, null] : [arg.slice(0, space), arg.slice(space + 1)]
}

function badArg(arg: string, why: string): ProtocolError {
  return bad(`${why}: ${quoteLine(arg)}`)
}

function objectId(arg: string, value: string): string {
  if (!isObjectId(value)) throw badArg(arg, 'bad object id')
  return value
}

/**
 * The arguments of `command=fetch`. Throws ProtocolError for a malformed
 * known argument (bad object id, non-canonical depth, a second filter,
 * deepen together with deepen-since/deepen-not); unknown lines go to
 * `unknown`, for the caller to decide.
 */
export function parseFetchArgsV2(args: string[]): FetchArgsV2 {
  const out: FetchArgsV2 = {
    wants: [],
    haves: [],
    shallows: [],
    deepen: null,
    deepenSince: null,
    deepenNot: [],
    deepenRelative: false,
    filter: null,
    wantRefs: [],
    done: false,
    thinPack: false,
    ofsDelta: false,
    noProgress: false,
    includeTag: false,
    sidebandAll: false,
    waitForDone: false,
    packfileUris: null,
    unknown: [],
  }
  for (const arg of args) {
    const flag = FETCH_FLAGS.get(arg)
    if (flag !== undefined) {
      out[flag] = true
      continue
    }
    const [keyword, value] = splitArg(arg)
    if (value === null) {
      out.unknown.push(arg)
      continue
    }
    switch (keyword) {
      case 'want':
        out.wants.push(objectId(arg, value))
        break
      case 'have':
        out.haves.push(objectId(arg, value))
        break
      case 'shallow':
        out.shallows.push(objectId(arg, value))
        break
      case 'deepen': {
        const depth = parseDepth(value)
        if (depth === null) throw badArg(arg, 'bad depth')
        out.deepen = depth
        break
      }
      case 'deepen-since': {
        const t = parseTimestamp(value)
        if (t === null) throw badArg(arg, 'bad timestamp')
        out.deepenSince = t
        break
      }
      case 'deepen-not':
        if (value === '') throw badArg(arg, 'empty deepen-not')
        out.deepenNot.push(value)
        break
      case 'filter':
        if (value === '') throw badArg(arg, 'empty filter')
        if (out.filter !== null) throw badArg(arg, 'second filter')
        out.filter = value
        break
      case 'want-ref':
        if (value === '') throw badArg(arg, 'empty want-ref')
        out.wantRefs.push(value)
        break
      case 'packfile-uris':
        out.packfileUris = value
        break
      default:
        out.unknown.push(arg)
    }
  }
  if (
    out.deepen !== null &&
    (out.deepenSince !== null || out.deepenNot.length > 0)
  ) {
    throw bad('deepen and deepen-since (or deepen-not) cannot be used together')
  }
  return out
}

export interface LsRefsArgsV2 {
  symrefs: boolean
  peel: boolean
  unborn: boolean
  /** In order; `ref-prefix` narrows the answer but the server may send more. */
  refPrefixes: string[]
  unknown: string[]
}

/** The arguments of `command=ls-refs`; unknown lines go to `unknown`. */
export function parseLsRefsArgsV2(args: string[]): LsRefsArgsV2 {
  const out: LsRefsArgsV2 = {
    symrefs: false,
    peel: false,
    unborn: false,
    refPrefixes: [],
    unknown: [],
  }
  for (const arg of args) {
    if (arg === 'symrefs') out.symrefs = true
    else if (arg === 'peel') out.peel = true
    else if (arg === 'unborn') out.unborn = true
    else if (arg.startsWith('ref-prefix ')) {
      out.refPrefixes.push(arg.slice('ref-prefix '.length))
    } else out.unknown.push(arg)
  }
  return out
}
