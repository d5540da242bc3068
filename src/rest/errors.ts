/**
 * The REST API's errors and their JSON shape, Bitbucket's
 * `{"errors":[{"message":"..."}]}` (DESIGN §6).
 */
import type { FromSchema, JSONSchema } from 'json-schema-to-ts'
import { ProxyError } from '../errors.js'

/** The schema of an error answer, described for one status. */
export function errorSchema(description: string) {
  return {
    type: 'object',
    required: ['errors'],
    properties: {
      errors: {
        type: 'array',
        items: { type: 'object', required: ['message'], properties: { message: { type: 'string' } } },
        minItems: 1,
      },
    },
    description,
  } as const satisfies JSONSchema
}

export const ErrorBody = errorSchema('Bitbucket-style error answer')
export type ErrorBody = FromSchema<typeof ErrorBody>

export function errorBody(message: string): ErrorBody {
  return { errors: [{ message }] }
}

/** A request the API refuses: its message is meant for the caller. */
export class RestError extends ProxyError {}

export function badValue(message: string): RestError {
  return new RestError('ERR_REST_BAD_VALUE', message)
}

export function notFound(message: string): RestError {
  return new RestError('ERR_REST_NOT_FOUND', message)
}
