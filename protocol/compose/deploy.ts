/** `healthcheck:` and `deploy:` (mode, replicas, resources, restart policy, placement; the rollout keys in rollout.ts), and `restart:`. */
import type { ConstraintSpec, HealthcheckSpec, ResourcesSpec, RestartPolicySpec } from '../spec.ts'
import { DEFAULT_RESTART_POLICY, MAX_REPLICAS } from '../spec.ts'
import type { Rollout } from './rollout.ts'
import { rollout } from './rollout.ts'
import type { KeyTable } from './support.ts'
import { DEPLOY, HEALTHCHECK, LIMITS, PLACEMENT, RESERVATIONS, RESOURCES, RESTART_POLICY, checkKeys } from './support.ts'
import type { Ctx, Path } from './types.ts'
import { describe, err, get, isRecord, listItems, report } from './types.ts'
import { bool, bytes, cpus, duration, int } from './values.ts'

const HEALTH_DEFAULTS = { intervalMs: 30_000, timeoutMs: 30_000, retries: 3, startPeriodMs: 0 }

export function healthcheck (ctx: Ctx, v: unknown, path: Path): HealthcheckSpec | undefined {
  if (!isRecord(v)) return undefined
  checkKeys(ctx, v, path, HEALTHCHECK)
  const disableRaw = get(v, 'disable')
  const disable = disableRaw === undefined ? false : (bool(ctx, disableRaw, [...path, 'disable']) ?? false)
  let test: string[] = []
  const testRaw = get(v, 'test')
  if (disable) {
    test = ['NONE']
    if (testRaw !== undefined) report(ctx, 'warning', [...path, 'test'], 'ignored: the healthcheck is disabled', 'key')
  } else if (typeof testRaw === 'string') {
    if (testRaw.trim() === '') err(ctx, [...path, 'test'], 'must not be empty')
    else test = ['CMD-SHELL', testRaw]
  } else if (Array.isArray(testRaw)) {
    const list = testRaw.map(String)
    const head = list[0]
    if (head !== 'NONE' && head !== 'CMD' && head !== 'CMD-SHELL') {
      err(ctx, [...path, 'test'], `must start with "CMD", "CMD-SHELL" or "NONE", got ${describe(head ?? null)}`)
    } else if (head !== 'NONE' && list.length < 2) {
      err(ctx, [...path, 'test'], `${head} needs a command`)
    } else test = list
  }
  const dur = (k: string, def: number): number => {
    const raw = get(v, k)
    return raw === undefined ? def : (duration(ctx, raw, [...path, k]) ?? def)
  }
  const retriesRaw = get(v, 'retries')
  return {
    test,
    intervalMs: dur('interval', HEALTH_DEFAULTS.intervalMs),
    timeoutMs: dur('timeout', HEALTH_DEFAULTS.timeoutMs),
    retries: retriesRaw === undefined ? HEALTH_DEFAULTS.retries : (int(ctx, retriesRaw, [...path, 'retries'], 0, 1_000_000) ?? HEALTH_DEFAULTS.retries),
    startPeriodMs: dur('start_period', HEALTH_DEFAULTS.startPeriodMs)
  }
}

function resources (ctx: Ctx, v: unknown, path: Path, table: KeyTable): ResourcesSpec {
  if (!isRecord(v)) return {}
  checkKeys(ctx, v, path, table)
  const out: ResourcesSpec = {}
  const c = get(v, 'cpus')
  if (c !== undefined) {
    const n = cpus(ctx, c, [...path, 'cpus'])
    if (n !== undefined) out.cpus = n
  }
  const m = get(v, 'memory')
  if (m !== undefined) {
    const n = bytes(ctx, m, [...path, 'memory'])
    if (n !== undefined) out.memoryBytes = n
  }
  return out
}

const RESTART_CONDITIONS = new Set(['none', 'on-failure', 'any'])

function restartPolicy (ctx: Ctx, v: unknown, path: Path): RestartPolicySpec | undefined {
  if (!isRecord(v)) return undefined
  checkKeys(ctx, v, path, RESTART_POLICY)
  const out: RestartPolicySpec = { ...DEFAULT_RESTART_POLICY }
  const cond = get(v, 'condition')
  if (cond !== undefined) {
    if (typeof cond === 'string' && RESTART_CONDITIONS.has(cond)) out.condition = cond as RestartPolicySpec['condition']
    else err(ctx, [...path, 'condition'], `must be none, on-failure or any, got ${describe(cond)}`)
  }
  const delay = get(v, 'delay')
  if (delay !== undefined) out.delayMs = duration(ctx, delay, [...path, 'delay']) ?? out.delayMs
  const attempts = get(v, 'max_attempts')
  if (attempts !== undefined) out.maxAttempts = int(ctx, attempts, [...path, 'max_attempts'], 0, Number.MAX_SAFE_INTEGER) ?? out.maxAttempts
  const window = get(v, 'window')
  if (window !== undefined) out.windowMs = duration(ctx, window, [...path, 'window']) ?? out.windowMs
  return out
}

/** Service-level `restart:` (no | always | on-failure[:N] | unless-stopped). */
export function restartShorthand (ctx: Ctx, v: unknown, path: Path): RestartPolicySpec | undefined {
  if (v === false) return { ...DEFAULT_RESTART_POLICY, condition: 'none' }
  if (typeof v === 'string') {
    const s = v.trim()
    if (s === 'no') return { ...DEFAULT_RESTART_POLICY, condition: 'none' }
    if (s === 'always' || s === 'unless-stopped') return { ...DEFAULT_RESTART_POLICY, condition: 'any' }
    const m = /^on-failure(?::(\d+))?$/.exec(s)
    if (m) return { ...DEFAULT_RESTART_POLICY, condition: 'on-failure', maxAttempts: m[1] === undefined ? 0 : Number(m[1]) }
  }
  err(ctx, path, `must be "no", "always", "on-failure[:N]" or "unless-stopped", got ${describe(v)}`)
  return undefined
}

const CONSTRAINT_RE = /^\s*node\.(labels\.([^\s=!]+)|name|hostname|id)\s*(==|!=)\s*(\S(?:.*\S)?)\s*$/s

export function parseConstraint (s: string): ConstraintSpec | undefined {
  const m = CONSTRAINT_RE.exec(s)
  if (!m) return undefined
  const attribute = m[2] !== undefined ? `labels.${m[2]}` : m[1] === 'id' ? 'id' : 'name'
  return { attribute, op: m[3] as '==' | '!=', value: m[4] }
}

function constraints (ctx: Ctx, v: unknown, path: Path): ConstraintSpec[] {
  return listItems(v, path, (item, p) => {
    const c = parseConstraint(String(item))
    if (c === undefined) err(ctx, p, `unsupported constraint ${describe(item)}: expected node.labels.KEY, node.name, node.hostname or node.id, then == or !=, then a value`)
    return c
  })
}

interface Deploy {
  mode?: 'replicated' | 'global'
  replicas?: number
  limits: ResourcesSpec
  reservations: ResourcesSpec
  restartPolicy?: RestartPolicySpec
  constraints: ConstraintSpec[]
  maxReplicasPerNode: number
  rollout: Rollout
}

export function deploy (ctx: Ctx, v: unknown, path: Path): Deploy {
  const out: Deploy = { limits: {}, reservations: {}, constraints: [], maxReplicasPerNode: 0, rollout: {} }
  if (!isRecord(v)) return out
  checkKeys(ctx, v, path, DEPLOY)
  const mode = get(v, 'mode')
  if (mode !== undefined) {
    if (mode === 'replicated' || mode === 'global') out.mode = mode
    else if (mode === 'replicated-job' || mode === 'global-job') err(ctx, [...path, 'mode'], `not supported yet: ${mode}`)
    else err(ctx, [...path, 'mode'], `must be replicated or global, got ${describe(mode)}`)
  }
  const replicas = get(v, 'replicas')
  if (replicas !== undefined) {
    out.replicas = int(ctx, replicas, [...path, 'replicas'], 0, MAX_REPLICAS)
    if (out.mode === 'global') report(ctx, 'warning', [...path, 'replicas'], 'ignored in global mode (one replica per eligible node)', 'key')
  }
  const res = get(v, 'resources')
  if (isRecord(res)) {
    const rp = [...path, 'resources']
    checkKeys(ctx, res, rp, RESOURCES)
    out.limits = resources(ctx, get(res, 'limits'), [...rp, 'limits'], LIMITS)
    out.reservations = resources(ctx, get(res, 'reservations'), [...rp, 'reservations'], RESERVATIONS)
  }
  const rp = restartPolicy(ctx, get(v, 'restart_policy'), [...path, 'restart_policy'])
  if (rp !== undefined) out.restartPolicy = rp
  const placement = get(v, 'placement')
  if (isRecord(placement)) {
    const pp = [...path, 'placement']
    checkKeys(ctx, placement, pp, PLACEMENT)
    out.constraints = constraints(ctx, get(placement, 'constraints'), [...pp, 'constraints'])
    const max = get(placement, 'max_replicas_per_node')
    if (max !== undefined) out.maxReplicasPerNode = int(ctx, max, [...pp, 'max_replicas_per_node'], 0, MAX_REPLICAS) ?? 0
  }
  out.rollout = rollout(ctx, v, path, out.mode)
  return out
}
