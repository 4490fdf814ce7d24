/**
 * `ps` and `services` read models: desired slots (placement) joined with what each node reports
 * running. Reports of dead or departed nodes are ignored: observed state dies with its owner.
 */
import { compareStrings } from '../protocol/order.ts'
import { key, type MemberRecord, type MeshReport, type TaskStatus } from '../protocol/keys.ts'
import { taskReports } from '../protocol/tasks.ts'
import { isMeshPort, type PortSpec } from '../protocol/spec.ts'
import type { ClusterState } from '../protocol/state.ts'
import type { PortError, ServiceView, TaskView } from './api/types.ts'
import { placement, services } from './desired.ts'
import { nodeViews } from './views.ts'

function liveReports (state: ClusterState): Map<string, TaskStatus[]> {
  const out = new Map<string, TaskStatus[]>()
  for (const [id, tasks] of taskReports(state)) {
    const status = state.value<MemberRecord>(key.member(id))?.status
    if (status === 'dead' || status === 'left') continue
    out.set(id, tasks)
  }
  return out
}

export function taskViews (state: ClusterState, service?: string): TaskView[] {
  const names = new Map(nodeViews(state, '').map((n) => [n.id, n.name]))
  const svcs = new Map(services(state).map((s) => [s.spec.name, s]))
  const reports = liveReports(state)
  const claimed = new Set<TaskStatus>()
  const out: TaskView[] = []
  for (const a of placement(state).slots.values()) {
    if (service !== undefined && a.service !== service) continue
    const svc = svcs.get(a.service)!
    const t = a.node === null ? undefined : reports.get(a.node)?.find((x) => x.service === a.service && x.slot === a.slot && x.desired !== 'shutdown')
    if (t !== undefined) claimed.add(t)
    out.push({
      service: a.service,
      slot: a.slot,
      node: a.node ?? '',
      nodeName: a.node === null ? '' : names.get(a.node) ?? '',
      desired: 'running',
      state: t?.state ?? 'pending',
      health: t?.health ?? 'none',
      container: t?.container ?? '',
      generation: t?.generation ?? svc.generation,
      error: a.node === null ? (a.reason ?? 'no node can run it') : t?.error ?? '',
      startedAt: t?.startedAt ?? 0,
      history: t?.history ?? []
    })
  }
  for (const [nodeId, tasks] of reports) {
    for (const t of tasks) {
      if (claimed.has(t) || (service !== undefined && t.service !== service) || !svcs.has(t.service)) continue
      out.push({ ...t, node: nodeId, nodeName: names.get(nodeId) ?? '', desired: 'shutdown' })
    }
  }
  return out.sort((x, y) => compareStrings(x.service, y.service) || x.slot - y.slot || compareStrings(x.nodeName, y.nodeName))
}

/** How `services` shows a port: mesh ports as published->target, host-bound ones marked. */
export function describePort (p: PortSpec): string {
  if (isMeshPort(p)) return `${p.published as number}->${p.target}/${p.protocol}${p.proxyProtocol === true ? ' (proxy-protocol)' : ''}`
  return p.published !== undefined ? `${p.published}->${p.target}/${p.protocol} (host)` : `${p.target}/${p.protocol} (host, ephemeral)`
}

function portErrors (state: ClusterState): PortError[] {
  const names = new Map(nodeViews(state, '').map((n) => [n.id, n]))
  const out: PortError[] = []
  for (const [id, report] of state.family<MeshReport>('mesh')) {
    const n = names.get(id)
    if (n === undefined || n.status === 'dead' || n.status === 'left') continue
    for (const p of report.ports) if (p.error !== '') out.push({ node: id, nodeName: n.name, port: p.port, protocol: p.protocol, error: p.error })
  }
  return out
}

export function serviceViews (state: ClusterState): ServiceView[] {
  const tasks = taskViews(state)
  const errors = portErrors(state)
  return services(state).map((s) => {
    const mine = tasks.filter((t) => t.service === s.spec.name && t.desired === 'running')
    return {
      name: s.spec.name,
      stack: s.spec.stack,
      image: s.spec.image,
      mode: s.spec.mode,
      replicas: s.spec.mode === 'global' ? mine.length : s.replicas,
      running: mine.filter((t) => t.state === 'running' && t.generation === s.generation).length,
      generation: s.generation,
      ports: s.spec.ports.map(describePort),
      portErrors: errors.filter((e) => s.spec.ports.some((p) => isMeshPort(p) && p.published === e.port && p.protocol === e.protocol))
    }
  })
}
