/**
 * The container runtime boundary. The reconciler only ever talks to this interface; DockerRuntime
 * (dockerode, a real engine) and MemoryRuntime (fast tests) both implement it and both pass
 * test/contract/runtime.contract.ts.
 */
import type { ServiceSpec } from '../../protocol/spec.ts'

/** Labels every managed container carries (the design brief's contract). */
export const LABEL_SERVICE = 'p2p-orch.service'
export const LABEL_SLOT = 'p2p-orch.slot'
export const LABEL_NODE = 'p2p-orch.node'
export const LABEL_GENERATION = 'p2p-orch.generation'
/** The spec's stop grace period (ms), when it sets one. */
export const LABEL_STOP_GRACE = 'p2p-orch.stop-grace-ms'

export type ContainerState = 'created' | 'running' | 'restarting' | 'paused' | 'exited' | 'dead' | 'removing'
export type ContainerHealth = 'none' | 'starting' | 'healthy' | 'unhealthy'

export interface ContainerInfo {
  id: string
  name: string
  service: string
  slot: number
  node: string
  generation: number
  image: string
  state: ContainerState
  health: ContainerHealth
  exitCode: number | null
  /** ms since epoch, 0 if never started */
  startedAt: number
  finishedAt: number
  /** all labels, including the p2p-orch.* ones */
  labels: Record<string, string>
  /** the container's IP on its network while it runs ('' when unknown): where the mesh connects */
  address: string
}

export interface CreateRequest {
  spec: ServiceSpec
  slot: number
  node: string
  generation: number
  /** container name, unique per engine */
  name: string
  /** host IP that `mode: host` published ports bind to (each test node gets its own 127.0.0.N) */
  hostIp?: string
  /** network to attach the container to (the node's mesh network); default: the engine's default */
  network?: string
  /** DNS servers for the container: the node's service-name resolver on its network's gateway */
  dns?: string[]
  /** host files bind-mounted read-only into the container: its secrets and configs (node/secret-files.ts) */
  files?: FileMount[]
}

/** A host file given to a container, read-only, at `target`. */
export interface FileMount {
  source: string
  target: string
}

/** The node's own bridge network, where its containers live and its resolver and service addresses listen. */
export interface NetworkRequest {
  name: string
  /** the host-side bridge interface name (Linux: at most 15 characters) */
  bridge: string
  labels: Record<string, string>
}

export interface NetworkInfo {
  name: string
  id: string
  /** CIDR, e.g. 172.20.0.0/16 */
  subnet: string
  gateway: string
  bridge: string
}

export interface RuntimeEvent {
  type: 'start' | 'die' | 'destroy' | 'health' | 'create' | 'stop'
  containerId: string
  /** labels of the container, when the engine reports them */
  labels: Record<string, string>
}

export interface Resources {
  cpus: number
  memoryBytes: number
}

export interface Runtime {
  /** Engine reachable? Throws RuntimeUnavailableError with the reason otherwise. */
  ping(): Promise<void>
  /** Total resources the engine offers (Docker info NCPU / MemTotal). */
  resources(): Promise<Resources>
  /** Containers with the given p2p-orch.node label (all states). */
  list(node: string): Promise<ContainerInfo[]>
  inspect(id: string): Promise<ContainerInfo | null>
  /** Whether the image exists locally. */
  hasImage(image: string): Promise<boolean>
  /** Create and start; returns the container id. Throws ImageNotFoundError if the image is missing. */
  run(req: CreateRequest): Promise<string>
  start(id: string): Promise<void>
  /** Stop with the spec's grace period (seconds), then the engine kills. */
  stop(id: string, graceMs: number): Promise<void>
  remove(id: string): Promise<void>
  /** Subscribe to container events; returns an unsubscribe function. */
  events(onEvent: (e: RuntimeEvent) => void): () => void
  /** Container log output (stdout+stderr), last `tail` lines. */
  logs(id: string, tail: number): Promise<string>
  /** Create the bridge network if it does not exist (same name: reused as it is); returns its addresses. */
  ensureNetwork(req: NetworkRequest): Promise<NetworkInfo>
  /** Remove a network; one that is gone or still has containers attached is left alone. */
  removeNetwork(name: string): Promise<void>
}

export class RuntimeUnavailableError extends Error {
  name = 'RuntimeUnavailableError'
}

export class ImageNotFoundError extends Error {
  name = 'ImageNotFoundError'
}
