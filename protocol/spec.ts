/**
 * Service specs: the desired state of one service, as the cluster stores and gossips it.
 *
 * A spec is produced by the Compose translation (compose.ts) and is plain data (msgpack-able):
 * no class instances, no undefined-vs-missing ambiguity that would change a signature.
 */

import type { FileRef } from './secrets.ts'

/** A published port: `published` opens on every node (routing mesh), `target` is in the container. */
export interface PortSpec {
  target: number
  published?: number
  protocol: 'tcp' | 'udp'
  /** 'ingress' (every node, routing mesh) or 'host' (only where a replica runs), as in Compose. */
  mode: 'ingress' | 'host'
  /** ingress only: the mesh sends a PROXY protocol v2 header before the client's bytes (`x-p2p-orch: {proxy_protocol: true}`) */
  proxyProtocol?: boolean
}

/** A container port other services reach by name without publishing it (Compose `expose:`). */
export interface ExposedPort {
  target: number
  protocol: 'tcp' | 'udp'
}

/**
 * Ports the routing mesh opens on every node: ingress mode with a published number. A `mode: host`
 * port, or one without a published number (an ephemeral host port, as Compose gives), is bound by
 * the engine where the replica runs.
 */
export function isMeshPort (p: PortSpec): boolean {
  return p.mode === 'ingress' && p.published !== undefined
}

export interface HealthcheckSpec {
  /** Docker's form: ['CMD', ...] / ['CMD-SHELL', '...'] / ['NONE'] */
  test: string[]
  intervalMs: number
  timeoutMs: number
  retries: number
  startPeriodMs: number
}

export interface MountSpec {
  type: 'volume' | 'bind' | 'tmpfs'
  /** volume name or host path; empty for tmpfs */
  source: string
  target: string
  readOnly: boolean
}

/** A host device given to the container (Compose `devices:`), as Docker's `--device`. */
export interface DeviceSpec {
  /** device path on the host, e.g. /dev/ttyUSB0 */
  source: string
  /** path in the container */
  target: string
  /** cgroup permissions: some of r, w, m */
  permissions: string
}

export interface RestartPolicySpec {
  condition: 'none' | 'on-failure' | 'any'
  delayMs: number
  /** 0 = unlimited */
  maxAttempts: number
  windowMs: number
}

/** A placement constraint from `deploy.placement.constraints`. */
export interface ConstraintSpec {
  /** 'node.labels.<k>' → key `labels.<k>`; 'node.name' → `name`; 'node.id' → `id`; 'node.hostname' → `name` */
  attribute: string
  op: '==' | '!='
  value: string
}

export interface ResourcesSpec {
  /** CPU cores, e.g. 0.5 */
  cpus?: number
  /** bytes */
  memoryBytes?: number
}

/**
 * How a rollout replaces replicas (Compose `deploy.update_config` / `rollback_config`; the order is
 * placement/rollout.ts). Swarm's names and defaults.
 */
export interface UpdatePolicy {
  /** slots updated at once; 0 = all at once */
  parallelism: number
  /** wait between batches */
  delayMs: number
  /** stop the old replica first (Swarm's default) or start the new one first */
  order: 'stop-first' | 'start-first'
  /** how long an updated replica must stay ready before the next batch, and within which a failure counts */
  monitorMs: number
  failureAction: 'pause' | 'continue' | 'rollback'
  /** failed fraction of the updated slots tolerated before `failureAction` (0 = none) */
  maxFailureRatio: number
}

/** Swarm's `update_config` defaults, for a Compose file that says nothing. */
export const DEFAULT_UPDATE_POLICY: UpdatePolicy = {
  parallelism: 1,
  delayMs: 0,
  order: 'stop-first',
  monitorMs: 5_000,
  failureAction: 'pause',
  maxFailureRatio: 0
}

/** Swarm's `rollback_config` defaults. A rollback that fails cannot roll back again: pause or continue only. */
export const DEFAULT_ROLLBACK_POLICY: UpdatePolicy = { ...DEFAULT_UPDATE_POLICY }

/** Longest `delay` or `monitor` accepted: a day; longer is a typo, and would stall a rollout unseen. */
export const MAX_ROLLOUT_WAIT_MS = 86_400_000

export interface ServiceSpec {
  name: string
  /** stack (Compose project) the service came from */
  stack: string
  image: string
  command?: string[]
  entrypoint?: string[]
  /** KEY=VALUE, sorted by key so equal specs encode equally */
  env: string[]
  labels: Record<string, string>
  ports: PortSpec[]
  /** Compose `expose:`; with the targets of `ports`, what the service answers on by name */
  expose?: ExposedPort[]
  healthcheck?: HealthcheckSpec
  mounts: MountSpec[]
  /** the root file system is mounted read-only (Compose `read_only`) */
  readOnly?: boolean
  /**
   * Host-reaching settings (protocol/host-access.ts): only admin keys may write them and only nodes
   * started with --allow-privileged run them. `capDrop` is not among them: it only takes away.
   */
  privileged?: boolean
  capAdd?: string[]
  capDrop?: string[]
  devices?: DeviceSpec[]
  /** 'host': share the host's PID namespace */
  pid?: 'host'
  /** secrets mounted as files (Compose `secrets:`), on tmpfs, only where a replica runs */
  secrets?: FileRef[]
  /** configs mounted read-only as files (Compose `configs:`) */
  configs?: FileRef[]
  user?: string
  workingDir?: string
  stopSignal?: string
  stopGracePeriodMs?: number
  mode: 'replicated' | 'global'
  /** desired replicas for 'replicated'; ignored for 'global' */
  replicas: number
  limits: ResourcesSpec
  reservations: ResourcesSpec
  restartPolicy: RestartPolicySpec
  constraints: ConstraintSpec[]
  /** 0 = no limit */
  maxReplicasPerNode: number
  /** how a new generation replaces replicas (`deploy.update_config`); absent = DEFAULT_UPDATE_POLICY */
  update?: UpdatePolicy
  /** how a rollback from this spec to the previous one runs (`deploy.rollback_config`); absent = DEFAULT_ROLLBACK_POLICY */
  rollback?: UpdatePolicy
  /**
   * `deploy.x-p2p-orch.canary`: this many slots take the new generation first, then the rollout
   * waits for `promote` (or `rollback`). Equal to (or above) the replica count: blue-green — a full
   * new set starts beside the old one and the mesh switches to it on promote.
   */
  canary?: number
}

/**
 * Spec fields that say how rollouts run, not what a replica is: changing only these starts no
 * rollout (the generation stays), as in Swarm.
 */
export const ROLLOUT_FIELDS = ['replicas', 'update', 'rollback', 'canary'] as const

/** The spec with the fields that do not reach a container cleared: two specs whose task parts are equal need no new generation. */
export function taskPart (spec: ServiceSpec): ServiceSpec {
  const out: Partial<ServiceSpec> = { ...spec, replicas: 0 }
  delete out.update
  delete out.rollback
  delete out.canary
  return out as ServiceSpec
}

/** Largest replica count accepted from a user: far above any fleet we target, low enough to stop typos (1e9). */
export const MAX_REPLICAS = 10_000

export const DEFAULT_RESTART_POLICY: RestartPolicySpec = {
  condition: 'any',
  delayMs: 5_000,
  maxAttempts: 0,
  windowMs: 0
}

/** Service names become container names and DNS labels: same rule as Compose/Swarm. */
export const SERVICE_NAME_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/

/** A spec with every optional part at its default (what a minimal Compose service gives). */
export function newServiceSpec (s: Pick<ServiceSpec, 'name' | 'stack' | 'image'> & Partial<ServiceSpec>): ServiceSpec {
  return {
    env: [],
    labels: {},
    ports: [],
    mounts: [],
    mode: 'replicated',
    replicas: 1,
    limits: {},
    reservations: {},
    restartPolicy: { ...DEFAULT_RESTART_POLICY },
    constraints: [],
    maxReplicasPerNode: 0,
    ...s
  }
}

/**
 * An image reference as the engine parses it (distribution's grammar): `[registry[:port]/]path
 * [:tag][@digest]`, path components lowercase. Checked before an update is written, so a typo is
 * one line for the user rather than a failed rollout.
 */
const IMAGE_COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*'
const IMAGE_DOMAIN = '(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?)'
const IMAGE_TAG = '[\\w][\\w.-]{0,127}'
const IMAGE_DIGEST = '[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}'
export const IMAGE_REFERENCE_PATTERN = new RegExp(`^(?:${IMAGE_DOMAIN}/)?${IMAGE_COMPONENT}(?:/${IMAGE_COMPONENT})*(?::${IMAGE_TAG})?(?:@${IMAGE_DIGEST})?$`)
/** Longest image reference the engine takes. */
export const MAX_IMAGE_REFERENCE = 255

export function isImageReference (s: string): boolean {
  return s.length > 0 && s.length <= MAX_IMAGE_REFERENCE && IMAGE_REFERENCE_PATTERN.test(s)
}
