/**
 * How a command finds its node: --api (socket path or http URL), else --data DIR /
 * P2P_ORCH_DATA (the node's data directory holds control.sock). Which credential signs its
 * writes: credentials.ts (--key FILE, P2P_ORCH_KEY, the user's credentials file).
 */
import { existsSync } from 'node:fs'
import { join, resolve } from 'node:path'
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

export function clientFor (g: GlobalOptions): ApiClient {
  if (g.api !== undefined) {
    if (/^https?:\/\//.test(g.api)) return new ApiClient({ url: g.api, token: process.env.P2P_ORCH_API_TOKEN })
    const path = existsSync(join(g.api, 'control.sock')) ? join(g.api, 'control.sock') : g.api
    return new ApiClient({ socketPath: resolve(path) })
  }
  const dir = dataDirOf(g)
  if (dir === undefined) throw new CliUserError('which node? pass --data DIR (the agent\'s data directory) or set P2P_ORCH_DATA, or use --api')
  return new ApiClient({ socketPath: resolve(join(dir, 'control.sock')) })
}
