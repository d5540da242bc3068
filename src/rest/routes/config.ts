/**
 * `/config/...` (DESIGN §6): the run-time settings. GET answers the
 * effective value (a REST override, else the file's or environment's);
 * PUT sets an override; DELETE on the setting drops it. Every change is
 * saved before it applies and takes effect on the next Git request.
 */
import type { JSONSchema } from 'json-schema-to-ts'
import { validateValue } from '../../config/load.js'
import { PROTOCOLS, type Protocol } from '../../config/validators.js'
import { SETTING_KEYS, type Settings } from '../../settings.js'
import { badValue } from '../errors.js'
import type { OverrideWriter } from '../overrides.js'
import { ProtocolParams, StatusParams, TtlParams, parseProtocol, refusedMessage } from '../params.js'
import { ERROR_RESPONSES, NoContent } from '../responses.js'
import type { CallerOf, RestApp } from '../types.js'

export interface ConfigRouteDeps {
  settings: Settings
  writer: OverrideWriter
  callerOf: CallerOf
}

const ProtocolList = {
  type: 'array',
  items: { anyOf: [{ type: 'string', const: 'HTTP' }, { type: 'string', const: 'SSH' }] },
  description: 'fronts whose requests may be served from cache',
  uniqueItems: true,
} as const satisfies JSONSchema

const Enabled = { type: 'boolean' } as const satisfies JSONSchema
const Ttl = { type: 'integer', minimum: 1 } as const satisfies JSONSchema

export function registerConfigRoutes(app: RestApp, deps: ConfigRouteDeps): void {
  const { settings, writer, callerOf } = deps
  const tags = ['config']

  app.get(
    '/config/protocols',
    { schema: { tags, summary: 'Fronts whose requests may be served from cache', response: { 200: ProtocolList, ...ERROR_RESPONSES } } },
    async () => [...settings.get('protocols')],
  )

  app.put(
    '/config/protocols/:protocol',
    {
      schema: {
        tags,
        summary: 'Enable caching for requests over HTTP or SSH',
        params: ProtocolParams,
        response: { 204: NoContent, ...ERROR_RESPONSES },
      },
    },
    async (request, reply) => {
      const protocol = parseProtocol(request.params.protocol)
      await writer.update('protocols', (current) => withProtocol(current, protocol, true), callerOf(request))
      return reply.code(204).send(null)
    },
  )

  app.delete(
    '/config/protocols/:protocol',
    {
      schema: {
        tags,
        summary: 'Disable caching for requests over HTTP or SSH',
        params: ProtocolParams,
        response: { 204: NoContent, ...ERROR_RESPONSES },
      },
    },
    async (request, reply) => {
      const protocol = parseProtocol(request.params.protocol)
      await writer.update('protocols', (current) => withProtocol(current, protocol, false), callerOf(request))
      return reply.code(204).send(null)
    },
  )

  app.delete(
    '/config/protocols',
    {
      schema: {
        tags,
        summary: 'Drop the REST override: scm-cache.protocols from the file or environment applies again',
        response: { 204: NoContent, ...ERROR_RESPONSES },
      },
    },
    async (request, reply) => {
      await writer.drop('protocols', callerOf(request))
      return reply.code(204).send(null)
    },
  )

  /** GET, PUT and DELETE of `/config/<path>/enabled` for a boolean run-time setting. */
  const enabledRoutes = (kind: { path: string; enabled: 'refsEnabled' | 'uploadPackEnabled' | 'uploadPackFetchEnabled'; what: string }): void => {
    const enabledKey = SETTING_KEYS[kind.enabled]
    app.get(
      `/config/${kind.path}/enabled`,
      {
        schema: {
          tags,
          summary: `Whether ${kind.what} are cached`,
          response: { 200: Enabled, ...ERROR_RESPONSES },
        },
      },
      async () => settings.get(kind.enabled),
    )

    app.put(
      `/config/${kind.path}/enabled/:status`,
      {
        schema: {
          tags,
          summary: `Cache ${kind.what} (true) or not (false)`,
          params: StatusParams,
          response: { 204: NoContent, ...ERROR_RESPONSES },
        },
      },
      async (request, reply) => {
        const raw = request.params.status
        const checked = validateValue(enabledKey, raw)
        if (!checked.ok || typeof checked.value !== 'boolean') throw badValue(refusedMessage('status', raw))
        await writer.set(kind.enabled, checked.value, callerOf(request))
        return reply.code(204).send(null)
      },
    )

    app.delete(
      `/config/${kind.path}/enabled`,
      {
        schema: {
          tags,
          summary: `Drop the REST override: ${enabledKey} from the file or environment applies again`,
          response: { 204: NoContent, ...ERROR_RESPONSES },
        },
      },
      async (request, reply) => {
        await writer.drop(kind.enabled, callerOf(request))
        return reply.code(204).send(null)
      },
    )
  }

  for (const kind of [
    { path: 'refs', enabled: 'refsEnabled', ttl: 'refsTtl', what: 'ref advertisements' },
    { path: 'upload-pack', enabled: 'uploadPackEnabled', ttl: 'uploadPackTtl', what: 'clones (upload-pack responses)' },
  ] as const) {
    enabledRoutes(kind)
    const ttlKey = SETTING_KEYS[kind.ttl]
    app.get(
      `/config/${kind.path}/ttl`,
      {
        schema: {
          tags,
          summary: `How long ${kind.what} are kept, in seconds`,
          response: { 200: Ttl, ...ERROR_RESPONSES },
        },
      },
      async () => settings.get(kind.ttl),
    )

    app.put(
      `/config/${kind.path}/ttl/:expiryInSec`,
      {
        schema: {
          tags,
          summary: `Keep ${kind.what} this many seconds; entries older than that are never served`,
          params: TtlParams,
          response: { 204: NoContent, ...ERROR_RESPONSES },
        },
      },
      async (request, reply) => {
        const raw = request.params.expiryInSec
        const checked = validateValue(ttlKey, raw)
        if (!checked.ok || typeof checked.value !== 'number') throw badValue(refusedMessage('expiryInSec', raw))
        await writer.set(kind.ttl, checked.value, callerOf(request))
        return reply.code(204).send(null)
      },
    )

    app.delete(
      `/config/${kind.path}/ttl`,
      {
        schema: {
          tags,
          summary: `Drop the REST override: ${ttlKey} from the file or environment applies again`,
          response: { 204: NoContent, ...ERROR_RESPONSES },
        },
      },
      async (request, reply) => {
        await writer.drop(kind.ttl, callerOf(request))
        return reply.code(204).send(null)
      },
    )
  }

  // Incremental fetches (DESIGN §2): a switch only; their entries share upload-pack's TTL.
  enabledRoutes({ path: 'upload-pack/fetch', enabled: 'uploadPackFetchEnabled', what: 'incremental fetches (haves, already-shallow clients)' })
}

/** `current` with `protocol` added or removed, in canonical order. */
export function withProtocol(current: readonly Protocol[], protocol: Protocol, on: boolean): readonly Protocol[] {
  return PROTOCOLS.filter((p) => (p === protocol ? on : current.includes(p)))
}
