/**
 * Control API routes for the cluster core: info, nodes, join tokens, node removal, metrics.
 */
import { key, type NodeConfig } from '../protocol/keys.ts'
import type { InfoResponse, JoinTokenResponse, NodeView } from './api/types.ts'
import type { ControlServer } from './control.ts'
import { UserError } from './errors.ts'
import type { P2pNode } from './node.ts'
import { VERSION } from './version.ts'
import { nodeViews } from './views.ts'

/** Resolve a node by id, id prefix or name; ambiguous or unknown is a user error. */
export function findNode (node: P2pNode, ref: string): NodeView {
  const all = nodeViews(node.states.state, node.id)
  const exact = all.filter((n) => n.id === ref || n.name === ref)
  const matches = exact.length > 0 ? exact : all.filter((n) => n.id.startsWith(ref))
  if (matches.length === 0) throw new UserError(`no node named or with id "${ref}" (see \`p2p-orch nodes\`)`)
  if (matches.length > 1) throw new UserError(`"${ref}" matches ${matches.length} nodes (${matches.map((n) => n.id.slice(-8)).join(', ')}); use the full id`)
  return matches[0]
}

export function operatorOf (node: P2pNode): NonNullable<P2pNode['identity']['operator']> {
  const op = node.identity.operator
  if (op === null) throw new UserError('this node holds no operator key, so it cannot sign changes; run the command on a node that joined with a full token (`p2p-orch join-token`), or use --api to reach one')
  return op
}

export function registerClusterRoutes (control: ControlServer, node: P2pNode): void {
  control.route('GET', '/info', (): InfoResponse => ({
    id: node.id,
    name: node.name,
    clusterId: node.identity.cluster.clusterId,
    addrs: node.host.getMultiaddrs().map(String),
    canWrite: node.identity.operator !== null,
    version: VERSION
  }))

  control.route('GET', '/nodes', () => nodeViews(node.states.state, node.id))

  control.route('GET', '/join-token', ({ query }): JoinTokenResponse => {
    const worker = query.get('worker') === '1'
    if (!worker && node.identity.operatorPem === null) throw new UserError('this node holds no operator key, so it can only hand out --worker tokens')
    const token = node.joinToken(!worker)
    return { token, command: `p2p-orch agent --data DIR --join ${token}` }
  })

  control.route('DELETE', '/nodes/:ref', ({ params, query }) => {
    const target = findNode(node, params.ref)
    if (target.self) throw new UserError('a node cannot remove itself; stop it (it announces that it left) and run `node rm` on another node')
    if (target.status !== 'dead' && target.status !== 'left' && query.get('force') !== '1') {
      throw new UserError(`node ${target.name} is ${target.status}; only dead or left nodes can be removed (stop it first, or use --force)`)
    }
    const cfg = node.states.state.value<NodeConfig>(key.nodecfg(target.id))
    node.states.write(key.nodecfg(target.id), { labels: cfg?.labels ?? {}, availability: cfg?.availability ?? 'active', removed: true }, operatorOf(node))
    return { removed: target.id }
  })

  control.route('PATCH', '/nodes/:ref', ({ params, body }) => {
    const target = findNode(node, params.ref)
    const b = (body ?? {}) as { availability?: string, labelAdd?: Record<string, string>, labelRm?: string[] }
    if (b.availability !== undefined && !['active', 'drain', 'pause'].includes(b.availability)) throw new UserError(`availability must be active, drain or pause, not "${b.availability}"`)
    const cfg = node.states.state.value<NodeConfig>(key.nodecfg(target.id))
    const labels = { ...(cfg?.labels ?? {}), ...(b.labelAdd ?? {}) }
    for (const l of b.labelRm ?? []) delete labels[l]
    const next: NodeConfig = { labels, availability: (b.availability as NodeConfig['availability']) ?? cfg?.availability ?? 'active' }
    node.states.write(key.nodecfg(target.id), next, operatorOf(node))
    return next
  })

  control.route('GET', '/metrics', ({ res }) => {
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' })
    res.end(node.counters.prometheus())
  })
}
