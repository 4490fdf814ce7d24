/**
 * The service records an operator's change writes: a new generation when what a replica is
 * changes, the same generation when only replicas or rollout settings change, the previous spec
 * back on `rollback`, and the rollout's flags on pause, resume and promote. Pure: `now` is an
 * input; the control routes sign and post what these return.
 */
import { isDeepStrictEqual } from 'node:util'
import type { ServiceRecord } from '../protocol/keys.ts'
import { taskPart, type ServiceSpec } from '../protocol/spec.ts'
import type { ServiceState } from './desired.ts'
import { UserError } from './errors.ts'

/**
 * The record a deploy or update of `spec` writes over `svc` (what runs now: the record, or its
 * previous spec after the nodes rolled back), or null when nothing changes.
 */
export function updatedRecord (svc: ServiceState, spec: ServiceSpec, now: number): ServiceRecord | null {
  const rec = svc.record
  if (isDeepStrictEqual(taskPart(spec), taskPart(rec.spec))) {
    // replicas or rollout settings only: same generation, the rollout under way goes on
    return isDeepStrictEqual(spec, rec.spec) ? null : { ...rec, spec }
  }
  const rollout = { kind: 'update' as const, startedAt: now, epoch: 0 }
  if (svc.generation !== rec.generation && isDeepStrictEqual(taskPart(spec), taskPart(svc.spec))) {
    // back to what the nodes rolled back to: its replicas already run it, nothing is replaced
    return { spec, generation: svc.generation, previous: { spec: rec.spec, generation: rec.generation }, rollout }
  }
  // above every generation replicas may still carry (the record's and the one it replaced)
  const generation = Math.max(rec.generation, rec.previous?.generation ?? 0) + 1
  return { spec, generation, previous: { spec: svc.spec, generation: svc.generation }, rollout }
}

/** `rollback`: the previous spec becomes the record's, rolled out with the replaced spec's rollback policy. */
export function rolledBackRecord (svc: ServiceState, now: number): ServiceRecord {
  const rec = svc.record
  if (rec.previous === undefined) throw new UserError(`${rec.spec.name} has no previous generation to roll back to (it was never updated)`)
  return {
    spec: { ...rec.previous.spec, replicas: rec.spec.replicas },
    generation: rec.previous.generation,
    previous: { spec: rec.spec, generation: rec.generation },
    rollout: { kind: 'rollback', startedAt: now, epoch: 0 }
  }
}

function activeIntent (svc: ServiceState, what: string): NonNullable<ServiceRecord['rollout']> {
  const intent = svc.record.rollout
  if (intent === undefined || svc.rollout.outcome?.outcome === 'completed' || svc.rollout.kind === 'auto-rollback') {
    throw new UserError(`${svc.spec.name} has no rollout under way to ${what} (\`p2p-orch rollout status ${svc.spec.name}\` shows its last one)`)
  }
  return intent
}

/** `update --pause` and `--resume`. A resume starts a new epoch: a pause the nodes decided after failures no longer applies. */
export function pausedRecord (svc: ServiceState, paused: boolean, now: number): ServiceRecord {
  const rec = svc.record
  if (paused) return { ...rec, rollout: { ...activeIntent(svc, 'pause'), paused: true } }
  const intent = rec.rollout
  if (intent === undefined || (intent.paused !== true && svc.rollout.outcome?.outcome !== 'paused')) {
    throw new UserError(`the rollout of ${svc.spec.name} is not paused`)
  }
  return { ...rec, rollout: { ...intent, paused: false, epoch: intent.epoch + 1, startedAt: now } }
}

/** `promote`: a canary (or blue-green set) waiting for it goes on. */
export function promotedRecord (svc: ServiceState): ServiceRecord {
  const intent = activeIntent(svc, 'promote')
  if (svc.rollout.canary === 0) throw new UserError(`${svc.spec.name} has no canary to promote (set deploy.x-p2p-orch.canary in its Compose file)`)
  if (intent.promoted === true) throw new UserError(`the canary of ${svc.spec.name} is already promoted`)
  return { ...svc.record, rollout: { ...intent, promoted: true } }
}
