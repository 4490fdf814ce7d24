/**
 * Records how rollouts end, so that every node acts on one outcome: `rollout/<service>` says the
 * rollout to (generation, epoch) completed, paused after failures, or is rolled back (and then how
 * that rollback ended). No node drives a rollout — each reconciler updates its own slots when the
 * plan (rollout-view.ts) allows — but a failure must turn into one decision, and a completed
 * rollout must stay completed when a replica crashes later.
 *
 * The service's coordinator of the moment (the alive node its name hashes highest with) writes
 * the decision at once; any other node writes it if it is still missing DECISION_FALLBACK_MS after
 * it saw the same outcome (the coordinator died, or is on the other side of a partition).
 * Concurrent writes of one key converge by the state's LWW order, the same on every node.
 */
import { key, type RolloutDecision } from '../protocol/keys.ts'
import type { Signer } from '../protocol/sign.ts'
import { score } from '../placement/hashing.ts'
import { placementNodes, services, type ServiceState } from './desired.ts'
import type { Logger } from './logger.ts'
import type { Counters } from './metrics.ts'
import { rolloutOf } from './rollout-view.ts'
import type { StateManager } from './state-manager.ts'
import { MAX_ROLLOUT_REASON } from '../protocol/validate.ts'

/** Another node records an outcome the coordinator has not recorded after this long (a few gossip rounds). */
export const DECISION_FALLBACK_MS = 3_000
/** Outcomes can also become due with time alone (a monitor period ending): looked at this often. */
const CHECK_INTERVAL_MS = 1_000
/** Coalesce a burst of state changes (one pass of a reconciler writes several shards). */
const CHECK_DEBOUNCE_MS = 20

export interface RolloutRecorderOptions {
  states: StateManager
  self: string
  signer: Signer
  logger: Logger
  counters: Counters
  now?: () => number
}

/** The decision a service's rollout calls for now, if any. */
export function dueDecision (svc: ServiceState, current: RolloutDecision | undefined, planState: string, reason: string, now: number): RolloutDecision | null {
  const r = svc.rollout
  const cut = reason.slice(0, MAX_ROLLOUT_REASON)
  if (r.kind === 'auto-rollback') {
    if (r.outcome !== null || current === undefined) return null
    if (planState === 'completed') return { ...current, then: { outcome: 'completed', reason: `rolled back to generation ${svc.generation}` } }
    if (planState === 'failed') return { ...current, then: { outcome: 'paused', reason: `the rollback failed too: ${cut}`.slice(0, MAX_ROLLOUT_REASON) } }
    return null
  }
  if (r.outcome !== null) return null
  const base = { generation: svc.generation, epoch: r.epoch, at: now }
  if (planState === 'completed') return { ...base, outcome: 'completed', reason: cut }
  // a first deploy has no version to go back to, nor one to keep: its replicas just retry
  if (planState !== 'failed' || r.from === null) return null
  const rollback = r.policy.failureAction === 'rollback' && svc.record.previous !== undefined && r.kind === 'update'
  return { ...base, outcome: rollback ? 'rollback' : 'paused', reason: cut }
}

export class RolloutRecorder {
  private readonly o: RolloutRecorderOptions
  private readonly now: () => number
  /** when this node first saw each due outcome (`service/generation/epoch/outcome`) */
  private readonly firstSeen = new Map<string, number>()
  private timer: NodeJS.Timeout | undefined
  private debounce: NodeJS.Timeout | undefined

  constructor (o: RolloutRecorderOptions) {
    this.o = o
    this.now = o.now ?? Date.now
  }

  start (): void {
    this.o.states.on('change', this.onChange)
    this.timer = setInterval(() => { this.check() }, CHECK_INTERVAL_MS)
    this.timer.unref()
  }

  stop (): void {
    this.o.states.off('change', this.onChange)
    clearInterval(this.timer)
    clearTimeout(this.debounce)
  }

  private readonly onChange = (): void => {
    if (this.debounce !== undefined) return
    this.debounce = setTimeout(() => { this.debounce = undefined; this.check() }, CHECK_DEBOUNCE_MS)
  }

  /** The coordinator of a service: the alive node whose id scores highest with its name. */
  private coordinator (service: string): string | undefined {
    let best: { id: string, s: number } | undefined
    for (const n of placementNodes(this.o.states.state)) {
      if (!n.alive) continue
      const s = score(`rollout/${service}`, n.id)
      if (best === undefined || s > best.s || (s === best.s && n.id < best.id)) best = { id: n.id, s }
    }
    return best?.id
  }

  check (): void {
    const state = this.o.states.state
    const now = this.now()
    const due = new Set<string>()
    for (const svc of services(state)) {
      const plan = rolloutOf(state, svc, now)
      if (plan === null) continue
      const name = svc.spec.name
      const current = state.value<RolloutDecision>(key.rollout(name))
      const d = dueDecision(svc, current, plan.state, plan.reason, now)
      if (d === null) continue
      const id = `${name}/${d.generation}/${d.epoch}/${d.outcome}/${d.then?.outcome ?? ''}`
      due.add(id)
      const seen = this.firstSeen.get(id) ?? now
      this.firstSeen.set(id, seen)
      if (this.coordinator(name) !== this.o.self && now - seen < DECISION_FALLBACK_MS) continue
      this.o.states.write(key.rollout(name), d, this.o.signer)
      this.o.counters.inc('rollout_decisions_total')
      const what = d.then !== undefined ? `rollback ${d.then.outcome}` : d.outcome
      this.o.logger.info({ service: name, generation: d.generation, outcome: what, reason: d.then?.reason ?? d.reason }, `rollout of ${name} to generation ${d.generation}: ${what}`)
    }
    for (const id of this.firstSeen.keys()) if (!due.has(id)) this.firstSeen.delete(id)
  }
}
