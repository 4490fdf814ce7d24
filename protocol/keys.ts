/**
 * Key families of the cluster state, their value types, and who may write them.
 *
 * Desired state (operator-signed, last-writer-wins by HLC):
 *   svc/<name>        ServiceRecord | null (null = removed)
 *   scale/<name>      ScaleRecord — separate from the spec so `scale` and `update` never clobber each other
 *   nodecfg/<peerId>  NodeConfig — operator-set labels and availability
 *   key/<name>        KeyRecord — an operator key: its public key, role, expiry, revocation (admin keys only)
 *   admit/<peerId>    AdmitRecord — the node is a member (admin keys, or the admitter key of a join token)
 *   secret/<name>     SecretRecord | null — a secret's value, encrypted under its data key (secrets.ts)
 *   config/<name>     ConfigRecord | null — a config's value
 *   netkey/<keyId>    NetKeyRecord — a private-network key being rotated in (install) or out (remove); admin only
 *   netkey/primary    NetKeyPrimary — the network key every node dials with
 * Observed state (signed by the node it describes, only that node may write it):
 *   member/<peerId>   MemberRecord, versioned [incarnation, rank] (any member may declare suspect/dead)
 *   node/<peerId>     NodeInfo — name, addresses, resources (LWW by HLC)
 *   tasks/<peerId>    TaskReport — the replicas the node runs (LWW by HLC); more shards as tasks/<peerId>.<i> (tasks.ts)
 *   mesh/<peerId>     MeshReport — the routing mesh's published ports on that node, and any it cannot open
 *   share/<peerId>.<secret>  ShareRecord | null — a secret's data key sealed to that node; written by
 *                     any admitted node that holds the key (secrets.ts), withdrawn when no longer needed
 *   rollout/<name>    RolloutDecision — how the rollout of a service ended (completed, paused, rolled
 *                     back), as the first admitted node to see it recorded it (placement/rollout.ts)
 */
import type { HostAccess } from './host-access.ts'
import type { MemberStatus } from './membership.ts'
import type { ServiceSpec } from './spec.ts'

export type Family = 'svc' | 'scale' | 'nodecfg' | 'key' | 'admit' | 'secret' | 'config' | 'netkey' | 'member' | 'node' | 'tasks' | 'mesh' | 'share' | 'rollout'

export const DESIRED_FAMILIES: ReadonlySet<Family> = new Set(['svc', 'scale', 'nodecfg', 'key', 'admit', 'secret', 'config', 'netkey'])
export const OBSERVED_FAMILIES: ReadonlySet<Family> = new Set(['member', 'node', 'tasks', 'mesh', 'share', 'rollout'])

export function parseKey (key: string): { family: Family, id: string } | null {
  const slash = key.indexOf('/')
  if (slash <= 0) return null
  const family = key.slice(0, slash) as Family
  const id = key.slice(slash + 1)
  if (id.length === 0 || id.includes('/')) return null
  if (!DESIRED_FAMILIES.has(family) && !OBSERVED_FAMILIES.has(family)) return null
  return { family, id }
}

export const key = {
  svc: (name: string) => `svc/${name}`,
  scale: (name: string) => `scale/${name}`,
  nodecfg: (id: string) => `nodecfg/${id}`,
  key: (name: string) => `key/${name}`,
  admit: (id: string) => `admit/${id}`,
  member: (id: string) => `member/${id}`,
  node: (id: string) => `node/${id}`,
  tasks: (id: string) => `tasks/${id}`,
  mesh: (id: string) => `mesh/${id}`,
  secret: (name: string) => `secret/${name}`,
  config: (name: string) => `config/${name}`,
  share: (node: string, secret: string) => `share/${node}.${secret}`,
  netkey: (id: string) => `netkey/${id}`,
  rollout: (name: string) => `rollout/${name}`
}

/** `netkey/primary`: the id of the network key every node dials with. */
export const NETKEY_PRIMARY = 'primary'

/**
 * A network key (libp2p pnet) named by its SHA-256: `install` — every node accepts it (the key
 * itself reaches each node sealed to it, as a secret's data key: protocol/secrets.ts); `remove` —
 * no node accepts it any more.
 */
export interface NetKeyRecord {
  /** SHA-256 of the key, hex (its id is the first 16 digits) */
  fingerprint: string
  stage: 'install' | 'remove'
}

export interface NetKeyPrimary {
  keyId: string
}

export interface ServiceRecord {
  spec: ServiceSpec
  /** bumped by every change of what a replica is (spec.ts taskPart); replicas carry it as a label */
  generation: number
  /** the spec this one replaced: a rollback (by hand, or decided by the nodes) returns to it */
  previous?: { spec: ServiceSpec, generation: number }
  /** the rollout to this generation, as its writer asked for it (absent: a record from before rollouts: completed) */
  rollout?: RolloutIntent
}

/** What the operator asked of the rollout to a record's generation. */
export interface RolloutIntent {
  /** 'update': deploy or update; 'rollback': `p2p-orch rollback` (runs with the replaced spec's rollback policy) */
  kind: 'update' | 'rollback'
  /** ms since epoch when it was asked for (or last resumed): earlier exits are not its failures */
  startedAt: number
  /** bumped by every resume and promote: node decisions (`rollout/<name>`) of an earlier epoch no longer apply */
  epoch: number
  /** `update --pause`: no further batch starts */
  paused?: boolean
  /** `promote`: the canary (or the blue-green set) was accepted, the rollout goes on */
  promoted?: boolean
}

/**
 * `rollout/<name>`: what the nodes concluded about the rollout to (generation, epoch). Written by
 * whichever admitted node sees it first (the service's coordinator at once, others after a
 * delay); concurrent writes converge by the usual LWW order. `rollback` makes every node run the
 * record's `previous` spec instead; `then` is the outcome of that rollback.
 */
export interface RolloutDecision {
  generation: number
  epoch: number
  outcome: 'completed' | 'paused' | 'rollback'
  reason: string
  /** ms since epoch, the writer's clock: a rollback counts its own failures from here */
  at: number
  then?: { outcome: 'completed' | 'paused', reason: string }
}

export interface ScaleRecord {
  replicas: number
}

export type Availability = 'active' | 'drain' | 'pause'

export interface NodeConfig {
  labels: Record<string, string>
  availability: Availability
}

/**
 * `admitter` is the role of the key a join token carries: it can admit nodes (its holder's own
 * node, when it joins) and nothing else, so a leaked token admits nodes until it is rotated or
 * expires, but changes no service and no key.
 */
export type Role = 'admin' | 'deployer' | 'viewer' | 'admitter'
export const ROLES: readonly Role[] = ['admin', 'deployer', 'viewer', 'admitter']

/**
 * Desired-state families each role may write. Node availability (drain, pause) and labels are
 * admin-only, as in Swarm where only managers drain nodes: they move every replica of a node.
 */
export const ROLE_FAMILIES: Record<Role, ReadonlySet<Family>> = {
  admin: new Set(['svc', 'scale', 'nodecfg', 'key', 'admit', 'secret', 'config', 'netkey']),
  deployer: new Set(['svc', 'scale', 'secret', 'config']),
  viewer: new Set(),
  admitter: new Set(['admit'])
}

/** Key names: short, so `op:<name>:<hex>` fits the wire's writer limit. */
export const KEY_NAME_PATTERN = /^[a-z0-9][a-z0-9_-]{0,31}$/
/** The cluster's founding key: always admin, named by its bare writer id `op:<hex>`; no record can be created under this name. */
export const FOUNDER_KEY_NAME = 'founder'

/**
 * An operator key. Records are last-writer-wins like any desired record; a key is revoked by
 * writing its record again with `revoked: true`, and that record's version is the moment of
 * revocation: the key's writes stamped at or after it are refused.
 */
export interface KeyRecord {
  /** Ed25519 public key, 64 hex digits */
  publicKey: string
  role: Role
  /** ms since epoch; writes whose HLC wall time is at or after it are refused */
  expiresAt?: number
  revoked?: boolean
}

/**
 * A node's admission. Only admitted nodes count as members: their observed records (node info,
 * tasks, membership, mesh) are applied, they may declare others suspect or dead, and they stay
 * connected. `node rm` writes it again with `revoked: true`; the node must be admitted again (a
 * newer record, from a valid join token or an admin) to come back.
 */
export interface AdmitRecord {
  revoked?: boolean
}

export interface MemberRecord {
  status: MemberStatus
}

export interface NodeInfo {
  name: string
  /** multiaddrs ending in /p2p/<id> */
  addrs: string[]
  /** labels given with --label at start */
  labels: Record<string, string>
  cpus: number
  memoryBytes: number
  /** software version, for `nodes` */
  version: string
  /** ms since epoch when this agent process started */
  startedAt: number
  /** ms since epoch when the node first joined (kept across restarts) */
  joinedAt: number
  /** what its operator lets specs reach on this host (--allow-host-path, --allow-privileged); absent = nothing */
  hostAccess?: HostAccess
  /** X25519 public key (hex) secrets' data keys are sealed to (protocol/secrets.ts); absent: the node takes no secrets */
  sealKey?: string
  /** ids of the network keys it accepts, the one it dials with first (node/network-keyring.ts) */
  netKeys?: string[]
}

export type TaskState = 'pending' | 'starting' | 'running' | 'failed' | 'stopping' | 'complete' | 'rejected'

export interface TaskExit {
  at: number
  exitCode: number | null
  reason: string
  /** the generation of the replica that exited (a rollout counts only its own generation's failures) */
  generation?: number
}

export interface TaskStatus {
  service: string
  slot: number
  container: string
  state: TaskState
  health: 'none' | 'starting' | 'healthy' | 'unhealthy'
  generation: number
  error: string
  startedAt: number
  /** ms since epoch since when it has been ready (running, and healthy if it has a healthcheck): what a rollout's `monitor` counts; absent while not ready */
  readySince?: number
  /** last few exits, newest first (Swarm's task history) */
  history: TaskExit[]
  /** 'shutdown' for a replica this node is handing over or stopping; absent means 'running' */
  desired?: 'running' | 'shutdown'
}

export interface TaskReport {
  tasks: TaskStatus[]
  /** shard 0 only: how many shards the node's report has (protocol/tasks.ts); absent = 1 */
  shards?: number
}

/** One published port of the routing mesh on one node. */
export interface MeshPortStatus {
  service: string
  port: number
  protocol: 'tcp' | 'udp'
  /** '' while the port is open; otherwise why this node cannot open it (e.g. taken by another program) */
  error: string
}

export interface MeshReport {
  ports: MeshPortStatus[]
}
