/**
 * Request and response types of the control API: all the CLI shares with the node.
 * JSON over HTTP on the node's control socket (<data>/control.sock).
 */

export const API_PREFIX = '/v1'

export interface ApiError {
  error: string
  /** 'user' for mistakes the user can fix (exit code 1), 'internal' for bugs */
  kind: 'user' | 'internal'
}

export interface InfoResponse {
  id: string
  name: string
  clusterId: string
  addrs: string[]
  canWrite: boolean
  version: string
}

export interface NodeView {
  id: string
  name: string
  status: 'alive' | 'suspect' | 'dead' | 'left'
  addrs: string[]
  labels: Record<string, string>
  availability: 'active' | 'drain' | 'pause'
  incarnation: number
  cpus: number
  memoryBytes: number
  version: string
  /** ms since epoch the node first joined */
  joinedAt: number
  self: boolean
}

export interface JoinTokenResponse {
  token: string
  command: string
}

export interface RemoveNodeRequest {
  force?: boolean
}
