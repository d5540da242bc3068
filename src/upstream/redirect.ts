/**
 * Redirects from the upstream, as nginx's `proxy_redirect default` treats
 * them: a `Location` that points into the upstream's own base URL (origin and
 * base path) is rewritten to the same place on the proxy, so git follows it
 * and never leaves the proxy; any other is relayed as the upstream sent it.
 * Pure.
 *
 * The rewritten value is a path-absolute reference (`/x.git/info/refs?...`):
 * the client resolves it against the URL it asked for, so it names the
 * proxy under whatever host, port and scheme the client reached it
 * (directly, through HAProxy, over TLS), without the proxy guessing its own
 * public name from a `Host` header.
 */

/**
 * `location` as the client should see it. `requested` is the upstream URL the
 * answer came from (a relative `Location` is resolved against it), `base` the
 * upstream's base URL (`upstream.http.url`).
 */
export function rewriteLocation(location: string, requested: URL, base: URL): string {
  if (!URL.canParse(location, requested.href)) return location
  const target = new URL(location, requested)
  const basePath = base.pathname.endsWith('/') ? base.pathname : `${base.pathname}/`
  const inBase = target.pathname === basePath.slice(0, -1) || target.pathname.startsWith(basePath)
  if (target.origin === base.origin && inBase) {
    return `/${target.pathname.slice(basePath.length)}${target.search}${target.hash}`
  }
  // Elsewhere: an absolute Location goes out untouched; a relative one is made
  // absolute, or the client would resolve it against the proxy.
  return isAbsolute(location) ? location : target.href
}

function isAbsolute(location: string): boolean {
  return /^[a-z][a-z0-9+.-]*:/i.test(location)
}
