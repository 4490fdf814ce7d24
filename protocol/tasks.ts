/**
 * Task reports in shards, so a node with hundreds of replicas never writes a record its peers
 * refuse (every record's payload is at most MAX_PAYLOAD_BYTES).
 *
 * A node's report is `tasks/<peerId>` (shard 0, which also says how many shards there are) plus
 * `tasks/<peerId>.<i>` for i in 1..shards−1. A task's shard is a hash of its slot key modulo the
 * shard count, so a task stays in its shard while the count stays, and one task's change
 * republishes one shard, not the whole report. Readers take shards 0..shards−1 and ignore any
 * beyond (left from a larger count). Pure: no IO.
 */
import { MAX_PAYLOAD_BYTES, pack } from './codec.ts'
import type { TaskReport, TaskStatus } from './keys.ts'
import type { ClusterState } from './state.ts'

/** Enough for MAX_TASKS_PER_NODE (2 000) compacted tasks (~260 bytes each) at under 20 KiB a shard. */
export const MAX_TASK_SHARDS = 32
/** Error texts in a report are cut to this many characters: engine errors can be long, and every node stores every report. */
export const MAX_TASK_ERROR_CHARS = 512
/** Error length left in a shard compacted to fit. */
const COMPACT_ERROR_CHARS = 64
/**
 * A smaller shard count is taken only when the report fits it within this share of the limit, so a
 * report near a boundary does not flip between counts (each flip moves tasks between shards).
 */
const SHRINK_FILL = 0.75

/** `tasks/<node>` for shard 0, `tasks/<node>.<i>` for the others (peer ids hold no dot). */
export function taskShardKey (node: string, shard: number): string {
  return shard === 0 ? `tasks/${node}` : `tasks/${node}.${shard}`
}

/** The node and shard of a `tasks/` key's id, or null when it is not one. */
export function parseTaskId (id: string): { node: string, shard: number } | null {
  const dot = id.indexOf('.')
  if (dot < 0) return id.length > 0 ? { node: id, shard: 0 } : null
  const node = id.slice(0, dot)
  const digits = id.slice(dot + 1)
  const shard = Number(digits)
  if (node.length === 0 || !/^[1-9][0-9]?$/.test(digits) || shard >= MAX_TASK_SHARDS) return null
  return { node, shard }
}

/** FNV-1a over the slot key's UTF-16 code units: the same on every node and every run. */
function slotHash (service: string, slot: number): number {
  const s = `${service}/${slot}`
  let h = 0x811c9dc5
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0
  return h
}

const cut = (s: string, n: number): string => (s.length > n ? s.slice(0, n - 1) + '…' : s)

function trimmed (t: TaskStatus): TaskStatus {
  if (t.error.length <= MAX_TASK_ERROR_CHARS && t.history.every((h) => h.reason.length <= MAX_TASK_ERROR_CHARS)) return t
  return { ...t, error: cut(t.error, MAX_TASK_ERROR_CHARS), history: t.history.map((h) => ({ ...h, reason: cut(h.reason, MAX_TASK_ERROR_CHARS) })) }
}

/** The last resort for a shard that still does not fit: no history, short errors. */
function compacted (t: TaskStatus): TaskStatus {
  return { ...t, error: cut(t.error, COMPACT_ERROR_CHARS), history: [] }
}

function group (tasks: readonly TaskStatus[], n: number): TaskStatus[][] {
  const out: TaskStatus[][] = Array.from({ length: n }, () => [])
  for (const t of tasks) out[n === 1 ? 0 : slotHash(t.service, t.slot) % n].push(t)
  return out
}

function shardValue (tasks: TaskStatus[], shard: number, n: number): TaskReport {
  return shard === 0 ? { tasks, shards: n } : { tasks }
}

const fits = (v: TaskReport, limit: number): boolean => pack(v).length <= limit

/**
 * A node's tasks as shard values (index = shard), each within `limit` bytes packed. `previous` is
 * the shard count written last: counts go up as soon as needed and down only with room to spare.
 */
export function shardReport (tasks: readonly TaskStatus[], previous = 1, limit = MAX_PAYLOAD_BYTES): TaskReport[] {
  const list = tasks.map(trimmed)
  const fitsIn = (n: number, l: number): boolean => group(list, n).every((g, i) => fits(shardValue(g, i, n), l))
  let n = 1
  while (n < MAX_TASK_SHARDS && !fitsIn(n, limit)) n *= 2
  // below MAX_TASK_SHARDS the loop stopped at a count that fits
  let fitChecked = n < MAX_TASK_SHARDS
  if (n < previous && previous <= MAX_TASK_SHARDS && !fitsIn(n, limit * SHRINK_FILL)) {
    n = previous
    fitChecked = false
  }
  const values = group(list, n).map((g, i) => shardValue(g, i, n))
  if (fitChecked) return values
  return values.map((v, i) => fits(v, limit) ? v : shardValue(v.tasks.map(compacted), i, n))
}

/** Every node's tasks, joined from its shards (only the ones its shard 0 counts), by node id. */
export function taskReports (state: ClusterState): Map<string, TaskStatus[]> {
  const heads = new Map<string, number>()
  const shards: Array<[string, number, TaskReport]> = []
  for (const [id, report] of state.family<TaskReport | null>('tasks')) {
    const p = parseTaskId(id)
    if (p === null || report === null) continue
    if (p.shard === 0) heads.set(p.node, report.shards ?? 1)
    shards.push([p.node, p.shard, report])
  }
  const out = new Map<string, TaskStatus[]>()
  for (const [node, shard, report] of shards) {
    const count = heads.get(node)
    if (count === undefined || shard >= count) continue
    const list = out.get(node)
    if (list === undefined) out.set(node, [...report.tasks])
    else list.push(...report.tasks)
  }
  return out
}

/** One node's tasks, joined from its shards. */
export function tasksOf (state: ClusterState, node: string): TaskStatus[] {
  const head = state.value<TaskReport | null>(taskShardKey(node, 0))
  if (head === undefined || head === null) return []
  const out = [...head.tasks]
  for (let i = 1; i < (head.shards ?? 1); i++) out.push(...(state.value<TaskReport | null>(taskShardKey(node, i))?.tasks ?? []))
  return out
}
