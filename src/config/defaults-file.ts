/**
 * Renders the shipped `config/scm-cache.properties` from the key table: every
 * key commented out with its default, under a one-line description. A unit
 * test compares the shipped file with this output, so the two cannot drift.
 */
import { stringify } from 'dot-properties'
import { BITBUCKET_PREFIX, CONFIG_FILE_ENV, KEY_SPECS } from './keys.js'
import { MAX_SECONDS } from './validators.js'

const HEADER = [
  'scm-cache-proxy configuration (Java .properties syntax).',
  '',
  'Every key is listed, commented out, with its default: uncomment a line to change it.',
  'Another file: --config FILE or ' + CONFIG_FILE_ENV + '=FILE. Unknown keys are an error.',
  '',
  'Environment overrides win over this file: SCM_CACHE_ + the key upper-cased, dots and',
  'dashes as underscores (upstream.http.url: SCM_CACHE_UPSTREAM_HTTP_URL). scm-cache.* keys',
  'also take a shorter form without the repeated prefix (SCM_CACHE_REFS_TTL). An empty',
  'value unsets an optional key.',
  '',
  'Bitbucket names are accepted too: scm-cache.X may be written ' + BITBUCKET_PREFIX + 'X.',
  'TTLs and intervals are whole seconds from 1 to ' + String(MAX_SECONDS) + '.',
  'Sizes are bytes with an optional binary suffix k, m, g, t (or KiB/KB, MiB/MB, GiB/GB,',
  'TiB/TB, any case): 1k = 1024, 512m = 536870912.',
  'Booleans are true or false. Relative paths are resolved against the working directory.',
]

/** The text of the shipped defaults file. */
export function renderDefaultsFile(): string {
  const lines: string[] = HEADER.map((line) => (line === '' ? '#' : `# ${line}`))
  let section = ''
  for (const spec of KEY_SPECS) {
    const top = spec.key.split('.')[0] ?? ''
    if (top !== section) {
      section = top
      lines.push('', `# --- ${section} ---`)
    }
    const pair = stringify([[spec.key, spec.default ?? '']], { lineWidth: null, keySep: ' = ' })
    lines.push('', `# ${spec.description}`, `#${pair.trimEnd()}`)
  }
  return lines.join('\n') + '\n'
}
