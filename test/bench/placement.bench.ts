/**
 * Placement benchmark: load balance, movement on scale-up, scale-down, one join and one leave,
 * and time per placeAll.
 *
 *   node_modules/.bin/node test/bench/placement.bench.ts
 *
 * For each cluster size N and slot count, several services (different names, so different hash
 * orders) are placed on N nodes. Movement is measured as the cluster lives it: placement takes the
 * current assignment (where every slot runs), and after a change it is evaluated again with
 * current := the previous result until nothing changes (the fixed point of the gradual rebalance,
 * one slot per service per evaluation). Moved = slots whose node differs between the settled state
 * before the change and the fixed point after it.
 *
 *   settle      from a first deploy into a cluster running nothing (current assignment empty) to
 *               its fixed point: what the rebalance moves right after a deploy (goal 0%)
 *   scale-up    slots/2 → slots, settled before: running slots moved by the scale (goal 0%);
 *               "→ fp": moved afterwards by the rebalance, as a fraction of all slots
 *   scale-down  slots → slots/2: remaining slots moved by the scale (goal 0%); "→ fp" likewise
 *   join        one node added (ideal 1/(N+1)); leave: one node removed (ideal 1/N), averaged over
 *               every node of the cluster leaving in turn
 *   stateless   join/leave of the placement without a current assignment (what every slot did
 *               before placement took it as an input), for comparison in the same run
 *
 * Figures are means over the trials, with the worst trial in brackets. Cells with 10 000 slots
 * run fewer trials: their fixed points take up to thousands of evaluations (N = 3: a join moves
 * 2 500 slots, one per evaluation).
 */
import { performance } from 'node:perf_hooks'
import { newServiceSpec } from '../../protocol/spec.ts'
import type { ServiceSpec } from '../../protocol/spec.ts'
import { currentOf, loadCap, placeAll } from '../../placement/placement.ts'
import type { PlacementNode, PlacementResult, PlacementService } from '../../placement/types.ts'

const NODE_COUNTS = [3, 10, 30, 100]
const SLOT_COUNTS = [10, 100, 1000, 10000]
const TRIALS = 10
const TRIALS_10K = 3

function spec(name: string, replicas: number): ServiceSpec {
  return newServiceSpec({ name, stack: 'bench', image: 'nginx:1.27', replicas })
}

function service(name: string, replicas: number): PlacementService {
  return { spec: spec(name, replicas), replicas }
}

/** libp2p-like ids (base58 alphabet), generated deterministically. */
function nodeId(i: number): string {
  const alphabet = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'
  let x = (Math.imul(i + 1, 0x9e3779b1) >>> 0) + 1
  let tail = ''
  for (let k = 0; k < 44; k++) {
    x = (Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) + k) >>> 0
    tail += alphabet[x % alphabet.length]
  }
  return `12D3KooW${tail}`
}

function node(i: number): PlacementNode {
  return { id: nodeId(i), name: `node-${i}`, labels: {}, alive: true, availability: 'active', cpus: 8, memoryBytes: 32 * 1024 ** 3 }
}

function nodesOf(r: PlacementResult, svc: PlacementService, replicas = svc.replicas): Array<string | null> {
  return Array.from({ length: replicas }, (_, i) => r.slots.get(`${svc.spec.name}/${i}`)?.node ?? null)
}

/** Slots among the first `count` whose node differs. */
function diff(a: Array<string | null>, b: Array<string | null>, count = a.length): number {
  let m = 0
  for (let i = 0; i < count; i++) if (a[i] !== b[i]) m++
  return m
}

/** Evaluate with current := the previous result until nothing changes. */
function settle(nodes: PlacementNode[], svc: PlacementService, start: PlacementResult): PlacementResult {
  let result = start
  let before = nodesOf(result, svc)
  for (let step = 0; ; step++) {
    const next = placeAll(nodes, [svc], currentOf(result))
    const after = nodesOf(next, svc)
    if (diff(before, after) === 0) return result
    if (step > 4 * svc.replicas + 10) throw new Error(`no fixed point for ${svc.spec.name} on ${nodes.length} nodes`)
    result = next
    before = after
  }
}

const pct = (x: number): string => `${(100 * x).toFixed(1)}%`

/** Mean and worst of a series of fractions. */
class Stat {
  private sum = 0
  private n = 0
  worst = 0
  add(x: number): void {
    this.sum += x
    this.n++
    this.worst = Math.max(this.worst, x)
  }
  get mean(): number {
    return this.n === 0 ? 0 : this.sum / this.n
  }
  text(): string {
    return `${pct(this.mean)} [${pct(this.worst)}]`
  }
  short(): string {
    return pct(this.mean)
  }
}

interface Row {
  N: number
  slots: number
  cap: string
  'max/avg': string
  settle: string
  'scale-up': string
  '→ fp': string
  'scale-down': string
  '→ fp ': string
  join: string
  'ideal join': string
  leave: string
  'ideal leave': string
  'stateless join': string
  'stateless leave': string
  'ms/placeAll': string
  'ms settled': string
}

const rows: Row[] = []
const ok: string[] = []
const started = performance.now()
// warm up the JIT so the first cell's timing is not compile time
for (let w = 0; w < 20; w++) {
  const ns = Array.from({ length: 10 }, (_, i) => node(i))
  const s = service(`warm-${w}`, 1000)
  const r = placeAll(ns, [s])
  placeAll(ns, [s], currentOf(r))
}
for (const n of NODE_COUNTS) {
  const all = Array.from({ length: n + 1 }, (_, i) => node(i))
  const base = all.slice(0, n)
  for (const slots of SLOT_COUNTS) {
    const trials = slots >= 10000 ? TRIALS_10K : TRIALS
    const balance = new Stat()
    const settleMoved = new Stat()
    const up = new Stat()
    const upAfter = new Stat()
    const down = new Stat()
    const downAfter = new Stat()
    const join = new Stat()
    const leave = new Stat()
    const statelessJoin = new Stat()
    const statelessLeave = new Stat()
    let ms = 0
    let msSettled = 0
    for (let t = 0; t < trials; t++) {
      const svc = service(`svc-${t}`, slots)
      const t0 = performance.now()
      const ideal = placeAll(base, [svc])
      ms += performance.now() - t0

      const loads = new Map<string, number>()
      for (const id of nodesOf(ideal, svc)) if (id !== null) loads.set(id, (loads.get(id) ?? 0) + 1)
      balance.add(Math.max(...loads.values()) / (slots / n))

      // a first deploy (a node always passes its current assignment, empty here), then the
      // rebalance to its fixed point
      const deployed = placeAll(base, [svc], new Map())
      const settled = settle(base, svc, deployed)
      settleMoved.add(diff(nodesOf(deployed, svc), nodesOf(settled, svc)) / slots)
      const t1 = performance.now()
      placeAll(base, [svc], currentOf(settled))
      msSettled += performance.now() - t1

      // scale-up: slots/2 → slots
      const half = service(svc.spec.name, Math.floor(slots / 2))
      const halfSettled = settle(base, half, placeAll(base, [half], new Map()))
      const scaledUp = placeAll(base, [svc], currentOf(halfSettled))
      up.add(diff(nodesOf(halfSettled, half), nodesOf(scaledUp, svc), half.replicas) / half.replicas)
      upAfter.add(diff(nodesOf(scaledUp, svc), nodesOf(settle(base, svc, scaledUp), svc)) / slots)

      // scale-down: slots → slots/2
      const scaledDown = placeAll(base, [half], currentOf(settled))
      down.add(diff(nodesOf(settled, svc, half.replicas), nodesOf(scaledDown, half)) / half.replicas)
      downAfter.add(diff(nodesOf(scaledDown, half), nodesOf(settle(base, half, scaledDown), half)) / slots)

      // one node joins
      const joined = settle(all, svc, placeAll(all, [svc], currentOf(settled)))
      join.add(diff(nodesOf(settled, svc), nodesOf(joined, svc)) / slots)
      statelessJoin.add(diff(nodesOf(ideal, svc), nodesOf(placeAll(all, [svc]), svc)) / slots)

      // each node leaves in turn
      for (let leaving = 0; leaving < n; leaving++) {
        const rest = base.filter((_, i) => i !== leaving)
        const left = settle(rest, svc, placeAll(rest, [svc], currentOf(settled)))
        leave.add(diff(nodesOf(settled, svc), nodesOf(left, svc)) / slots)
        if (leaving === (t * 7) % n) statelessLeave.add(diff(nodesOf(ideal, svc), nodesOf(placeAll(rest, [svc]), svc)) / slots)
      }
    }
    const cap = loadCap(slots, n)
    const idealJoin = 1 / (n + 1)
    const idealLeave = 1 / n
    // goal: ≤ 1.1 × ideal, plus one slot (rounding: a node holds a whole number of slots)
    const within = (s: Stat, ideal: number): boolean => s.mean <= 1.1 * ideal && s.worst <= 1.1 * ideal + 1 / slots + 1e-12
    ok.push(
      `N=${n} slots=${slots}: ${up.mean === 0 && down.mean === 0 ? 'scale 0%' : 'SCALE MOVED'}, ` +
        `join ${within(join, idealJoin) ? '✔' : '✘'}, leave ${within(leave, idealLeave) ? '✔' : '✘'}`
    )
    rows.push({
      N: n,
      slots,
      cap: (cap / (slots / n)).toFixed(2),
      'max/avg': balance.mean.toFixed(2),
      settle: settleMoved.text(),
      'scale-up': up.text(),
      '→ fp': upAfter.short(),
      'scale-down': down.text(),
      '→ fp ': downAfter.short(),
      join: join.text(),
      'ideal join': pct(idealJoin),
      leave: leave.text(),
      'ideal leave': pct(idealLeave),
      'stateless join': statelessJoin.text(),
      'stateless leave': statelessLeave.text(),
      'ms/placeAll': (ms / trials).toFixed(2),
      'ms settled': (msSettled / trials).toFixed(2)
    })
    process.stderr.write(`N=${n} slots=${slots} done (${((performance.now() - started) / 1000).toFixed(0)} s)\n`)
  }
}

const columns = Object.keys(rows[0]) as Array<keyof Row>
const widths = columns.map((c) => Math.max(c.trim().length, ...rows.map((r) => String(r[c]).length)))
const line = (cells: string[]): string => cells.map((c, i) => c.padStart(widths[i])).join('  ')
console.log(
  `placement bench: ${TRIALS} services per cell (${TRIALS_10K} for 10 000 slots); mean [worst]; ` +
    'cap = load cap / average load; max/avg of the ideal placement; movement to the fixed point'
)
console.log(line(columns.map((c) => c.trim())))
console.log(line(widths.map((w) => '-'.repeat(w))))
for (const r of rows) console.log(line(columns.map((c) => String(r[c]))))
console.log('goals (scale-up/down 0%; join/leave mean ≤ 1.1 × ideal, worst ≤ 1.1 × ideal + 1 slot):')
for (const o of ok) console.log(`  ${o}`)
console.log(`total ${((performance.now() - started) / 1000).toFixed(1)} s`)
