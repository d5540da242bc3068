/**
 * The fastify instance the REST routes are declared on. Schemas are plain
 * JSON Schema literals (`as const`) typed by json-schema-to-ts, types only:
 * a schema builder library would cost the proxy memory at run time.
 */
import type {
  FastifyBaseLogger,
  FastifyInstance,
  FastifyRequest,
  RawReplyDefaultExpression,
  RawRequestDefaultExpression,
  RawServerDefault,
} from 'fastify'
import type { JsonSchemaToTsProvider } from '@fastify/type-provider-json-schema-to-ts'

export type RestApp = FastifyInstance<
  RawServerDefault,
  RawRequestDefaultExpression,
  RawReplyDefaultExpression,
  FastifyBaseLogger,
  JsonSchemaToTsProvider
>

/** Who made a request, for the change log: the admin user name, or `loopback`. */
export type CallerOf = (request: FastifyRequest) => string
