/**
 * Inputs and outputs of placement. Everything here is an immutable view built by node/ from the
 * merged cluster state; placement functions never see IO.
 */
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
}

export interface PlacementService {
  spec: ServiceSpec
  /** desired replicas (replicated mode) — the scale register, separate from the spec */
  replicas: number
}

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
