/**
 * The rolling-update order (placement/rollout.ts) as properties over simulated rollouts: never more
 * than `parallelism` slots in flight, a batch only after the previous one stayed ready for
 * `monitor` plus `delay`, always completing when nothing fails, stopping on failures beyond the
 * ratio, and the same answer whatever order the reports come in.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { batchesOf, DEFAULT_UPDATE_POLICY, rolloutPlan, type SlotProgress, type UpdatePolicy } from '../../placement/rollout.ts'

const policyArb: fc.Arbitrary<UpdatePolicy> = fc.record({
  parallelism: fc.integer({ min: 0, max: 5 }),
  delayMs: fc.constantFrom(0, 100, 1_000),
  order: fc.constantFrom<'stop-first' | 'start-first'>('stop-first', 'start-first'),
  monitorMs: fc.constantFrom(0, 500, 5_000),
  failureAction: fc.constantFrom<'pause' | 'continue' | 'rollback'>('pause', 'continue', 'rollback'),
  maxFailureRatio: fc.constantFrom(0, 0.25, 0.5)
})

/**
 * Run a rollout of `n` slots from generation 1 to 2: every `step` ms, each node starts the slots
 * the plan allows; a started replica is ready `startMs` later. Checks the invariants at each step.
 */
function simulate (n: number, policy: UpdatePolicy, step: number, startMs: number): { steps: number, completedAt: number } {
  const slots: SlotProgress[] = Array.from({ length: n }, (_, slot) => ({ slot, generation: 1, readySince: 0, failed: false }))
  const startedAt = new Map<number, number>()
  let lastBatch = -1
  let batchStartedAt = 0
  for (let t = 1_000, i = 0; i < 10_000; t += step, i++) {
    for (const s of slots) if (s.generation === 2 && s.readySince === null && t >= (startedAt.get(s.slot) as number) + startMs) s.readySince = (startedAt.get(s.slot) as number) + startMs
    const plan = rolloutPlan(2, slots, policy, t)
    if (plan.state === 'completed') {
      assert.ok(slots.every((s) => s.generation === 2))
      return { steps: i, completedAt: t }
    }
    const inFlight = slots.filter((s) => plan.allowed.has(s.slot) && !(s.generation === 2 && s.readySince !== null && t - s.readySince >= policy.monitorMs))
    if (policy.parallelism > 0) assert.ok(inFlight.length <= policy.parallelism, `${inFlight.length} slots in flight at once, parallelism ${policy.parallelism}`)
    if (plan.batch !== lastBatch && plan.state === 'updating') {
      if (lastBatch >= 0) {
        // the previous batch had stayed ready for monitor, then delay passed
        const prev = batchesOf(slots.map((s) => s.slot), policy.parallelism)[lastBatch]
        const readyAt = Math.max(...prev.map((s) => (slots[s].readySince as number) + policy.monitorMs))
        assert.ok(t >= readyAt + policy.delayMs, `batch ${plan.batch} started at ${t}, before ${readyAt} + ${policy.delayMs}`)
        assert.ok(t >= batchStartedAt)
      }
      lastBatch = plan.batch
      batchStartedAt = t
    }
    for (const s of slots) {
      if (plan.allowed.has(s.slot) && s.generation !== 2) {
        s.generation = 2
        s.readySince = null
        startedAt.set(s.slot, t)
      }
    }
  }
  assert.fail('the rollout never completed')
}

describe('rolling update order', () => {
  it('batches are slot order in chunks of parallelism; 0 is all at once', () => {
    assert.deepEqual(batchesOf([3, 0, 2, 1, 4], 2), [[0, 1], [2, 3], [4]])
    assert.deepEqual(batchesOf([3, 0, 2], 0), [[0, 2, 3]])
    assert.deepEqual(batchesOf([], 1), [])
  })

  it('never more than parallelism slots in flight; each batch after the last stayed ready for monitor + delay; always completes', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 12 }), policyArb, fc.constantFrom(50, 200, 700), fc.constantFrom(0, 100, 2_000), (n, policy, step, startMs) => {
      const r = simulate(n, policy, step, startMs)
      const batches = batchesOf(Array.from({ length: n }, (_, i) => i), policy.parallelism).length
      // each batch takes at least start + monitor (+ delay after the first): a lower bound on time
      assert.ok(r.completedAt - 1_000 >= batches * (startMs + policy.monitorMs) + (batches - 1) * policy.delayMs - batches * step)
    }), { numRuns: 300 })
  })

  it('the same answer whatever order the reports arrive in, and duplicates of a slot do not hide its new replica', () => {
    const slotArb = fc.record({ generation: fc.constantFrom<number | null>(null, 1, 2), readySince: fc.option(fc.integer({ min: 0, max: 20_000 })), failed: fc.boolean() })
    fc.assert(fc.property(fc.array(slotArb, { minLength: 1, maxLength: 10 }), policyArb, fc.integer({ min: 0, max: 30_000 }), (raw, policy, now) => {
      const slots: SlotProgress[] = raw.map((s, slot) => ({ slot, ...s }))
      const a = rolloutPlan(2, slots, policy, now)
      const shuffled = [...slots].reverse()
      const b = rolloutPlan(2, shuffled, policy, now)
      assert.deepEqual([...a.allowed].sort(), [...b.allowed].sort())
      assert.equal(a.state, b.state)
      // a stale report of an old replica next to the new one: the new one counts
      const withStale = [...slots, ...slots.filter((s) => s.generation === 2).map((s) => ({ ...s, generation: 1, readySince: 0, failed: false }))]
      assert.deepEqual([...rolloutPlan(2, withStale, policy, now).allowed].sort(), [...a.allowed].sort())
      // never takes a slot off the new generation, never holds back a slot with nothing running
      for (const s of slots) if (s.generation === 2 || s.generation === null) assert.ok(a.allowed.has(s.slot))
    }), { numRuns: 500 })
  })

  it('failures beyond the ratio stop it: no new batch starts (pause, rollback); continue goes on', () => {
    const slots: SlotProgress[] = [
      { slot: 0, generation: 2, readySince: null, failed: true },
      { slot: 1, generation: 1, readySince: 0, failed: false },
      { slot: 2, generation: 1, readySince: 0, failed: false }
    ]
    for (const failureAction of ['pause', 'rollback'] as const) {
      const p = rolloutPlan(2, slots, { ...DEFAULT_UPDATE_POLICY, failureAction }, 10_000)
      assert.equal(p.state, 'failed')
      assert.deepEqual([...p.allowed], [0])
      assert.match(p.reason, new RegExp(`1 of 1 updated replicas failed.*${failureAction}`))
    }
    const tolerated = rolloutPlan(2, slots, { ...DEFAULT_UPDATE_POLICY, maxFailureRatio: 1 }, 10_000)
    assert.equal(tolerated.state, 'updating')
    const cont = rolloutPlan(2, slots, { ...DEFAULT_UPDATE_POLICY, failureAction: 'continue' }, 10_000)
    assert.notEqual(cont.state, 'failed')
  })

  it('a new slot (nothing running) starts on the new generation at once, outside the batches', () => {
    const p = rolloutPlan(2, [
      { slot: 0, generation: 1, readySince: 0, failed: false },
      { slot: 1, generation: 1, readySince: 0, failed: false },
      { slot: 2, generation: null, readySince: null, failed: false }
    ], DEFAULT_UPDATE_POLICY, 10_000)
    assert.deepEqual([...p.allowed].sort(), [0, 2])
    assert.equal(p.reason, 'batch 1 of 3')
  })
})
