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
  /** published ports this node cannot open (e.g. taken by another program) */
  portErrors: string[]
}

export interface JoinTokenResponse {
  token: string
  command: string
}

export interface RemoveNodeRequest {
  force?: boolean
}

// ---- services ----------------------------------------------------------------------------

import type { ServiceSpec } from '../../protocol/spec.ts'
import type { TaskExit } from '../../protocol/keys.ts'

export interface DeployRequest {
  stack: string
  services: ServiceSpec[]
  /** only compute the plan */
  dryRun?: boolean
  /** also remove services of this stack that are not in the file */
  prune?: boolean
}

export interface ServiceChange {
  service: string
  action: 'create' | 'update' | 'unchanged' | 'remove' | 'scale'
  /** desired replicas after the change */
  replicas: number
  /** generation after the change */
  generation: number
  /** human descriptions of what differs, e.g. "image: a → b" */
  details: string[]
}

export interface DeployResponse {
  stack: string
  changes: ServiceChange[]
}

export interface ScaleRequest {
  scales: Record<string, number>
  dryRun?: boolean
}

export interface ScaleResponse {
  changes: ServiceChange[]
}

export interface ServiceView {
  name: string
  stack: string
  image: string
  mode: 'replicated' | 'global'
  /** desired replicas (for global: the number of eligible nodes) */
  replicas: number
  running: number
  generation: number
  /** published ports: "8080->80/tcp" (routing mesh, every node), "80/tcp" (host port where a replica runs), "8080->80/tcp (host)" */
  ports: string[]
  /** nodes that cannot open one of the service's published ports, and why */
  portErrors: PortError[]
}

export interface PortError {
  node: string
  nodeName: string
  port: number
  protocol: 'tcp' | 'udp'
  error: string
}

/** A replica this node's routing mesh sends connections to (`inspect`). */
export interface RouteView {
  slot: number
  node: string
  nodeName: string
  container: string
  generation: number
  local: boolean
  /** connections open through this node right now */
  connections: number
}

export interface TaskView {
  service: string
  slot: number
  /** node id, '' when no node can take the slot */
  node: string
  nodeName: string
  /** 'running' for slots placement wants, 'shutdown' for replicas being moved away */
  desired: 'running' | 'shutdown'
  state: 'pending' | 'starting' | 'running' | 'failed' | 'stopping' | 'complete' | 'rejected'
  health: 'none' | 'starting' | 'healthy' | 'unhealthy'
  container: string
  generation: number
  error: string
  startedAt: number
  history: TaskExit[]
}

export interface InspectResponse {
  spec: ServiceSpec
  generation: number
  replicas: number
  tasks: TaskView[]
  /** where the asked node's routing mesh sends this service's connections */
  routes: RouteView[]
}
