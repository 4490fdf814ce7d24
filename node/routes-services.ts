/**
 * Control API routes for services: deploy (with a plan), scale, list, inspect, ps, rm, logs.
 * Write routes answer with the records to write; the caller signs them with its credential and
 * posts them to /records (writes.ts).
 */
import { isDeepStrictEqual } from 'node:util'
import { key, type ScaleRecord, type ServiceRecord } from '../protocol/keys.ts'
import { isMeshPort, MAX_REPLICAS, type ServiceSpec } from '../protocol/spec.ts'
import { specError } from '../protocol/validate.ts'
import type { DeployRequest, DeployResponse, InspectResponse, ScaleRequest, ScaleResponse, ServiceChange, Signable } from './api/types.ts'
import type { ControlServer } from './control.ts'
import { services, type ServiceState } from './desired.ts'
import { updatedRecord } from './rollout-writes.ts'
import { UserError } from './errors.ts'
import type { P2pNode } from './node.ts'
import { prepare, type Write } from './writes.ts'
import type { Runtime } from './runtime/types.ts'
import { serviceViews, taskViews } from './tasks-view.ts'

/** Lines of log returned when the caller asks for none in particular. */
const DEFAULT_LOG_TAIL = 100
/** Largest log tail served in one response. */
const MAX_LOG_TAIL = 10_000

function describeDiff (a: ServiceSpec, b: ServiceSpec): string[] {
  const out: string[] = []
  for (const k of new Set([...Object.keys(a), ...Object.keys(b)]) as Set<keyof ServiceSpec>) {
    if (k === 'replicas' || isDeepStrictEqual(a[k], b[k])) continue
    const show = (v: unknown): string => { const s = JSON.stringify(v) ?? 'unset'; return s.length > 60 ? s.slice(0, 57) + '...' : s }
    out.push(`${k}: ${show(a[k])} → ${show(b[k])}`)
  }
  return out
}

function serviceRecord (node: P2pNode, name: string): ServiceRecord | null | undefined {
  return node.states.state.value<ServiceRecord | null>(key.svc(name))
}

function requireService (node: P2pNode, name: string): ServiceRecord {
  const rec = serviceRecord(node, name)
  if (rec === undefined || rec === null) {
    const known = services(node.states.state).map((s) => s.spec.name)
    throw new UserError(`no service named "${name}"${known.length > 0 ? ` (services: ${known.join(', ')})` : ' (deploy one with `p2p-orch deploy -f FILE`)'}`)
  }
  return rec
}

function currentReplicas (node: P2pNode, name: string, rec: ServiceRecord): number {
  return node.states.state.value<ScaleRecord>(key.scale(name))?.replicas ?? rec.spec.replicas
}

/**
 * Ingress ports open on every node, so a published port/protocol belongs to one service in the
 * whole cluster. A service in the request may keep its own port; one held by any other service
 * (another stack's, or one of this stack the request leaves in place) refuses the deploy.
 */
function publishedPortConflict (node: P2pNode, incoming: ServiceSpec[], prunedStack: string | undefined): void {
  const replaced = new Set(incoming.map((s) => s.name))
  const held = new Map<string, string>()
  for (const s of services(node.states.state)) {
    if (replaced.has(s.spec.name) || s.spec.stack === prunedStack) continue
    for (const p of s.spec.ports) if (isMeshPort(p)) held.set(`${p.published as number}/${p.protocol}`, s.spec.name)
  }
  for (const spec of incoming) {
    for (const p of spec.ports) {
      if (p.published === undefined) continue
      const owner = held.get(`${p.published}/${p.protocol}`)
      if (owner !== undefined && (isMeshPort(p) || node.states.state.value<ServiceRecord | null>(key.svc(owner))?.spec.ports.some((q) => isMeshPort(q) && q.published === p.published && q.protocol === p.protocol) === true)) {
        throw new UserError(`published port ${p.published}/${p.protocol} of service "${spec.name}" is already used by service "${owner}"; choose another port, or remove "${owner}" first`)
      }
    }
  }
}

export function registerServiceRoutes (control: ControlServer, node: P2pNode, runtime: Runtime | undefined): void {
  control.route('POST', '/deploy', ({ body }): DeployResponse => {
    const req = body as DeployRequest
    if (req === null || typeof req !== 'object' || !Array.isArray(req.services) || typeof req.stack !== 'string') throw new UserError('deploy request needs a stack name and services')
    const changes: ServiceChange[] = []
    const writes: Write[] = []
    const names = new Set<string>()
    for (const spec of req.services) {
      const err = specError(spec)
      if (err !== null) throw new UserError(`service ${String((spec as ServiceSpec)?.name)}: ${err}`)
      if (spec.stack !== req.stack) throw new UserError(`service ${spec.name} says stack ${spec.stack}, the request says ${req.stack}`)
      // a dry run comes before the CLI creates the stack's secrets and configs
      if (req.dryRun !== true) for (const [kind, refs] of [['secret', spec.secrets], ['config', spec.configs]] as const) {
        for (const f of refs ?? []) {
          if (node.states.state.value(kind === 'secret' ? key.secret(f.source) : key.config(f.source)) == null) {
            throw new UserError(`service ${spec.name} uses ${kind} "${f.source}", which does not exist: create it with \`p2p-orch ${kind} create ${f.source} FILE\``)
          }
        }
      }
      if (names.has(spec.name)) throw new UserError(`service ${spec.name} appears twice`)
      names.add(spec.name)
      const prev = serviceRecord(node, spec.name)
      if (prev != null && prev.spec.stack !== req.stack) {
        throw new UserError(`service name "${spec.name}" is already used by stack "${prev.spec.stack}"; stack "${req.stack}" cannot deploy it (rename the service or remove it from stack "${prev.spec.stack}")`)
      }
      if (prev == null) {
        const generation = 1
        changes.push({ service: spec.name, action: 'create', replicas: spec.replicas, generation, details: [`image ${spec.image}`] })
        writes.push({ k: key.svc(spec.name), value: { spec, generation, rollout: { kind: 'update', startedAt: Date.now(), epoch: 0 } } satisfies ServiceRecord })
        writes.push({ k: key.scale(spec.name), value: { replicas: spec.replicas } satisfies ScaleRecord })
        continue
      }
      const svc = services(node.states.state).find((x) => x.spec.name === spec.name) as ServiceState
      const details = describeDiff(svc.spec, spec)
      const replicasBefore = currentReplicas(node, spec.name, prev)
      if (replicasBefore !== spec.replicas && spec.mode === 'replicated') details.push(`replicas: ${replicasBefore} → ${spec.replicas}`)
      const next = updatedRecord(svc, spec, Date.now())
      const generation = next?.generation ?? svc.generation
      const rollout = next !== null && next.generation !== prev.generation
      changes.push({ service: spec.name, action: details.length === 0 && next === null ? 'unchanged' : rollout ? 'update' : 'scale', replicas: spec.replicas, generation, details })
      if (next !== null) writes.push({ k: key.svc(spec.name), value: next })
      if (replicasBefore !== spec.replicas) writes.push({ k: key.scale(spec.name), value: { replicas: spec.replicas } satisfies ScaleRecord })
    }
    publishedPortConflict(node, req.services, req.prune === true ? req.stack : undefined)
    if (req.prune === true) {
      for (const s of services(node.states.state)) {
        if (s.spec.stack !== req.stack || names.has(s.spec.name)) continue
        changes.push({ service: s.spec.name, action: 'remove', replicas: 0, generation: s.generation, details: ['not in the file (--prune)'] })
        writes.push({ k: key.svc(s.spec.name), value: null })
      }
    }
    return { stack: req.stack, changes, ...(req.dryRun !== true ? { sign: prepare(node, writes) } : {}) }
  })

  control.route('POST', '/scale', ({ body }): ScaleResponse => {
    const req = body as ScaleRequest
    if (req === null || typeof req !== 'object' || req.scales === null || typeof req.scales !== 'object') throw new UserError('scale request needs SERVICE=REPLICAS pairs')
    const changes: ServiceChange[] = []
    for (const [name, n] of Object.entries(req.scales)) {
      const rec = requireService(node, name)
      if (!Number.isSafeInteger(n) || n < 0 || n > MAX_REPLICAS) throw new UserError(`replicas for ${name} must be a whole number from 0 to ${MAX_REPLICAS}, got ${JSON.stringify(n)}`)
      if (rec.spec.mode === 'global') throw new UserError(`${name} is a global service (one replica per eligible node); it cannot be scaled`)
      changes.push({ service: name, action: 'scale', replicas: n, generation: rec.generation, details: [`replicas: ${currentReplicas(node, name, rec)} → ${n}`] })
    }
    const sign = req.dryRun !== true ? prepare(node, changes.map((c) => ({ k: key.scale(c.service), value: { replicas: c.replicas } satisfies ScaleRecord }))) : undefined
    return { changes, ...(sign !== undefined ? { sign } : {}) }
  })

  control.route('GET', '/services', () => serviceViews(node.states.state))

  control.route('GET', '/services/:name', ({ params }): InspectResponse => {
    const rec = requireService(node, params.name)
    const names = new Map(taskViews(node.states.state).map((t) => [t.node, t.nodeName]))
    const routes = node.mesh.routes(params.name).map((r) => ({
      slot: r.slot, node: r.node, nodeName: names.get(r.node) ?? '', container: r.container, generation: r.generation, local: r.local, connections: r.connections
    }))
    return { spec: rec.spec, generation: rec.generation, replicas: currentReplicas(node, params.name, rec), tasks: taskViews(node.states.state, params.name), routes }
  })

  control.route('DELETE', '/services/:name', ({ params }): { removed: string } & Signable => {
    requireService(node, params.name)
    return { removed: params.name, sign: prepare(node, [{ k: key.svc(params.name), value: null }]) }
  })

  control.route('GET', '/ps', ({ query }) => {
    const service = query.get('service') ?? undefined
    if (service !== undefined) requireService(node, service)
    return taskViews(node.states.state, service)
  })

  control.route('GET', '/services/:name/logs', async ({ params, query }) => {
    requireService(node, params.name)
    if (runtime === undefined) throw new UserError('this node runs no containers (--no-runtime); ask a node that runs the service')
    const tail = Math.min(Number(query.get('tail') ?? DEFAULT_LOG_TAIL) || DEFAULT_LOG_TAIL, MAX_LOG_TAIL)
    const local = taskViews(node.states.state, params.name).filter((t) => t.node === node.id && t.container !== '')
    const remote = taskViews(node.states.state, params.name).filter((t) => t.node !== node.id && t.container !== '').map((t) => t.nodeName)
    const logs = await Promise.all(local.map(async (t) => ({ slot: t.slot, container: t.container, text: await runtime.logs(t.container, tail).catch((e: Error) => `(${e.message})`) })))
    return { logs, remoteNodes: [...new Set(remote)] }
  })
}
