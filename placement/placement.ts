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
 * fewer slots than first-come-first-served. That is the ideal placement.
 *
 * Given the current assignment (where slots run now, from the nodes' task reports), placement is
 * sticky: running slots stay, missing ones fill the least-loaded nodes, and a service with nothing
 * in flight is evened out one slot at a time toward a balanced fixed point. See README.md for the
 * rules, the guarantees and the measurements.
 */
import { compareStrings } from '../protocol/order.ts'
import { MAX_REPLICAS } from '../protocol/spec.ts'
import type { ServiceSpec } from '../protocol/spec.ts'
import {
  allowsHostAccess,
  constraintReason,
  hostAccessReason,
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
import type { CurrentAssignment, PlacementNode, PlacementResult, PlacementService, SlotAssignment, SlotHolder } from './types.ts'

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
  /** ids of the alive nodes: the only holders a current assignment is read from */
  alive: Set<string>
}

function makeCluster(nodes: readonly PlacementNode[]): Cluster {
  const states = uniqueSorted(nodes, (n) => n.id).map((node) => ({
    node,
    hash: hash2(node.id),
    capCpu: nanoCpus(node.cpus),
    capMem: memBytes(node.memoryBytes),
    usedCpu: 0,
    usedMem: 0
  }))
  return { nodes: states, alive: new Set(states.filter((ns) => ns.node.alive).map((ns) => ns.node.id)) }
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
  // a node whose operator does not allow the spec's host paths or privileged settings never gets it
  const allowed = matching.filter((ns) => allowsHostAccess(ns.node, spec))
  if (allowed.length === 0) return { matching: allowed, eligible: [], reason: hostAccessReason(matching.map((ns) => ns.node), spec) }
  const eligible = allowed.filter((ns) => hasRoom(ns, req))
  if (eligible.length === 0) return { matching: allowed, eligible, reason: noRoomReason(req, allowed.length) }
  return { matching: allowed, eligible }
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

/** One replicated service, ready to place: who may run it and how many each node can take. */
interface Plan {
  name: string
  replicas: number
  req: Request
  /** alive, active, satisfying every constraint */
  matching: NodeState[]
  /** `matching` nodes with room for one more replica, or already running kept slots (by id) */
  eligible: NodeState[]
  maxPer: number
  /** per eligible node: replicas it can hold at all (max_replicas_per_node, room for reservations) */
  hard: number[]
  /** min(replicas, Σ hard): how many slots can be placed */
  placeable: number
  /** per eligible node: kept slots, whose reservations are already made */
  base: number[]
  /** hash2 of every slot key, by slot index (computed on first use) */
  hashes: () => Hash2[]
}

/** Where the slots go (eligible-node index per slot, -1 = pending) and the per-node load. */
interface Assignment {
  at: Int32Array
  load: number[]
}

function unplacedEntries(name: string, from: number, to: number, why: string): Entry[] {
  const out: Entry[] = []
  for (let i = from; i < to; i++) out.push([slotKey(name, i), { service: name, slot: i, node: null, reason: why }])
  return out
}

/** Lazily computed hash2 of `${name}/${i}` for i < replicas. */
function slotHashesOf(name: string, replicas: number): () => Hash2[] {
  let hashes: Hash2[] | undefined
  return () => {
    if (hashes === undefined) {
      hashes = []
      for (let i = 0; i < replicas; i++) hashes.push(hash2(slotKey(name, i)))
    }
    return hashes
  }
}

/**
 * The placement problem of one replicated service on the capacity left now. `kept` (per matching
 * node, from keepRunning) are slots already reserved there: those nodes take part even when they
 * have no room for more, and their hard limit counts the kept slots.
 */
function makePlan(cluster: Cluster, svc: PlacementService, kept?: Kept): Plan | Entry[] {
  const spec = svc.spec
  const name = spec.name
  const replicas = replicaCount(svc)
  if (replicas === 0) return []
  const req = requestOf(spec.reservations)
  const { matching, eligible: withRoom, reason } = candidates(cluster, spec, req)
  const maxPer = spec.maxReplicasPerNode > 0 ? Math.floor(spec.maxReplicasPerNode) : Infinity
  let eligible = withRoom
  let base: number[] = eligible.map(() => 0)
  if (kept !== undefined) {
    const room = new Set(withRoom)
    const keptOn = new Map(kept.matching.map((ns, m) => [ns, kept.load[m]]))
    eligible = matching.filter((ns) => room.has(ns) || (keptOn.get(ns) ?? 0) > 0)
    base = eligible.map((ns) => keptOn.get(ns) ?? 0)
  }
  if (eligible.length === 0) return unplacedEntries(name, 0, replicas, reason ?? 'no eligible node')
  const hard = eligible.map((ns, j) => Math.min(maxPer, base[j] + fitCount(ns, req)))
  let total = 0
  for (const h of hard) total += h
  // Every eligible node can run every slot, so exactly min(replicas, Σ hard) slots can be placed.
  return { name, replicas, req, matching, eligible, maxPer, hard, placeable: Math.min(replicas, total), base, hashes: slotHashesOf(name, replicas) }
}

/**
 * The ideal placement: where the slots go when nothing runs yet (rendezvous hashing with bounded
 * loads, README steps 1–6). The lowest `placeable` slot numbers are placed.
 */
function idealAssignment(plan: Plan): Assignment {
  const { replicas, eligible, hard, placeable } = plan
  const slotHashes = plan.hashes()
  const n = eligible.length
  const balanceCap = loadCap(replicas, n)
  const slots: number[] = []
  for (let i = 0; i < placeable; i++) slots.push(i)
  const at = new Int32Array(replicas).fill(-1)
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
  return { at, load }
}

/** Reserves what the assignment adds to the plan's base and lists it slot by slot, with reasons. */
function emit(plan: Plan, a: Assignment): Entry[] {
  const { name, replicas, req, matching, eligible, maxPer, base } = plan
  for (let j = 0; j < eligible.length; j++) {
    const ns = eligible[j]
    ns.usedCpu += (a.load[j] - base[j]) * req.nanoCpus
    ns.usedMem += (a.load[j] - base[j]) * req.memoryBytes
  }
  const out: Entry[] = []
  let why: string | undefined
  for (let i = 0; i < replicas; i++) {
    const key = slotKey(name, i)
    const j = a.at[i]
    if (j >= 0) out.push([key, { service: name, slot: i, node: eligible[j].node.id }])
    else out.push([key, { service: name, slot: i, node: null, reason: (why ??= exhaustedReason(matching, eligible, a.load, maxPer, req)) }])
  }
  return out
}

/** Ideal placement of a replicated service (what placement gives when nothing runs). */
function placeReplicated(cluster: Cluster, svc: PlacementService): Entry[] {
  const plan = makePlan(cluster, svc)
  return Array.isArray(plan) ? plan : emit(plan, idealAssignment(plan))
}

// -------------------------------------------------------------------------------------------------
// Placement from the current assignment: keep what runs, fill what is missing, rebalance gradually.
// -------------------------------------------------------------------------------------------------

/**
 * Slots of one service moved toward balance per placement evaluation, and only while none of the
 * service's slots is in flight (README, "Gradual rebalance"). Every move is a replica started on
 * one node and, once it runs, stopped on another. One at a time per service costs at most one extra
 * replica per service, paces the rebalance by the handovers themselves (the next move is chosen
 * only once the previous replica runs), and makes every state a handover passes through — old
 * replica stopping, new one starting, both running — place the slot on the same new node, so a
 * move never flips back.
 */
export const REBALANCE_MOVES_PER_SERVICE = 1

/** The running slots of one replicated service that stay where they are (pass 1). */
interface Kept {
  /** alive, active nodes satisfying the constraints, sorted by id */
  matching: NodeState[]
  /** per slot: index into `matching` of the node keeping it, or -1 */
  at: Int32Array
  /** per matching node: slots it keeps */
  load: number[]
  /** per slot: alive nodes holding it (eligible or not) */
  count: Uint16Array
  /** per slot: exactly one alive holder, and it is ready */
  clean: Uint8Array
  /** slots with several holders that may run them: [slot, matching indices ascending] */
  multi: Array<[number, number[]]>
  total: number
}

/**
 * Pass 1 for a replicated service: which of its running slots stay, and their reservations.
 * A slot stays on the node that holds it if that node is alive, active, satisfies the constraints
 * and is within its hard limits (max_replicas_per_node, room for the reservations left by services
 * placed before it). A node holding more than it may keep keeps the slots that rank it highest
 * (rendezvous score, then lower slot number). A slot held by several such nodes is left to pass 2
 * (`fill` keeps it on one of them).
 */
function keepRunning(cluster: Cluster, svc: PlacementService, current: CurrentAssignment, keys: { found: number }): Kept | null {
  const spec = svc.spec
  const name = spec.name
  const r = replicaCount(svc)
  if (r === 0) return null
  const req = requestOf(spec.reservations)
  const { matching } = candidates(cluster, spec, req)
  const maxPer = spec.maxReplicasPerNode > 0 ? Math.floor(spec.maxReplicasPerNode) : Infinity
  const index = new Map<string, number>()
  matching.forEach((ns, m) => index.set(ns.node.id, m))
  const at = new Int32Array(r).fill(-1)
  const load: number[] = new Array<number>(matching.length).fill(0)
  const count = new Uint16Array(r)
  const clean = new Uint8Array(r)
  const single: number[][] = matching.map(() => [])
  const multi: Array<[number, number[]]> = []
  for (let i = 0; i < r; i++) {
    const list = current.get(slotKey(name, i))
    if (list === undefined) continue
    keys.found++
    if (list.length === 0) continue
    if (list.length === 1) {
      // the common case, without the bookkeeping of several holders
      const id = list[0]?.node
      if (typeof id !== 'string' || !cluster.alive.has(id)) continue
      count[i] = 1
      if (list[0].ready !== false) clean[i] = 1
      const m = index.get(id)
      if (m !== undefined) single[m].push(i)
      continue
    }
    // node id → ready (a node listed twice is ready only if every entry says so)
    const holders = new Map<string, boolean>()
    for (const h of list) {
      if (typeof h?.node !== 'string' || !cluster.alive.has(h.node)) continue
      holders.set(h.node, (holders.get(h.node) ?? true) && h.ready !== false)
    }
    count[i] = Math.min(holders.size, 0xffff)
    if (holders.size === 1 && holders.values().next().value === true) clean[i] = 1
    const on: number[] = []
    for (const id of holders.keys()) {
      const m = index.get(id)
      if (m !== undefined) on.push(m)
    }
    if (on.length === 1) single[on[0]].push(i)
    else if (on.length > 1) multi.push([i, on.sort((a, b) => a - b)])
  }
  const limit = matching.map((ns) => Math.min(maxPer, fitCount(ns, req)))
  const slotHashes = slotHashesOf(name, r)
  for (let m = 0; m < matching.length; m++) {
    let mine = single[m]
    if (mine.length > limit[m]) {
      const h = matching[m].hash
      const hashes = slotHashes()
      mine = mine
        .map((i) => ({ i, s: pairScore(hashes[i], h) }))
        .sort((x, y) => y.s - x.s || x.i - y.i)
        .slice(0, limit[m])
        .map((e) => e.i)
    }
    for (const i of mine) at[i] = m
    load[m] = mine.length
  }
  let total = 0
  for (let m = 0; m < matching.length; m++) {
    total += load[m]
    matching[m].usedCpu += load[m] * req.nanoCpus
    matching[m].usedMem += load[m] * req.memoryBytes
  }
  return { matching, at, load, count, clean, multi, total }
}

/**
 * Pass 2 for a replicated service, on the capacity left once every service's running slots are
 * kept: fill the slots no node keeps, then, if the service is settled, rebalance.
 *  - Fill: slots held by several nodes, then the lowest slot numbers that are not kept, as many
 *    as fit, go onto the least-loaded nodes (`fill`) — a slot held by several stays on one of them.
 *  - Settled: every placed slot is held by exactly its node, and ready; no pending slot, and no
 *    slot at or above `replicas` (scaled away), is held. Anything else — a slot starting, held
 *    twice, held by a node that must give it up, just filled, a removed replica still running —
 *    is a move in flight, and the service is not rebalanced until it completes.
 *  - Rebalance: `rebalance`.
 * A service with nothing running is filled the same way, from empty, so a deploy is evenly spread
 * at once (also into an empty cluster); only without a current assignment is it the ideal.
 */
function finishReplicated(cluster: Cluster, svc: PlacementService, kept: Kept | null, highestHeld: number): Entry[] {
  if (kept === null) return placeReplicated(cluster, svc)
  const plan = makePlan(cluster, svc, kept)
  if (Array.isArray(plan)) return plan
  const r = plan.replicas
  const position = new Map(plan.eligible.map((ns, j) => [ns, j]))
  const toPlan = kept.matching.map((ns) => position.get(ns) ?? -1)
  const at = new Int32Array(r)
  for (let i = 0; i < r; i++) at[i] = kept.at[i] >= 0 ? toPlan[kept.at[i]] : -1
  const a: Assignment = { at, load: [...plan.base] }
  let idealCache: Assignment | undefined
  const ideal = (): Assignment => (idealCache ??= idealAssignment(plan))

  // Slots held by several nodes first (they run), then the missing ones, as many as fit.
  const holders = new Map<number, number[]>()
  for (const [i, on] of kept.multi) {
    const js = on.map((m) => toPlan[m]).filter((j) => j >= 0)
    if (js.length > 0) holders.set(i, js)
  }
  const open: number[] = [...holders.keys()]
  for (let i = 0; i < r; i++) if (at[i] < 0 && !holders.has(i)) open.push(i)
  open.length = Math.min(open.length, plan.placeable - kept.total)
  if (open.length > 0) fill(plan, open, a, ideal, holders)

  let settled = open.length === 0 && highestHeld < r
  for (let i = 0; i < r && settled; i++) settled = at[i] >= 0 ? kept.clean[i] === 1 : kept.count[i] === 0
  if (settled) rebalance(plan, a, ideal)
  return emit(plan, a)
}

/**
 * How many new slots each node gets when `k` slots are added to nodes loaded `load`: water-
 * filling, least-loaded first. Every node is raised to a common level as far as its hard limit
 * allows; the remainder goes one more each to nodes at that level, those where the ideal puts
 * the most slots first, then by a per-service rendezvous score of the node.
 */
function fillCounts(plan: Plan, load: readonly number[], k: number, ideal: () => Assignment): number[] {
  const { hard, eligible } = plan
  const n = load.length
  const room = load.map((l, j) => hard[j] - l)
  let roomTotal = 0
  for (const x of room) roomTotal += x
  if (k >= roomTotal) return room
  const add: number[] = new Array<number>(n).fill(0)
  if (k <= 0) return add
  const raised = (level: number): number => {
    let s = 0
    for (let j = 0; j < n; j++) s += Math.min(room[j], Math.max(0, level - load[j]))
    return s
  }
  // the highest level all nodes can be raised to with at most k slots; raised(hi) > k, since
  // either some node has room for k + 1 or all the room (> k) is used
  let lo = Math.min(...load)
  let hi = Math.max(...load) + k + 1
  while (hi - lo > 1) {
    const mid = lo + Math.floor((hi - lo) / 2)
    if (raised(mid) <= k) lo = mid
    else hi = mid
  }
  let rest = k
  const atLevel: number[] = []
  for (let j = 0; j < n; j++) {
    add[j] = Math.min(room[j], Math.max(0, lo - load[j]))
    rest -= add[j]
    if (add[j] < room[j] && load[j] + add[j] === lo) atLevel.push(j)
  }
  if (rest > 0) {
    // rest < atLevel.length, or the level would be higher
    const idealLoad = ideal().load
    const svcHash = hash2(plan.name)
    const tie = (j: number): number => pairScore(svcHash, eligible[j].hash)
    atLevel.sort((x, y) => idealLoad[y] - idealLoad[x] || tie(y) - tie(x) || x - y)
    for (let e = 0; e < rest; e++) add[atLevel[e]]++
  }
  return add
}

/**
 * Places `slots` (not placed yet) onto the least-loaded nodes: fillCounts says how many each node
 * gets; a slot takes its ideal node if that node gets any (a node wanted by more keeps those that
 * rank it highest), the others go in slot order to their highest-ranked node with a count left.
 * So the slots of a node that left go where load-bounded hashing puts them, and the cap holds.
 * Every step is stable under partial reports: when some of the slots placed here start running
 * and are reported while the others are not yet, filling again gives the others the same nodes —
 * a fresh deploy, a scale-up or a failover never reshuffles while its replicas come up. With
 * nothing kept, the result is the ideal whenever the ideal is evenly spread (up to
 * STRICT_SPREAD_MAX_PER_NODE per node), else the even spread that follows it most closely.
 */
function fill(plan: Plan, slots: readonly number[], a: Assignment, ideal: () => Assignment, holders?: ReadonlyMap<number, number[]>): void {
  const { eligible, hard } = plan
  const slotHashes = plan.hashes()
  const n = eligible.length
  const add = fillCounts(plan, a.load, slots.length, ideal)
  const t = ideal().at
  if (holders !== undefined && holders.size > 0) {
    // Slots held by several nodes, in slot order: the first holder in resolveDuplicate's order
    // (the ideal node, then rendezvous score) that has a count left, else the first with room.
    for (const i of slots) {
      const on = holders.get(i)
      if (on === undefined) continue
      const h = slotHashes[i]
      const ranked = on
        .map((j) => ({ j, own: t[i] === j ? 1 : 0, s: pairScore(h, eligible[j].hash) }))
        .sort((x, y) => y.own - x.own || y.s - x.s || x.j - y.j)
        .map((e) => e.j)
      const j = ranked.find((x) => add[x] > 0) ?? ranked.find((x) => a.load[x] < hard[x])
      if (j === undefined) continue
      if (add[j] > 0) add[j]--
      a.at[i] = j
      a.load[j]++
    }
  }
  const wanting: number[][] = eligible.map(() => [])
  for (const i of slots) {
    if (a.at[i] >= 0) continue
    const j = t[i]
    if (j >= 0 && add[j] > 0) wanting[j].push(i)
  }
  for (let j = 0; j < n; j++) {
    let mine = wanting[j]
    if (mine.length === 0) continue
    if (mine.length > add[j]) {
      const h = eligible[j].hash
      mine = mine
        .map((i) => ({ i, s: pairScore(slotHashes[i], h) }))
        .sort((x, y) => y.s - x.s || x.i - y.i)
        .slice(0, add[j])
        .map((e) => e.i)
    }
    for (const i of mine) a.at[i] = j
    add[j] -= mine.length
    a.load[j] += mine.length
  }
  // The rest in slot order, each to its highest-ranked node with a count left (Σ add is at least
  // their number). Greedy in a fixed order, not deferred acceptance: with some of these slots
  // already reported and the others not, it gives the others the same nodes again.
  for (const i of slots) {
    if (a.at[i] >= 0) continue
    const h = slotHashes[i]
    let best = -1
    let bestScore = -1
    for (let j = 0; j < n; j++) {
      if (add[j] <= 0) continue
      const sj = pairScore(h, eligible[j].hash)
      if (sj > bestScore) {
        best = j
        bestScore = sj
      }
    }
    a.at[i] = best
    add[best]--
    a.load[best]++
  }
}

/**
 * Gradual rebalance of a settled service: while a most-loaded node holds two or more slots more
 * than the least-loaded node with room, move one slot (REBALANCE_MOVES_PER_SERVICE per call) to
 * the node `fill` would give a slot taken off a most-loaded node — a least-loaded one, so every
 * move lowers Σ load² by at least 2 and the process ends, balanced (loads differ by at most one,
 * nodes at a hard limit aside). Of the slots on most-loaded nodes it moves one the ideal puts on
 * the target, then the one ranking the target highest, then the lowest slot number. Taking the slot
 * off and filling it again lands on the same node, so every state of the handover places it there.
 */
function rebalance(plan: Plan, a: Assignment, ideal: () => Assignment): void {
  const { eligible, hard, replicas } = plan
  const n = eligible.length
  for (let move = 0; move < REBALANCE_MOVES_PER_SERVICE; move++) {
    let max = 0
    let min = Infinity
    let busiest = -1
    for (let j = 0; j < n; j++) {
      if (a.load[j] > max) {
        max = a.load[j]
        busiest = j
      }
      if (a.load[j] < hard[j]) min = Math.min(min, a.load[j])
    }
    if (min === Infinity || max - min < 2) return
    // the target does not depend on which most-loaded node gives the slot (it is at min < max - 1)
    a.load[busiest]--
    const v = fillCounts(plan, a.load, 1, ideal).findIndex((x) => x > 0)
    a.load[busiest]++
    const t = ideal().at
    const slotHashes = plan.hashes()
    const vh = eligible[v].hash
    let best = -1
    let bestOwn = -1
    let bestScore = -1
    for (let i = 0; i < replicas; i++) {
      const j = a.at[i]
      if (j < 0 || a.load[j] !== max) continue
      const own = t[i] === v ? 1 : 0
      const s = pairScore(slotHashes[i], vh)
      if (own > bestOwn || (own === bestOwn && s > bestScore)) {
        best = i
        bestOwn = own
        bestScore = s
      }
    }
    a.load[a.at[best]]--
    a.at[best] = v
    a.load[v]++
  }
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

/**
 * A global service: one slot per alive, active node satisfying the constraints, where its
 * reservations fit. `kept`: nodes that already run it and whose reservation pass 1 has made.
 */
function placeGlobal(cluster: Cluster, svc: PlacementService, kept?: ReadonlySet<NodeState>): Entry[] {
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
    if (kept?.has(ns) === true) {
      out.push([key, { service: name, slot: 0, node: ns.node.id }])
    } else if (hasRoom(ns, req)) {
      reserve(ns, req)
      out.push([key, { service: name, slot: 0, node: ns.node.id }])
    } else {
      const why = `node ${ns.node.name} (${ns.node.id}) has no ${describeRequest(req)} free to reserve`
      out.push([key, { service: name, slot: 0, node: null, reason: why }])
    }
  }
  return out
}

/** Pass 1 for a global service: the nodes that run it keep it, and its reservation, if it fits. */
function keepGlobal(cluster: Cluster, svc: PlacementService, current: CurrentAssignment, keys: { found: number }): Set<NodeState> {
  const req = requestOf(svc.spec.reservations)
  const kept = new Set<NodeState>()
  for (const ns of candidates(cluster, svc.spec, req).matching) {
    const id = ns.node.id
    const holders = current.get(globalKey(svc.spec.name, id))
    if (holders !== undefined) keys.found++
    if (holders === undefined || !holders.some((h) => h?.node === id) || !hasRoom(ns, req)) continue
    reserve(ns, req)
    kept.add(ns)
  }
  return kept
}

/**
 * Per service name, the highest slot number an alive node reports holding, so that a service whose
 * removed slots (scaled down) still run counts as in flight.
 */
function highestHeld(cluster: Cluster, current: CurrentAssignment): Map<string, number> {
  const out = new Map<string, number>()
  for (const [key, holders] of current) {
    const slash = key.lastIndexOf('/')
    if (slash < 0) continue
    const digits = key.slice(slash + 1)
    const slot = Number(digits)
    if (!Number.isSafeInteger(slot) || slot < 0 || String(slot) !== digits) continue
    if (!holders.some((h) => typeof h?.node === 'string' && cluster.alive.has(h.node))) continue
    const name = key.slice(0, slash)
    out.set(name, Math.max(out.get(name) ?? -1, slot))
  }
  return out
}

/**
 * Places `services` (unique, sorted by name) in name order. With a current assignment, in two
 * passes, each in name order: first every service keeps its running slots (and their
 * reservations), then every service places the rest on the capacity left — so new slots and
 * rebalance moves never take the room of another service's running replica. Without a current
 * assignment, the second pass alone is the ideal placement.
 */
function placeServices(cluster: Cluster, services: readonly PlacementService[], current: CurrentAssignment | undefined): Entry[] {
  const out: Entry[] = []
  // An empty current assignment (a cluster running nothing yet) still fills evenly from empty: the
  // ideal alone may leave a small service uneven (10 slots on 3 nodes: 2/4/4), and the rebalance
  // would then move a replica seconds after the deploy.
  if (current === undefined) {
    for (const svc of services) out.push(...(svc.spec.mode === 'global' ? placeGlobal(cluster, svc) : placeReplicated(cluster, svc)))
    return out
  }
  const kept = new Map<PlacementService, Kept | Set<NodeState> | null>()
  const keys = { found: 0 }
  for (const svc of services) kept.set(svc, svc.spec.mode === 'global' ? keepGlobal(cluster, svc, current, keys) : keepRunning(cluster, svc, current, keys))
  // Service names contain neither '/' nor '@', so keys are unambiguous: when every key of the map
  // is a slot looked up above, no slot beyond a replica count is held.
  const highest = keys.found === current.size ? new Map<string, number>() : highestHeld(cluster, current)
  for (const svc of services) {
    const k = kept.get(svc) ?? null
    if (svc.spec.mode === 'global') out.push(...placeGlobal(cluster, svc, k as Set<NodeState>))
    else out.push(...finishReplicated(cluster, svc, k as Kept | null, highest.get(svc.spec.name) ?? -1))
  }
  return out
}

/**
 * Places one service on `nodes` (nothing else reserved).
 *
 * Replicated: one assignment per slot 0..replicas-1, in slot order; `node` is null with a `reason`
 * when the slot fits nowhere. Global: one assignment (slot 0) per alive, active node satisfying the
 * constraints, in node-id order; a node without room for the reservations gets `node: null` and a
 * reason naming it; if no node qualifies at all there is a single `node: null` assignment.
 * `current`: where slots run now, as for placeAll.
 */
export function placeService(nodes: PlacementNode[], svc: PlacementService, current?: CurrentAssignment): SlotAssignment[] {
  return placeServices(makeCluster(nodes), [svc], current).map(([, a]) => a)
}

/**
 * Places every service, in name order, so reservations of earlier services consume node capacity
 * before later ones are placed. Keys: `${service}/${slot}` (replicated), `${service}@${nodeId}`
 * (global; `${service}@` when no node qualifies). Service names are expected to be unique; if two
 * entries share a name, one is chosen by content (never by input position) and the other ignored.
 *
 * `current` says where replicated slots run now (see CurrentAssignment). Without it, or for a
 * service none of whose slots may stay where it runs, the result is the ideal placement. With it,
 * running slots stay where they are (scaling never moves one), missing slots fill the least-loaded
 * nodes, and a settled service is evened out one slot at a time (REBALANCE_MOVES_PER_SERVICE).
 * README.md has the rules and guarantees. Global services do not depend on it.
 */
export function placeAll(nodes: PlacementNode[], services: PlacementService[], current?: CurrentAssignment): PlacementResult {
  const slots = new Map<string, SlotAssignment>()
  for (const [key, a] of placeServices(makeCluster(nodes), uniqueSorted(services, (s) => s.spec.name), current)) slots.set(key, a)
  return { slots }
}

/**
 * The current assignment of a cluster that runs exactly `result`: every placed slot held by its
 * node, ready. For simulations and tests (iterating `placeAll(…, currentOf(previous))` plays the
 * rebalance out); node/ builds the real one from task reports.
 */
export function currentOf(result: PlacementResult): Map<string, SlotHolder[]> {
  const out = new Map<string, SlotHolder[]>()
  for (const [key, a] of result.slots) if (a.node !== null) out.set(key, [{ node: a.node, ready: true }])
  return out
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
