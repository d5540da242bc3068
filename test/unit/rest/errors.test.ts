/** How the REST plugin turns an error into a status and a caller-safe message. */
import t from 'tap'
import { ProxyError } from '../../../src/errors.js'
import { describeError } from '../../../src/rest/index.js'
import { badValue, errorBody, notFound } from '../../../src/rest/errors.js'
import { refusedMessage } from '../../../src/rest/params.js'

void t.test('describeError', async (t) => {
  t.same(describeError(badValue('nope'), {}), { status: 400, message: 'nope' })
  t.same(describeError(notFound('gone'), {}), { status: 404, message: 'gone' })
  t.same(describeError(new ProxyError('ERR_CACHE_READ_FAILED', 'secret path /etc'), {}), {
    status: 500,
    message: 'internal error; see the proxy log',
  }, 'unexposed messages stay inside')
  t.same(describeError(new Error('boom'), {}), { status: 500, message: 'internal error; see the proxy log' })
  t.same(describeError('a string', {}), { status: 500, message: 'internal error; see the proxy log' })
  const validation = Object.assign(new Error('params/status must match pattern'), {
    statusCode: 400,
    validation: [{ instancePath: '/status', keyword: 'pattern', params: {}, message: 'must match' }],
  })
  t.same(describeError(validation, { status: 'maybe' }), { status: 400, message: 'status: "maybe" is not allowed: true or false (any case)' })
  const tooLarge = Object.assign(new Error('Request body is too large'), { statusCode: 413, code: 'FST_ERR_CTP_BODY_TOO_LARGE' })
  t.same(describeError(tooLarge, {}), { status: 413, message: 'Request body is too large' })
})

void t.test('refusedMessage and errorBody', async (t) => {
  t.equal(refusedMessage('expiryInSec', '0'), 'expiryInSec: "0" is not allowed: whole seconds from 1 to 31536000')
  t.equal(refusedMessage('protocol', 'x'.repeat(150)), `protocol: "${'x'.repeat(100)}..." is not allowed: HTTP or SSH (any case)`)
  t.equal(refusedMessage('other', undefined), 'other: a missing value is not allowed: see openapi.json')
  t.same(errorBody('m'), { errors: [{ message: 'm' }] })
})
