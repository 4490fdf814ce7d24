/**
 * A small client for the control API, over a unix socket (a node's data directory) or
 * https://host:port. Over TCP the node's certificate is checked against the pin from its token
 * (api-token.ts) before a byte of the request, bearer secret included, is sent. The CLI uses
 * only this, api-token.ts and types.ts from node/.
 */
import type { Duplex } from 'node:stream'
import type * as Tls from 'node:tls'
import { request } from '../http.ts'
import { pinOf } from './api-token.ts'
import { API_PREFIX, type ApiError } from './types.ts'

/** Every control call answers fast except follow-ups the caller polls; 30 s means the node is stuck. */
const REQUEST_TIMEOUT_MS = 30_000

export class ApiUserError extends Error {
  name = 'ApiUserError'
}

export class NodeUnreachableError extends Error {
  name = 'NodeUnreachableError'
}

/** The node's TLS certificate is not the one the token pins: another node, a new certificate, or someone in between. */
export class CertificatePinError extends Error {
  name = 'CertificatePinError'
}

export interface ApiTarget {
  socketPath?: string
  /** https://host:port */
  url?: string
  /** bearer secret for TCP targets (from the node's api.token) */
  token?: string
  /** SHA-256 (hex) the TCP target's certificate must have (from the node's api.token); required with `url` */
  pin?: string
}

/**
 * A TLS connection to `url` that is handed to the HTTP request only once the certificate matches
 * `pin`. CA checks are off (the certificate is self-signed): the pin is the check.
 */
function pinnedConnection (url: URL, pin: string, describe: string, done: (err: Error | null, socket: Duplex) => void): void {
  // taken when used: commands on the local socket never load node:tls
  const { connect } = process.getBuiltinModule('node:tls') as typeof Tls
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1')
  const socket = connect({
    host,
    port: Number(url.port === '' ? 443 : url.port),
    // SNI takes names only; an IP there makes Node warn
    ...(/^[0-9.]+$|:/.test(host) ? {} : { servername: host }),
    rejectUnauthorized: false
  })
  const fail = (err: Error): void => { socket.destroy(); done(err, socket) }
  socket.setTimeout(REQUEST_TIMEOUT_MS, () => { fail(new NodeUnreachableError(`node at ${describe} did not finish the TLS handshake within ${REQUEST_TIMEOUT_MS / 1000}s`)) })
  socket.once('error', fail)
  socket.once('secureConnect', () => {
    socket.removeListener('error', fail)
    socket.setTimeout(0)
    const got = pinOf(socket.getPeerCertificate().fingerprint256 ?? '')
    if (got !== pin) {
      fail(new CertificatePinError(`the TLS certificate of ${describe} does not match the pin in P2P_ORCH_API_TOKEN (its sha256 is ${got}, the pin ${pin}): another node, a new certificate, or someone in between — take the current token from \`p2p-orch api-token\` on that node`))
      return
    }
    done(null, socket)
  })
}

export class ApiClient {
  private readonly target: ApiTarget

  constructor (target: ApiTarget) {
    this.target = target
  }

  private describe (): string {
    return this.target.socketPath ?? this.target.url ?? '?'
  }

  async call<T> (method: string, path: string, body?: unknown): Promise<T> {
    const payload = body === undefined ? undefined : JSON.stringify(body)
    const url = this.target.url !== undefined ? new URL(API_PREFIX + path, this.target.url) : undefined
    const pin = this.target.pin
    if (url !== undefined && (url.protocol !== 'https:' || pin === undefined)) throw new ApiUserError(`${this.describe()}: the control API over TCP is HTTPS only, with the pin from the node's token`)
    return await new Promise<T>((resolve, reject) => {
      const req = request({
        ...(url !== undefined && pin !== undefined ? { createConnection: (_o: unknown, cb: (err: Error | null, s: Duplex) => void) => { pinnedConnection(url, pin, this.describe(), cb); return undefined } } : {}),
        method,
        socketPath: this.target.socketPath,
        host: url?.hostname,
        port: url?.port,
        path: url !== undefined ? url.pathname + url.search : API_PREFIX + path,
        headers: {
          ...(payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)) }),
          ...(this.target.token !== undefined ? { authorization: `Bearer ${this.target.token}` } : {})
        },
        timeout: REQUEST_TIMEOUT_MS
      }, (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8')
          let json: unknown
          try {
            json = text.length === 0 ? null : JSON.parse(text)
          } catch {
            reject(new Error(`node answered ${res.statusCode} with non-JSON: ${text.slice(0, 200)}`))
            return
          }
          if ((res.statusCode ?? 500) >= 400) {
            const e = json as ApiError
            if (e?.kind === 'user') reject(new ApiUserError(e.error))
            else reject(new Error(`node error: ${e?.error ?? text}`))
            return
          }
          resolve(json as T)
        })
      })
      req.on('timeout', () => req.destroy(new NodeUnreachableError(`node at ${this.describe()} did not answer within ${REQUEST_TIMEOUT_MS / 1000}s`)))
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (err instanceof NodeUnreachableError || err instanceof CertificatePinError) reject(err)
        else if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') reject(new NodeUnreachableError(`no p2p-orch agent answers at ${this.describe()} (is the agent running? start it with \`p2p-orch agent --data DIR\`)`))
        else if (err.code === 'EACCES') reject(new NodeUnreachableError(`permission denied on ${this.describe()} (run as the agent's user)`))
        else if (url !== undefined && (err.code === 'EPROTO' || err.code?.startsWith('ERR_SSL_') === true)) reject(new NodeUnreachableError(`${this.describe()} does not speak TLS (${err.code}): is it a p2p-orch agent with --api-listen, of a version that serves HTTPS?`))
        else reject(err)
      })
      if (payload !== undefined) req.write(payload)
      req.end()
    })
  }
}
