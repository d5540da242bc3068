// tap coverage-map: which source files a test file's coverage counts for.
// A unit test covers its own module (test/unit/x/y.test.ts: src/x/y.ts, and
// so does test/unit/x/y.<aspect>.test.ts, e.g. y.property.test.ts);
// an integration test the request path it drives end to end, above the
// pure layers (protocol/ and cache/ are measured by their unit tests).
import { readdirSync } from 'node:fs'
import path from 'node:path'

const sources = (dir) =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(path.join(dir, e.name)) : e.name.endsWith('.ts') ? [path.join(dir, e.name)] : [],
  )
const requestPath = ['src/service', 'src/front', 'src/upstream', 'src/io'].flatMap(sources)

// The store's suites drive its parts through its facade (src/cache/store.ts).
const storeParts = ['store', 'store-api', 'noop-store', 'entry-index', 'fill', 'hot-bodies', 'figures', 'recovery', 'entry-reader', 'body'].map(
  (name) => `src/cache/${name}.ts`,
)

export default (testFile) => {
  if (/^test\/unit\/cache\/store(?:-[a-z]+)?\.test\.ts$/.test(testFile)) return storeParts
  const unit = /^test\/unit\/(.+?)(?:\.[a-z-]+)?\.test\.ts$/.exec(testFile)
  if (unit !== null) return [`src/${unit[1]}.ts`]
  if (testFile.startsWith('test/integration/')) return requestPath
  return null
}
