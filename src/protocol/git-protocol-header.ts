/**
 * The protocol version a client asks for, read exactly as git's upload-pack
 * reads `GIT_PROTOCOL` (protocol.c, determine_protocol_version_server): the
 * value is split on `:`, every item that is exactly `version=<n>` with n one
 * of 0, 1, 2 counts, and the highest wins; anything else (` version=2` with a
 * space, `version=3`, `x=1`) is ignored. Over HTTP, `git http-backend` copies
 * the `Git-Protocol` header into `GIT_PROTOCOL` as it is, so the same rule
 * applies to the header. Pure.
 */

export type ProtocolVersion = 0 | 1 | 2

export function gitProtocolVersion(value: string | readonly string[] | null | undefined): ProtocolVersion {
  if (value === null || value === undefined) return 0
  // Several header lines reach http-backend joined, as Node joins them.
  const text = typeof value === 'string' ? value : value.join(', ')
  let version: ProtocolVersion = 0
  for (const item of text.split(':')) {
    if (item === 'version=2') version = 2
    else if (item === 'version=1' && version < 1) version = 1
  }
  return version
}
