/**
 * The control API server: JSON over HTTP on a unix socket in the data directory (mode 0600, so
 * only the agent's user can drive it). Routes are registered by createNode; a UserError becomes
 * a 400 with kind 'user', anything else a 500 with kind 'internal' (and is logged with its stack).
 */
import { timingSafeEqual } from 'node:crypto'
import { chmod, rm } from 'node:fs/promises'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import { API_PREFIX, type ApiError } from './api/types.ts'
import { UserError } from './errors.ts'
import { createServer } from './http.ts'
import type { Logger } from './logger.ts'

/** Requests carry specs and small commands; 4 MiB is far above any real one. */
const MAX_BODY_BYTES = 4 * 1024 * 1024

export type Handler = (ctx: { params: Record<string, string>, query: URLSearchParams, body: unknown, res: ServerResponse }) => Promise<unknown> | unknown

interface Route { method: string, parts: string[], handler: Handler }

export class ControlServer {
  private readonly routes: Route[] = []
  private servers: Server[] = []
  private readonly logger: Logger

  constructor (logger: Logger) {
    this.logger = logger
  }

  route (method: string, pattern: string, handler: Handler): void {
    this.routes.push({ method, parts: pattern.split('/').filter(Boolean), handler })
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

  private async handle (req: IncomingMessage, res: ServerResponse): Promise<void> {
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
  private serve (req: IncomingMessage, res: ServerResponse): void {
    this.handle(req, res).catch((err) => {
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
   * Also serve on TCP, for CLIs on other machines (`--api http://host:port`). Unlike the socket,
   * which file permissions protect, every TCP request must carry `Authorization: Bearer <token>`.
   */
  async listenTcp (host: string, port: number, token: string): Promise<void> {
    const expected = Buffer.from(`Bearer ${token}`)
    const server = createServer((req, res) => {
      const got = Buffer.from(req.headers.authorization ?? '')
      if (got.length !== expected.length || !timingSafeEqual(got, expected)) {
        res.writeHead(401, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ error: 'missing or wrong API token (set P2P_ORCH_API_TOKEN to the content of the node\'s api.token)', kind: 'user' } satisfies ApiError))
        return
      }
      this.serve(req, res)
    })
    this.servers.push(server)
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) => reject(new UserError(`cannot serve the control API on ${host}:${port}: ${err.message}`)))
      server.listen(port, host, () => resolve())
    })
  }

  async close (): Promise<void> {
    await Promise.all(this.servers.map(async (s) => {
      s.closeAllConnections()
      await new Promise<void>((resolve) => s.close(() => resolve()))
    }))
    this.servers = []
  }
}
