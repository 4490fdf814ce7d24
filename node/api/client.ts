/**
 * A small client for the control API, over a unix socket (a node's data directory) or
 * http://host:port. The CLI uses only this and types.ts from node/.
 */
import { request } from '../http.ts'
import { API_PREFIX, type ApiError } from './types.ts'

/** Every control call answers fast except follow-ups the caller polls; 30 s means the node is stuck. */
const REQUEST_TIMEOUT_MS = 30_000

export class ApiUserError extends Error {
  name = 'ApiUserError'
}

export class NodeUnreachableError extends Error {
  name = 'NodeUnreachableError'
}

export interface ApiTarget {
  socketPath?: string
  url?: string
  /** bearer token for TCP targets (the node's api.token) */
  token?: string
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
    return await new Promise<T>((resolve, reject) => {
      const req = request({
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
        if (err instanceof NodeUnreachableError) reject(err)
        else if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') reject(new NodeUnreachableError(`no p2p-orch agent answers at ${this.describe()} (is the agent running? start it with \`p2p-orch agent --data DIR\`)`))
        else if (err.code === 'EACCES') reject(new NodeUnreachableError(`permission denied on ${this.describe()} (run as the agent's user)`))
        else reject(err)
      })
      if (payload !== undefined) req.write(payload)
      req.end()
    })
  }
}
