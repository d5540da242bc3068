/**
 * The path parameters of the REST API: one schema each (validating the
 * request and describing it in openapi.json), and the sentence a caller
 * gets when a value is refused, in the config loader's words.
 */
import type { JSONSchema } from 'json-schema-to-ts'
import { MAX_SECONDS, PROTOCOLS } from '../config/validators.js'
import type { Protocol } from '../config/load.js'
import { badValue } from './errors.js'

/** What each parameter allows, phrased to follow "is not allowed: ". */
export const PARAM_RULES = Object.freeze({
  protocol: 'HTTP or SSH (any case)',
  status: 'true or false (any case)',
  expiryInSec: `whole seconds from 1 to ${MAX_SECONDS}`,
})

export type ParamName = keyof typeof PARAM_RULES

export const ProtocolParams = {
  type: 'object',
  required: ['protocol'],
  properties: {
    protocol: { type: 'string', pattern: '^(?:[Hh][Tt][Tt][Pp]|[Ss][Ss][Hh])$', description: PARAM_RULES.protocol },
  },
} as const satisfies JSONSchema

export const StatusParams = {
  type: 'object',
  required: ['status'],
  properties: {
    status: { type: 'string', pattern: '^(?:[Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee])$', description: PARAM_RULES.status },
  },
} as const satisfies JSONSchema

/** Digits only here; the range is checked by the config validator, as for the file. */
export const TtlParams = {
  type: 'object',
  required: ['expiryInSec'],
  properties: {
    expiryInSec: { type: 'string', pattern: '^[0-9]{1,16}$', description: PARAM_RULES.expiryInSec, examples: ['3600'] },
  },
} as const satisfies JSONSchema

export const RepoParams = {
  type: 'object',
  required: ['projectKey', 'repoSlug'],
  properties: {
    projectKey: {
      type: 'string',
      minLength: 1,
      description: 'the repository path before its last segment; for nested groups it holds slashes (/caches/group/sub/app)',
    },
    repoSlug: { type: 'string', minLength: 1, description: 'the last segment of the repository path, without .git' },
  },
} as const satisfies JSONSchema

/** `/caches/*`: nested project keys and root-level repositories. */
export const RepoPathParams = {
  type: 'object',
  required: ['*'],
  properties: { '*': { type: 'string' } },
} as const satisfies JSONSchema

/** `status: "maybe" is not allowed: true or false (any case)` */
export function refusedMessage(name: string, value: unknown): string {
  const rule = isParamName(name) ? PARAM_RULES[name] : 'see openapi.json'
  const shown = typeof value === 'string' ? JSON.stringify(value.length > 100 ? `${value.slice(0, 100)}...` : value) : 'a missing value'
  return `${name}: ${shown} is not allowed: ${rule}`
}

/** The protocol a `{protocol}` parameter names (the schema has checked it already; this keeps the types honest). */
export function parseProtocol(raw: string): Protocol {
  const upper = raw.toUpperCase()
  const found = PROTOCOLS.find((p) => p === upper)
  if (found === undefined) throw badValue(refusedMessage('protocol', raw))
  return found
}

function isParamName(name: string): name is ParamName {
  return Object.hasOwn(PARAM_RULES, name)
}
