/** Response schemas shared by every route: the changes' 204 and the error answers. */
import { Type } from 'typebox'
import { errorSchema } from './errors.js'

export const NoContent = Type.Null({ description: 'done; no body' })

/** The error answers every route may give: bad value, no or wrong credentials, not a loopback client. */
export const ERROR_RESPONSES = {
  400: errorSchema('a bad value; nothing was changed'),
  401: errorSchema('no or wrong admin credentials (HTTP Basic)'),
  403: errorSchema('no admin credentials are configured and the client is not on loopback'),
} as const
