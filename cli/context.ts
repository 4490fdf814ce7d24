/**
 * How a command finds its node: --api (socket path, data directory or https:// URL), else
 * --data DIR / P2P_ORCH_DATA (the node's data directory holds control.sock). An https:// node
 * needs P2P_ORCH_API_TOKEN, the content of its api.token: the bearer secret and the pin of its
 * certificate (node/api/api-token.ts). Which credential signs its writes: credentials.ts
 * (--key FILE, P2P_ORCH_KEY, the user's credentials file).
 */
import { existsSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { decodeApiToken } from '../node/api/api-token.ts'
import { ApiClient } from '../node/api/client.ts'
import { CliUserError } from './errors.ts'

export interface GlobalOptions {
  data?: string
  api?: string
  json?: boolean
  /** a file holding the credential that signs writes */
  key?: string
}

export function dataDirOf (g: GlobalOptions): string | undefined {
  return g.data ?? process.env.P2P_ORCH_DATA
}

/** True when --api names a node over TCP (commands that need the local socket refuse it). */
export function isRemote (g: GlobalOptions): boolean {
  return g.api !== undefined && /^https?:\/\//i.test(g.api)
}

function tcpTarget (api: string): { url: string, token: string, pin: string } {
  if (!URL.canParse(api)) throw new CliUserError(`--api ${api} is not a URL: give https://HOST:PORT`)
  const raw = process.env.P2P_ORCH_API_TOKEN
  if (raw === undefined || raw.trim() === '') throw new CliUserError(`--api ${api} needs P2P_ORCH_API_TOKEN: the content of that node's api.token (\`p2p-orch api-token\` on it prints it)`)
  const t = decodeApiToken(raw)
  if (t === null) throw new CliUserError('P2P_ORCH_API_TOKEN is not a p2p-orch API token (p2porchapi1.…; a token from before HTTPS no longer works): take the current one from `p2p-orch api-token` on that node')
  return { url: api, token: t.secret, pin: t.pin }
}

export function clientFor (g: GlobalOptions): ApiClient {
  if (g.api !== undefined) {
    if (/^http:\/\//i.test(g.api)) throw new CliUserError(`--api ${g.api}: the control API over TCP is HTTPS only; use --api https://${g.api.slice('http://'.length)}`)
    if (/^https:\/\//i.test(g.api)) return new ApiClient(tcpTarget(g.api))
    const path = existsSync(join(g.api, 'control.sock')) ? join(g.api, 'control.sock') : g.api
    return new ApiClient({ socketPath: resolve(path) })
  }
  const dir = dataDirOf(g)
  if (dir === undefined) throw new CliUserError('which node? pass --data DIR (the agent\'s data directory) or set P2P_ORCH_DATA, or use --api')
  return new ApiClient({ socketPath: resolve(join(dir, 'control.sock')) })
}
