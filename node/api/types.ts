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
  /** the node accepts writes signed by a credential (always: nodes hold no operator key) */
  canWrite: boolean
  version: string
  /** root hash of the node's merged state (hex): nodes holding the same state show the same root */
  stateRoot: string
}

// ---- signed writes -----------------------------------------------------------------------
//
// Nodes hold no operator private key. A write route (deploy, scale, rm, node update/rm, key
// create/revoke) answers with what it would change and `sign`: the records to write, versioned
// by the node's clock. The CLI signs them with its credential and posts them to /records, where
// they are validated like records from the network (signature, the key's role, expiry,
// revocation) before they are applied and spread.

/** A record prepared for the caller to sign; `p` is the msgpack payload in base64. */
export interface UnsignedRecord {
  k: string
  t: [number, number]
  p: string
}

export interface SignRequest {
  clusterId: string
  records: UnsignedRecord[]
}

/** `w` the writer id of the credential's key, `s` its Ed25519 signature (base64) over signingBytes. */
export interface SignedRecord extends UnsignedRecord {
  w: string
  s: string
}

export interface SubmitRequest {
  records: SignedRecord[]
}

export interface SubmitResponse {
  applied: number
}

/** Present in a write route's answer unless it was a dry run or nothing changes. */
export interface Signable {
  sign?: SignRequest
}

// ---- keys --------------------------------------------------------------------------------

export interface KeyView {
  name: string
  role: 'admin' | 'deployer' | 'viewer' | 'admitter'
  /** Ed25519 public key, hex */
  publicKey: string
  /** true for the cluster's founding key (no key record; always admin) */
  founder: boolean
  /** ms since epoch, when the key record was last written (for a revoked key: the revocation) */
  updatedAt: number
  expiresAt?: number
  expired: boolean
  revoked: boolean
}

export interface CreateKeyRequest {
  name: string
  role: 'admin' | 'deployer' | 'viewer'
  publicKey: string
  /** lifetime in ms from now (the node's clock); absent: no expiry */
  ttlMs?: number
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
  /** host paths and privileged settings its operator allows specs (agent --allow-host-path, --allow-privileged) */
  hostAccess: { paths: string[], privileged: boolean }
  self: boolean
  /** published ports this node cannot open (e.g. taken by another program) */
  portErrors: string[]
}

export interface JoinTokenResponse {
  token: string
  command: string
}

/** POST /join-token: register a new admitter key for a token (the CLI holds its private key). */
export interface MintJoinKeyRequest {
  /** `join-<8 hex>` */
  name: string
  publicKey: string
  ttlMs?: number
  /** revoke every admitter key not yet revoked first: tokens made before stop admitting nodes */
  rotate?: boolean
}

export interface MintJoinKeyResponse extends Signable {
  /** the token without admission; the CLI adds the admitter credential and its signed key record */
  token: string
  /** admitter keys this rotation revokes */
  revoked: string[]
}

export interface RemoveNodeRequest {
  force?: boolean
}

// ---- services ----------------------------------------------------------------------------

import type { ServiceSpec, UpdatePolicy } from '../../protocol/spec.ts'
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

export interface DeployResponse extends Signable {
  stack: string
  changes: ServiceChange[]
}

export interface ScaleRequest {
  scales: Record<string, number>
  dryRun?: boolean
}

export interface ScaleResponse extends Signable {
  changes: ServiceChange[]
}

/** `update SERVICE`: changes to the running spec; any of them, or a pause or resume alone. */
export interface UpdateRequest {
  service: string
  image?: string
  /** KEY=VALUE, added or replaced */
  env?: string[]
  /** KEYs removed */
  envRm?: string[]
  replicas?: number
  pause?: boolean
  resume?: boolean
  dryRun?: boolean
}

export interface UpdateResponse extends Signable {
  change: ServiceChange
}

/** `rollback SERVICE`, `promote SERVICE`. */
export interface RolloutActionRequest {
  service: string
}

export type RolloutStateView = 'updating' | 'waiting' | 'paused' | 'completed' | 'failed' | 'rolling back' | 'rolled back' | 'rollback paused'

/** A service's rollout, as `rollout status` shows it. */
export interface RolloutView {
  service: string
  /** the generation being rolled out (during an automatic rollback: the one it returns to) */
  generation: number
  /** the generation being replaced; null for a first deploy */
  from: number | null
  kind: 'update' | 'rollback' | 'auto-rollback'
  state: RolloutStateView
  /** 1-based batch under way, of batches */
  batch: number
  batches: number
  /** slots running `generation`, of total */
  updated: number
  total: number
  failures: number
  reason: string
  policy: UpdatePolicy
  canary: number
  promoted: boolean
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

/** GET /api-token, POST /api-token/rotate (control socket only): how remote CLIs reach this node. */
export interface ApiTokenResponse {
  /** the content of api.token: give it to remote CLIs as P2P_ORCH_API_TOKEN */
  token: string
  /** https://HOST:PORT as --api-listen gave it */
  url: string
  /** SHA-256 of the node's API certificate (hex), also inside the token */
  pin: string
  /** true when this call replaced the token (the previous one is refused from now on) */
  rotated: boolean
}

// ---- secrets and configs -------------------------------------------------------------------

/** POST /secrets: a secret the CLI encrypted under a data key it made (protocol/secrets.ts); bytes base64. */
export interface CreateSecretRequest {
  name: string
  id: string
  nonce: string
  data: string
  size: number
}

/** POST /secrets/:name/key: the data key of the secret just created, for this node to hold (base64). */
export interface SecretKeyRequest {
  id: string
  key: string
}

/** POST /configs: a config's value (base64). */
export interface CreateConfigRequest {
  name: string
  data: string
}

export interface FileCreateResponse extends Signable {
  name: string
  /** the version id of what is written (secrets: the request's) */
  id: string
}

/** `secret ls` / `config ls`: names and who uses them, never values. */
export interface FileView {
  name: string
  size: number
  /** ms since epoch */
  createdAt: number
  /** services that mount it */
  services: string[]
  /** secrets: how many nodes hold its key now */
  holders?: number
}

// ---- network keys ----------------------------------------------------------------------------

/** `network-key ls`: each network key the cluster knows of, by id (never the key). */
export interface NetworkKeyView {
  id: string
  state: 'in use' | 'installed' | 'removed'
  /** names of the alive nodes that accept it */
  installedOn: string[]
  /** how many nodes are alive */
  alive: number
  /** names of the alive nodes that dial with it */
  dialling: string[]
  /** the asked node's open connections made with it */
  connections: number
}

/** POST /network-keys: the SHA-256 (hex) of a new key the CLI made. */
export interface InstallNetworkKeyRequest {
  fingerprint: string
}
