import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { MAX_REPLICAS, newServiceSpec } from '../../protocol/spec.ts'
import type { ConstraintSpec, ServiceSpec } from '../../protocol/spec.ts'
import { fmix32, hash2, murmur3Utf16, pairScore, score } from '../../placement/hashing.ts'
import { LOAD_EPSILON, STRICT_SPREAD_MAX_PER_NODE, loadCap, placeAll, placeService, resolveDuplicate } from '../../placement/placement.ts'
import type { PlacementNode, PlacementResult, PlacementService, SlotAssignment } from '../../placement/types.ts'

// -------------------------------------------------------------------------------------------------
// Builders
// -------------------------------------------------------------------------------------------------

const MiB = 1024 ** 2
const GiB = 1024 ** 3

function makeSpec(name: string, over: Partial<ServiceSpec> = {}): ServiceSpec {
  return newServiceSpec({ name, stack: 'test', image: 'nginx:1.27', ...over })
}

function svc(name: string, replicas: number, over: Partial<ServiceSpec> = {}): PlacementService {
  return { spec: makeSpec(name, { replicas, ...over }), replicas }
}

function makeNode(id: string, over: Partial<PlacementNode> = {}): PlacementNode {
  return { id, name: id, labels: {}, alive: true, availability: 'active', cpus: 4, memoryBytes: 8 * GiB, ...over }
}

function nodes(count: number, prefix = 'node-'): PlacementNode[] {
  return Array.from({ length: count }, (_, i) => makeNode(`${prefix}${i}`))
}

/** Deterministic Fisher–Yates driven by a seed, so fast-check can replay a failure. */
function shuffle<T>(xs: readonly T[], seed: number): T[] {
  const out = [...xs]
  let s = seed >>> 0 || 1
  for (let i = out.length - 1; i > 0; i--) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    const j = s % (i + 1)
    ;[out[i], out[j]] = [out[j], out[i]]
  }
  return out
}

/** Same node with its labels object rebuilt in reverse key order. */
function reverseLabels(n: PlacementNode): PlacementNode {
  const labels: Record<string, string> = {}
  for (const k of Object.keys(n.labels).reverse()) labels[k] = n.labels[k]
  return { ...n, labels }
}

function dump(r: PlacementResult): Array<[string, string | null, string | undefined]> {
  return [...r.slots.entries()]
    .map(([k, a]): [string, string | null, string | undefined] => [k, a.node, a.reason])
    .sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0))
}

// -------------------------------------------------------------------------------------------------
// Oracles, written independently of the implementation
// -------------------------------------------------------------------------------------------------

function attributeOf(n: PlacementNode, attribute: string): string {
  const a = attribute.replace(/^node\./, '')
  if (a.startsWith('labels.')) {
    const k = a.slice('labels.'.length)
    return Object.prototype.hasOwnProperty.call(n.labels, k) ? n.labels[k] : ''
  }
  if (a === 'id') return n.id
  if (a === 'name' || a === 'hostname') return n.name
  return ''
}

function satisfies(n: PlacementNode, cs: readonly ConstraintSpec[]): boolean {
  return cs.every((c) => (attributeOf(n, c.attribute).toLowerCase() === c.value.toLowerCase()) === (c.op === '=='))
}

/** alive, active, constraints (reservations aside) */
function matchingNodes(ns: readonly PlacementNode[], spec: ServiceSpec): PlacementNode[] {
  return ns.filter((n) => n.alive && n.availability === 'active' && satisfies(n, spec.constraints))
}

function countBy(as: readonly SlotAssignment[]): Map<string, number> {
  const m = new Map<string, number>()
  for (const a of as) if (a.node !== null) m.set(a.node, (m.get(a.node) ?? 0) + 1)
  return m
}

function fractionMoved(a: readonly SlotAssignment[], b: readonly SlotAssignment[]): number {
  assert.equal(a.length, b.length)
  let moved = 0
  for (let i = 0; i < a.length; i++) if (a[i].node !== b[i].node) moved++
  return moved / a.length
}

// -------------------------------------------------------------------------------------------------
// Arbitraries
// -------------------------------------------------------------------------------------------------

const idArb = fc.oneof(
  fc.string({ minLength: 1, maxLength: 6 }),
  fc.stringMatching(/^12D3KooW[1-9A-HJ-NP-Za-km-z]{8}$/),
  fc.string({ minLength: 1, maxLength: 4, unit: 'binary' })
)

const labelsArb = fc.dictionary(fc.constantFrom('zone', 'disk', 'constructor', 'gpu'), fc.constantFrom('eu', 'EU', 'us', 'ssd', 'hdd', ''), {
  maxKeys: 3
})

const nodeArb: fc.Arbitrary<PlacementNode> = fc.record({
  id: idArb,
  name: fc.constantFrom('web-1', 'web-2', 'db', 'edge'),
  labels: labelsArb,
  alive: fc.constantFrom(true, true, true, false),
  availability: fc.constantFrom<PlacementNode['availability']>('active', 'active', 'active', 'drain', 'pause'),
  cpus: fc.constantFrom(0.5, 1, 2, 4, 8),
  memoryBytes: fc.constantFrom(512 * MiB, GiB, 2 * GiB, 8 * GiB)
})

const nodesArb = (maxLength: number): fc.Arbitrary<PlacementNode[]> =>
  fc.uniqueArray(nodeArb, { selector: (n) => n.id, maxLength })

const constraintArb: fc.Arbitrary<ConstraintSpec> = fc.record({
  attribute: fc.constantFrom('labels.zone', 'labels.disk', 'node.labels.zone', 'labels.constructor', 'name', 'node.hostname', 'id', 'node.role'),
  op: fc.constantFrom<ConstraintSpec['op']>('==', '!=', '!='),
  value: fc.constantFrom('eu', 'us', 'ssd', 'web-1', 'db', '')
})

const serviceFieldsArb = fc.record({
  mode: fc.constantFrom<ServiceSpec['mode']>('replicated', 'replicated', 'replicated', 'global'),
  replicas: fc.integer({ min: 0, max: 40 }),
  constraints: fc.array(constraintArb, { maxLength: 2 }),
  cpus: fc.constantFrom<number | undefined>(undefined, undefined, 0.1, 0.25, 0.5, 1, 2),
  memoryBytes: fc.constantFrom<number | undefined>(undefined, undefined, 128 * MiB, 256 * MiB, GiB),
  maxReplicasPerNode: fc.constantFrom(0, 0, 1, 2, 3)
})

const servicesArb = fc
  .uniqueArray(fc.tuple(fc.constantFrom('api', 'web', 'db', 'cache', 'worker', 'a.b', 'Zeta', 'web_2'), serviceFieldsArb), {
    selector: (t) => t[0],
    maxLength: 4
  })
  .map((ts) =>
    ts.map(([name, f]): PlacementService =>
      svc(name, f.replicas, {
        mode: f.mode,
        constraints: f.constraints,
        reservations: { cpus: f.cpus, memoryBytes: f.memoryBytes },
        maxReplicasPerNode: f.maxReplicasPerNode
      })
    )
  )

/** Plain services: no reservations, so only liveness, constraints and max_replicas_per_node bind. */
const plainServiceArb = fc
  .record({
    replicas: fc.integer({ min: 0, max: 60 }),
    constraints: fc.array(constraintArb, { maxLength: 1 }),
    maxReplicasPerNode: fc.constantFrom(0, 0, 0, 1, 2, 5)
  })
  .map((f) => svc('plain', f.replicas, { constraints: f.constraints, maxReplicasPerNode: f.maxReplicasPerNode }))

// -------------------------------------------------------------------------------------------------
// Invariants of any placeAll result
// -------------------------------------------------------------------------------------------------

function byName(a: PlacementService, b: PlacementService): number {
  return a.spec.name < b.spec.name ? -1 : a.spec.name > b.spec.name ? 1 : 0
}

function checkInvariants(ns: PlacementNode[], services: PlacementService[], result: PlacementResult): void {
  const byId = new Map(ns.map((n) => [n.id, n]))
  const usedCpu = new Map<string, number>()
  const usedMem = new Map<string, number>()
  const reserve = (id: string, spec: ServiceSpec): void => {
    usedCpu.set(id, (usedCpu.get(id) ?? 0) + (spec.reservations.cpus ?? 0))
    usedMem.set(id, (usedMem.get(id) ?? 0) + (spec.reservations.memoryBytes ?? 0))
  }
  const hasRoom = (n: PlacementNode, spec: ServiceSpec): boolean => {
    const cpus = spec.reservations.cpus ?? 0
    const mem = spec.reservations.memoryBytes ?? 0
    return (cpus === 0 || (usedCpu.get(n.id) ?? 0) + cpus <= n.cpus + 1e-9) && (mem === 0 || (usedMem.get(n.id) ?? 0) + mem <= n.memoryBytes)
  }

  let expectedKeys = 0
  for (const s of [...services].sort(byName)) {
    const spec = s.spec
    const matching = matchingNodes(ns, spec)
    const mine = [...result.slots.entries()].filter(([, a]) => a.service === spec.name)
    for (const [, a] of mine) {
      if (a.node === null) {
        assert.ok(a.reason && a.reason.length > 0, 'unplaced slot without reason')
        continue
      }
      const n = byId.get(a.node)
      assert.ok(n, `assigned to unknown node ${a.node}`)
      assert.ok(n.alive, 'slot on a dead node')
      assert.equal(n.availability, 'active', 'slot on a drain/pause node')
      assert.ok(satisfies(n, spec.constraints), 'slot on a node failing a constraint')
      assert.ok(hasRoom(n, spec), `reservations exceed capacity of ${n.id}`)
      reserve(n.id, spec)
    }
    const placed = mine.map(([, a]) => a)

    if (spec.mode === 'global') {
      const keyed = new Set(mine.map(([k]) => k))
      if (matching.length === 0) {
        assert.equal(mine.length, 1)
        assert.ok(keyed.has(`${spec.name}@`))
        assert.equal(placed[0].node, null)
      } else {
        // one entry per matching node, keyed by it; placed or pending for lack of room
        assert.equal(mine.length, matching.length)
        for (const n of matching) assert.ok(keyed.has(`${spec.name}@${n.id}`))
        for (const [k, a] of mine) if (a.node !== null) assert.equal(k, `${spec.name}@${a.node}`)
        for (const [, c] of countBy(placed)) assert.equal(c, 1)
      }
      expectedKeys += mine.length
      continue
    }

    const r = Math.max(0, Math.floor(s.replicas))
    assert.equal(mine.length, r, 'one assignment per slot')
    expectedKeys += r
    assert.deepEqual(
      mine.map(([k, a]) => [k, a.slot]).sort((x, y) => (x[1] as number) - (y[1] as number)),
      Array.from({ length: r }, (_, i) => [`${spec.name}/${i}`, i])
    )
    const loads = countBy(placed)
    if (spec.maxReplicasPerNode > 0) for (const [, c] of loads) assert.ok(c <= spec.maxReplicasPerNode, 'max_replicas_per_node exceeded')
    // pending only when no matching node can take one more
    if (placed.some((a) => a.node === null)) {
      for (const n of matching) {
        const atMax = spec.maxReplicasPerNode > 0 && (loads.get(n.id) ?? 0) >= spec.maxReplicasPerNode
        assert.ok(atMax || !hasRoom(n, spec), `slot pending while ${n.id} could run it`)
      }
      // and the pending ones are the highest slot numbers
      const sorted = [...placed].sort((x, y) => x.slot - y.slot)
      const firstNull = sorted.findIndex((a) => a.node === null)
      assert.ok(sorted.slice(firstNull).every((a) => a.node === null), 'a pending slot below a placed one')
    }
  }
  assert.equal(result.slots.size, expectedKeys, 'no assignments for unknown services')
}

// -------------------------------------------------------------------------------------------------
// Tests
// -------------------------------------------------------------------------------------------------

describe('hashing', () => {
  /** Reference MurmurHash3 x86_32 over bytes, for checking the UTF-16 shortcut. */
  function murmur3Bytes(b: Uint8Array, seed: number): number {
    const mix = (k: number): number => Math.imul(((k = Math.imul(k, 0xcc9e2d51)) << 15) | (k >>> 17), 0x1b873593)
    let h = seed >>> 0
    let i = 0
    for (; i + 4 <= b.length; i += 4) {
      h ^= mix(b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24))
      h = (h << 13) | (h >>> 19)
      h = (Math.imul(h, 5) + 0xe6546b64) | 0
    }
    let k = 0
    const rest = b.length & 3
    if (rest >= 3) k ^= b[i + 2] << 16
    if (rest >= 2) k ^= b[i + 1] << 8
    if (rest >= 1) h ^= mix(k ^ b[i])
    return fmix32(h ^ b.length)
  }

  it('reference byte implementation matches published MurmurHash3 x86_32 vectors', () => {
    const vectors: Array<[string, number, number]> = [
      ['', 0, 0],
      ['', 1, 0x514e28b7],
      ['', 0xffffffff, 0x81f16f39],
      ['\0\0\0\0', 0, 0x2362f9de],
      ['a', 0x9747b28c, 0x7fa09ea6],
      ['ab', 0x9747b28c, 0x74875592],
      ['abc', 0x9747b28c, 0xc84a62dd],
      ['abcd', 0x9747b28c, 0xf0478627],
      ['Hello, world!', 0x9747b28c, 0x24884cba],
      ['ππππππππ', 0x9747b28c, 0xd58063c1],
      ['The quick brown fox jumps over the lazy dog', 0x9747b28c, 0x2fa826cd]
    ]
    for (const [s, seed, expected] of vectors) assert.equal(murmur3Bytes(Buffer.from(s, 'utf8'), seed), expected, JSON.stringify(s))
  })

  it('murmur3Utf16 equals MurmurHash3 of the UTF-16LE bytes', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 40 }), fc.integer({ min: 0, max: 0xffffffff }), (s, seed) => {
        assert.equal(murmur3Utf16(s, seed), murmur3Bytes(Buffer.from(s, 'utf16le'), seed))
      }),
      { numRuns: 500 }
    )
  })

  it('pins hash values (changing them moves slots on a mixed-version cluster)', () => {
    assert.deepEqual(hash2('12D3KooWnode'), { a: murmur3Utf16('12D3KooWnode', 0x9747b28c), b: murmur3Utf16('12D3KooWnode', 0x5bd1e995) })
    assert.equal(score('web/0', 'node-a'), pairScore(hash2('web/0'), hash2('node-a')))
    assert.deepEqual(
      ['node-a', 'node-b', 'node-c'].map((n) => score('web/0', n)),
      GOLDEN_SCORES
    )
  })

  it('pairScore bits are balanced and first choices are uniform', () => {
    const nodeHashes = Array.from({ length: 20 }, (_, i) => hash2(`12D3KooW-node-${i}`))
    const firsts = new Array<number>(20).fill(0)
    const bits = new Array<number>(32).fill(0)
    const keys = 20_000
    for (let k = 0; k < keys; k++) {
      const h = hash2(`svc/${k}`)
      let best = -1
      let bestScore = -1
      for (let j = 0; j < 20; j++) {
        const s = pairScore(h, nodeHashes[j])
        if (j === 0) for (let b = 0; b < 32; b++) bits[b] += (s >>> b) & 1
        if (s > bestScore) {
          bestScore = s
          best = j
        }
      }
      firsts[best]++
    }
    for (const c of bits) assert.ok(Math.abs(c / keys - 0.5) < 0.02, `bit bias ${c / keys}`)
    const expected = keys / 20
    const chi2 = firsts.reduce((acc, c) => acc + (c - expected) ** 2 / expected, 0)
    assert.ok(chi2 < 43.8, `first-choice chi² ${chi2.toFixed(1)} (19 dof, p=0.001 critical 43.8)`)
  })
})

// Filled from the implementation once and pinned: the protocol depends on these never changing.
// (Re-pinned once, before any release, when services with ≤ 2 slots per node became strictly spread.)
const GOLDEN_SCORES = [757024610, 2812574386, 1604810114]
const GOLDEN_PLACEMENT: Array<[string, string | null]> = [
  ['agent@12D3KooWA', '12D3KooWA'],
  ['agent@12D3KooWB', '12D3KooWB'],
  ['agent@12D3KooWC', '12D3KooWC'],
  ['agent@12D3KooWD', '12D3KooWD'],
  ['db/0', '12D3KooWD'],
  ['db/1', '12D3KooWA'],
  ['web/0', '12D3KooWB'],
  ['web/1', '12D3KooWD'],
  ['web/2', '12D3KooWD'],
  ['web/3', '12D3KooWC'],
  ['web/4', '12D3KooWA'],
  ['web/5', '12D3KooWC']
]

describe('placeService / placeAll: properties', () => {
  it('is deterministic under input order (nodes, services, label keys)', () => {
    fc.assert(
      fc.property(nodesArb(10), servicesArb, fc.nat(), (ns, services, seed) => {
        const a = placeAll(ns, services)
        const b = placeAll(shuffle(ns, seed).map(reverseLabels), shuffle(services, seed + 1))
        assert.deepEqual(dump(a), dump(b))
        for (const s of services) assert.deepEqual(placeService(ns, s), placeService(shuffle(ns, seed + 2), s))
      }),
      { numRuns: 500 }
    )
  })

  it('respects liveness, availability, constraints, max_replicas_per_node and reservations', () => {
    fc.assert(
      fc.property(nodesArb(12), servicesArb, (ns, services) => {
        checkInvariants(ns, services, placeAll(ns, services))
      }),
      { numRuns: 2000 }
    )
  })

  it('without reservation pressure: all placed, distinct while replicas <= n, max load <= ceil(1.25·avg)', () => {
    fc.assert(
      fc.property(nodesArb(12), plainServiceArb, (ns, s) => {
        const out = placeService(ns, s)
        const eligible = matchingNodes(ns, s.spec)
        const r = s.replicas
        assert.equal(out.length, r)
        const loads = countBy(out)
        const maxPer = s.spec.maxReplicasPerNode || Infinity
        const placeable = eligible.length === 0 ? 0 : Math.min(r, eligible.length * maxPer)
        assert.equal(out.filter((a) => a.node !== null).length, placeable)
        if (eligible.length === 0) return
        const cap = r <= eligible.length ? 1 : Math.max(Math.ceil(r / eligible.length), Math.floor((1.25 * r) / eligible.length))
        for (const [, c] of loads) assert.ok(c <= Math.min(cap, maxPer), `load ${c} > cap ${cap}`)
        if (r <= eligible.length) assert.equal(loads.size, r, 'distinct nodes')
      }),
      { numRuns: 1000 }
    )
  })

  it('with up to 2 slots per node, spreads strictly: every node holds floor(r/n) or ceil(r/n)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 12 }), fc.integer({ min: 1, max: 24 }), fc.nat(), (n, r, salt) => {
        fc.pre(r <= STRICT_SPREAD_MAX_PER_NODE * n)
        const out = placeService(nodes(n, `f${salt}-`), svc(`few${salt}`, r))
        const load = new Map<string, number>()
        for (const a of out) if (a.node !== null) load.set(a.node, (load.get(a.node) ?? 0) + 1)
        assert.equal([...load.values()].reduce((x, y) => x + y, 0), r)
        const loads = Array.from({ length: n }, (_, i) => load.get(nodes(n, `f${salt}-`)[i].id) ?? 0)
        for (const l of loads) assert.ok(l === Math.floor(r / n) || l === Math.ceil(r / n), `loads ${loads.join('/')} for ${r} on ${n}`)
      }),
      { numRuns: 500 }
    )
  })

  it('above 2 slots per node, is a stable matching: no slot prefers a node that would rather have it', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 12 }), fc.integer({ min: 4, max: 8 }), fc.nat(), fc.constantFrom(0, 0, 2, 3), fc.nat(), (n, perNode, extra, maxPer, salt) => {
        const r = n * perNode + (extra % n)
        const ns = nodes(n, `s${salt}-`)
        const out = placeService(ns, svc(`stable${salt}`, r, { maxReplicasPerNode: maxPer }))
        const limit = Math.min(loadCap(r, n), maxPer || Infinity)
        const held = new Map<string, number[]>()
        for (const a of out) if (a.node !== null) held.set(a.node, [...(held.get(a.node) ?? []), a.slot])
        const rank = (slot: number, node: string): [number, number] => [score(`stable${salt}/${slot}`, node), -slot]
        const better = (x: [number, number], y: [number, number]): boolean => x[0] > y[0] || (x[0] === y[0] && x[1] > y[1])
        for (const a of out) {
          if (a.node === null) continue
          const mine = score(`stable${salt}/${a.slot}`, a.node)
          for (const b of ns) {
            const sb = score(`stable${salt}/${a.slot}`, b.id)
            if (!(sb > mine || (sb === mine && b.id < a.node))) continue // a prefers its own node
            const there = held.get(b.id) ?? []
            assert.equal(there.length, limit, `slot ${a.slot} prefers ${b.id}, which has room`)
            for (const other of there) assert.ok(better(rank(other, b.id), rank(a.slot, b.id)), 'blocking pair')
          }
        }
      }),
      { numRuns: 300 }
    )
  })

  it('global services get exactly one slot per eligible node', () => {
    fc.assert(
      fc.property(nodesArb(12), fc.array(constraintArb, { maxLength: 2 }), (ns, constraints) => {
        const s = svc('agent', 0, { mode: 'global', constraints })
        const out = placeService(ns, s)
        const eligible = matchingNodes(ns, s.spec)
        if (eligible.length === 0) {
          assert.equal(out.length, 1)
          assert.equal(out[0].node, null)
          return
        }
        assert.deepEqual(out.map((a) => a.node).sort(), eligible.map((n) => n.id).sort())
        assert.ok(out.every((a) => a.slot === 0 && a.service === 'agent'))
      }),
      { numRuns: 500 }
    )
  })

  it('duplicate node ids or service names are resolved by content, not input position', () => {
    const a = makeNode('dup', { labels: { zone: 'eu' } })
    const b = makeNode('dup', { labels: { zone: 'us' }, cpus: 1 })
    const ns = [a, b, ...nodes(3)]
    const services = [svc('web', 5), svc('web', 2, { maxReplicasPerNode: 1 }), svc('db', 3, { reservations: { cpus: 1 } })]
    const expected = dump(placeAll(ns, services))
    for (let seed = 1; seed < 20; seed++) assert.deepEqual(dump(placeAll(shuffle(ns, seed), shuffle(services, seed * 7))), expected)
  })

  it('replicas above MAX_REPLICAS are clamped', () => {
    assert.equal(placeService(nodes(2), svc('huge', 1e9)).length, MAX_REPLICAS)
  })

  it('replicas 0 (or negative) gives no assignments; fractional replicas round down', () => {
    assert.deepEqual(placeService(nodes(3), svc('zero', 0)), [])
    assert.deepEqual(placeService(nodes(3), svc('neg', -2)), [])
    assert.equal(placeService(nodes(3), svc('frac', 2.7)).length, 2)
    assert.equal(placeAll(nodes(3), [svc('zero', 0)]).slots.size, 0)
  })
})

describe('movement of the ideal placement (no current assignment) when one node joins or leaves', () => {
  // The placement a cluster gets when nothing runs yet. With the current assignment, placement
  // moves less (placement-stability.test.ts); these bounds keep the ideal itself close to 1/N.
  // Comparing N-1 and N nodes covers both directions: "join" goes from the smaller set to the
  // larger, "leave" the other way, and the moved slots are the same. N is the larger size; the
  // ideal fraction is 1/N.
  const idsArb = (min: number, max: number): fc.Arbitrary<string[]> =>
    fc.uniqueArray(fc.oneof(fc.stringMatching(/^12D3KooW[1-9A-HJ-NP-Za-km-z]{10}$/), fc.string({ minLength: 1, maxLength: 5 })), {
      minLength: min,
      maxLength: max
    })

  function movedOnLeave(ids: string[], leaving: number, services: PlacementService[]): number {
    const all = ids.map((id) => makeNode(id))
    const rest = all.filter((_, i) => i !== leaving % ids.length)
    const before = placeAll(all, services).slots
    const after = placeAll(rest, services).slots
    let moved = 0
    for (const [k, a] of before) if (after.get(k)?.node !== a.node) moved++
    return moved / before.size
  }

  const serviceFor = (n: number) =>
    fc
      .tuple(fc.string({ minLength: 1, maxLength: 8 }), fc.integer({ min: 10 * n, max: 20 * n - 1 }))
      .map(([name, r]) => svc(`s-${name}`, r))

  it('one service, N in 8..16, replicas in [10N, 20N): moved <= 1/N + 0.1', () => {
    fc.assert(
      fc.property(
        idsArb(8, 16).chain((ids) => fc.tuple(fc.constant(ids), serviceFor(ids.length), fc.nat())),
        ([ids, s, leaving]) => {
          const f = movedOnLeave(ids, leaving, [s])
          assert.ok(f <= 1 / ids.length + 0.1, `moved ${f.toFixed(3)} with N=${ids.length}, replicas=${s.replicas}`)
        }
      ),
      { numRuns: 150 }
    )
  })

  it('one service, N in 3..7, replicas in [10N, 20N): moved <= 1/N + 0.25 (the leaving node may hold 1.25/N)', () => {
    fc.assert(
      fc.property(
        idsArb(3, 7).chain((ids) => fc.tuple(fc.constant(ids), serviceFor(ids.length), fc.nat())),
        ([ids, s, leaving]) => {
          const f = movedOnLeave(ids, leaving, [s])
          assert.ok(f <= 1 / ids.length + 0.25, `moved ${f.toFixed(3)} with N=${ids.length}, replicas=${s.replicas}`)
        }
      ),
      { numRuns: 200 }
    )
  })

  // N = 3 is left to the looser bound above: in 40 000 offline trials its worst case was 1/N + 0.103.
  it('whole cluster (4 services), N in 4..12, replicas in [10N, 20N): moved <= 1/N + 0.1', () => {
    fc.assert(
      fc.property(
        idsArb(4, 12).chain((ids) =>
          fc.tuple(fc.constant(ids), fc.uniqueArray(serviceFor(ids.length), { minLength: 4, maxLength: 4, selector: (s) => s.spec.name }), fc.nat())
        ),
        ([ids, services, leaving]) => {
          const f = movedOnLeave(ids, leaving, services)
          assert.ok(f <= 1 / ids.length + 0.1, `moved ${f.toFixed(3)} with N=${ids.length}`)
        }
      ),
      { numRuns: 100 }
    )
  })

  it('on average moves within 1/N + 0.02 (fixed sample)', () => {
    for (const n of [5, 10, 20]) {
      let sum = 0
      const trials = 30
      for (let t = 0; t < trials; t++) {
        const ns = nodes(n + 1, `avg${t}-`)
        const s = svc(`avg-${t}`, 15 * n)
        sum += fractionMoved(placeService(ns.slice(0, n), s), placeService(ns, s))
      }
      const mean = sum / trials
      assert.ok(mean <= 1 / (n + 1) + 0.02, `N=${n + 1}: mean moved ${mean.toFixed(4)}`)
    }
  })

  it('a node that does not change eligibility (drain of a node holding nothing) moves nothing', () => {
    const ns = nodes(6)
    const s = svc('tiny', 2)
    const before = placeService(ns, s)
    const idle = ns.find((n) => !before.some((a) => a.node === n.id)) as PlacementNode
    const after = placeService(
      ns.map((n) => (n.id === idle.id ? { ...n, availability: 'drain' as const } : n)),
      s
    )
    assert.deepEqual(after, before)
  })
})

describe('reasons for unplaceable slots', () => {
  it('no alive active nodes', () => {
    const [a] = placeService([], svc('web', 1))
    assert.deepEqual(a, { service: 'web', slot: 0, node: null, reason: 'no alive active nodes (no nodes known)' })
    const ns = [makeNode('a', { alive: false }), makeNode('b', { availability: 'drain' }), makeNode('c', { availability: 'pause' })]
    const out = placeService(ns, svc('web', 2))
    assert.equal(out.length, 2)
    for (const x of out) assert.equal(x.reason, 'no alive active nodes (3 known: 1 down, 1 drain, 1 pause)')
  })

  it('a constraint no node satisfies', () => {
    const ns = [makeNode('a', { labels: { zone: 'us' } }), makeNode('b', { labels: { zone: 'us' } }), makeNode('c')]
    const out = placeService(ns, svc('web', 2, { constraints: [{ attribute: 'labels.zone', op: '==', value: 'eu' }] }))
    assert.deepEqual(
      out.map((x) => x.reason),
      ['no node satisfies constraint node.labels.zone==eu (3 nodes checked)', 'no node satisfies constraint node.labels.zone==eu (3 nodes checked)']
    )
    const both = placeService(
      ns,
      svc('web', 1, {
        constraints: [
          { attribute: 'labels.zone', op: '==', value: 'us' },
          { attribute: 'name', op: '==', value: 'c' }
        ]
      })
    )
    assert.equal(both[0].reason, 'no node satisfies all constraints node.labels.zone==us, node.name==c (3 nodes checked)')
  })

  it('constraints compare values case-insensitively and never read Object.prototype', () => {
    const ns = [makeNode('a', { labels: { zone: 'EU' } }), makeNode('b')]
    const eu = placeService(ns, svc('web', 1, { constraints: [{ attribute: 'node.labels.zone', op: '==', value: 'eu' }] }))
    assert.equal(eu[0].node, 'a')
    // labels.constructor is missing on both nodes, so it reads as '' everywhere
    const proto = placeService(ns, svc('web', 1, { constraints: [{ attribute: 'labels.constructor', op: '!=', value: '' }] }))
    assert.equal(proto[0].node, null)
    assert.equal(proto[0].reason, 'no node satisfies constraint node.labels.constructor!= (2 nodes checked)')
    const byName = placeService(ns, svc('web', 2, { constraints: [{ attribute: 'node.hostname', op: '!=', value: 'A' }] }))
    assert.deepEqual(
      byName.map((x) => x.node),
      ['b', 'b']
    )
  })

  it('no node has room for the reservations', () => {
    const ns = nodes(3).map((n) => ({ ...n, cpus: 1 }))
    const out = placeService(ns, svc('big', 1, { reservations: { cpus: 2, memoryBytes: 512 * MiB } }))
    assert.equal(out[0].reason, 'no node has 2 CPUs / 512 MiB free to reserve (3 nodes checked)')
    const mem = placeService(ns, svc('big', 1, { reservations: { memoryBytes: 16 * GiB } }))
    assert.equal(mem[0].reason, 'no node has 16 GiB free to reserve (3 nodes checked)')
  })

  it('max_replicas_per_node reached everywhere', () => {
    const out = placeService(nodes(3), svc('web', 5, { maxReplicasPerNode: 1 }))
    assert.equal(new Set(out.slice(0, 3).map((x) => x.node)).size, 3)
    assert.deepEqual(
      out.slice(3).map((x) => [x.slot, x.node, x.reason]),
      [
        [3, null, 'max_replicas_per_node=1 reached on all 3 eligible nodes'],
        [4, null, 'max_replicas_per_node=1 reached on all 3 eligible nodes']
      ]
    )
  })

  it('max_replicas_per_node on some nodes, no room on the others', () => {
    const ns = [makeNode('a'), makeNode('b'), makeNode('c', { cpus: 1 })]
    const out = placeService(ns, svc('web', 6, { maxReplicasPerNode: 2, reservations: { cpus: 1 } }))
    assert.deepEqual(countBy(out), new Map<string, number>([['a', 2], ['b', 2], ['c', 1]]))
    assert.deepEqual(
      out.filter((x) => x.node === null).map((x) => [x.slot, x.reason]),
      [[5, 'max_replicas_per_node=2 reached on 2 of 3 eligible nodes, the other 1 has no 1 CPU free to reserve']]
    )
  })

  it('capacity taken by services placed earlier (name order) is not available to later ones', () => {
    const ns = [makeNode('a', { cpus: 2 }), makeNode('b', { cpus: 2 })]
    const first = svc('alpha', 2, { reservations: { cpus: 2 } })
    const second = svc('beta', 1, { reservations: { cpus: 0.5 } })
    for (const order of [
      [first, second],
      [second, first]
    ]) {
      const r = placeAll(ns, order).slots
      assert.notEqual(r.get('alpha/0')?.node, null)
      assert.notEqual(r.get('alpha/1')?.node, null)
      assert.equal(r.get('beta/0')?.reason, 'no node has 0.5 CPUs free to reserve (2 nodes checked)')
    }
  })

  it('sums of fractional CPU reservations do not drift', () => {
    // ten 0.1-CPU slots fill exactly one CPU: float addition would make the tenth not fit
    const out = placeService([makeNode('a', { cpus: 1 })], svc('tenths', 11, { reservations: { cpus: 0.1 } }))
    assert.equal(out.filter((x) => x.node === 'a').length, 10)
    assert.equal(out[10].reason, 'no node has 0.1 CPUs free to reserve (1 node checked)')
  })

  it('the balance cap gives way when only one node has room', () => {
    const ns = [makeNode('big', { cpus: 8 }), makeNode('small-1', { cpus: 1 }), makeNode('small-2', { cpus: 1 })]
    const out = placeService(ns, svc('web', 6, { reservations: { cpus: 1 } }))
    assert.ok(out.every((x) => x.node !== null))
    assert.equal(countBy(out).get('big'), 4) // above ceil(1.25·6/3) = 3, since the small ones are full
  })

  it('global: pending per node without room, single pending entry when no node qualifies', () => {
    const ns = [makeNode('a', { cpus: 1 }), makeNode('b', { cpus: 4, name: 'bee' })]
    const r = placeAll(ns, [svc('agent', 0, { mode: 'global', reservations: { cpus: 2 } })]).slots
    assert.deepEqual(r.get('agent@b'), { service: 'agent', slot: 0, node: 'b' })
    assert.deepEqual(r.get('agent@a'), { service: 'agent', slot: 0, node: null, reason: 'node a (a) has no 2 CPUs free to reserve' })
    const none = placeAll(ns, [svc('agent', 0, { mode: 'global', constraints: [{ attribute: 'labels.gpu', op: '==', value: 'yes' }] })]).slots
    assert.deepEqual([...none.keys()], ['agent@'])
    assert.equal(none.get('agent@')?.reason, 'no node satisfies constraint node.labels.gpu==yes (2 nodes checked)')
  })
})

describe('loadCap', () => {
  it('is 1 while replicas <= nodes, else ceil((1+ε)·r/n)', () => {
    assert.equal(LOAD_EPSILON, 0.25)
    assert.equal(loadCap(3, 3), 1)
    assert.equal(loadCap(4, 3), 2)
    assert.equal(loadCap(10, 3), 4) // not 5: 5/5/0 would leave a node idle
    assert.equal(loadCap(100, 10), 12)
    assert.equal(loadCap(8, 10), 1)
    assert.equal(loadCap(40, 10), 5)
    assert.equal(loadCap(5, 0), 0)
  })
})

describe('resolveDuplicate', () => {
  it('keeps the node placement prefers, if it is a candidate', () => {
    assert.equal(resolveDuplicate('web/0', ['a', 'b', 'c'], 'b'), 'b')
    assert.equal(resolveDuplicate('web/0', ['a', 'c'], 'b'), resolveDuplicate('web/0', ['a', 'c']))
    assert.throws(() => resolveDuplicate('web/0', []), RangeError)
  })

  it('otherwise picks the highest rendezvous score, whatever the candidate order', () => {
    fc.assert(
      fc.property(fc.uniqueArray(idArb, { minLength: 1, maxLength: 8 }), fc.string({ maxLength: 10 }), fc.nat(), (ids, key, seed) => {
        const w = resolveDuplicate(key, ids)
        assert.ok(ids.includes(w))
        assert.equal(resolveDuplicate(key, shuffle(ids, seed)), w)
        for (const id of ids) assert.ok(score(key, w) > score(key, id) || (score(key, w) === score(key, id) && w <= id))
      }),
      { numRuns: 300 }
    )
  })

  it('agrees with placement for a single-slot service', () => {
    fc.assert(
      fc.property(fc.uniqueArray(idArb, { minLength: 1, maxLength: 8 }), (ids) => {
        const [a] = placeService(
          ids.map((id) => makeNode(id)),
          svc('solo', 1)
        )
        assert.equal(a.node, resolveDuplicate('solo/0', ids))
      }),
      { numRuns: 300 }
    )
  })
})

describe('golden placement (protocol stability)', () => {
  it('places a fixed input exactly as pinned', () => {
    const ns = ['12D3KooWA', '12D3KooWB', '12D3KooWC', '12D3KooWD'].map((id) => makeNode(id))
    const r = placeAll(ns, [svc('web', 6), svc('db', 2, { maxReplicasPerNode: 1 }), svc('agent', 0, { mode: 'global' })])
    assert.deepEqual(
      dump(r).map(([k, n]) => [k, n]),
      GOLDEN_PLACEMENT
    )
  })
})
