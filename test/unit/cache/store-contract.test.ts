/** The store contract (fixtures/store-contract.ts), run against every store. */
import t from 'tap'
import { NoopStore } from '../../../src/cache/noop-store.js'
import { storeContract } from './fixtures/store-contract.js'
import { makeStore } from './fixtures/store-harness.js'

storeContract(t, 'CacheStore', async (t) => (await makeStore(t)).store)

storeContract(t, 'NoopStore', async (t) => {
  const store = new NoopStore()
  t.teardown(() => store.close())
  return store
})
