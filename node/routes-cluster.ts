/**
 * Control API routes for the cluster core: info, nodes, join tokens, node removal, operator
 * keys, signed records, metrics. Write routes answer with the records to sign (writes.ts).
 */
import { FOUNDER_KEY_NAME, key, KEY_NAME_PATTERN, ROLES, type AdmitRecord, type KeyRecord, type NodeConfig, type Role } from '../protocol/keys.ts'
import { JOIN_KEY_PREFIX } from './admission.ts'
import { parseOperatorWriter } from '../protocol/sign.ts'
import type { CreateKeyRequest, InfoResponse, JoinTokenResponse, KeyView, MintJoinKeyRequest, MintJoinKeyResponse, NodeView, Signable } from './api/types.ts'
import type { ControlServer } from './control.ts'
import { UserError } from './errors.ts'
import type { P2pNode } from './node.ts'
import { VERSION } from './version.ts'
import { nodeViews } from './views.ts'
import { prepare, submit } from './writes.ts'

/** Longest --ttl accepted: ten years. */
const MAX_KEY_TTL_MS = 10 * 365 * 24 * 3600 * 1000

export function keyViews (node: P2pNode): KeyView[] {
  const founder = parseOperatorWriter(node.identity.cluster.operator)
  const wall = Date.now()
  const out: KeyView[] = founder === null
    ? []
    : [{ name: FOUNDER_KEY_NAME, role: 'admin', publicKey: founder.hex, founder: true, updatedAt: 0, expired: false, revoked: false }]
  for (const [name, v] of node.states.state.family<KeyRecord>('key')) {
    const rec = node.states.state.get(key.key(name))
    out.push({
      name,
      role: v.role,
      publicKey: v.publicKey,
      founder: false,
      updatedAt: rec?.t[0] ?? 0,
      ...(v.expiresAt !== undefined ? { expiresAt: v.expiresAt } : {}),
      expired: v.expiresAt !== undefined && wall >= v.expiresAt,
      revoked: v.revoked === true
    })
  }
  return out
}

/** Resolve a node by id, id prefix or name; ambiguous or unknown is a user error. */
export function findNode (node: P2pNode, ref: string): NodeView {
  const all = nodeViews(node.states.state, node.id)
  const exact = all.filter((n) => n.id === ref || n.name === ref)
  const matches = exact.length > 0 ? exact : all.filter((n) => n.id.startsWith(ref))
  if (matches.length === 0) throw new UserError(`no node named or with id "${ref}" (see \`p2p-orch nodes\`)`)
  if (matches.length > 1) throw new UserError(`"${ref}" matches ${matches.length} nodes (${matches.map((n) => n.id.slice(-8)).join(', ')}); use the full id`)
  return matches[0]
}

export function registerClusterRoutes (control: ControlServer, node: P2pNode): void {
  control.route('GET', '/info', (): InfoResponse => ({
    id: node.id,
    name: node.name,
    clusterId: node.identity.cluster.clusterId,
    addrs: node.host.getMultiaddrs().map(String),
    canWrite: true,
    version: VERSION,
    stateRoot: Buffer.from(node.states.state.rootHash()).toString('hex')
  }))

  control.route('GET', '/nodes', () => nodeViews(node.states.state, node.id))

  // Never a private key: the node holds none. (`join-token --with-admin-key` adds the caller's
  // own credential in the CLI.) `?worker=1` from older CLIs gets the same token.
  control.route('GET', '/join-token', (): JoinTokenResponse => {
    const token = node.joinToken()
    return { token, command: `p2p-orch agent --data DIR --join ${token}` }
  })

  // The admitter key of a new token: the CLI generated it and signs its key record (and, with
  // rotate, the revocation of every earlier one) with its own admin credential.
  control.route('POST', '/join-token', ({ body }): MintJoinKeyResponse => {
    const b = (body ?? {}) as Partial<MintJoinKeyRequest>
    if (typeof b.name !== 'string' || !b.name.startsWith(JOIN_KEY_PREFIX) || !KEY_NAME_PATTERN.test(b.name)) throw new UserError(`a join key is named ${JOIN_KEY_PREFIX}<hex>, got ${JSON.stringify(b.name)}`)
    if (node.states.state.get(key.key(b.name)) !== undefined) throw new UserError(`key "${b.name}" already exists; try again`)
    if (typeof b.publicKey !== 'string' || !/^[0-9a-f]{64}$/.test(b.publicKey)) throw new UserError('publicKey must be 64 hex digits (an Ed25519 public key)')
    if (b.ttlMs !== undefined && (!Number.isSafeInteger(b.ttlMs) || b.ttlMs <= 0 || b.ttlMs > MAX_KEY_TTL_MS)) throw new UserError('ttl must be a positive duration of at most 10 years')
    const writes: Array<{ k: string, value: KeyRecord }> = []
    const revoked: string[] = []
    if (b.rotate === true) {
      for (const [name, v] of node.states.state.family<KeyRecord>('key')) {
        if (v.role !== 'admitter' || v.revoked === true) continue
        writes.push({ k: key.key(name), value: { ...v, revoked: true } })
        revoked.push(name)
      }
    }
    const now = node.states.nextVersion()[0]
    writes.push({ k: key.key(b.name), value: { publicKey: b.publicKey, role: 'admitter', ...(b.ttlMs !== undefined ? { expiresAt: now + b.ttlMs } : {}) } })
    return { token: node.joinToken(), revoked, sign: prepare(node, writes) }
  })

  control.route('POST', '/records', ({ body }) => submit(node, body))

  control.route('GET', '/keys', () => keyViews(node))

  control.route('POST', '/keys', ({ body }): KeyView & Signable => {
    const b = (body ?? {}) as Partial<CreateKeyRequest>
    if (typeof b.name !== 'string' || !KEY_NAME_PATTERN.test(b.name)) throw new UserError(`key name must be 1-32 of a-z, 0-9, _ and - (starting with a letter or digit), got ${JSON.stringify(b.name)}`)
    if (b.name === FOUNDER_KEY_NAME) throw new UserError(`"${FOUNDER_KEY_NAME}" is the cluster's founding key; choose another name`)
    if (!ROLES.includes(b.role as Role)) throw new UserError(`role must be one of ${ROLES.join(', ')}, got ${JSON.stringify(b.role)}`)
    if (typeof b.publicKey !== 'string' || !/^[0-9a-f]{64}$/.test(b.publicKey)) throw new UserError('publicKey must be 64 hex digits (an Ed25519 public key)')
    if (b.ttlMs !== undefined && (!Number.isSafeInteger(b.ttlMs) || b.ttlMs <= 0 || b.ttlMs > MAX_KEY_TTL_MS)) throw new UserError('ttl must be a positive duration of at most 10 years')
    const existing = node.states.state.value<KeyRecord>(key.key(b.name))
    if (existing !== undefined) throw new UserError(`key "${b.name}" already exists${existing.revoked === true ? ' (revoked: a revoked name is not reused)' : ''}; choose another name`)
    const now = node.states.nextVersion()[0]
    const rec: KeyRecord = { publicKey: b.publicKey, role: b.role as Role, ...(b.ttlMs !== undefined ? { expiresAt: now + b.ttlMs } : {}) }
    return {
      name: b.name, role: rec.role, publicKey: rec.publicKey, founder: false, updatedAt: now, expired: false, revoked: false,
      ...(rec.expiresAt !== undefined ? { expiresAt: rec.expiresAt } : {}),
      sign: prepare(node, [{ k: key.key(b.name), value: rec }])
    }
  })

  control.route('DELETE', '/keys/:name', ({ params }): { revoked: string } & Signable => {
    if (params.name === FOUNDER_KEY_NAME) throw new UserError('the founding key cannot be revoked (it is the cluster\'s trust anchor)')
    const existing = node.states.state.value<KeyRecord>(key.key(params.name))
    if (existing === undefined) throw new UserError(`no key named "${params.name}" (see \`p2p-orch key ls\`)`)
    if (existing.revoked === true) throw new UserError(`key "${params.name}" is already revoked`)
    return { revoked: params.name, sign: prepare(node, [{ k: key.key(params.name), value: { ...existing, revoked: true } satisfies KeyRecord }]) }
  })

  control.route('DELETE', '/nodes/:ref', ({ params, query }): { removed: string } & Signable => {
    const target = findNode(node, params.ref)
    if (target.self) throw new UserError('a node cannot remove itself; stop it (it announces that it left) and run `node rm` on another node')
    if (target.status !== 'dead' && target.status !== 'left' && query.get('force') !== '1') {
      throw new UserError(`node ${target.name} is ${target.status}; only dead or left nodes can be removed (stop it first, or use --force)`)
    }
    const cfg = node.states.state.value<NodeConfig>(key.nodecfg(target.id))
    // its admission goes too: its records and connections are refused from now on, until a join
    // token (or an admin) admits it again
    return {
      removed: target.id,
      sign: prepare(node, [
        { k: key.admit(target.id), value: { revoked: true } satisfies AdmitRecord },
        { k: key.nodecfg(target.id), value: { labels: cfg?.labels ?? {}, availability: cfg?.availability ?? 'active', removed: true } }
      ])
    }
  })

  control.route('PATCH', '/nodes/:ref', ({ params, body }): NodeConfig & Signable => {
    const target = findNode(node, params.ref)
    const b = (body ?? {}) as { availability?: string, labelAdd?: Record<string, string>, labelRm?: string[] }
    if (b.availability !== undefined && !['active', 'drain', 'pause'].includes(b.availability)) throw new UserError(`availability must be active, drain or pause, not "${b.availability}"`)
    const cfg = node.states.state.value<NodeConfig>(key.nodecfg(target.id))
    const labels = { ...(cfg?.labels ?? {}), ...(b.labelAdd ?? {}) }
    for (const l of b.labelRm ?? []) delete labels[l]
    const next: NodeConfig = { labels, availability: (b.availability as NodeConfig['availability']) ?? cfg?.availability ?? 'active' }
    return { ...next, sign: prepare(node, [{ k: key.nodecfg(target.id), value: next }]) }
  })

  control.route('GET', '/metrics', ({ res }) => {
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' })
    res.end(node.counters.prometheus())
  })
}
