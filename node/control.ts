/**
 * The control API server: JSON over HTTP on a unix socket in the data directory (mode 0600, so
 * only the agent's user can drive it), and optionally over HTTPS on TCP with a bearer token
 * (`listenTcp`; the certificate and token: api-access.ts). Routes are registered by createNode; a
 * UserError becomes a 400 with kind 'user', anything else a 500 with kind 'internal' (and is
 * logged with its stack). A `localOnly` route answers 403 on TCP.
 */
import { timingSafeEqual } from 'node:crypto'
import { chmod, rm } from 'node:fs/promises'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type * as Https from 'node:https'
import { API_PREFIX, type ApiError } from './api/types.ts'
import { UserError } from './errors.ts'
import { createServer } from './http.ts'
import type { Logger } from './logger.ts'

/** Requests carry specs and small commands; 4 MiB is far above any real one. */
const MAX_BODY_BYTES = 4 * 1024 * 1024
/**
 * A TCP client gets this long to finish its TLS handshake (Node's default is 120 s): a real CLI
 * needs milliseconds, and a half-open handshake should not hold a socket for minutes.
 */
const TLS_HANDSHAKE_TIMEOUT_MS = 10_000

/** What the TCP listener needs: its TLS key and certificate, and the bearer secret in force. */
export interface TcpAuth {
  keyPem: string
  certPem: string
  /** read on every request, so a rotated secret applies at once */
  secret: () => string
}

export type Handler = (ctx: { params: Record<string, string>, query: URLSearchParams, body: unknown, res: ServerResponse }) => Promise<unknown> | unknown

interface Route { method: string, parts: string[], handler: Handler, localOnly: boolean }

export interface RouteOptions {
  /** served on the control socket only; over TCP the answer is 403 */
  localOnly?: boolean
}

export class ControlServer {
  private readonly routes: Route[] = []
  private servers: Server[] = []
  private tcpServers: Server[] = []
  private readonly logger: Logger

  constructor (logger: Logger) {
    this.logger = logger
  }

  route (method: string, pattern: string, handler: Handler, opts: RouteOptions = {}): void {
    this.routes.push({ method, parts: pattern.split('/').filter(Boolean), handler, localOnly: opts.localOnly === true })
  }

  private match (method: string, path: string): { route: Route, params: Record<string, string> } | null {
    const parts = path.split('/').filter(Boolean)
    for (const route of this.routes) {
      if (route.method !== method || route.parts.length !== parts.length) continue
      const params: Record<string, string> = {}
      let ok = true
      for (let i = 0; i < parts.length; i++) {
        const p = route.parts[i]
        if (p.startsWith(':')) params[p.slice(1)] = decodeURIComponent(parts[i])
        else if (p !== parts[i]) { ok = false; break }
      }
      if (ok) return { route, params }
    }
    return null
  }

  private async readBody (req: IncomingMessage): Promise<unknown> {
    const chunks: Buffer[] = []
    let size = 0
    for await (const c of req) {
      size += (c as Buffer).length
      if (size > MAX_BODY_BYTES) throw new UserError(`request body exceeds ${MAX_BODY_BYTES} bytes`)
      chunks.push(c as Buffer)
    }
    if (size === 0) return undefined
    try {
      return JSON.parse(Buffer.concat(chunks).toString('utf8'))
    } catch {
      throw new UserError('request body is not JSON')
    }
  }

  private async handle (req: IncomingMessage, res: ServerResponse, tcp: boolean): Promise<void> {
    const send = (status: number, body: unknown): void => {
      if (res.headersSent) { res.end(); return }
      const text = typeof body === 'string' ? body : JSON.stringify(body)
      res.writeHead(status, { 'content-type': typeof body === 'string' ? 'text/plain' : 'application/json' })
      res.end(text)
    }
    // The error boundary covers everything about the request, the URL included: nothing a caller
    // sends may take the agent down.
    try {
      const url = new URL(req.url ?? '/', 'http://local')
      if (!url.pathname.startsWith(API_PREFIX)) { send(404, { error: `unknown path ${url.pathname}`, kind: 'user' } satisfies ApiError); return }
      const m = this.match(req.method ?? 'GET', url.pathname.slice(API_PREFIX.length))
      if (m === null) { send(404, { error: `unknown endpoint ${req.method} ${url.pathname}`, kind: 'user' } satisfies ApiError); return }
      if (tcp && m.route.localOnly) { send(403, { error: `${req.method} ${url.pathname} is served only on the node's control socket: run it on that machine with --data DIR`, kind: 'user' } satisfies ApiError); return }
      const body = await this.readBody(req)
      const result = await m.route.handler({ params: m.params, query: url.searchParams, body, res })
      if (!res.writableEnded) send(200, result ?? null)
    } catch (err) {
      if (err instanceof UserError) {
        send(400, { error: err.message, kind: 'user' } satisfies ApiError)
      } else if (err instanceof URIError || (err as Error).name === 'TypeError' && /Invalid URL/.test((err as Error).message)) {
        send(400, { error: `malformed request path: ${(err as Error).message}`, kind: 'user' } satisfies ApiError)
      } else {
        this.logger.error({ err }, 'control API request failed')
        try { send(500, { error: (err as Error).message, kind: 'internal' } satisfies ApiError) } catch {}
      }
    }
  }

  /** Serve one request; a failure the boundary above cannot answer is logged, never thrown. */
  private serve (req: IncomingMessage, res: ServerResponse, tcp = false): void {
    this.handle(req, res, tcp).catch((err) => {
      this.logger.error({ err }, 'control API response failed')
      res.destroy()
    })
  }

  async listen (socketPath: string): Promise<void> {
    await rm(socketPath, { force: true })
    const server = createServer((req, res) => { this.serve(req, res) })
    this.servers.push(server)
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(socketPath, () => resolve())
    })
    await chmod(socketPath, 0o600)
  }

  /**
   * Also serve on TCP, for CLIs on other machines (`--api https://host:port`): HTTPS only, with
   * the node's self-signed certificate (remote CLIs pin it). Unlike the socket, which file
   * permissions protect, every TCP request must carry `Authorization: Bearer <secret>`.
   */
  async listenTcp (host: string, port: number, auth: TcpAuth): Promise<void> {
    // taken when used, so the agent without --api-listen and the CLI never load node:https
    const { createServer: createHttpsServer } = process.getBuiltinModule('node:https') as typeof Https
    const server = createHttpsServer({ key: auth.keyPem, cert: auth.certPem, handshakeTimeout: TLS_HANDSHAKE_TIMEOUT_MS }, (req, res) => {
      const expected = Buffer.from(`Bearer ${auth.secret()}`)
      const got = Buffer.from(req.headers.authorization ?? '')
      if (got.length !== expected.length || !timingSafeEqual(got, expected)) {
        res.writeHead(401, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ error: 'missing or wrong API token: set P2P_ORCH_API_TOKEN to the node\'s current token (`p2p-orch api-token` on that node prints it)', kind: 'user' } satisfies ApiError))
        return
      }
      this.serve(req, res, true)
    })
    this.servers.push(server)
    this.tcpServers.push(server)
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) => reject(new UserError(`cannot serve the control API on ${host}:${port}: ${err.message}`)))
      server.listen(port, host, () => resolve())
    })
  }

  /**
   * Close every open TCP connection (after a token rotation): a request in progress, such as a
   * followed log, was let in with the old secret and must not outlive it; a client reconnects
   * with the new token or not at all.
   */
  dropTcpConnections (): void {
    for (const s of this.tcpServers) s.closeAllConnections()
  }

  async close (): Promise<void> {
    await Promise.all(this.servers.map(async (s) => {
      s.closeAllConnections()
      await new Promise<void>((resolve) => s.close(() => resolve()))
    }))
    this.servers = []
    this.tcpServers = []
  }
}
