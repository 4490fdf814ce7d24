/**
 * Placement constraints (`deploy.placement.constraints`) and resource reservations: which nodes a
 * service may run on, and the human-readable text used when none qualifies.
 */
import { hostAccessDenial, NO_HOST_ACCESS } from '../protocol/host-access.ts'
import type { ConstraintSpec, ResourcesSpec, ServiceSpec } from '../protocol/spec.ts'
import type { PlacementNode } from './types.ts'

/**
 * Reads the attribute a constraint refers to. The stored form is `labels.<k>`, `name`, `id`; the
 * Compose form (`node.labels.<k>`, `node.name`, `node.hostname`, `node.id`) is accepted as well.
 * A missing label, or an attribute this cluster does not know (e.g. `node.role`), reads as ''.
 */
export function nodeAttribute(node: PlacementNode, attribute: string): string {
  const attr = attribute.startsWith('node.') ? attribute.slice(5) : attribute
  if (attr.startsWith('labels.')) {
    const key = attr.slice(7)
    // own properties only: a label named "constructor" must not read Object.prototype
    return Object.hasOwn(node.labels, key) ? String(node.labels[key]) : ''
  }
  switch (attr) {
    case 'id':
      return node.id
    case 'name':
    case 'hostname':
      return node.name
    default:
      return ''
  }
}

/**
 * Values compare case-insensitively, as Swarm does (`node.labels.zone==EU` matches `eu`).
 * `toLowerCase` uses the locale-independent Unicode mapping, so every node agrees.
 */
export function constraintMatches(node: PlacementNode, c: ConstraintSpec): boolean {
  const equal = nodeAttribute(node, c.attribute).toLowerCase() === c.value.toLowerCase()
  return c.op === '!=' ? !equal : equal
}

export function satisfiesAll(node: PlacementNode, constraints: readonly ConstraintSpec[]): boolean {
  for (const c of constraints) if (!constraintMatches(node, c)) return false
  return true
}

/** `labels.zone` → `node.labels.zone`, as the user wrote it in the Compose file. */
export function describeConstraint(c: ConstraintSpec): string {
  const attr = c.attribute.startsWith('node.') ? c.attribute : `node.${c.attribute}`
  return `${attr}${c.op}${c.value}`
}

/** Alive nodes with availability 'active': the only ones that receive new slots. */
export function isSchedulable(node: PlacementNode): boolean {
  return node.alive && node.availability === 'active'
}

/**
 * Why no node passes the constraints, given the schedulable nodes (all of which failed).
 * Names the first constraint no node satisfies; if each is satisfied somewhere but never all
 * together, lists them all.
 */
export function constraintReason(schedulable: readonly PlacementNode[], constraints: readonly ConstraintSpec[]): string {
  const checked = `(${schedulable.length} node${schedulable.length === 1 ? '' : 's'} checked)`
  for (const c of constraints) {
    if (!schedulable.some((n) => constraintMatches(n, c))) {
      return `no node satisfies constraint ${describeConstraint(c)} ${checked}`
    }
  }
  return `no node satisfies all constraints ${constraints.map(describeConstraint).join(', ')} ${checked}`
}

/** Does the node's operator allow what the spec reaches on its host (bind mounts, privileged settings)? */
export function allowsHostAccess(node: PlacementNode, spec: ServiceSpec): boolean {
  return hostAccessDenial(spec, node.hostAccess ?? NO_HOST_ACCESS) === null
}

/** Why none of `nodes` (all of which refused) may run the spec: the first node's reason, and the count. */
export function hostAccessReason(nodes: readonly PlacementNode[], spec: ServiceSpec): string {
  const why = hostAccessDenial(spec, nodes[0]?.hostAccess ?? NO_HOST_ACCESS) ?? 'host access not allowed'
  return `no node allows it: ${why} (${nodes.length} node${nodes.length === 1 ? '' : 's'} checked)`
}

// ---------------------------------------------------------------------------------------------
// Resources. CPUs are counted in integer nano-CPUs (Docker's NanoCPUs), so summing many 0.1-CPU
// reservations never drifts through floating-point error; memory is already integer bytes.
// ---------------------------------------------------------------------------------------------

export const NANO_PER_CPU = 1_000_000_000

export function nanoCpus(cpus: number | undefined): number {
  return cpus !== undefined && Number.isFinite(cpus) && cpus > 0 ? Math.round(cpus * NANO_PER_CPU) : 0
}

export function memBytes(bytes: number | undefined): number {
  return bytes !== undefined && Number.isFinite(bytes) && bytes > 0 ? Math.round(bytes) : 0
}

/** A reservation in integer units; 0 means "not reserved" for that dimension. */
export interface Request {
  nanoCpus: number
  memoryBytes: number
}

export function requestOf(r: ResourcesSpec | undefined): Request {
  return { nanoCpus: nanoCpus(r?.cpus), memoryBytes: memBytes(r?.memoryBytes) }
}

function formatCpus(nano: number): string {
  const cpus = nano / NANO_PER_CPU
  const text = Number.isInteger(cpus) ? String(cpus) : String(Number(cpus.toFixed(3)))
  return `${text} CPU${cpus === 1 ? '' : 's'}`
}

export function formatBytes(bytes: number): string {
  const units: Array<[number, string]> = [
    [1024 ** 4, 'TiB'],
    [1024 ** 3, 'GiB'],
    [1024 ** 2, 'MiB'],
    [1024, 'KiB']
  ]
  for (const [size, unit] of units) {
    if (bytes >= size) return `${Number((bytes / size).toFixed(2))} ${unit}`
  }
  return `${bytes} B`
}

/** "2 CPUs / 512 MiB", "0.5 CPUs", "1 GiB". */
export function describeRequest(req: Request): string {
  const parts: string[] = []
  if (req.nanoCpus > 0) parts.push(formatCpus(req.nanoCpus))
  if (req.memoryBytes > 0) parts.push(formatBytes(req.memoryBytes))
  return parts.join(' / ')
}
