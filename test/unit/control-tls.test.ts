/**
 * The control API on TCP: HTTPS only, the bearer secret and certificate pin from api.token.
 * The right token and pin work; a wrong token is a 401; a wrong pin fails with one clear error
 * before the request (and its secret) is sent; plain HTTP gets no answer; socket-only routes are
 * refused on TCP; after a rotation the old token is refused and the new one works, and
 * connections let in with the old one are closed.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { request } from 'node:http'
import { createServer as createTlsServer, type Server as TlsServer } from 'node:tls'
import { createServer as createNetServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { decodeApiToken, type ApiToken } from '../../node/api/api-token.ts'
import { ApiClient } from '../../node/api/client.ts'
import { ApiAccess, loadApiCertificate, registerApiTokenRoutes } from '../../node/api-access.ts'
import { ControlServer } from '../../node/control.ts'
import { silentLogger } from '../../node/logger.ts'

/** A port that was free a moment ago on 127.0.0.1. */
async function freePort (): Promise<number> {
  const s = createNetServer()
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', () => resolve()))
  const port = (s.address() as AddressInfo).port
  await new Promise<void>((resolve) => s.close(() => resolve()))
  return port
}

describe('control API over TCP (HTTPS, token and pin)', () => {
  let dir = ''
  let url = ''
  let port = 0
  let access: ApiAccess
  const server = new ControlServer(silentLogger())
  let holdOpen: (() => void) | null = null

  const remote = (t: ApiToken): ApiClient => new ApiClient({ url, token: t.secret, pin: t.pin })
  const current = async (): Promise<ApiToken> => {
    const t = decodeApiToken(await readFile(join(dir, 'api.token'), 'utf8'))
    assert.ok(t !== null, 'api.token holds a token')
    return t
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'p2p-orch-ctl-tls-'))
    port = await freePort()
    url = `https://127.0.0.1:${port}`
    access = (await ApiAccess.load({ dir, url, subject: 'test', onRotate: () => { server.dropTcpConnections() } })).access
    server.route('GET', '/info', () => ({ ok: true }))
    // answers only when the test lets it: a request in progress across a rotation
    server.route('GET', '/slow', async () => { await new Promise<void>((resolve) => { holdOpen = resolve }); return { late: true } })
    registerApiTokenRoutes(server, access)
    await server.listenTcp('127.0.0.1', port, { keyPem: access.cert.keyPem, certPem: access.cert.certPem, secret: () => access.secret() })
    await server.listen(join(dir, 'control.sock'))
  })

  after(async () => {
    holdOpen?.()
    await server.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('answers with the right token and pin', async () => {
    assert.deepEqual(await remote(await current()).call('GET', '/info'), { ok: true })
  })

  it('a wrong or missing token is a 401 (ApiUserError naming P2P_ORCH_API_TOKEN), whatever the path', async () => {
    const t = await current()
    for (const secret of ['x'.repeat(43), `${t.secret}x`, t.secret.slice(1)]) {
      await assert.rejects(remote({ secret, pin: t.pin }).call('GET', '/info'), (err: Error) => err.name === 'ApiUserError' && /wrong API token.*P2P_ORCH_API_TOKEN/.test(err.message))
    }
    await assert.rejects(new ApiClient({ url, pin: t.pin }).call('GET', '/nope'), /wrong API token/)
  })

  it('a wrong pin fails with one clear line (CertificatePinError), and the request is never sent', async () => {
    const t = await current()
    const wrong = { secret: t.secret, pin: (t.pin[0] === '0' ? '1' : '0') + t.pin.slice(1) }
    await assert.rejects(remote(wrong).call('GET', '/info'), (err: Error) => {
      assert.equal(err.name, 'CertificatePinError')
      assert.match(err.message, /certificate of https:\/\/127\.0\.0\.1:\d+ does not match the pin/)
      assert.doesNotMatch(err.message, /\n/)
      return true
    })
    // another server, another certificate: it must not receive a byte of the request (the secret)
    const otherDir = await mkdtemp(join(tmpdir(), 'p2p-orch-ctl-tls-other-'))
    const other = await loadApiCertificate(otherDir, 'impostor')
    let received = 0
    const impostor: TlsServer = createTlsServer({ key: other.keyPem, cert: other.certPem }, (s) => { s.on('data', (c: Buffer) => { received += c.length }) })
    await new Promise<void>((resolve) => impostor.listen(0, '127.0.0.1', () => resolve()))
    try {
      const client = new ApiClient({ url: `https://127.0.0.1:${(impostor.address() as AddressInfo).port}`, token: t.secret, pin: t.pin })
      await assert.rejects(client.call('GET', '/info'), { name: 'CertificatePinError' })
      await new Promise((resolve) => setTimeout(resolve, 100))
      assert.equal(received, 0)
    } finally {
      await new Promise<void>((resolve) => impostor.close(() => resolve()))
      await rm(otherDir, { recursive: true, force: true })
    }
  })

  it('plain HTTP on the TCP port gets no answer, and the client refuses http:// targets', async () => {
    const t = await current()
    const outcome = await new Promise<string>((resolve) => {
      const req = request({ host: '127.0.0.1', port, path: '/v1/info', headers: { authorization: `Bearer ${t.secret}` }, timeout: 5000 }, (res) => { resolve(`answered ${res.statusCode}`) })
      req.on('timeout', () => { req.destroy(new Error('timeout')) })
      req.on('error', (err) => { resolve(`error: ${err.message}`) })
      req.end()
    })
    assert.match(outcome, /^error: /)
    await assert.rejects(new ApiClient({ url: `http://127.0.0.1:${port}`, token: t.secret, pin: t.pin }).call('GET', '/info'), { name: 'ApiUserError' })
    await assert.rejects(new ApiClient({ url, token: t.secret }).call('GET', '/info'), { name: 'ApiUserError' })
  })

  it('a client that speaks TLS to a plain server gets one clear line', async () => {
    const plain = createNetServer((s) => { s.resume(); s.end('HTTP/1.1 400 Bad Request\r\n\r\n') })
    await new Promise<void>((resolve) => plain.listen(0, '127.0.0.1', () => resolve()))
    try {
      const t = await current()
      await assert.rejects(new ApiClient({ url: `https://127.0.0.1:${(plain.address() as AddressInfo).port}`, token: t.secret, pin: t.pin }).call('GET', '/info'),
        (err: Error) => err.name === 'NodeUnreachableError' && /does not speak TLS/.test(err.message))
    } finally {
      await new Promise<void>((resolve) => plain.close(() => resolve()))
    }
  })

  it('the token routes are served on the control socket only', async () => {
    const t = await current()
    await assert.rejects(remote(t).call('GET', '/api-token'), (err: Error) => err.name === 'ApiUserError' && /only on the node's control socket/.test(err.message))
    await assert.rejects(remote(t).call('POST', '/api-token/rotate'), /only on the node's control socket/)
    assert.equal((await current()).secret, t.secret, 'a TCP caller did not rotate the token')
    const local = new ApiClient({ socketPath: join(dir, 'control.sock') })
    const r = await local.call<{ token: string, url: string, pin: string, rotated: boolean }>('GET', '/api-token')
    assert.deepEqual(decodeApiToken(r.token), t)
    assert.equal(r.url, url)
    assert.equal(r.pin, t.pin)
    assert.equal(r.rotated, false)
  })

  it('after a rotation the old token is refused, the new one works, and a request let in with the old one is cut off', async () => {
    const old = await current()
    const slow = assert.rejects(remote(old).call('GET', '/slow'), 'the connection opened with the old token is closed')
    await new Promise((resolve) => setTimeout(resolve, 100)) // the slow request is in
    const local = new ApiClient({ socketPath: join(dir, 'control.sock') })
    const r = await local.call<{ token: string, rotated: boolean }>('POST', '/api-token/rotate')
    assert.equal(r.rotated, true)
    const fresh = decodeApiToken(r.token)
    assert.ok(fresh !== null)
    assert.notEqual(fresh.secret, old.secret)
    assert.equal(fresh.pin, old.pin, 'the certificate (and pin) stay')
    assert.deepEqual(await current(), fresh, 'api.token holds the new token')
    await slow
    await assert.rejects(remote(old).call('GET', '/info'), /wrong API token/)
    assert.deepEqual(await remote(fresh).call('GET', '/info'), { ok: true })
  })
})
