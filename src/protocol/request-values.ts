/**
 * Value checks shared by the v0/v1 and v2 request parsers.
 *
 * The parsers feed cache keys, so they accept only the canonical spelling of
 * each value: upload-pack reads `deepen 010` as 8 (strtol base 0) and
 * `deepen 4294967297` as 1 (int truncation); a key built from a looser parse
 * could then match a response made for another depth.
 */

const OBJECT_ID = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/
const DECIMAL = /^(?:0|[1-9][0-9]*)$/
/** upload-pack stores the depth in an int. */
export const MAX_DEPTH = 2147483647

/** 40 (sha1) or 64 (sha256) lowercase hex digits. */
export function isObjectId(value: string): boolean {
  return OBJECT_ID.test(value)
}

/** The depth of `deepen <n>`, or null unless `value` is a canonical decimal from 1 to 2^31-1. */
export function parseDepth(value: string): number | null {
  if (!DECIMAL.test(value)) return null
  const n = Number(value)
  return n >= 1 && n <= MAX_DEPTH ? n : null
}

/** The epoch seconds of `deepen-since <t>`, or null unless `value` is a canonical decimal. */
export function parseTimestamp(value: string): number | null {
  if (!DECIMAL.test(value)) return null
  const n = Number(value)
  return Number.isSafeInteger(n) ? n : null
}

/** `text` cut to `max` characters for an error message, quoted and escaped. */
export function quoteLine(text: string, max = 100): string {
  return JSON.stringify(text.length > max ? `${text.slice(0, max)}…` : text)
}
