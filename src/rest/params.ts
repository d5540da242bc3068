/**
 * The path parameters of the REST API: one schema each (validating the
 * request and describing it in openapi.json), and the sentence a caller
 * gets when a value is refused, in the config loader's words.
 */
import { Type } from 'typebox'
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

export const ProtocolParams = Type.Object({
  protocol: Type.String({ pattern: '^(?:[Hh][Tt][Tt][Pp]|[Ss][Ss][Hh])$', description: PARAM_RULES.protocol }),
})

export const StatusParams = Type.Object({
  status: Type.String({ pattern: '^(?:[Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee])$', description: PARAM_RULES.status }),
})

/** Digits only here; the range is checked by the config validator, as for the file. */
export const TtlParams = Type.Object({
  expiryInSec: Type.String({ pattern: '^[0-9]{1,16}$', description: PARAM_RULES.expiryInSec, examples: ['3600'] }),
})

export const RepoParams = Type.Object({
  projectKey: Type.String({
    minLength: 1,
    description: 'the repository path before its last segment; for nested groups it holds slashes (/caches/group/sub/app)',
  }),
  repoSlug: Type.String({ minLength: 1, description: 'the last segment of the repository path, without .git' }),
})

/** `/caches/*`: nested project keys and root-level repositories. */
export const RepoPathParams = Type.Object({ '*': Type.String() })

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
