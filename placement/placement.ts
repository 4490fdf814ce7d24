/**
 * Deterministic placement of service slots onto nodes.
 *
 * Every node runs this on its own copy of the merged cluster state and must get the same answer, so
 * the module is pure: no IO, no clock, no randomness, and nothing depends on the order of the input
 * arrays or on object/Map insertion order (nodes are sorted by id, services by name, and hashing is
 * platform-independent, see hashing.ts).
 *
 * Replicated services use rendezvous (highest-random-weight) hashing with bounded loads: slot
 * `service/i` ranks the eligible nodes by pairScore(hash(slot key), hash(node id)) and ends up on the
 * highest-ranked node that is below the load cap, below max_replicas_per_node and has room for the
 * reservations. Contention for a full node is settled by deferred acceptance (the node keeps the
 * slots that rank it highest), which makes the result independent of processing order and moves
 * fewer slots than first-come-first-served. See README.md for the guarantees and measurements.
 */
import { compareStrings } from '../protocol/order.ts'
import { MAX_REPLICAS } from '../protocol/spec.ts'
import type { ServiceSpec } from '../protocol/spec.ts'
import {
  constraintReason,
  describeRequest,
  isSchedulable,
  memBytes,
  nanoCpus,
  requestOf,
  satisfiesAll
} from './constraints.ts'
import type { Request } from './constraints.ts'
import { hash2, pairScore, score } from './hashing.ts'
import type { Hash2 } from './hashing.ts'
import type { PlacementNode, PlacementResult, PlacementService, SlotAssignment } from './types.ts'

/**
 * Slack of the bounded-load cap: no node holds more than max(ceil(avg), floor((1 + ε) · avg)) slots
 * of one service. 0.25 keeps the busiest node within 25% of the average while leaving most slots on
 * their first-choice node, so a node joining or leaving moves close to 1/N of the slots (measured in
 * test/bench/placement.bench.ts). Smaller ε makes the cap bind more often and a departure cascades
 * through full nodes (more movement); larger ε lets the hash's natural imbalance through.
 * (Consistent hashing with bounded loads: Mirrokni, Thorup, Zadimoghaddam, 2018.)
 */
export const LOAD_EPSILON = 0.25
/**
 * Up to this many slots per node (on average), a service is spread strictly: every node gets
 * floor(avg), the remainder one more each. The balance cap would be 1 up to one slot per node and
 * 2 just above, and that jump reshuffled the whole matching when one node left (100 slots, 100 →
 * 99 nodes moved 38% of them; strictly spread, 3%). Higher up the ε slack keeps moves near 1/N.
 */
export const STRICT_SPREAD_MAX_PER_NODE = 2

/** Key of a replicated slot in PlacementResult.slots. */
export function slotKey(service: string, slot: number): string {
  return `${service}/${slot}`
}

/** Key of a global service's slot on `nodeId` ('' when no node can take it at all). */
export function globalKey(service: string, nodeId: string): string {
  return `${service}@${nodeId}`
}

/** Per-node cap for `replicas` slots over `eligible` nodes (before max_replicas_per_node). */
export function loadCap(replicas: number, eligible: number): number {
  if (eligible <= 0) return 0
  // While every slot can have its own node, it does.
  if (replicas <= eligible) return 1
  // floor, not ceil: with few slots per node, ceil would let one node take (1+ε)·avg rounded up
  // (10 slots on 3 nodes: 5/5/0); floor keeps max ≤ (1+ε)·avg whenever ceil(avg) allows it.
  const avg = replicas / eligible
  return Math.max(Math.ceil(avg), Math.floor((1 + LOAD_EPSILON) * avg))
}

// -------------------------------------------------------------------------------------------------
// Canonical ordering
// -------------------------------------------------------------------------------------------------

/** JSON with object keys sorted: a total order for inputs that share an id (normally none do). */
function canonical(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'undefined'
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`
  const obj = value as Record<string, unknown>
  const keys = Object.keys(obj).sort()
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(obj[k])}`).join(',')}}`
}

/** Sorts by key and keeps one item per key: the one with the smallest canonical form. */
function uniqueSorted<T>(items: readonly T[], key: (t: T) => string): T[] {
  const sorted = [...items].sort((x, y) => compareStrings(key(x), key(y)))
  const out: T[] = []
  for (let i = 0; i < sorted.length; ) {
    let j = i + 1
    while (j < sorted.length && key(sorted[j]) === key(sorted[i])) j++
    if (j === i + 1) out.push(sorted[i])
    else out.push(sorted.slice(i, j).sort((x, y) => compareStrings(canonical(x), canonical(y)))[0])
    i = j
  }
  return out
}

// -------------------------------------------------------------------------------------------------
// Cluster state for one call: capacities and what this call has reserved so far.
// -------------------------------------------------------------------------------------------------

interface NodeState {
  node: PlacementNode
  hash: Hash2
  capCpu: number
  capMem: number
  usedCpu: number
  usedMem: number
}

interface Cluster {
  /** unique by id, sorted by id */
  nodes: NodeState[]
}

function makeCluster(nodes: readonly PlacementNode[]): Cluster {
  return {
    nodes: uniqueSorted(nodes, (n) => n.id).map((node) => ({
      node,
      hash: hash2(node.id),
      capCpu: nanoCpus(node.cpus),
      capMem: memBytes(node.memoryBytes),
      usedCpu: 0,
      usedMem: 0
    }))
  }
}

function hasRoom(ns: NodeState, req: Request): boolean {
  return (
    (req.nanoCpus === 0 || ns.usedCpu + req.nanoCpus <= ns.capCpu) &&
    (req.memoryBytes === 0 || ns.usedMem + req.memoryBytes <= ns.capMem)
  )
}

function reserve(ns: NodeState, req: Request): void {
  ns.usedCpu += req.nanoCpus
  ns.usedMem += req.memoryBytes
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`
}

function noRoomReason(req: Request, checked: number): string {
  return `no node has ${describeRequest(req)} free to reserve (${plural(checked, 'node')} checked)`
}

function noSchedulableReason(nodes: readonly NodeState[]): string {
  if (nodes.length === 0) return 'no alive active nodes (no nodes known)'
  let down = 0
  let drain = 0
  let pause = 0
  for (const { node } of nodes) {
    if (!node.alive) down++
    else if (node.availability === 'drain') drain++
    else if (node.availability === 'pause') pause++
  }
  const parts = [`${down} down`, `${drain} drain`, `${pause} pause`]
  return `no alive active nodes (${nodes.length} known: ${parts.join(', ')})`
}

interface Candidates {
  /** alive, active, satisfying every constraint (sorted by id) */
  matching: NodeState[]
  /** `matching` nodes with room for one more replica's reservations */
  eligible: NodeState[]
  /** why `eligible` is empty */
  reason?: string
}

function candidates(cluster: Cluster, spec: ServiceSpec, req: Request): Candidates {
  const schedulable = cluster.nodes.filter((ns) => isSchedulable(ns.node))
  if (schedulable.length === 0) return { matching: [], eligible: [], reason: noSchedulableReason(cluster.nodes) }
  const constraints = spec.constraints ?? []
  const matching = schedulable.filter((ns) => satisfiesAll(ns.node, constraints))
  if (matching.length === 0) {
    return {
      matching,
      eligible: [],
      reason: constraintReason(
        schedulable.map((ns) => ns.node),
        constraints
      )
    }
  }
  const eligible = matching.filter((ns) => hasRoom(ns, req))
  if (eligible.length === 0) return { matching, eligible, reason: noRoomReason(req, matching.length) }
  return { matching, eligible }
}

type Entry = [key: string, assignment: SlotAssignment]

function replicaCount(svc: PlacementService): number {
  const r = Number.isFinite(svc.replicas) ? Math.floor(svc.replicas) : 0
  return Math.min(Math.max(r, 0), MAX_REPLICAS)
}

/** How many more replicas reserving `req` fit on `ns` (Infinity when nothing is reserved). */
function fitCount(ns: NodeState, req: Request): number {
  let fit = Infinity
  if (req.nanoCpus > 0) fit = Math.min(fit, Math.floor((ns.capCpu - ns.usedCpu) / req.nanoCpus))
  if (req.memoryBytes > 0) fit = Math.min(fit, Math.floor((ns.capMem - ns.usedMem) / req.memoryBytes))
  return Math.max(fit, 0)
}

/**
 * A node's ranking of a slot, (score desc, slot index asc), packed into one exact integer:
 * score · 2^21 + (2^21 − 1 − slot) < 2^53 for 32-bit scores and slot < 2^21 (MAX_REPLICAS is 10^4).
 */
const SLOT_RANGE = 2 ** 21

function slotRank(score: number, slot: number): number {
  return score * SLOT_RANGE + (SLOT_RANGE - 1 - slot)
}

/** Binary min-heap of slot ranks: the root is the slot a full node gives up first. */
function heapPush(h: number[], v: number): void {
  let i = h.length
  h.push(v)
  while (i > 0) {
    const p = (i - 1) >> 1
    if (h[p] <= v) break
    h[i] = h[p]
    i = p
  }
  h[i] = v
}

function heapPopMin(h: number[]): number {
  const top = h[0]
  const last = h.pop() as number
  if (h.length > 0) {
    let i = 0
    for (;;) {
      const l = 2 * i + 1
      if (l >= h.length) break
      const c = l + 1 < h.length && h[l + 1] < h[l] ? l + 1 : l
      if (h[c] >= last) break
      h[i] = h[c]
      i = c
    }
    h[i] = last
  }
  return top
}

/**
 * Deferred acceptance (Gale–Shapley), slot-proposing: every slot proposes to nodes in its rendezvous
 * order (score desc, node id asc); a node over `capacity` gives up its lowest-ranked slot (score asc,
 * then highest slot index), which proposes to its next node. The result is the slot-optimal stable
 * matching, unique for these strict preferences, hence independent of the order proposals are made.
 * Writes the chosen node index (or -1) into `at`; returns the per-node load.
 */
function deferredAcceptance(
  slots: readonly number[],
  slotHashes: readonly Hash2[],
  nodes: readonly NodeState[],
  capacity: readonly number[],
  at: Int32Array
): number[] {
  const n = nodes.length
  const open: number[] = []
  for (let j = 0; j < n; j++) if (capacity[j] > 0) open.push(j)
  const held: number[][] = nodes.map(() => [])
  // Full preference lists are built only for slots that get turned away at least once.
  const prefs = new Map<number, { order: number[]; next: number }>()
  const queue = [...slots].reverse()

  while (queue.length > 0) {
    const i = queue.pop() as number
    const h = slotHashes[i]
    let j = -1
    let s = -1
    const pref = prefs.get(i)
    if (pref === undefined) {
      // strict '>' over ascending node indices: equal scores go to the smaller id
      for (const k of open) {
        const sk = pairScore(h, nodes[k].hash)
        if (sk > s) {
          s = sk
          j = k
        }
      }
    } else if (pref.next < pref.order.length) {
      j = pref.order[pref.next++]
      s = pairScore(h, nodes[j].hash)
    }
    if (j < 0) continue // turned away everywhere
    at[i] = j
    heapPush(held[j], slotRank(s, i))
    if (held[j].length <= capacity[j]) continue

    const worst = heapPopMin(held[j])
    const out = SLOT_RANGE - 1 - (worst % SLOT_RANGE)
    at[out] = -1
    if (!prefs.has(out)) {
      const ho = slotHashes[out]
      const order = open
        .map((k) => ({ k, s: pairScore(ho, nodes[k].hash) }))
        .sort((a, b) => b.s - a.s || a.k - b.k)
        .map((e) => e.k)
      // its first proposal went to order[0], the node that just turned it away
      prefs.set(out, { order, next: 1 })
    }
    queue.push(out)
  }
  return held.map((x) => x.length)
}

function placeReplicated(cluster: Cluster, svc: PlacementService): Entry[] {
  const spec = svc.spec
  const name = spec.name
  const replicas = replicaCount(svc)
  const out: Entry[] = []
  if (replicas === 0) return out

  const req = requestOf(spec.reservations)
  const { matching, eligible, reason } = candidates(cluster, spec, req)
  const unplaced = (from: number, why: string): void => {
    for (let i = from; i < replicas; i++) out.push([slotKey(name, i), { service: name, slot: i, node: null, reason: why }])
  }
  if (eligible.length === 0) {
    unplaced(0, reason ?? 'no eligible node')
    return out
  }

  const n = eligible.length
  const balanceCap = loadCap(replicas, n)
  const maxPer = spec.maxReplicasPerNode > 0 ? Math.floor(spec.maxReplicasPerNode) : Infinity
  // hard: what the node can take at all (max_replicas_per_node, room for reservations)
  const hard = eligible.map((ns) => Math.min(maxPer, fitCount(ns, req)))
  let total = 0
  for (const h of hard) total += h
  // Every eligible node can run every slot, so exactly min(replicas, Σ hard) slots can be placed;
  // the lowest slot numbers get them.
  const placeable = Math.min(replicas, total)

  const slots: number[] = []
  const slotHashes: Hash2[] = []
  for (let i = 0; i < placeable; i++) {
    slots.push(i)
    slotHashes.push(hash2(slotKey(name, i)))
  }
  const at = new Int32Array(placeable).fill(-1)
  const load: number[] = new Array<number>(n).fill(0)
  // Rounds of deferred acceptance, each placing what the previous ones turned away, with these
  // per-node caps:
  const rounds: Array<(j: number) => number> = []
  const base = Math.floor(replicas / n)
  if (replicas > STRICT_SPREAD_MAX_PER_NODE * n) {
    // Enough slots per node for the ε slack: one round within the balance cap.
    rounds.push((j) => Math.min(hard[j], balanceCap))
  } else {
    // Few slots per node: the cap is ceil(avg) and leaves no slack, so a cap-only round would
    // let ceil(avg) land on some nodes and fewer on others (10 slots on 9 nodes: 2/2/2/2/2/0/…),
    // and the whole matching would reshuffle when a join or leave moved the cap (100 slots,
    // 100 → 99 nodes moved 38%). Spread strictly instead, as Swarm does: `base` on every node,
    // then the remainder at most one more per node.
    rounds.push((j) => Math.min(hard[j], base))
    rounds.push((j) => Math.min(hard[j] - load[j], 1))
  }
  // Last, what the caps turned away goes wherever there is still room: the cap is a spreading
  // goal, not a reason to leave a slot pending while some node can run it (only reservations or
  // max_replicas_per_node make that happen, and then loads can exceed the cap).
  rounds.push((j) => hard[j] - load[j])
  let pending = slots
  for (const capOf of rounds) {
    if (pending.length === 0) break
    const got = deferredAcceptance(pending, slotHashes, eligible, eligible.map((_, j) => capOf(j)), at)
    for (let j = 0; j < n; j++) load[j] += got[j]
    pending = pending.filter((i) => at[i] < 0)
  }

  for (let j = 0; j < n; j++) {
    const ns = eligible[j]
    ns.usedCpu += load[j] * req.nanoCpus
    ns.usedMem += load[j] * req.memoryBytes
  }
  let why: string | undefined
  for (let i = 0; i < placeable; i++) {
    const key = slotKey(name, i)
    if (at[i] >= 0) out.push([key, { service: name, slot: i, node: eligible[at[i]].node.id }])
    else out.push([key, { service: name, slot: i, node: null, reason: (why ??= exhaustedReason(matching, eligible, load, maxPer, req)) }])
  }
  if (placeable < replicas) unplaced(placeable, why ?? exhaustedReason(matching, eligible, load, maxPer, req))
  return out
}

/** Why a slot fits nowhere after earlier slots filled the eligible nodes. */
function exhaustedReason(
  matching: readonly NodeState[],
  eligible: readonly NodeState[],
  load: readonly number[],
  maxPer: number,
  req: Request
): string {
  let atMax = 0
  for (let j = 0; j < eligible.length; j++) if (load[j] >= maxPer) atMax++
  const total = matching.length
  const noRoom = total - atMax
  if (noRoom === 0) return `max_replicas_per_node=${maxPer} reached on all ${plural(total, 'eligible node')}`
  if (atMax === 0) return noRoomReason(req, total)
  return (
    `max_replicas_per_node=${maxPer} reached on ${atMax} of ${plural(total, 'eligible node')}, ` +
    `the other ${noRoom} ${noRoom === 1 ? 'has' : 'have'} no ${describeRequest(req)} free to reserve`
  )
}

function placeGlobal(cluster: Cluster, svc: PlacementService): Entry[] {
  const spec = svc.spec
  const name = spec.name
  const req = requestOf(spec.reservations)
  const { matching, reason } = candidates(cluster, spec, req)
  if (matching.length === 0) {
    return [[globalKey(name, ''), { service: name, slot: 0, node: null, reason: reason ?? 'no eligible node' }]]
  }
  const out: Entry[] = []
  for (const ns of matching) {
    const key = globalKey(name, ns.node.id)
    if (hasRoom(ns, req)) {
      reserve(ns, req)
      out.push([key, { service: name, slot: 0, node: ns.node.id }])
    } else {
      const why = `node ${ns.node.name} (${ns.node.id}) has no ${describeRequest(req)} free to reserve`
      out.push([key, { service: name, slot: 0, node: null, reason: why }])
    }
  }
  return out
}

function placeInto(cluster: Cluster, svc: PlacementService): Entry[] {
  return svc.spec.mode === 'global' ? placeGlobal(cluster, svc) : placeReplicated(cluster, svc)
}

/**
 * Places one service on `nodes` (nothing else reserved).
 *
 * Replicated: one assignment per slot 0..replicas-1, in slot order; `node` is null with a `reason`
 * when the slot fits nowhere. Global: one assignment (slot 0) per alive, active node satisfying the
 * constraints, in node-id order; a node without room for the reservations gets `node: null` and a
 * reason naming it; if no node qualifies at all there is a single `node: null` assignment.
 */
export function placeService(nodes: PlacementNode[], svc: PlacementService): SlotAssignment[] {
  return placeInto(makeCluster(nodes), svc).map(([, a]) => a)
}

/**
 * Places every service, in name order, so reservations of earlier services consume node capacity
 * before later ones are placed. Keys: `${service}/${slot}` (replicated), `${service}@${nodeId}`
 * (global; `${service}@` when no node qualifies). Service names are expected to be unique; if two
 * entries share a name, one is chosen by content (never by input position) and the other ignored.
 */
export function placeAll(nodes: PlacementNode[], services: PlacementService[]): PlacementResult {
  const cluster = makeCluster(nodes)
  const slots = new Map<string, SlotAssignment>()
  for (const svc of uniqueSorted(services, (s) => s.spec.name)) {
    for (const [key, a] of placeInto(cluster, svc)) slots.set(key, a)
  }
  return { slots }
}

/**
 * Picks which of several nodes keeps a slot that more than one is running (after a healed
 * partition). Every node calling this with the same arguments gets the same winner:
 *  1. `preferred` — where placement currently puts the slot, typically
 *     `placeAll(...).slots.get(slotKey)?.node` — if it is one of the candidates;
 *  2. otherwise the candidate with the highest rendezvous score for `slotKey` (the same score
 *     placement ranks nodes by), ties to the smaller id.
 * The other candidates stop their copy. Throws RangeError on an empty candidate list.
 */
export function resolveDuplicate(slotKey: string, candidates: string[], preferred?: string | null): string {
  if (candidates.length === 0) throw new RangeError(`resolveDuplicate(${slotKey}): no candidates`)
  if (preferred != null && candidates.includes(preferred)) return preferred
  let winner = ''
  let winnerScore = -1
  for (const id of candidates) {
    const s = score(slotKey, id)
    if (s > winnerScore || (s === winnerScore && id < winner)) {
      winner = id
      winnerScore = s
    }
  }
  return winner
}
