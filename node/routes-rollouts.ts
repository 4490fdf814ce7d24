/**
 * Control API routes for rollouts: `update` (image, environment, replicas, pause, resume),
 * `rollback`, `promote`, and the status of every service's rollout. Write routes answer with the
 * records to write (rollout-writes.ts); the caller signs them with its credential.
 */
import { key, type ScaleRecord } from '../protocol/keys.ts'
import { isImageReference, MAX_REPLICAS, type ServiceSpec } from '../protocol/spec.ts'
import { specError } from '../protocol/validate.ts'
import type { RolloutActionRequest, RolloutView, ServiceChange, UpdateRequest, UpdateResponse } from './api/types.ts'
import type { ControlServer } from './control.ts'
import { services, type ServiceState } from './desired.ts'
import { UserError } from './errors.ts'
import type { P2pNode } from './node.ts'
import { pausedRecord, promotedRecord, rolledBackRecord, updatedRecord } from './rollout-writes.ts'
import { rolloutView } from './rollout-view.ts'
import { prepare, type Write } from './writes.ts'

/** Environment variable names as a shell takes them; the value may be anything. */
const ENV_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_.-]*$/

function serviceState (node: P2pNode, name: unknown): ServiceState {
  if (typeof name !== 'string' || name === '') throw new UserError('name the service, e.g. `p2p-orch update web --image busybox:1.37`')
  const all = services(node.states.state)
  const svc = all.find((s) => s.spec.name === name)
  if (svc === undefined) {
    throw new UserError(`no service named "${name}"${all.length > 0 ? ` (services: ${all.map((s) => s.spec.name).join(', ')})` : ' (deploy one with `p2p-orch deploy -f FILE`)'}`)
  }
  return svc
}

/** The running spec with the request's changes; every bad part is refused before anything is written. */
function changedSpec (svc: ServiceState, req: UpdateRequest): { spec: ServiceSpec, details: string[] } {
  const spec: ServiceSpec = { ...svc.spec, env: [...svc.spec.env] }
  const details: string[] = []
  if (req.image !== undefined) {
    if (typeof req.image !== 'string' || !isImageReference(req.image)) throw new UserError(`"${String(req.image)}" is not a valid image reference (e.g. busybox:1.37 or registry.local:5000/team/web:2)`)
    if (req.image !== spec.image) details.push(`image: ${spec.image} → ${req.image}`)
    spec.image = req.image
  }
  const env = new Map(spec.env.map((e) => { const i = e.indexOf('='); return [i < 0 ? e : e.slice(0, i), e] }))
  for (const e of req.envRm ?? []) {
    if (typeof e !== 'string' || !ENV_NAME_PATTERN.test(e)) throw new UserError(`--env-rm takes a variable name, got "${String(e)}"`)
    if (env.delete(e)) details.push(`env: -${e}`)
  }
  for (const e of req.env ?? []) {
    const i = typeof e === 'string' ? e.indexOf('=') : -1
    if (i <= 0 || !ENV_NAME_PATTERN.test(e.slice(0, i))) throw new UserError(`--env takes KEY=VALUE, got "${String(e)}"`)
    if (env.get(e.slice(0, i)) !== e) details.push(`env: ${e.slice(0, i)}=…`)
    env.set(e.slice(0, i), e)
  }
  // sorted by key, as the Compose translation writes them, so equal specs encode equally
  spec.env = [...env.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, v]) => v)
  const err = specError(spec)
  if (err !== null) throw new UserError(`${spec.name}: ${err}`)
  return { spec, details }
}

export function registerRolloutRoutes (control: ControlServer, node: P2pNode): void {
  control.route('POST', '/update', ({ body }): UpdateResponse => {
    const req = (body ?? {}) as UpdateRequest
    const svc = serviceState(node, req.service)
    const name = svc.spec.name
    const now = Date.now()
    const writes: Write[] = []
    let details: string[] = []
    let generation = svc.generation
    if (req.pause === true || req.resume === true) {
      if (req.pause === true && req.resume === true) throw new UserError('--pause and --resume exclude each other')
      writes.push({ k: key.svc(name), value: pausedRecord(svc, req.pause === true, now) })
      details.push(req.pause === true ? 'rollout paused' : 'rollout resumed')
    } else {
      const changed = changedSpec(svc, req)
      details = changed.details
      const next = updatedRecord(svc, changed.spec, now)
      if (next !== null) {
        writes.push({ k: key.svc(name), value: next })
        generation = next.generation
      }
    }
    if (req.replicas !== undefined) {
      if (!Number.isSafeInteger(req.replicas) || req.replicas < 0 || req.replicas > MAX_REPLICAS) throw new UserError(`--replicas must be a whole number from 0 to ${MAX_REPLICAS}, got ${JSON.stringify(req.replicas)}`)
      if (svc.spec.mode === 'global') throw new UserError(`${name} is a global service (one replica per eligible node); it cannot be scaled`)
      if (req.replicas !== svc.replicas) {
        details.push(`replicas: ${svc.replicas} → ${req.replicas}`)
        writes.push({ k: key.scale(name), value: { replicas: req.replicas } satisfies ScaleRecord })
      }
    }
    const replicas = req.replicas ?? svc.replicas
    const change: ServiceChange = { service: name, action: writes.length === 0 ? 'unchanged' : generation !== svc.generation ? 'update' : 'scale', replicas, generation, details }
    return { change, ...(req.dryRun !== true && writes.length > 0 ? { sign: prepare(node, writes) } : {}) }
  })

  control.route('POST', '/rollback', ({ body }): UpdateResponse => {
    const svc = serviceState(node, (body as RolloutActionRequest | null)?.service)
    const rec = rolledBackRecord(svc, Date.now())
    const change: ServiceChange = { service: svc.spec.name, action: 'update', replicas: svc.replicas, generation: rec.generation, details: [`generation ${svc.record.generation} → ${rec.generation} (image ${rec.spec.image})`] }
    return { change, sign: prepare(node, [{ k: key.svc(svc.spec.name), value: rec }]) }
  })

  control.route('POST', '/promote', ({ body }): UpdateResponse => {
    const svc = serviceState(node, (body as RolloutActionRequest | null)?.service)
    const rec = promotedRecord(svc)
    const change: ServiceChange = { service: svc.spec.name, action: 'update', replicas: svc.replicas, generation: svc.generation, details: ['canary promoted'] }
    return { change, sign: prepare(node, [{ k: key.svc(svc.spec.name), value: rec }]) }
  })

  control.route('GET', '/rollouts', (): RolloutView[] => services(node.states.state).map((s) => rolloutView(node.states.state, s, Date.now())))

  control.route('GET', '/rollouts/:name', ({ params }): RolloutView => rolloutView(node.states.state, serviceState(node, params.name), Date.now()))
}
