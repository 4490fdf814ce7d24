/**
 * The control API's error boundary: no request may take the agent down. Malformed paths and
 * bodies, random bytes as the path, and a handler that throws all get an HTTP answer, and the
 * server keeps answering afterwards.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import { ControlServer } from '../../node/control.ts'
import { UserError } from '../../node/errors.ts'
import { silentLogger } from '../../node/logger.ts'

function call (socketPath: string, method: string, path: string, body?: string): Promise<{ status: number, text: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, method, path, headers: body !== undefined ? { 'content-type': 'application/json' } : {} }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { text += c })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, text }) })
    })
    req.on('error', reject)
    if (body !== undefined) req.write(body)
    req.end()
  })
}

describe('control API error boundary', () => {
  let dir = ''
  let socket = ''
  const server = new ControlServer(silentLogger())

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'p2p-orch-ctl-'))
    socket = join(dir, 'control.sock')
    server.route('GET', '/services/:name', ({ params }) => ({ name: params.name }))
    server.route('POST', '/boom', () => { throw new Error('a bug') })
    server.route('POST', '/user', () => { throw new UserError('your mistake') })
    await server.listen(socket)
  })

  after(async () => {
    await server.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('a malformed percent-escape in the path is a 400, not a crash', async () => {
    const r = await call(socket, 'GET', '/v1/services/%E0')
    assert.equal(r.status, 400)
    assert.match(r.text, /malformed/)
    assert.equal((await call(socket, 'GET', '/v1/services/web')).status, 200)
  })

  it('bad bodies, user errors and bugs each get an answer', async () => {
    assert.equal((await call(socket, 'POST', '/v1/user', '{}')).status, 400)
    assert.equal((await call(socket, 'POST', '/v1/boom', '{}')).status, 500)
    assert.equal((await call(socket, 'POST', '/v1/user', '{not json')).status, 400)
  })

  it('thousands of random paths: every one answered, the server still up', async () => {
    await fc.assert(fc.asyncProperty(fc.string({ maxLength: 40 }), fc.constantFrom('GET', 'POST', 'DELETE'), async (tail, method) => {
      const path = '/v1/' + encodeURI(tail).replace(/%25/g, '%')
      const r = await call(socket, method, path).catch(() => ({ status: 0, text: '' }))
      assert.ok(r.status === 0 || (r.status >= 200 && r.status < 600))
    }), { numRuns: 1000 })
    assert.equal((await call(socket, 'GET', '/v1/services/web')).status, 200)
  })
})
