// Sends track, identify and page with @segment/analytics-node to the destination under test and
// prints what happened as JSON: how many HTTP requests the SDK made, and any errors it reported.
import { Analytics } from '@segment/analytics-node'

const [host, writeKey, prefix] = process.argv.slice(2)
const analytics = new Analytics({ writeKey, host, maxRetries: 3, flushInterval: 200 })
const requests = []
const errors = []
analytics.on('http_request', (request) => requests.push({ url: request.url, method: request.method }))
analytics.on('error', (error) => errors.push(String(error.reason ?? error.code ?? error)))

const timestamp = new Date()
analytics.track({ userId: 'node_user', event: 'llm_request', messageId: `${prefix}-track`, timestamp,
  properties: { model: 'gpt-5', input_tokens: 1500, cost: 0.0042 } })
analytics.identify({ userId: 'node_user', messageId: `${prefix}-identify`, traits: { plan: 'pro' } })
analytics.page({ userId: 'node_user', messageId: `${prefix}-page`, name: 'Pricing' })
await analytics.closeAndFlush({ timeout: 20000 })
console.log(JSON.stringify({ requests, errors }))
