/**
 * Task report shards (protocol/tasks.ts): every shard within the payload limit whatever the
 * tasks, nothing lost or doubled when joined, and one task's change touching one shard.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { MAX_PAYLOAD_BYTES, pack } from '../../protocol/codec.ts'
import type { TaskStatus } from '../../protocol/keys.ts'
import { MAX_TASKS_PER_NODE } from '../../protocol/validate.ts'
import { MAX_TASK_ERROR_CHARS, MAX_TASK_SHARDS, parseTaskId, shardReport } from '../../protocol/tasks.ts'

const task = (service: string, slot: number, over: Partial<TaskStatus> = {}): TaskStatus => ({
  service, slot, container: 'c'.repeat(64), state: 'running', health: 'none', generation: 7, error: '', startedAt: 1_700_000_000_000, history: [], ...over
})
const exit = { at: 1_700_000_000_000, exitCode: 137, reason: 'exited with code 137' }
const keyOf = (t: TaskStatus): string => `${t.service}/${t.slot}`

const tasksArb = fc.record({
  services: fc.integer({ min: 1, max: 8 }),
  count: fc.integer({ min: 0, max: MAX_TASKS_PER_NODE }),
  history: fc.integer({ min: 0, max: 5 }),
  errorChars: fc.constantFrom(0, 40, 600, 4096)
}).map(({ services, count, history, errorChars }) => Array.from({ length: count }, (_, i) =>
  task(`service-${i % services}`, Math.floor(i / services), { error: 'e'.repeat(errorChars), history: Array.from({ length: history }, () => ({ ...exit, reason: 'r'.repeat(errorChars) })) })))

describe('task report shards', () => {
  it('every shard packs within the payload limit, at most MAX_TASK_SHARDS, and the shards hold every task once', () => {
    fc.assert(fc.property(tasksArb, (tasks) => {
      const shards = shardReport(tasks)
      assert.ok(shards.length >= 1 && shards.length <= MAX_TASK_SHARDS)
      assert.equal(shards[0].shards, shards.length)
      for (const s of shards) assert.ok(pack(s).length <= MAX_PAYLOAD_BYTES, `${pack(s).length} bytes`)
      const joined = shards.flatMap((s) => s.tasks).map(keyOf).sort()
      assert.deepEqual(joined, tasks.map(keyOf).sort())
      for (const t of shards.flatMap((s) => s.tasks)) assert.ok(t.error.length <= MAX_TASK_ERROR_CHARS)
    }), { numRuns: 60 })
  })

  it('a small report is one record, as before; 400 plain tasks need two', () => {
    assert.equal(shardReport([task('web', 0)]).length, 1)
    assert.equal(shardReport(Array.from({ length: 400 }, (_, i) => task('web', i))).length, 2)
  })

  it('one task\'s change rewrites one shard; the shard count does not flip back at the boundary', () => {
    const tasks = Array.from({ length: 1000 }, (_, i) => task('web', i, { history: [exit] }))
    const a = shardReport(tasks)
    const changed = tasks.map((t) => (t.slot === 321 ? { ...t, state: 'failed' as const, error: 'exited' } : t))
    const b = shardReport(changed, a.length)
    assert.equal(b.length, a.length)
    const differing = a.filter((s, i) => JSON.stringify(s) !== JSON.stringify(b[i]))
    assert.equal(differing.length, 1)
    // slightly fewer tasks: the count stays (no shuffle of every task between shards)
    const fewer = shardReport(tasks.slice(0, 900), a.length)
    assert.equal(fewer.length, a.length)
  })

  it('shard ids: the node id alone is shard 0; .1 to .31 are the others; anything else is no shard', () => {
    assert.deepEqual(parseTaskId('12D3KooWabc'), { node: '12D3KooWabc', shard: 0 })
    assert.deepEqual(parseTaskId('12D3KooWabc.31'), { node: '12D3KooWabc', shard: 31 })
    for (const bad of ['', '.1', 'x.0', 'x.01', 'x.32', 'x.1.2', 'x.', 'x.a']) assert.equal(parseTaskId(bad), null, bad)
  })
})
