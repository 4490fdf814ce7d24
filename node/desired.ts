/**
 * The desired-state view the reconciler and the control API share: services with their scale,
 * placement nodes, where replicas run now, and the placement result — all derived from the merged
 * state, never stored.
 */
import { globalKey, placeAll, slotKey } from '../placement/placement.ts'
import type { CurrentAssignment, PlacementNode, PlacementResult, PlacementService, SlotHolder } from '../placement/types.ts'
import { key, type RolloutDecision, type ScaleRecord, type ServiceRecord } from '../protocol/keys.ts'
import { effectiveService, type ActiveRollout } from '../placement/rollout.ts'
import { taskReports } from '../protocol/tasks.ts'
import type { ClusterState } from '../protocol/state.ts'
import type { ServiceSpec } from '../protocol/spec.ts'
import { nodeViews } from './views.ts'

export interface ServiceState {
  /** what the service runs now: the record's spec, or its previous one once the nodes rolled back (placement/rollout.ts) */
  spec: ServiceSpec
  generation: number
  /** desired replicas: the scale register, or the spec's when never scaled */
  replicas: number
  /** the rollout to `generation`, as every node derives it */
  rollout: ActiveRollout
  /** the stored record, as the operator last wrote it */
  record: ServiceRecord
}

export function services (state: ClusterState): ServiceState[] {
  const out: ServiceState[] = []
  for (const [name, rec] of state.family<ServiceRecord | null>('svc')) {
    if (rec === null) continue
    const scale = state.value<ScaleRecord>(key.scale(name))
    const eff = effectiveService(rec, state.value<RolloutDecision>(key.rollout(name)))
    out.push({ ...eff, replicas: rec.spec.mode === 'global' ? 0 : scale?.replicas ?? rec.spec.replicas, record: rec })
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
    memoryBytes: n.memoryBytes,
    hostAccess: n.hostAccess
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

/**
 * Where slots run now, from the task reports of the alive nodes, for placement to keep them there
 * (scaling and membership changes then move only what they must). A task its node is handing over
 * or stopping (desired 'shutdown') does not hold its slot: it already belongs to another node. A
 * holder is ready once its replica runs (healthy, when it has a healthcheck — the reconciler reports
 * 'running' only then) or has completed for good; until then its slot counts as a move in flight,
 * and placement does not rebalance the service.
 */
export function currentAssignment (state: ClusterState, nodes: readonly PlacementNode[], svcs: readonly ServiceState[]): CurrentAssignment {
  const alive = new Set(nodes.filter((n) => n.alive).map((n) => n.id))
  const global = new Set(svcs.filter((s) => s.spec.mode === 'global').map((s) => s.spec.name))
  const out = new Map<string, SlotHolder[]>()
  for (const [node, tasks] of taskReports(state)) {
    if (!alive.has(node)) continue
    for (const t of tasks) {
      if (t.desired === 'shutdown') continue
      const k = global.has(t.service) ? globalKey(t.service, node) : slotKey(t.service, t.slot)
      const holders = out.get(k)
      const h: SlotHolder = { node, ready: t.state === 'running' || t.state === 'complete' }
      if (holders === undefined) out.set(k, [h])
      else holders.push(h)
    }
  }
  return out
}

export function placement (state: ClusterState): PlacementResult {
  const all = services(state)
  const nodes = placementNodes(state)
  const svcs: PlacementService[] = all.map((s) => ({ spec: effectiveSpec(s.spec), replicas: s.replicas }))
  return placeAll(nodes, svcs, currentAssignment(state, nodes, all))
}
