// Container health check: exit 0 when the proxy's /readyz answers 200.
// Port from SCM_CACHE_PROXY_HTTP_PORT (default 7990); HTTPS when
// SCM_CACHE_PROXY_HTTP_TLS_CERT is set. Loopback only, and only the status is
// read, so the certificate is not verified here.
import http from 'node:http'
import https from 'node:https'

const port = Number(process.env.SCM_CACHE_PROXY_HTTP_PORT || 7990)
const tls = Boolean(process.env.SCM_CACHE_PROXY_HTTP_TLS_CERT)
const req = (tls ? https : http).get(
  { host: '127.0.0.1', port, path: '/readyz', timeout: 4000, rejectUnauthorized: false },
  (res) => {
    res.resume()
    process.exit(res.statusCode === 200 ? 0 : 1)
  },
)
req.on('timeout', () => req.destroy(new Error('timeout')))
req.on('error', () => process.exit(1))
