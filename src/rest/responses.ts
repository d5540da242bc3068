/** Response schemas shared by every route: the changes' 204 and the error answers. */
import type { JSONSchema } from 'json-schema-to-ts'
import { errorSchema } from './errors.js'

export const NoContent = { type: 'null', description: 'done; no body' } as const satisfies JSONSchema

/** The error answers every route may give: bad value, no or wrong credentials, not a loopback client. */
export const ERROR_RESPONSES = {
  400: errorSchema('a bad value; nothing was changed'),
  401: errorSchema('no or wrong admin credentials (HTTP Basic)'),
  403: errorSchema('no admin credentials are configured and the client is not on loopback'),
} as const
