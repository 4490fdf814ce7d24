/**
 * Inputs and outputs of placement. Everything here is an immutable view built by node/ from the
 * merged cluster state; placement functions never see IO.
 */
import type { HostAccess } from '../protocol/host-access.ts'
import type { ServiceSpec } from '../protocol/spec.ts'

export interface PlacementNode {
  id: string
  name: string
  labels: Record<string, string>
  /** alive (or suspect: a suspect node keeps its slots until declared dead) */
  alive: boolean
  /** 'active' | 'drain' | 'pause' (Swarm's availability); only 'active' receives new slots */
  availability: 'active' | 'drain' | 'pause'
  /** total capacity advertised by the node (from Docker info) */
  cpus: number
  memoryBytes: number
  /** host paths and privileged settings the node's operator allows; absent = none (host-access.ts) */
  hostAccess?: HostAccess
}

export interface PlacementService {
  spec: ServiceSpec
  /** desired replicas (replicated mode) — the scale register, separate from the spec */
  replicas: number
}

/** One node that reports running (or starting) a slot. */
export interface SlotHolder {
  /** node id */
  node: string
  /**
   * The replica runs — and is healthy, when the service has a healthcheck. `false` while it is
   * created, starting, restarting or failing. Absent means `true`. A service with a holder that
   * is not ready is not rebalanced: the rebalance waits for each move to complete.
   */
  ready?: boolean
}

/**
 * Where slots run now, as the nodes report it: slot key → the nodes holding that slot. Keys are
 * those of PlacementResult: `${service}/${i}` (slotKey) for replicated services,
 * `${service}@${nodeId}` (globalKey) for global ones. node/ builds it from the task reports of the
 * alive nodes; a task its node is handing over or stopping (desired 'shutdown') is left out, since
 * its slot already belongs to someone else.
 *
 * A slot may have no holder (not started yet, or its node died), one, or several (mid-handover,
 * after a healed partition, a paused node that came back). Holders are a set: their order and
 * repeats do not matter, nor does the map's insertion order. Holders that are not alive nodes of
 * the placement input are ignored, and so are keys of unknown services, so the node side can put in
 * every task it sees. A replicated slot at or above the service's replica count (scaled away, still
 * stopping) counts as a move in flight. An empty map — or none — means nothing runs yet.
 */
export type CurrentAssignment = ReadonlyMap<string, readonly SlotHolder[]>

/** One replica slot of a service and where it goes. */
export interface SlotAssignment {
  service: string
  slot: number
  /** node id, or null when no eligible node has room; `reason` then says why */
  node: string | null
  reason?: string
}

export interface PlacementResult {
  /** key `${service}/${slot}` */
  slots: Map<string, SlotAssignment>
}
