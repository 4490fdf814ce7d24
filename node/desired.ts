/**
 * The desired-state view the reconciler and the control API share: services with their scale,
 * placement nodes, and the placement result — all derived from the merged state, never stored.
 */
import { placeAll } from '../placement/placement.ts'
import type { PlacementNode, PlacementResult, PlacementService } from '../placement/types.ts'
import { key, type ScaleRecord, type ServiceRecord } from '../protocol/keys.ts'
import type { ClusterState } from '../protocol/state.ts'
import type { ServiceSpec } from '../protocol/spec.ts'
import { nodeViews } from './views.ts'

export interface ServiceState {
  spec: ServiceSpec
  generation: number
  /** desired replicas: the scale register, or the spec's when never scaled */
  replicas: number
}

export function services (state: ClusterState): ServiceState[] {
  const out: ServiceState[] = []
  for (const [name, rec] of state.family<ServiceRecord | null>('svc')) {
    if (rec === null) continue
    const scale = state.value<ScaleRecord>(key.scale(name))
    out.push({ spec: rec.spec, generation: rec.generation, replicas: rec.spec.mode === 'global' ? 0 : scale?.replicas ?? rec.spec.replicas })
  }
  return out
}

export function placementNodes (state: ClusterState): PlacementNode[] {
  // A suspect node keeps its slots: moving work on a mere suspicion would cause churn on every
  // hiccup. Only a dead (or departed) node loses them.
  return nodeViews(state, '').map((n) => ({
    id: n.id,
    name: n.name,
    labels: n.labels,
    alive: n.status === 'alive' || n.status === 'suspect',
    availability: n.availability,
    cpus: n.cpus,
    memoryBytes: n.memoryBytes
  }))
}

/**
 * A service that publishes a fixed `mode: host` port can run at most one replica per node (the
 * port can be bound once per host), as with Swarm. Ingress ports are opened by the routing mesh on
 * every node, whatever runs where, so they put no limit on replicas per node.
 */
export function effectiveSpec (spec: ServiceSpec): ServiceSpec {
  const fixedPort = spec.ports.some((p) => p.mode === 'host' && p.published !== undefined && p.published > 0)
  if (!fixedPort) return spec
  return { ...spec, maxReplicasPerNode: spec.maxReplicasPerNode === 0 ? 1 : Math.min(1, spec.maxReplicasPerNode) }
}

export function placement (state: ClusterState): PlacementResult {
  const svcs: PlacementService[] = services(state).map((s) => ({ spec: effectiveSpec(s.spec), replicas: s.replicas }))
  return placeAll(placementNodes(state), svcs)
}
