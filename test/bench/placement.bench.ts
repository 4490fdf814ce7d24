/**
 * Placement benchmark: load balance, movement on one join / one leave, and time per placeAll.
 *
 *   node_modules/.bin/node test/bench/placement.bench.ts
 *
 * For each cluster size N and slot count, several services (different names, so different hash
 * orders) are placed on N nodes; "join" adds one node (ideal movement 1/(N+1)), "leave" removes one
 * (ideal 1/N). Figures are means over the trials, with the worst trial in brackets.
 */
import { performance } from 'node:perf_hooks'
import { newServiceSpec } from '../../protocol/spec.ts'
import type { ServiceSpec } from '../../protocol/spec.ts'
import { loadCap, placeAll } from '../../placement/placement.ts'
import type { PlacementNode, PlacementService } from '../../placement/types.ts'

const NODE_COUNTS = [3, 10, 30, 100]
const SLOT_COUNTS = [10, 100, 1000, 10000]
const TRIALS = 10

function spec(name: string, replicas: number): ServiceSpec {
  return newServiceSpec({ name, stack: 'bench', image: 'nginx:1.27', replicas })
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

function assignments(nodes: PlacementNode[], svc: PlacementService): Array<string | null> {
  const slots = placeAll(nodes, [svc]).slots
  return Array.from({ length: svc.replicas }, (_, i) => slots.get(`${svc.spec.name}/${i}`)?.node ?? null)
}

function moved(a: Array<string | null>, b: Array<string | null>): number {
  let m = 0
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) m++
  return m / a.length
}

const pct = (x: number): string => `${(100 * x).toFixed(1)}%`

interface Row {
  N: number
  slots: number
  cap: string
  'max/avg': string
  join: string
  'ideal join': string
  leave: string
  'ideal leave': string
  'ms/placeAll': string
}

const rows: Row[] = []
const started = performance.now()
// warm up the JIT so the first cell's timing is not compile time
for (let w = 0; w < 20; w++) assignments(Array.from({ length: 10 }, (_, i) => node(i)), { spec: spec(`warm-${w}`, 1000), replicas: 1000 })
for (const n of NODE_COUNTS) {
  const all = Array.from({ length: n + 1 }, (_, i) => node(i))
  const base = all.slice(0, n)
  for (const slots of SLOT_COUNTS) {
    let maxOverAvg = 0
    let worstMaxOverAvg = 0
    let join = 0
    let worstJoin = 0
    let leave = 0
    let worstLeave = 0
    let ms = 0
    let timed = 0
    for (let t = 0; t < TRIALS; t++) {
      const svc: PlacementService = { spec: spec(`svc-${t}`, slots), replicas: slots }
      const t0 = performance.now()
      const before = assignments(base, svc)
      ms += performance.now() - t0
      timed++

      const loads = new Map<string, number>()
      for (const id of before) if (id !== null) loads.set(id, (loads.get(id) ?? 0) + 1)
      const ratio = Math.max(...loads.values()) / (slots / n)
      maxOverAvg += ratio / TRIALS
      worstMaxOverAvg = Math.max(worstMaxOverAvg, ratio)

      const j = moved(before, assignments(all, svc))
      join += j / TRIALS
      worstJoin = Math.max(worstJoin, j)

      const leaving = (t * 7) % n
      const l = moved(before, assignments(base.filter((_, i) => i !== leaving), svc))
      leave += l / TRIALS
      worstLeave = Math.max(worstLeave, l)
    }
    const cap = loadCap(slots, n)
    rows.push({
      N: n,
      slots,
      cap: (cap / (slots / n)).toFixed(2),
      'max/avg': `${maxOverAvg.toFixed(2)} [${worstMaxOverAvg.toFixed(2)}]`,
      join: `${pct(join)} [${pct(worstJoin)}]`,
      'ideal join': pct(1 / (n + 1)),
      leave: `${pct(leave)} [${pct(worstLeave)}]`,
      'ideal leave': pct(1 / n),
      'ms/placeAll': (ms / timed).toFixed(2)
    })
  }
}

const columns = Object.keys(rows[0]) as Array<keyof Row>
const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => String(r[c]).length)))
const line = (cells: string[]): string => cells.map((c, i) => c.padStart(widths[i])).join('  ')
console.log(`placement bench: ${TRIALS} services per cell; mean [worst]; cap = load cap / average load`)
console.log(line(columns))
console.log(line(widths.map((w) => '-'.repeat(w))))
for (const r of rows) console.log(line(columns.map((c) => String(r[c]))))
console.log(`total ${((performance.now() - started) / 1000).toFixed(1)} s`)
