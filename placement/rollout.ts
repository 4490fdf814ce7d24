/**
 * Rolling updates without a leader: which slots of a service may run its new generation now, as a
 * pure function of what every node sees (the slots' task reports) and the update policy. Each
 * node asks it about its own slots; all of them get the same answer from the same state, so the
 * rollout goes on whichever nodes live, die or join.
 *
 * The rule, Swarm's: slots in slot order, in batches of `parallelism` (0 = all at once). A batch may
 * start once every earlier batch runs the new generation and each of its replicas has stayed ready
 * for `monitorMs`, and `delayMs` has passed since that happened. A slot with nothing running has
 * no old version to keep: it starts on the new generation at once. When more than
 * `maxFailureRatio` of the slots given the new generation failed, `failureAction` says what follows:
 * `pause` (no further batch starts), `continue` (failures are ignored) or `rollback` (the caller
 * records the decision; the previous generation then rolls out the same way).
 *
 * A canary (`canary: N`) makes the first N slots a batch of their own, after which the rollout
 * waits for `promote`; N at or above the slot count is blue-green (the reconciler keeps the old
 * replicas beside the new ones until then). A rollout paused by hand starts no further batch.
 *
 * Pure and deterministic: `now` is an input.
 */
import { DEFAULT_ROLLBACK_POLICY, DEFAULT_UPDATE_POLICY, type ServiceSpec, type UpdatePolicy } from '../protocol/spec.ts'
import type { RolloutDecision, ServiceRecord } from '../protocol/keys.ts'

export type { UpdatePolicy }
export { DEFAULT_UPDATE_POLICY, DEFAULT_ROLLBACK_POLICY }

/** What the nodes report of one slot. */
export interface SlotProgress {
  slot: number
  /** the generation its replica runs; null when nothing runs it */
  generation: number | null
  /** ms since epoch since when it is ready (running, healthy if it has a healthcheck) at `generation`; null if it is not */
  readySince: number | null
  /** its replica at the target generation exited or turned unhealthy */
  failed: boolean
}

export type RolloutState = 'updating' | 'waiting' | 'paused' | 'completed' | 'failed'

/** What the operator asked beyond the policy: a canary to wait at, a promote, a pause. */
export interface RolloutOptions {
  /** slots of the first batch, after which the rollout waits for `promoted` (0 = no canary) */
  canary?: number
  promoted?: boolean
  paused?: boolean
}

export interface RolloutPlan {
  /** slots that may run the target generation now */
  allowed: Set<number>
  /** 0-based index of the batch under way (= batches when completed) */
  batch: number
  batches: number
  state: RolloutState
  /** slots given the new generation that failed */
  failures: number
  /** what the state means, for `rollout status` */
  reason: string
  /** the earliest moment the plan may change with time alone (a monitor or delay ending); null if none */
  wakeAt: number | null
}

/** The batches of slots, in slot order. */
export function batchesOf (slots: readonly number[], parallelism: number): number[][] {
  const sorted = [...new Set(slots)].sort((a, b) => a - b)
  if (parallelism <= 0 || parallelism >= sorted.length) return sorted.length === 0 ? [] : [sorted]
  const out: number[][] = []
  for (let i = 0; i < sorted.length; i += parallelism) out.push(sorted.slice(i, i + parallelism))
  return out
}

/** The batches of a rollout: a canary's slots first when there is one. */
export function rolloutBatches (slots: readonly number[], parallelism: number, canary = 0): number[][] {
  if (canary <= 0) return batchesOf(slots, parallelism)
  const sorted = [...new Set(slots)].sort((a, b) => a - b)
  if (sorted.length === 0) return []
  return [sorted.slice(0, canary), ...batchesOf(sorted.slice(canary), parallelism)]
}

export function rolloutPlan (target: number, progress: readonly SlotProgress[], policy: UpdatePolicy, now: number, opts: RolloutOptions = {}): RolloutPlan {
  const bySlot = new Map<number, SlotProgress>()
  for (const p of progress) if (!bySlot.has(p.slot) || p.generation === target) bySlot.set(p.slot, p)
  const canary = opts.canary ?? 0
  const batches = rolloutBatches([...bySlot.keys()], policy.parallelism, canary)
  const onTarget = (p: SlotProgress): boolean => p.generation === target
  const done = (p: SlotProgress): boolean => onTarget(p) && p.readySince !== null && now - p.readySince >= policy.monitorMs && !p.failed
  // nothing old to keep: such a slot starts on the new generation whatever the batch
  const allowed = new Set([...bySlot.values()].filter((p) => p.generation === null || onTarget(p)).map((p) => p.slot))
  const failures = [...bySlot.values()].filter((p) => onTarget(p) && p.failed).length
  const updated = [...bySlot.values()].filter(onTarget).length
  const failedTooMuch = policy.failureAction !== 'continue' && failures > 0 && failures / Math.max(updated, 1) > policy.maxFailureRatio
  const plan = (state: RolloutState, b: number, reason: string, wakeAt: number | null = null): RolloutPlan => ({ allowed, batch: b, batches: batches.length, state, failures, reason, wakeAt })

  let readyAt = -Infinity
  let b = 0
  for (; b < batches.length; b++) {
    const ps = batches[b].map((s) => bySlot.get(s) as SlotProgress)
    if (!ps.every(done)) break
    for (const p of ps) readyAt = Math.max(readyAt, (p.readySince as number) + policy.monitorMs)
  }
  // when a replica of the batch under way will have stayed ready for monitor
  const monitorEnds = (): number | null => {
    let at: number | null = null
    for (const s of batches[b] ?? []) {
      const p = bySlot.get(s) as SlotProgress
      if (onTarget(p) && !p.failed && p.readySince !== null && p.readySince + policy.monitorMs > now) at = Math.min(at ?? Infinity, p.readySince + policy.monitorMs)
    }
    return at
  }
  const canaryWait = canary > 0 && opts.promoted !== true && b >= 1
  if (b === batches.length && !canaryWait) {
    for (const s of bySlot.keys()) allowed.add(s)
    return plan('completed', b, 'every replica runs the new generation')
  }
  if (failedTooMuch) {
    return plan('failed', b, `${failures} of ${updated} updated replicas failed (more than ${Math.round(policy.maxFailureRatio * 100)}%): ${policy.failureAction}`)
  }
  for (let i = 0; i < b; i++) for (const s of batches[i]) allowed.add(s)
  if (canaryWait) {
    const blueGreen = batches.length === 1
    return plan('paused', b, blueGreen
      ? `blue-green: the new set of ${batches[0].length} runs beside the old one; promote switches to it, rollback discards it`
      : `canary: ${batches[0].length} of ${bySlot.size} replicas run the new generation; promote continues, rollback discards them`)
  }
  if (opts.paused === true) return plan('paused', b, 'paused by hand; resume continues')
  if (b > 0 && now < readyAt + policy.delayMs) {
    return plan('waiting', b, `batch ${b + 1} of ${batches.length} starts in ${Math.ceil((readyAt + policy.delayMs - now) / 1000)} s`, readyAt + policy.delayMs)
  }
  for (const s of batches[b]) allowed.add(s)
  return plan('updating', b, `batch ${b + 1} of ${batches.length}`, monitorEnds())
}

/** The rollout a service is in, as every node derives it from the service record and the nodes' decision. */
export interface ActiveRollout {
  /** 'auto-rollback': the nodes decided to go back after failures */
  kind: 'update' | 'rollback' | 'auto-rollback'
  policy: UpdatePolicy
  /** ms since epoch: exits before it are not this rollout's failures */
  since: number
  epoch: number
  paused: boolean
  /** slots of the canary (0 = none) */
  canary: number
  promoted: boolean
  /** the generation being replaced; null for a service's first one */
  from: number | null
  /** how it ended, when the nodes recorded that */
  outcome: { outcome: 'completed' | 'paused', reason: string } | null
  /** why it is rolling back (auto-rollback only) */
  reason: string
}

export interface EffectiveService {
  spec: ServiceSpec
  generation: number
  rollout: ActiveRollout
}

/**
 * What a service runs: the record's spec, or — once the nodes decided to roll the rollout to it
 * back — its previous spec, with the policy that rollout uses. A decision applies only to the
 * generation and epoch it was made for.
 */
export function effectiveService (rec: ServiceRecord, decision: RolloutDecision | undefined): EffectiveService {
  const intent = rec.rollout
  const epoch = intent?.epoch ?? 0
  const d = decision !== undefined && decision.generation === rec.generation && decision.epoch === epoch ? decision : undefined
  if (d?.outcome === 'rollback' && rec.previous !== undefined) {
    const policy = rec.spec.rollback ?? DEFAULT_ROLLBACK_POLICY
    return {
      spec: rec.previous.spec,
      generation: rec.previous.generation,
      rollout: {
        kind: 'auto-rollback', policy: { ...policy, failureAction: policy.failureAction === 'rollback' ? 'pause' : policy.failureAction },
        since: d.at, epoch, paused: false, canary: 0, promoted: false, from: rec.generation, outcome: d.then ?? null, reason: d.reason
      }
    }
  }
  const kind = intent?.kind ?? 'update'
  const policy = kind === 'rollback' ? (rec.previous?.spec.rollback ?? DEFAULT_ROLLBACK_POLICY) : (rec.spec.update ?? DEFAULT_UPDATE_POLICY)
  // a record from before rollouts existed has nothing under way
  const outcome = intent === undefined
    ? { outcome: 'completed' as const, reason: 'every replica runs the new generation' }
    : d !== undefined && d.outcome !== 'rollback' ? { outcome: d.outcome, reason: d.reason } : null
  return {
    spec: rec.spec,
    generation: rec.generation,
    rollout: {
      kind, policy: kind === 'rollback' && policy.failureAction === 'rollback' ? { ...policy, failureAction: 'pause' } : policy,
      since: intent?.startedAt ?? 0, epoch, paused: intent?.paused === true,
      // a first deploy has nothing to be a canary against
      canary: kind === 'update' && rec.previous !== undefined ? rec.spec.canary ?? 0 : 0,
      promoted: intent?.promoted === true, from: rec.previous?.generation ?? null, outcome, reason: ''
    }
  }
}

/**
 * A blue-green rollout not yet promoted serves from the old set, a promoted one from the new;
 * null: the mesh routes to every ready replica, whatever its generation.
 */
export function servingGeneration (svc: EffectiveService, replicas: number): number | null {
  const r = svc.rollout
  if (r.canary === 0 || r.canary < replicas || r.from === null || r.outcome !== null) return null
  return r.promoted ? svc.generation : r.from
}
