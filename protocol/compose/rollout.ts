/**
 * How a service's replicas are replaced: `deploy.update_config`, `deploy.rollback_config` (Swarm's
 * keys and defaults) and our `deploy.x-p2p-orch.canary`. The rollout itself is placement/rollout.ts.
 */
import type { ServiceSpec, UpdatePolicy } from '../spec.ts'
import { DEFAULT_ROLLBACK_POLICY, DEFAULT_UPDATE_POLICY, MAX_REPLICAS, MAX_ROLLOUT_WAIT_MS } from '../spec.ts'
import type { KeyTable } from './support.ts'
import { DEPLOY_EXTENSION, ROLLBACK_CONFIG, UPDATE_CONFIG, checkKeys } from './support.ts'
import type { Ctx, Obj, Path } from './types.ts'
import { describe, err, get, isRecord } from './types.ts'
import { duration, int } from './values.ts'

export interface Rollout {
  update?: UpdatePolicy
  rollback?: UpdatePolicy
  canary?: number
}

const ORDERS = new Set(['stop-first', 'start-first'])
const FAILURE_ACTIONS = new Set(['pause', 'continue', 'rollback'])

/** A wait of the policy (`delay`, `monitor`), bounded so a typo cannot stall a rollout unseen. */
function wait (ctx: Ctx, v: unknown, path: Path): number | undefined {
  const ms = duration(ctx, v, path)
  if (ms === undefined) return undefined
  if (ms > MAX_ROLLOUT_WAIT_MS) {
    err(ctx, path, `must be at most ${MAX_ROLLOUT_WAIT_MS / 3_600_000}h, got ${describe(v)}`)
    return undefined
  }
  return ms
}

/** `max_failure_ratio`: a number from 0 to 1, or its text (the schema allows both). */
function ratio (ctx: Ctx, v: unknown, path: Path): number | undefined {
  let n: number | undefined
  if (typeof v === 'number') n = v
  else if (typeof v === 'string' && /^\s*(\d+(\.\d*)?|\.\d+)\s*$/.test(v)) n = Number(v)
  if (n === undefined || !(n >= 0 && n <= 1)) {
    err(ctx, path, `must be a number from 0 to 1, got ${describe(v)}`)
    return undefined
  }
  return n
}

/** One `update_config` / `rollback_config` mapping, the keys it omits taken from `defaults`. */
function policy (ctx: Ctx, o: Obj, path: Path, table: KeyTable, defaults: UpdatePolicy, isRollback: boolean): UpdatePolicy {
  checkKeys(ctx, o, path, table)
  const out: UpdatePolicy = { ...defaults }
  const parallelism = get(o, 'parallelism')
  if (parallelism !== undefined) out.parallelism = int(ctx, parallelism, [...path, 'parallelism'], 0, MAX_REPLICAS) ?? out.parallelism
  const delay = get(o, 'delay')
  if (delay !== undefined) out.delayMs = wait(ctx, delay, [...path, 'delay']) ?? out.delayMs
  const monitor = get(o, 'monitor')
  if (monitor !== undefined) out.monitorMs = wait(ctx, monitor, [...path, 'monitor']) ?? out.monitorMs
  const ratioRaw = get(o, 'max_failure_ratio')
  if (ratioRaw !== undefined) out.maxFailureRatio = ratio(ctx, ratioRaw, [...path, 'max_failure_ratio']) ?? out.maxFailureRatio
  const order = get(o, 'order')
  if (order !== undefined) {
    if (typeof order === 'string' && ORDERS.has(order)) out.order = order as UpdatePolicy['order']
    else err(ctx, [...path, 'order'], `must be stop-first or start-first, got ${describe(order)}`)
  }
  const action = get(o, 'failure_action')
  if (action !== undefined) {
    const ap = [...path, 'failure_action']
    // a failing rollback has nothing older to go back to (Swarm refuses it too)
    if (isRollback && action === 'rollback') err(ctx, ap, 'a rollback cannot roll back: use pause or continue')
    else if (typeof action === 'string' && FAILURE_ACTIONS.has(action)) out.failureAction = action as UpdatePolicy['failureAction']
    else err(ctx, ap, `must be ${isRollback ? 'pause or continue' : 'pause, continue or rollback'}, got ${describe(action)}`)
  }
  return out
}

/**
 * `deploy.x-p2p-orch: {canary: N}`: N slots take the new generation first, then the rollout waits
 * for `promote` or `rollback`. Returns undefined when absent or after an error.
 */
function canary (ctx: Ctx, v: unknown, path: Path, mode: 'replicated' | 'global' | undefined): number | undefined {
  if (v === undefined) return undefined
  if (!isRecord(v)) {
    err(ctx, path, `must be a mapping like {canary: 1}, got ${describe(v)}`)
    return undefined
  }
  checkKeys(ctx, v, path, DEPLOY_EXTENSION)
  const raw = get(v, 'canary')
  if (raw === undefined) return undefined
  const p = [...path, 'canary']
  const n = int(ctx, raw, p, 1, MAX_REPLICAS)
  if (n === undefined) return undefined
  // a global service has one replica per eligible node, not numbered slots to pick a few of
  if (mode === 'global') {
    err(ctx, p, 'applies to replicated services only (canaries count slots), not to mode: global')
    return undefined
  }
  return n
}

/** The rollout keys of a `deploy:` mapping; a policy the file does not mention stays undefined. */
export function rollout (ctx: Ctx, deploy: Obj, path: Path, mode: 'replicated' | 'global' | undefined): Rollout {
  const out: Rollout = {}
  const update = get(deploy, 'update_config')
  if (isRecord(update)) out.update = policy(ctx, update, [...path, 'update_config'], UPDATE_CONFIG, DEFAULT_UPDATE_POLICY, false)
  const back = get(deploy, 'rollback_config')
  if (isRecord(back)) out.rollback = policy(ctx, back, [...path, 'rollback_config'], ROLLBACK_CONFIG, DEFAULT_ROLLBACK_POLICY, true)
  const n = canary(ctx, get(deploy, 'x-p2p-orch'), [...path, 'x-p2p-orch'], mode)
  if (n !== undefined) out.canary = n
  return out
}

/**
 * Sets the spec's rollout fields. start-first with a fixed host-mode port cannot work: the new
 * replica starts on the old one's node while the old one still holds the host port.
 */
export function applyRollout (ctx: Ctx, r: Rollout, spec: ServiceSpec, deployPath: Path): void {
  for (const [key, field] of [['update_config', 'update'], ['rollback_config', 'rollback']] as const) {
    const p = r[field]
    if (p === undefined) continue
    spec[field] = p
    if (p.order !== 'start-first') continue
    const host = spec.ports.find((port) => port.mode === 'host' && port.published !== undefined)
    if (host !== undefined) {
      err(ctx, [...deployPath, key, 'order'], `start-first cannot be used with host-mode port ${host.published}/${host.protocol}: the new and the old replica would both bind it on one node; use stop-first or an ingress port`)
    }
  }
  if (r.canary !== undefined) {
    spec.canary = r.canary
    const host = spec.ports.find((port) => port.mode === 'host' && port.published !== undefined)
    if (host !== undefined && r.canary >= spec.replicas) {
      err(ctx, [...deployPath, 'x-p2p-orch', 'canary'], `blue-green (canary ${r.canary} of ${spec.replicas} replicas) cannot be used with host-mode port ${host.published}/${host.protocol}: the new set would bind it beside the old one; use a smaller canary or an ingress port`)
    }
  }
}
