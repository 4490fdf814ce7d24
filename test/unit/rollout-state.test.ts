/**
 * What a service runs and how its rollout stands, as every node derives it from the record and the
 * nodes' decision (placement/rollout.ts effectiveService, servingGeneration, canary plans), the
 * records an operator's change writes (node/rollout-writes.ts), and which decision a node records
 * (node/rollouts.ts dueDecision). Properties where the rule is general, examples where it is one case.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { effectiveService, rolloutPlan, servingGeneration, type SlotProgress } from '../../placement/rollout.ts'
import type { RolloutDecision, ServiceRecord } from '../../protocol/keys.ts'
import { DEFAULT_UPDATE_POLICY, newServiceSpec, type ServiceSpec, type UpdatePolicy } from '../../protocol/spec.ts'
import type { ServiceState } from '../../node/desired.ts'
import { pausedRecord, promotedRecord, rolledBackRecord, updatedRecord } from '../../node/rollout-writes.ts'
import { dueDecision } from '../../node/rollouts.ts'

const spec = (image: string, o: Partial<ServiceSpec> = {}): ServiceSpec => newServiceSpec({ name: 'web', stack: 's', image, replicas: 4, ...o })
const state = (rec: ServiceRecord, d?: RolloutDecision): ServiceState => ({ ...effectiveService(rec, d), replicas: 4, record: rec })
const v1: ServiceRecord = { spec: spec('img:1'), generation: 1, rollout: { kind: 'update', startedAt: 100, epoch: 0 } }
const v2: ServiceRecord = { spec: spec('img:2', { update: { ...DEFAULT_UPDATE_POLICY, failureAction: 'rollback' } }), generation: 2, previous: { spec: v1.spec, generation: 1 }, rollout: { kind: 'update', startedAt: 200, epoch: 0 } }
const decision = (o: Partial<RolloutDecision>): RolloutDecision => ({ generation: 2, epoch: 0, outcome: 'rollback', reason: 'failed', at: 300, ...o })

describe('effective service and rollout', () => {
  it('a rollback decision for the generation and epoch runs the previous spec; any other decision is ignored', () => {
    const back = effectiveService(v2, decision({}))
    assert.equal(back.generation, 1)
    assert.equal(back.spec.image, 'img:1')
    assert.equal(back.rollout.kind, 'auto-rollback')
    assert.equal(back.rollout.since, 300)
    assert.equal(back.rollout.from, 2)
    for (const stale of [decision({ generation: 1 }), decision({ epoch: 1 })]) {
      const e = effectiveService(v2, stale)
      assert.equal(e.generation, 2)
      assert.equal(e.rollout.outcome, null)
    }
    assert.equal(effectiveService(v2, decision({ outcome: 'completed' })).rollout.outcome?.outcome, 'completed')
  })

  it('a record from before rollouts is complete; a first deploy has no canary; a rollback cannot roll back', () => {
    assert.equal(effectiveService({ spec: v1.spec, generation: 1 }, undefined).rollout.outcome?.outcome, 'completed')
    assert.equal(effectiveService({ ...v1, spec: spec('img:1', { canary: 1 }) }, undefined).rollout.canary, 0)
    assert.equal(effectiveService({ ...v2, spec: { ...v2.spec, canary: 1 } }, undefined).rollout.canary, 1)
    const manual = rolledBackRecord(state(v2), 400)
    assert.equal(manual.generation, 1)
    assert.equal(manual.previous?.generation, 2)
    assert.notEqual(effectiveService(manual, undefined).rollout.policy.failureAction, 'rollback')
  })

  it('blue-green serves the old set until promote, then the new one; a smaller canary serves both', () => {
    const bg: ServiceRecord = { ...v2, spec: { ...v2.spec, canary: 4 } }
    assert.equal(servingGeneration(effectiveService(bg, undefined), 4), 1)
    assert.equal(servingGeneration(effectiveService(promotedRecord(state(bg)), undefined), 4), 2)
    assert.equal(servingGeneration(effectiveService({ ...v2, spec: { ...v2.spec, canary: 1 } }, undefined), 4), null)
  })

  it('a canary batch comes first and waits for promote', () => {
    const slots: SlotProgress[] = [0, 1, 2, 3].map((slot) => ({ slot, generation: slot === 0 ? 2 : 1, readySince: 0, failed: false }))
    const waiting = rolloutPlan(2, slots, { ...DEFAULT_UPDATE_POLICY, monitorMs: 10 }, 1_000, { canary: 1 })
    assert.equal(waiting.state, 'paused')
    assert.deepEqual([...waiting.allowed], [0])
    const promoted = rolloutPlan(2, slots, { ...DEFAULT_UPDATE_POLICY, monitorMs: 10 }, 1_000, { canary: 1, promoted: true })
    assert.equal(promoted.state, 'updating')
    assert.deepEqual([...promoted.allowed].sort(), [0, 1])
  })
})

describe('records an operator writes', () => {
  const policyArb: fc.Arbitrary<UpdatePolicy> = fc.record({
    parallelism: fc.nat(4), delayMs: fc.nat(1000), order: fc.constantFrom<'stop-first' | 'start-first'>('stop-first', 'start-first'),
    monitorMs: fc.nat(5000), failureAction: fc.constantFrom<'pause' | 'continue' | 'rollback'>('pause', 'continue', 'rollback'), maxFailureRatio: fc.constantFrom(0, 0.5, 1)
  })

  it('a new generation exactly when what a replica is changes, above every generation still around; the previous spec is what ran', () => {
    fc.assert(fc.property(fc.constantFrom('img:1', 'img:2', 'img:3'), fc.option(policyArb), fc.nat(6), fc.boolean(), (image, update, replicas, rolledBack) => {
      const svc = state(v2, rolledBack ? decision({}) : undefined)
      const next = updatedRecord(svc, spec(image, { replicas, ...(update !== null ? { update } : {}) }), 1_000)
      const sameTask = image === v2.spec.image
      if (next === null) { assert.ok(sameTask); return }
      if (sameTask) { assert.equal(next.generation, 2); return }
      if (rolledBack && image === 'img:1') {
        // back to what the nodes rolled back to: its replicas already run it
        assert.equal(next.generation, 1)
        return
      }
      assert.equal(next.generation, 3)
      assert.deepEqual(next.previous, { spec: svc.spec, generation: svc.generation })
      assert.equal(next.rollout?.startedAt, 1_000)
    }), { numRuns: 300 })
  })

  it('pause, resume and promote need a rollout under way; resume starts a new epoch', () => {
    const paused = pausedRecord(state(v2), true, 500)
    assert.equal(paused.rollout?.paused, true)
    const resumed = pausedRecord(state(paused), false, 600)
    assert.equal(resumed.rollout?.epoch, 1)
    assert.equal(resumed.rollout?.startedAt, 600)
    assert.throws(() => pausedRecord(state(v2, decision({ outcome: 'completed' })), true, 500), /no rollout under way/)
    assert.throws(() => promotedRecord(state(v2)), /no canary/)
    assert.throws(() => rolledBackRecord(state(v1), 500), /no previous generation/)
  })
})

describe('the decision a node records', () => {
  it('failures of an update: its failure action; of a first deploy: none; of an automatic rollback: its outcome', () => {
    assert.equal(dueDecision(state(v2), undefined, 'failed', 'x', 1)?.outcome, 'rollback')
    const pausing: ServiceRecord = { ...v2, spec: { ...v2.spec, update: DEFAULT_UPDATE_POLICY } }
    assert.equal(dueDecision(state(pausing), undefined, 'failed', 'x', 1)?.outcome, 'paused')
    assert.equal(dueDecision(state(v1), undefined, 'failed', 'x', 1), null)
    assert.equal(dueDecision(state(v2), undefined, 'completed', 'x', 1)?.outcome, 'completed')
    assert.equal(dueDecision(state(v2), undefined, 'updating', 'x', 1), null)
    const d = decision({})
    assert.deepEqual(dueDecision(state(v2, d), d, 'completed', 'x', 1)?.then?.outcome, 'completed')
    assert.deepEqual(dueDecision(state(v2, d), d, 'failed', 'x', 1)?.then?.outcome, 'paused')
    assert.equal(dueDecision(state(v2, { ...d, then: { outcome: 'completed', reason: '' } }), d, 'failed', 'x', 1), null)
  })
})
