/**
 * A service's rollout as every node sees it: the slots' progress read from the alive nodes' task
 * reports, and the plan (placement/rollout.ts) for them. The reconciler asks it which of its slots
 * may take the new generation; the rollout recorder (rollouts.ts) asks it whether the rollout
 * ended; `rollout status` shows it. A read model of the merged state: no IO.
 */
import type { TaskStatus } from '../protocol/keys.ts'
import type { ClusterState } from '../protocol/state.ts'
import { taskReports } from '../protocol/tasks.ts'
import { rolloutPlan, type RolloutPlan, type SlotProgress } from '../placement/rollout.ts'
import { placementNodes, type ServiceState } from './desired.ts'
import type { RolloutStateView, RolloutView } from './api/types.ts'

/** What one slot's task says about the rollout to `target`. */
function progressOf (t: TaskStatus, target: number, since: number): SlotProgress {
  const failed = t.generation === target && (t.state === 'failed' || t.state === 'rejected' || t.health === 'unhealthy' ||
    t.history.some((h) => h.generation === target && h.at >= since))
  const live = t.state === 'running' || t.state === 'starting'
  // a slot given the new generation counts as updated even while it fails or waits to start;
  // an old replica that is not running has nothing to keep
  const generation = live || t.generation === target ? t.generation : null
  const readySince = t.state === 'running' && t.generation === target ? (t.readySince ?? t.startedAt) : null
  return { slot: t.slot, generation, readySince: readySince !== null && readySince > 0 ? readySince : null, failed }
}

/** The progress of every slot of a replicated service, from the tasks of alive nodes. */
export function slotProgress (state: ClusterState, svc: ServiceState): SlotProgress[] {
  const alive = new Set(placementNodes(state).filter((n) => n.alive).map((n) => n.id))
  const out: SlotProgress[] = []
  const seen = new Set<number>()
  for (const [node, tasks] of taskReports(state)) {
    if (!alive.has(node)) continue
    for (const t of tasks) {
      if (t.service !== svc.spec.name || t.desired === 'shutdown' || t.slot >= svc.replicas) continue
      out.push(progressOf(t, svc.generation, svc.rollout.since))
      seen.add(t.slot)
    }
  }
  for (let slot = 0; slot < svc.replicas; slot++) if (!seen.has(slot)) out.push({ slot, generation: null, readySince: null, failed: false })
  return out
}

/**
 * The plan for a service's rollout, or null when nothing is gated: a global service (each node
 * updates its own replica at once), or a rollout the nodes recorded as completed. One recorded as
 * paused after failures starts no further batch.
 */
export function rolloutOf (state: ClusterState, svc: ServiceState, now: number): RolloutPlan | null {
  const r = svc.rollout
  if (svc.spec.mode === 'global' || r.outcome?.outcome === 'completed') return null
  const plan = rolloutPlan(svc.generation, slotProgress(state, svc), r.policy, now, { canary: r.canary, promoted: r.promoted, paused: r.paused || r.outcome !== null })
  if (r.outcome !== null) return { ...plan, state: 'paused', reason: r.outcome.reason, wakeAt: null }
  return plan
}

/** `rollout status`: where a service's rollout stands, in words. */
export function rolloutView (state: ClusterState, svc: ServiceState, now: number): RolloutView {
  const r = svc.rollout
  const plan = rolloutOf(state, svc, now)
  const progress = svc.spec.mode === 'global' ? [] : slotProgress(state, svc)
  const onTarget = new Set(progress.filter((p) => p.generation === svc.generation && p.readySince !== null && !p.failed).map((p) => p.slot))
  let st: RolloutStateView
  let reason: string
  if (r.kind === 'auto-rollback') {
    st = r.outcome === null ? 'rolling back' : r.outcome.outcome === 'completed' ? 'rolled back' : 'rollback paused'
    reason = r.outcome === null ? `${r.reason}; ${plan?.reason ?? ''}` : `${r.reason}; ${r.outcome.reason}`
  } else if (plan === null) {
    st = 'completed'
    reason = r.outcome?.reason ?? 'every replica runs the new generation'
  } else {
    st = plan.state
    reason = plan.reason
  }
  return {
    service: svc.spec.name,
    generation: svc.generation,
    from: r.from,
    kind: r.kind,
    state: st,
    batch: plan === null ? 0 : Math.min(plan.batch + 1, plan.batches),
    batches: plan?.batches ?? 0,
    updated: onTarget.size,
    total: svc.spec.mode === 'global' ? 0 : svc.replicas,
    failures: plan?.failures ?? 0,
    reason,
    policy: r.policy,
    canary: r.canary,
    promoted: r.promoted
  }
}
