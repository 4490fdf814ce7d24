/**
 * Validation of every record that arrives from the network: key family, writer authority,
 * version sanity, signature, and the shape and bounds of the value. A record that fails any
 * check is rejected whole; the caller counts it and penalises the sender.
 */
import { unpack } from './codec.ts'
import { isTooFarAhead } from './hlc.ts'
import { parseKey, DESIRED_FAMILIES, type Family } from './keys.ts'
import { isSelfOnlyStatus, statusOfRank } from './membership.ts'
import type { StateRecord } from './record.ts'
import { isNodeWriter, verifyRecord, OPERATOR_PREFIX } from './sign.ts'
import { MAX_REPLICAS, SERVICE_NAME_PATTERN } from './spec.ts'

/** Who the cluster trusts to write desired state: operator writer ids (`op:<hex>`). */
export interface Trust {
  operators: ReadonlySet<string>
}

export type Validation = { ok: true, value: unknown } | { ok: false, reason: string }

/** Bounds on observed values, so one node cannot bloat everybody's state. */
export const MAX_LABELS = 64
export const MAX_LABEL_LENGTH = 256
export const MAX_ADDRS = 16
export const MAX_TASKS_PER_NODE = 2_000
export const MAX_HISTORY = 5
/** Every published port of every service, on one node: a TCP and a UDP table of 65 535 is the hard ceiling; far fewer in practice. */
export const MAX_MESH_PORTS_PER_NODE = 4_096
export const MAX_STRING = 4096
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
  if (!Array.isArray(s.mounts) || s.mounts.length > 256 || !s.mounts.every((m) => isObj(m) && isStr(m.target) && isStr(m.source))) return 'spec.mounts is invalid'
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
  return null
}

const valueChecks: Record<Family, Check> = {
  svc: (v) => {
    if (v === null) return null
    if (!isObj(v) || !isInt(v.generation)) return 'service record is invalid'
    return specError(v.spec)
  },
  scale: (v) => (isObj(v) && isInt(v.replicas) && v.replicas <= MAX_REPLICAS) ? null : 'scale record is invalid',
  nodecfg: (v) => {
    if (!isObj(v) || !['active', 'drain', 'pause'].includes(v.availability as string)) return 'node config is invalid'
    return labelsError(v.labels, 'node config labels')
  },
  member: (v) => (isObj(v) && typeof v.status === 'string') ? null : 'member record is invalid',
  node: (v) => {
    if (!isObj(v) || !isStr(v.name, 128) || !strList(v.addrs, MAX_ADDRS) || !isNum(v.cpus) || !isNum(v.memoryBytes) ||
      !isStr(v.version, 64) || !isInt(v.startedAt) || !isInt(v.joinedAt)) return 'node info is invalid'
    return labelsError(v.labels, 'node labels')
  },
  tasks: (v) => {
    if (!isObj(v) || !Array.isArray(v.tasks) || v.tasks.length > MAX_TASKS_PER_NODE) return 'task report is invalid'
    for (const t of v.tasks) {
      if (!isObj(t) || !isStr(t.service, 64) || !isInt(t.slot) || !isStr(t.container, 128) || !isStr(t.state, 16) ||
        !isStr(t.health, 16) || !isInt(t.generation) || !isStr(t.error) || !isInt(t.startedAt) ||
        !Array.isArray(t.history) || t.history.length > MAX_HISTORY) return 'task report entry is invalid'
    }
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

/**
 * Full validation of a record from the network. `now` bounds how far in the future an HLC
 * version may be (see MAX_CLOCK_DRIFT_MS).
 */
export function validateRecord (clusterId: string, r: StateRecord, trust: Trust, now: number): Validation {
  const parsed = parseKey(r.k)
  if (parsed === null) return { ok: false, reason: `unknown key ${r.k.slice(0, 64)}` }
  const { family, id } = parsed

  if (DESIRED_FAMILIES.has(family)) {
    if (!r.w.startsWith(OPERATOR_PREFIX) || !trust.operators.has(r.w)) return { ok: false, reason: `${r.k}: writer is not a trusted operator key` }
  } else if (family === 'member') {
    const status = statusOfRank(r.t[1])
    if (status === undefined) return { ok: false, reason: `${r.k}: bad status rank` }
    if (isSelfOnlyStatus(status) ? r.w !== id : !isNodeWriter(r.w)) return { ok: false, reason: `${r.k}: ${r.w.slice(0, 60)} may not declare ${status}` }
    if (!isSelfOnlyStatus(status) && r.t[0] > MAX_RUMOUR_INCARNATION) return { ok: false, reason: `${r.k}: incarnation out of range` }
  } else if (r.w !== id) {
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
  if (family === 'member') {
    if (!isObj(value) || value.status !== statusOfRank(r.t[1])) return { ok: false, reason: `${r.k}: status does not match version` }
    return { ok: true, value }
  }
  const err = valueChecks[family](value)
  if (err !== null) return { ok: false, reason: `${r.k}: ${err}` }
  return { ok: true, value }
}
