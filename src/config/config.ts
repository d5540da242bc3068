/**
 * The type of the loaded configuration, derived from the key table: each key
 * says where its value lives (`at: 'proxy.httpPort'`), and the members under
 * a common prefix form an object (`config.proxy`). A pair of `PAIRS` is an
 * object whose members are both set, or `null`. Nothing here is written per
 * key: a new key in `keys.ts` is a new member of `Config`.
 *
 * Paths are absolute; durations are seconds; sizes are bytes; `null` means
 * unset. The object is deep-frozen. The URLs are frozen objects typed
 * read-only, but a `URL`'s setters still work at run time: never assign to
 * them (derive a new URL with `new URL(x, base)`).
 */
import type { PAIRS, Spec, ValueOf } from './keys.js'

type Path = Spec['at']
type Pair = (typeof PAIRS)[number]

/** The member names directly under `Prefix` (`''` for the top level, else e.g. `'proxy.'`). */
type NamesUnder<Prefix extends string, P extends string = Path> = P extends `${Prefix}${infer Rest}`
  ? Rest extends `${infer Name}.${string}`
    ? Name
    : Rest
  : never

/** The members under `At`, as an object. */
type Group<At extends string> = { readonly [Name in NamesUnder<`${At}.`>]: TypeAt<`${At}.${Name}`> }

/** What lives at `At`: a key's value, a pair (both members set, or null) or a group. */
type TypeAt<At extends string> = At extends Path
  ? ValueOf<Extract<Spec, { readonly at: At }>>
  : At extends Pair
    ? { readonly [Name in keyof Group<At>]: NonNullable<Group<At>[Name]> } | null
    : Group<At>

/** The loaded configuration: one member per key of the table, plus where it was read from. */
export type Config = { readonly [Name in NamesUnder<''>]: TypeAt<Name> } & {
  readonly source: {
    /** Absolute path of the file read, or null when the default file does not exist. */
    readonly file: string | null
  }
}

/** The value at a dot-separated path of a tree; `null` below a member that is null (an unset pair). */
export function valueAt(tree: object, at: string): unknown {
  let node: unknown = tree
  for (const name of at.split('.')) {
    if (node === null) return null
    node = isRecord(node) ? node[name] : undefined
  }
  return node
}

/** Sets the value at a dot-separated path, creating the groups on the way. */
export function setAt(tree: Record<string, unknown>, at: string, value: unknown): void {
  const names = at.split('.')
  const last = names.pop() ?? at
  let node = tree
  for (const name of names) {
    const child = node[name] ?? {}
    // Paths never run through a key's value: the key table test checks that no path is a prefix of another.
    if (!isRecord(child)) throw new Error(`${at}: ${name} holds a value, not a group`)
    node[name] = child
    node = child
  }
  node[last] = value
}

/** The member name of a path: `cache.refsTtl` -> `refsTtl`. */
export function memberName<P extends string>(at: P): LastName<P> {
  // The segment after the last dot is what LastName<P> computes at the type level.
  return at.slice(at.lastIndexOf('.') + 1) as LastName<P>
}

export type LastName<P extends string> = P extends `${string}.${infer Rest}` ? LastName<Rest> : P

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof URL)
}
