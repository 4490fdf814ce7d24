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
 * Pure and deterministic: `now` is an input.
 */

export interface UpdatePolicy {
  /** slots updated at once; 0 = all at once */
  parallelism: number
  /** wait between batches */
  delayMs: number
  /** stop the old replica first (Swarm's default) or start the new one first */
  order: 'stop-first' | 'start-first'
  /** how long an updated replica must stay ready before the next batch */
  monitorMs: number
  failureAction: 'pause' | 'continue' | 'rollback'
  /** failed fraction of the updated slots tolerated before `failureAction` (0 = none) */
  maxFailureRatio: number
}

/** Swarm's defaults, for a Compose file that says nothing (docker service update's). */
export const DEFAULT_UPDATE_POLICY: UpdatePolicy = {
  parallelism: 1,
  delayMs: 0,
  order: 'stop-first',
  monitorMs: 5_000,
  failureAction: 'pause',
  maxFailureRatio: 0
}

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

export type RolloutState = 'updating' | 'waiting' | 'completed' | 'failed'

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
}

/** The batches of slots, in slot order. */
export function batchesOf (slots: readonly number[], parallelism: number): number[][] {
  const sorted = [...new Set(slots)].sort((a, b) => a - b)
  if (parallelism <= 0 || parallelism >= sorted.length) return sorted.length === 0 ? [] : [sorted]
  const out: number[][] = []
  for (let i = 0; i < sorted.length; i += parallelism) out.push(sorted.slice(i, i + parallelism))
  return out
}

export function rolloutPlan (target: number, progress: readonly SlotProgress[], policy: UpdatePolicy, now: number): RolloutPlan {
  const bySlot = new Map<number, SlotProgress>()
  for (const p of progress) if (!bySlot.has(p.slot) || p.generation === target) bySlot.set(p.slot, p)
  const batches = batchesOf([...bySlot.keys()], policy.parallelism)
  const onTarget = (p: SlotProgress): boolean => p.generation === target
  const done = (p: SlotProgress): boolean => onTarget(p) && p.readySince !== null && now - p.readySince >= policy.monitorMs && !p.failed
  // nothing old to keep: such a slot starts on the new generation whatever the batch
  const allowed = new Set([...bySlot.values()].filter((p) => p.generation === null || onTarget(p)).map((p) => p.slot))
  const failures = [...bySlot.values()].filter((p) => onTarget(p) && p.failed).length
  const updated = [...bySlot.values()].filter(onTarget).length
  const failedTooMuch = policy.failureAction !== 'continue' && failures > 0 && failures / Math.max(updated, 1) > policy.maxFailureRatio

  let readyAt = -Infinity
  let b = 0
  for (; b < batches.length; b++) {
    const ps = batches[b].map((s) => bySlot.get(s) as SlotProgress)
    if (!ps.every(done)) break
    for (const p of ps) readyAt = Math.max(readyAt, (p.readySince as number) + policy.monitorMs)
  }
  if (b === batches.length) {
    return { allowed: new Set(bySlot.keys()), batch: b, batches: batches.length, state: 'completed', failures, reason: 'every replica runs the new generation' }
  }
  if (failedTooMuch) {
    return {
      allowed, batch: b, batches: batches.length, state: 'failed', failures,
      reason: `${failures} of ${updated} updated replicas failed (more than ${Math.round(policy.maxFailureRatio * 100)}%): ${policy.failureAction}`
    }
  }
  for (let i = 0; i < b; i++) for (const s of batches[i]) allowed.add(s)
  if (b > 0 && now < readyAt + policy.delayMs) {
    return { allowed, batch: b, batches: batches.length, state: 'waiting', failures, reason: `batch ${b + 1} of ${batches.length} starts in ${Math.ceil((readyAt + policy.delayMs - now) / 1000)} s` }
  }
  for (const s of batches[b]) allowed.add(s)
  return { allowed, batch: b, batches: batches.length, state: 'updating', failures, reason: `batch ${b + 1} of ${batches.length}` }
}
