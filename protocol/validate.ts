/**
 * Validation of every record that arrives from the network: key family, writer authority,
 * version sanity, signature, and the shape and bounds of the value. A record that fails any
 * check is rejected whole; the caller counts it and penalises the sender.
 */
import { unpack } from './codec.ts'
import { isTooFarAhead } from './hlc.ts'
import {
  parseKey, DESIRED_FAMILIES, NETKEY_PRIMARY, FOUNDER_KEY_NAME, KEY_NAME_PATTERN, ROLE_FAMILIES, ROLES, type Family, type KeyRecord
} from './keys.ts'
import { isSelfOnlyStatus, statusOfRank } from './membership.ts'
import type { StateRecord } from './record.ts'
import { isNodeWriter, parseOperatorWriter, verifyRecord } from './sign.ts'
import { MAX_TASK_SHARDS, parseTaskId } from './tasks.ts'
import { MAX_ALLOWED_HOST_PATHS, normaliseHostPath, privilegedSettings } from './host-access.ts'
import { MAX_REPLICAS, MAX_ROLLOUT_WAIT_MS, SERVICE_NAME_PATTERN, type ServiceSpec } from './spec.ts'
import {
  DATA_KEY_BYTES, MAX_FILE_OWNER_ID, MAX_FILE_REFS, MAX_SECRET_BYTES, NETKEY_ID_PATTERN, NONCE_BYTES, parseShareId, SECRET_ID_PATTERN, SECRET_NAME_PATTERN, TAG_BYTES, X25519_KEY_BYTES
} from './secrets.ts'

/** The `key/<name>` record a node holds: its version (the moment it was written) and value. */
export interface KeyEntry {
  t: [number, number]
  value: KeyRecord
}

/**
 * Who the cluster trusts to write desired state: the founding operator keys (`op:<hex>`, always
 * admin), and the named keys (`op:<name>:<hex>`) that `key/<name>` records describe.
 */
export interface Trust {
  operators: ReadonlySet<string>
  /** the key record held for a name; without it no named key is trusted */
  key?: (name: string) => KeyEntry | undefined
  /**
   * The admission of a node id (`admit/<id>`): observed records are applied only from admitted
   * writers. Absent: admission is not checked (pure tests of the other rules).
   */
  admission?: (id: string) => Admission
}

/** `unknown`: no `admit/` record held (yet); `revoked`: removed with `node rm`. */
export type Admission = 'admitted' | 'revoked' | 'unknown'

/**
 * `soft` marks a refusal that rests on the key records this node holds rather than on the record
 * alone: `pending` — its key is not known here yet (the record is kept aside and tried again when
 * key records arrive); `refused` — the key may not write it (role, expiry, revocation). A peer
 * that forwards such a record may simply know less than we do, so it is not penalised.
 */
export type Validation = { ok: true, value: unknown } | { ok: false, reason: string, soft?: 'pending' | 'refused' }
export type AuthorityError = { reason: string, soft?: 'pending' | 'refused' }

/** Bounds on observed values, so one node cannot bloat everybody's state. */
export const MAX_LABELS = 64
export const MAX_LABEL_LENGTH = 256
export const MAX_ADDRS = 16
export const MAX_TASKS_PER_NODE = 2_000
export const MAX_HISTORY = 5
/** Every published port of every service, on one node: a TCP and a UDP table of 65 535 is the hard ceiling; far fewer in practice. */
export const MAX_MESH_PORTS_PER_NODE = 4_096
export const MAX_STRING = 4096
/** Network keys one node may accept at once (node/network-keyring.ts: the current one and the next, with room for an overlap). */
export const MAX_NETWORK_KEYS = 4
/**
 * Highest incarnation a suspect/dead rumour may carry. Without a bound, a rumour at the largest
 * safe integer could never be refuted (incarnation + 1 no longer encodes exactly). Real
 * incarnations grow by one per restart or refutation; 2^52 is unreachable.
 */
export const MAX_RUMOUR_INCARNATION = 2 ** 52

type Check = (v: unknown) => string | null

const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array)
const isStr = (v: unknown, max = MAX_STRING): v is string => typeof v === 'string' && v.length <= max
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0
const isInt = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0

function labelsError (v: unknown, what: string): string | null {
  if (!isObj(v)) return `${what} is not a map`
  const entries = Object.entries(v)
  if (entries.length > MAX_LABELS) return `${what} has more than ${MAX_LABELS} entries`
  for (const [k, val] of entries) {
    if (k.length > MAX_LABEL_LENGTH || !isStr(val, MAX_LABEL_LENGTH)) return `${what} entry ${k.slice(0, 40)} is invalid`
  }
  return null
}

const isPort = (v: unknown): v is number => isInt(v) && v >= 1 && v <= 65535

/** The routing mesh opens published ports on every node: each field must be what it claims. */
function portOk (p: unknown): boolean {
  return isObj(p) && isPort(p.target) && (p.published === undefined || isPort(p.published)) &&
    (p.protocol === 'tcp' || p.protocol === 'udp') && (p.mode === 'ingress' || p.mode === 'host') &&
    (p.proxyProtocol === undefined || typeof p.proxyProtocol === 'boolean')
}

function strList (v: unknown, max: number): boolean {
  return Array.isArray(v) && v.length <= max && v.every((s) => isStr(s))
}

/** Container paths: absolute, no NUL (the engine would cut the string there). */
const isContainerPath = (v: unknown): boolean => isStr(v) && v.startsWith('/') && !v.includes('\0')

function mountOk (m: unknown): boolean {
  if (!isObj(m) || !isContainerPath(m.target) || !isStr(m.source) || typeof m.readOnly !== 'boolean') return false
  if (m.type === 'bind') return isContainerPath(m.source)
  // a volume is the engine's (named, or '' for an anonymous one), never a host path
  if (m.type === 'volume') return !(m.source as string).includes('/')
  return m.type === 'tmpfs' && m.source === ''
}

/** Linux capability names as Docker takes them (`NET_ADMIN`, `CAP_NET_ADMIN`, `ALL`). */
const CAPABILITY_PATTERN = /^[A-Z][A-Z0-9_]{0,63}$/
const MAX_CAPABILITIES = 64
const MAX_DEVICES = 64

function capsOk (v: unknown): boolean {
  return v === undefined || (Array.isArray(v) && v.length <= MAX_CAPABILITIES && v.every((c) => typeof c === 'string' && CAPABILITY_PATTERN.test(c)))
}

function devicesOk (v: unknown): boolean {
  return v === undefined || (Array.isArray(v) && v.length <= MAX_DEVICES &&
    v.every((d) => isObj(d) && isContainerPath(d.source) && isContainerPath(d.target) && typeof d.permissions === 'string' && /^[rwm]{1,3}$/.test(d.permissions)))
}

const isBytes = (v: unknown, min: number, max: number): v is Uint8Array => v instanceof Uint8Array && v.length >= min && v.length <= max


/** A secret or config a service mounts: a plain name, an absolute target, a uid/gid and permission bits. */
function fileRefsOk (v: unknown): boolean {
  if (v === undefined) return true
  if (!Array.isArray(v) || v.length > MAX_FILE_REFS) return false
  const targets = new Set<string>()
  for (const f of v) {
    if (!isObj(f) || !isStr(f.source, 64) || !SECRET_NAME_PATTERN.test(f.source) || !isContainerPath(f.target) || !isStr(f.target, 1024)) return false
    if (!isInt(f.uid) || f.uid > MAX_FILE_OWNER_ID || !isInt(f.gid) || f.gid > MAX_FILE_OWNER_ID || !isInt(f.mode) || f.mode > 0o7777) return false
    if (targets.has(f.target as string)) return false
    targets.add(f.target as string)
  }
  return true
}

function updatePolicyOk (v: unknown, rollback: boolean): boolean {
  if (v === undefined) return true
  const wait = (n: unknown): boolean => isInt(n) && n <= MAX_ROLLOUT_WAIT_MS
  return isObj(v) && isInt(v.parallelism) && v.parallelism <= MAX_REPLICAS && wait(v.delayMs) && wait(v.monitorMs) &&
    (v.order === 'stop-first' || v.order === 'start-first') &&
    (v.failureAction === 'pause' || v.failureAction === 'continue' || (!rollback && v.failureAction === 'rollback')) &&
    isNum(v.maxFailureRatio) && v.maxFailureRatio <= 1
}

export function specError (s: unknown): string | null {
  if (!isObj(s)) return 'spec is not a map'
  if (!isStr(s.name) || !SERVICE_NAME_PATTERN.test(s.name)) return 'spec.name is invalid'
  if (!isStr(s.stack, 128)) return 'spec.stack is invalid'
  if (!isStr(s.image, 512) || s.image.length === 0) return 'spec.image is invalid'
  if (s.command !== undefined && !strList(s.command, 256)) return 'spec.command is invalid'
  if (s.entrypoint !== undefined && !strList(s.entrypoint, 256)) return 'spec.entrypoint is invalid'
  if (!strList(s.env, 1024)) return 'spec.env is invalid'
  const le = labelsError(s.labels, 'spec.labels')
  if (le !== null) return le
  if (!Array.isArray(s.ports) || s.ports.length > 256 || !s.ports.every(portOk)) return 'spec.ports is invalid'
  if (s.expose !== undefined && (!Array.isArray(s.expose) || s.expose.length > 256 ||
    !s.expose.every((p) => isObj(p) && isPort(p.target) && (p.protocol === 'tcp' || p.protocol === 'udp')))) return 'spec.expose is invalid'
  if (!Array.isArray(s.mounts) || s.mounts.length > 256 || !s.mounts.every(mountOk)) return 'spec.mounts is invalid'
  if (s.readOnly !== undefined && typeof s.readOnly !== 'boolean') return 'spec.readOnly is invalid'
  if (s.privileged !== undefined && typeof s.privileged !== 'boolean') return 'spec.privileged is invalid'
  if (!capsOk(s.capAdd) || !capsOk(s.capDrop)) return 'spec capabilities are invalid'
  if (!devicesOk(s.devices)) return 'spec.devices is invalid'
  if (s.pid !== undefined && s.pid !== 'host') return 'spec.pid is invalid'
  if (!fileRefsOk(s.secrets)) return 'spec.secrets is invalid'
  if (!fileRefsOk(s.configs)) return 'spec.configs is invalid'
  if (s.mode !== 'replicated' && s.mode !== 'global') return 'spec.mode is invalid'
  if (!isInt(s.replicas) || s.replicas > MAX_REPLICAS) return 'spec.replicas is invalid'
  if (!isObj(s.limits) || !isObj(s.reservations)) return 'spec resources are invalid'
  for (const r of [s.limits, s.reservations]) {
    if ((r.cpus !== undefined && !isNum(r.cpus)) || (r.memoryBytes !== undefined && !isNum(r.memoryBytes))) return 'spec resources are invalid'
  }
  if (!isObj(s.restartPolicy) || !['none', 'on-failure', 'any'].includes(s.restartPolicy.condition as string)) return 'spec.restartPolicy is invalid'
  if (!Array.isArray(s.constraints) || s.constraints.length > 64 ||
    !s.constraints.every((c) => isObj(c) && isStr(c.attribute) && (c.op === '==' || c.op === '!=') && isStr(c.value))) return 'spec.constraints is invalid'
  if (!isInt(s.maxReplicasPerNode)) return 'spec.maxReplicasPerNode is invalid'
  if (!updatePolicyOk(s.update, false)) return 'spec.update is invalid'
  if (!updatePolicyOk(s.rollback, true)) return 'spec.rollback is invalid'
  if (s.canary !== undefined && !(isInt(s.canary) && s.canary >= 1 && s.canary <= MAX_REPLICAS)) return 'spec.canary is invalid'
  return null
}

/** Longest reason a node may write into a rollout decision. */
export const MAX_ROLLOUT_REASON = 512

function rolloutIntentOk (v: unknown): boolean {
  return isObj(v) && (v.kind === 'update' || v.kind === 'rollback') && isInt(v.startedAt) && isInt(v.epoch) &&
    (v.paused === undefined || typeof v.paused === 'boolean') && (v.promoted === undefined || typeof v.promoted === 'boolean')
}

const valueChecks: Record<Family, Check> = {
  svc: (v) => {
    if (v === null) return null
    if (!isObj(v) || !isInt(v.generation)) return 'service record is invalid'
    if (v.rollout !== undefined && !rolloutIntentOk(v.rollout)) return 'service record rollout is invalid'
    if (v.previous !== undefined) {
      if (!isObj(v.previous) || !isInt(v.previous.generation)) return 'service record previous spec is invalid'
      const pe = specError(v.previous.spec)
      if (pe !== null) return `previous ${pe}`
    }
    return specError(v.spec)
  },
  scale: (v) => (isObj(v) && isInt(v.replicas) && v.replicas <= MAX_REPLICAS) ? null : 'scale record is invalid',
  key: (v) => {
    if (!isObj(v) || typeof v.publicKey !== 'string' || !/^[0-9a-f]{64}$/.test(v.publicKey) || !ROLES.includes(v.role as KeyRecord['role'])) return 'key record is invalid'
    if ((v.expiresAt !== undefined && !isInt(v.expiresAt)) || (v.revoked !== undefined && typeof v.revoked !== 'boolean')) return 'key record is invalid'
    return null
  },
  secret: (v) => {
    if (v === null) return null
    if (!isObj(v) || !isStr(v.id, 32) || !SECRET_ID_PATTERN.test(v.id) || !isBytes(v.nonce, NONCE_BYTES, NONCE_BYTES) ||
      !isBytes(v.data, TAG_BYTES, MAX_SECRET_BYTES + TAG_BYTES) || !isInt(v.size) || v.size !== v.data.length - TAG_BYTES) return 'secret record is invalid'
    return null
  },
  config: (v) => {
    if (v === null) return null
    return (isObj(v) && isStr(v.id, 32) && SECRET_ID_PATTERN.test(v.id) && isBytes(v.data, 0, MAX_SECRET_BYTES)) ? null : 'config record is invalid'
  },
  netkey: (v) => {
    if (isObj(v) && v.keyId !== undefined) return isStr(v.keyId, 16) && NETKEY_ID_PATTERN.test(v.keyId) ? null : 'network key choice is invalid'
    return (isObj(v) && isStr(v.fingerprint, 64) && /^[0-9a-f]{64}$/.test(v.fingerprint) && (v.stage === 'install' || v.stage === 'remove')) ? null : 'network key record is invalid'
  },
  share: (v) => {
    if (v === null) return null
    if (!isObj(v) || !isStr(v.id, 32) || !SECRET_ID_PATTERN.test(v.id) || !isStr(v.to, 64) || !/^[0-9a-f]{64}$/.test(v.to) ||
      !isBytes(v.eph, X25519_KEY_BYTES, X25519_KEY_BYTES) || !isBytes(v.nonce, NONCE_BYTES, NONCE_BYTES) ||
      !isBytes(v.box, DATA_KEY_BYTES + TAG_BYTES, DATA_KEY_BYTES + TAG_BYTES)) return 'secret share is invalid'
    return null
  },
  admit: (v) => (isObj(v) && (v.revoked === undefined || typeof v.revoked === 'boolean')) ? null : 'admission record is invalid',
  nodecfg: (v) => {
    if (!isObj(v) || !['active', 'drain', 'pause'].includes(v.availability as string)) return 'node config is invalid'
    return labelsError(v.labels, 'node config labels')
  },
  member: (v) => (isObj(v) && typeof v.status === 'string') ? null : 'member record is invalid',
  node: (v) => {
    if (!isObj(v) || !isStr(v.name, 128) || !strList(v.addrs, MAX_ADDRS) || !isNum(v.cpus) || !isNum(v.memoryBytes) ||
      !isStr(v.version, 64) || !isInt(v.startedAt) || !isInt(v.joinedAt)) return 'node info is invalid'
    if (v.netKeys !== undefined && !(Array.isArray(v.netKeys) && v.netKeys.length <= MAX_NETWORK_KEYS && v.netKeys.every((k) => typeof k === 'string' && NETKEY_ID_PATTERN.test(k)))) return 'node network keys are invalid'
    if (v.sealKey !== undefined && !(isStr(v.sealKey, 64) && /^[0-9a-f]{64}$/.test(v.sealKey))) return 'node seal key is invalid'
    if (v.hostAccess !== undefined && !(isObj(v.hostAccess) && typeof v.hostAccess.privileged === 'boolean' &&
      Array.isArray(v.hostAccess.paths) && v.hostAccess.paths.length <= MAX_ALLOWED_HOST_PATHS &&
      v.hostAccess.paths.every((p) => typeof p === 'string' && normaliseHostPath(p) === p))) return 'node host access is invalid'
    return labelsError(v.labels, 'node labels')
  },
  tasks: (v) => {
    if (!isObj(v) || !Array.isArray(v.tasks) || v.tasks.length > MAX_TASKS_PER_NODE) return 'task report is invalid'
    if (v.shards !== undefined && (!isInt(v.shards) || v.shards < 1 || v.shards > MAX_TASK_SHARDS)) return 'task report shard count is invalid'
    for (const t of v.tasks) {
      if (!isObj(t) || !isStr(t.service, 64) || !isInt(t.slot) || !isStr(t.container, 128) || !isStr(t.state, 16) ||
        !isStr(t.health, 16) || !isInt(t.generation) || !isStr(t.error) || !isInt(t.startedAt) ||
        !Array.isArray(t.history) || t.history.length > MAX_HISTORY || (t.readySince !== undefined && !isInt(t.readySince))) return 'task report entry is invalid'
      for (const h of t.history) if (!isObj(h) || !isInt(h.at) || (h.generation !== undefined && !isInt(h.generation))) return 'task history entry is invalid'
    }
    return null
  },
  rollout: (v) => {
    if (!isObj(v) || !isInt(v.generation) || !isInt(v.epoch) || !['completed', 'paused', 'rollback'].includes(v.outcome as string) ||
      !isStr(v.reason, MAX_ROLLOUT_REASON) || !isInt(v.at)) return 'rollout decision is invalid'
    if (v.then !== undefined && !(v.outcome === 'rollback' && isObj(v.then) && (v.then.outcome === 'completed' || v.then.outcome === 'paused') &&
      isStr(v.then.reason, MAX_ROLLOUT_REASON))) return 'rollout decision is invalid'
    return null
  },
  mesh: (v) => {
    if (!isObj(v) || !Array.isArray(v.ports) || v.ports.length > MAX_MESH_PORTS_PER_NODE) return 'mesh report is invalid'
    for (const p of v.ports) {
      if (!isObj(p) || !isStr(p.service, 64) || !isInt(p.port) || p.port > 65535 || (p.protocol !== 'tcp' && p.protocol !== 'udp') ||
        !isStr(p.error, 512)) return 'mesh report entry is invalid'
    }
    return null
  }
}

const cmpT = (a: [number, number], b: [number, number]): number => a[0] !== b[0] ? a[0] - b[0] : a[1] - b[1]

/**
 * May the writer of desired record `r` (whose decoded value is `value`) write it? Checks that need
 * no state are hard refusals; the ones that look up the writer's `key/<name>` record are soft (see
 * Validation). A pure function of the record and the key records held, so every node holding the
 * same key records decides the same. A service spec with privileged settings (host-access.ts) is
 * an admin's write: with it a deployer would be root on every node that allows them.
 */
export function authorityError (r: StateRecord, family: Family, id: string, trust: Trust, value: unknown): AuthorityError | null {
  const op = parseOperatorWriter(r.w)
  if (op === null) return { reason: `${r.k}: writer is not an operator key` }
  if (op.name === null) return trust.operators.has(r.w) ? null : { reason: `${r.k}: writer is not a trusted operator key` }
  if (op.name === FOUNDER_KEY_NAME) return { reason: `${r.k}: the founding key has no name` }
  if (family === 'key' && id === op.name) return { reason: `${r.k}: a key may not write its own record` }
  const entry = trust.key?.(op.name)
  if (entry === undefined) return { reason: `${r.k}: key ${op.name} is not known`, soft: 'pending' }
  const k = entry.value
  if (k.publicKey !== op.hex) return { reason: `${r.k}: signed by a key other than the one key/${op.name} names`, soft: 'refused' }
  if (k.revoked === true && cmpT(r.t, entry.t) >= 0) return { reason: `${r.k}: key ${op.name} was revoked`, soft: 'refused' }
  if (k.expiresAt !== undefined && r.t[0] >= k.expiresAt) return { reason: `${r.k}: key ${op.name} had expired`, soft: 'refused' }
  if (!ROLE_FAMILIES[k.role].has(family)) return { reason: `${r.k}: key ${op.name} (${k.role}) may not write ${family}/`, soft: 'refused' }
  if (family === 'svc' && k.role !== 'admin' && isObj(value) && isObj(value.spec)) {
    const priv = privilegedSettings(value.spec as unknown as ServiceSpec)
    if (priv.length > 0) return { reason: `${r.k}: key ${op.name} (${k.role}) may not deploy ${priv.join(', ')}: only admin keys may`, soft: 'refused' }
  }
  return null
}

/**
 * Observed state counts only from admitted nodes: a node with the network key but no admission
 * cannot appear as a member, feed placement, report tasks or declare others dead. Soft, like key
 * authority: a peer may forward a record whose admission has not reached us yet.
 */
export function admissionError (r: StateRecord, trust: Trust): AuthorityError | null {
  if (trust.admission === undefined) return null
  const a = trust.admission(r.w)
  if (a === 'admitted') return null
  if (a === 'revoked') return { reason: `${r.k}: node ${r.w.slice(0, 60)} was removed from the cluster`, soft: 'refused' }
  return { reason: `${r.k}: node ${r.w.slice(0, 60)} is not admitted`, soft: 'pending' }
}

/**
 * Full validation of a record from the network. `now` bounds how far in the future an HLC
 * version may be (see MAX_CLOCK_DRIFT_MS).
 */
export function validateRecord (clusterId: string, r: StateRecord, trust: Trust, now: number): Validation {
  const parsed = parseKey(r.k)
  if (parsed === null) return { ok: false, reason: `unknown key ${r.k.slice(0, 64)}` }
  const { family, id } = parsed

  const desired = DESIRED_FAMILIES.has(family)
  if (desired) {
    if (family === 'key' && (!KEY_NAME_PATTERN.test(id) || id === FOUNDER_KEY_NAME)) return { ok: false, reason: `${r.k}: invalid key name` }
    if (family === 'admit' && !isNodeWriter(id)) return { ok: false, reason: `${r.k}: not a node id` }
    if ((family === 'secret' || family === 'config') && !SECRET_NAME_PATTERN.test(id)) return { ok: false, reason: `${r.k}: invalid ${family} name` }
    if (family === 'netkey' && id !== NETKEY_PRIMARY && !NETKEY_ID_PATTERN.test(id)) return { ok: false, reason: `${r.k}: invalid network key id` }
    const op = parseOperatorWriter(r.w)
    if (op === null) return { ok: false, reason: `${r.k}: writer is not an operator key` }
    if (op.name === null && !trust.operators.has(r.w)) return { ok: false, reason: `${r.k}: writer is not a trusted operator key` }
  } else if (family === 'member') {
    const status = statusOfRank(r.t[1])
    if (status === undefined) return { ok: false, reason: `${r.k}: bad status rank` }
    if (isSelfOnlyStatus(status) ? r.w !== id : !isNodeWriter(r.w)) return { ok: false, reason: `${r.k}: ${r.w.slice(0, 60)} may not declare ${status}` }
    if (!isSelfOnlyStatus(status) && r.t[0] > MAX_RUMOUR_INCARNATION) return { ok: false, reason: `${r.k}: incarnation out of range` }
  } else if (family === 'share') {
    // a share is written by whichever admitted node holds the data key, for another node
    const parsed = parseShareId(id)
    if (parsed === null || !isNodeWriter(parsed.node)) return { ok: false, reason: `${r.k}: not <node id>.<secret name>` }
    if (!isNodeWriter(r.w)) return { ok: false, reason: `${r.k}: only a node may write it` }
  } else if (family === 'rollout') {
    // whichever admitted node sees the rollout end records it (node/rollouts.ts)
    if (!SERVICE_NAME_PATTERN.test(id)) return { ok: false, reason: `${r.k}: invalid service name` }
    if (!isNodeWriter(r.w)) return { ok: false, reason: `${r.k}: only a node may write it` }
  } else if (r.w !== (family === 'tasks' ? parseTaskId(id)?.node : id)) {
    return { ok: false, reason: `${r.k}: only node ${id.slice(0, 60)} may write it` }
  }
  if (family !== 'member' && isTooFarAhead({ wall: r.t[0], logical: r.t[1] }, now)) return { ok: false, reason: `${r.k}: timestamp too far in the future` }
  if (!verifyRecord(clusterId, r)) return { ok: false, reason: `${r.k}: bad signature` }

  let value: unknown
  try {
    value = unpack(r.p)
  } catch {
    return { ok: false, reason: `${r.k}: undecodable payload` }
  }
  if (!desired) {
    const denied = admissionError(r, trust)
    if (denied !== null) return { ok: false, ...denied }
  }
  if (family === 'member') {
    if (!isObj(value) || value.status !== statusOfRank(r.t[1])) return { ok: false, reason: `${r.k}: status does not match version` }
    return { ok: true, value }
  }
  const err = valueChecks[family](value)
  if (err !== null) return { ok: false, reason: `${r.k}: ${err}` }
  if (family === 'netkey' && (id === NETKEY_PRIMARY) !== (isObj(value) && value.keyId !== undefined)) return { ok: false, reason: `${r.k}: network key record under the wrong id` }
  if (desired) {
    const denied = authorityError(r, family, id, trust, value)
    if (denied !== null) return { ok: false, ...denied }
  }
  return { ok: true, value }
}
