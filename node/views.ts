/**
 * Read models built from the merged state for the control API (and the reconciler).
 */
import { compareStrings } from '../protocol/order.ts'
import { key, type MemberRecord, type MeshReport, type NodeConfig, type NodeInfo } from '../protocol/keys.ts'
import type { ClusterState } from '../protocol/state.ts'
import type { NodeView } from './api/types.ts'
import { NO_HOST_ACCESS } from '../protocol/host-access.ts'

export function nodeViews (state: ClusterState, self: string): NodeView[] {
  const out: NodeView[] = []
  for (const [id, info] of state.family<NodeInfo>('node')) {
    const member = state.value<MemberRecord>(key.member(id))
    const cfg = state.value<NodeConfig & { removed?: boolean }>(key.nodecfg(id))
    const status = member?.status ?? 'alive'
    if (cfg?.removed === true && (status === 'dead' || status === 'left')) continue
    out.push({
      id,
      name: info.name,
      status,
      addrs: info.addrs,
      labels: { ...info.labels, ...(cfg?.labels ?? {}) },
      availability: cfg?.availability ?? 'active',
      incarnation: state.get(key.member(id))?.t[0] ?? 0,
      cpus: info.cpus,
      memoryBytes: info.memoryBytes,
      version: info.version,
      joinedAt: info.joinedAt,
      hostAccess: info.hostAccess ?? NO_HOST_ACCESS,
      self: id === self,
      portErrors: (state.value<MeshReport>(key.mesh(id))?.ports ?? []).filter((p) => p.error !== '').map((p) => `${p.service} ${p.port}/${p.protocol}: ${p.error}`)
    })
  }
  return out.sort((a, b) => compareStrings(a.name, b.name) || compareStrings(a.id, b.id))
}
