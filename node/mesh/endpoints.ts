/**
 * Where the routing mesh may send a connection: the replicas of a service that the cluster state
 * says are serving. A read model of the merged state, the same on every node (up to gossip delay).
 *
 * A replica is routable when its node is alive (a suspect node still is: it may be fine, and a
 * failed connect is retried elsewhere), it reports the replica running — a replica on its way out
 * (desired 'shutdown': handed over, or replaced by a rollout) serves until its node stops it, when
 * the report says 'stopping' — and, when the service has a healthcheck, healthy. A blue-green
 * rollout serves from one generation only: the old set until promote, then the new one.
 * Anything else leaves the rotation as soon as its node's report says so.
 */
import { compareStrings } from '../../protocol/order.ts'
import { key, type MemberRecord, type ServiceRecord } from '../../protocol/keys.ts'
import { servingGeneration } from '../../placement/rollout.ts'
import { services } from '../desired.ts'
import { taskReports } from '../../protocol/tasks.ts'
import type { ClusterState } from '../../protocol/state.ts'
import { isMeshPort, type PortSpec, type ServiceSpec } from '../../protocol/spec.ts'

export interface Endpoint {
  service: string
  slot: number
  /** node id that runs the replica */
  node: string
  container: string
  /** generation of the replica's spec (rollouts mix generations) */
  generation: number
}

/** One port the mesh opens on every node. */
export interface MeshPort {
  service: string
  stack: string
  published: number
  target: number
  protocol: 'tcp' | 'udp'
  /** send a PROXY protocol v2 header first, so the backend sees the client's address */
  proxyProtocol: boolean
}

export function endpointKey (e: Endpoint): string {
  return `${e.node}/${e.container}`
}

function liveMember (state: ClusterState, id: string): boolean {
  const status = state.value<MemberRecord>(key.member(id))?.status
  return status === 'alive' || status === 'suspect'
}

/** Routable replicas of every service, by service name; sorted by node then slot. */
export function routableEndpoints (state: ClusterState): Map<string, Endpoint[]> {
  const specs = new Map<string, ServiceSpec>()
  const serving = new Map<string, number>()
  for (const s of services(state)) {
    specs.set(s.spec.name, s.spec)
    const g = servingGeneration(s, s.replicas)
    if (g !== null) serving.set(s.spec.name, g)
  }
  const out = new Map<string, Endpoint[]>()
  for (const [node, tasks] of taskReports(state)) {
    if (!liveMember(state, node)) continue
    for (const t of tasks) {
      const spec = specs.get(t.service)
      if (spec === undefined || t.state !== 'running' || t.container === '') continue
      if (t.health === 'unhealthy' || (spec.healthcheck !== undefined && spec.healthcheck.test[0] !== 'NONE' && t.health !== 'healthy')) continue
      const list = out.get(t.service) ?? []
      list.push({ service: t.service, slot: t.slot, node, container: t.container, generation: t.generation })
      out.set(t.service, list)
    }
  }
  for (const [name, g] of serving) {
    // until the chosen set has a ready replica, any ready one serves rather than none
    const chosen = out.get(name)?.filter((e) => e.generation === g) ?? []
    if (chosen.length > 0) out.set(name, chosen)
  }
  for (const list of out.values()) list.sort((a, b) => compareStrings(a.node, b.node) || a.slot - b.slot || compareStrings(a.container, b.container))
  return out
}

/** Every mesh port of every service, sorted by port; a port claimed twice goes to the first service by name. */
export function meshPorts (state: ClusterState): MeshPort[] {
  const out: MeshPort[] = []
  const taken = new Set<string>()
  const recs = [...state.family<ServiceRecord | null>('svc')].filter(([, r]) => r !== null).sort(([a], [b]) => compareStrings(a, b))
  for (const [, rec] of recs) {
    for (const p of (rec as ServiceRecord).spec.ports) {
      if (!isMeshPort(p)) continue
      const id = `${p.published as number}/${p.protocol}`
      // Deploy refuses a second claim; two concurrent deploys on both sides of a partition can
      // still make one. Every node then resolves it the same way: first service name wins.
      if (taken.has(id)) continue
      taken.add(id)
      out.push({ service: rec!.spec.name, stack: rec!.spec.stack, published: p.published as number, target: p.target, protocol: p.protocol, proxyProtocol: p.proxyProtocol === true })
    }
  }
  return out.sort((a, b) => a.published - b.published || compareStrings(a.protocol, b.protocol))
}

/** Container ports a service listens on, for service-name discovery: every port in its spec. */
export function targetPorts (spec: ServiceSpec): PortSpec[] {
  return spec.ports
}
