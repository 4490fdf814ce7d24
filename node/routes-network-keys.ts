/**
 * Control API routes for network key rotation (node/network-keys.ts): list, install (the caller
 * signs the record, then hands this node the key), use, remove. Admin writes; every refusal says
 * which nodes are not ready.
 */
import { key, NETKEY_PRIMARY, type NetKeyPrimary, type NetKeyRecord, type NodeInfo } from '../protocol/keys.ts'
import { compareStrings } from '../protocol/order.ts'
import { NETKEY_ID_PATTERN } from '../protocol/secrets.ts'
import { NETWORK_KEY_BYTES } from '../protocol/token.ts'
import { MAX_NETWORK_KEYS } from '../protocol/validate.ts'
import type { InstallNetworkKeyRequest, NetworkKeyView, Signable } from './api/types.ts'
import type { ControlServer } from './control.ts'
import { placementNodes } from './desired.ts'
import { UserError } from './errors.ts'
import type { NetworkKeys } from './network-keys.ts'
import type { NetworkKeyring } from './network-keyring.ts'
import { networkKeyFingerprint, networkKeyId } from './network-keyring.ts'
import type { P2pNode } from './node.ts'
import { prepare } from './writes.ts'

function views (node: P2pNode, ring: NetworkKeyring): NetworkKeyView[] {
  const state = node.states.state
  const alive = placementNodes(state).filter((n) => n.alive)
  const infos = alive.map((n) => ({ name: n.name, keys: state.value<NodeInfo>(key.node(n.id))?.netKeys ?? [] }))
  const records = new Map(state.family<NetKeyRecord | NetKeyPrimary>('netkey'))
  const primary = (records.get(NETKEY_PRIMARY) as NetKeyPrimary | undefined)?.keyId ?? ring.primaryKeyId
  const ids = new Set([...ring.ids(), ...infos.flatMap((i) => i.keys), ...[...records.keys()].filter((k) => k !== NETKEY_PRIMARY)])
  const conns = ring.connectionsByKey()
  return [...ids].sort(compareStrings).map((id) => ({
    id,
    state: (records.get(id) as NetKeyRecord | undefined)?.stage === 'remove' ? 'removed' : id === primary ? 'in use' : 'installed',
    installedOn: infos.filter((i) => i.keys.includes(id)).map((i) => i.name).sort(compareStrings),
    alive: alive.length,
    dialling: infos.filter((i) => i.keys[0] === id).map((i) => i.name).sort(compareStrings),
    connections: conns.get(id) ?? 0
  }))
}

function checkId (id: string): string {
  if (!NETKEY_ID_PATTERN.test(id)) throw new UserError(`"${id}" is not a network key id (16 hex digits, as \`network-key ls\` shows)`)
  return id
}

export function registerNetworkKeyRoutes (control: ControlServer, node: P2pNode, ring: NetworkKeyring, keys: NetworkKeys): void {
  control.route('GET', '/network-keys', () => views(node, ring))

  control.route('POST', '/network-keys', ({ body }): { id: string } & Signable => {
    const fp = (body as InstallNetworkKeyRequest | null)?.fingerprint
    if (typeof fp !== 'string' || !/^[0-9a-f]{64}$/.test(fp)) throw new UserError('installing a network key needs its SHA-256 (64 hex digits)')
    const id = fp.slice(0, 16)
    if (node.states.state.value(key.netkey(id)) !== undefined || ring.has(id)) throw new UserError(`network key ${id} is known already; install a new one`)
    const live = views(node, ring).filter((v) => v.state !== 'removed')
    if (live.length >= MAX_NETWORK_KEYS) throw new UserError(`${live.length} network keys are installed, the most a node accepts is ${MAX_NETWORK_KEYS}: remove one first (p2p-orch network-key rm ID)`)
    const value: NetKeyRecord = { fingerprint: fp, stage: 'install' }
    return { id, sign: prepare(node, [{ k: key.netkey(id), value }]) }
  })

  control.route('POST', '/network-keys/:id/key', ({ params, body }) => {
    const id = checkId(params.id)
    const raw = (body as { key?: unknown } | null)?.key
    const k = new Uint8Array(Buffer.from(typeof raw === 'string' ? raw : '', 'base64'))
    if (k.length !== NETWORK_KEY_BYTES) throw new UserError(`a network key is ${NETWORK_KEY_BYTES} bytes`)
    keys.adopt(id, k)
    k.fill(0)
    return { installed: id }
  })

  control.route('POST', '/network-keys/:id/use', ({ params, body }): { id: string } & Signable => {
    const id = checkId(params.id)
    const v = views(node, ring).find((x) => x.id === id)
    if (v === undefined || v.state === 'removed') throw new UserError(`no network key ${id} is installed (p2p-orch network-key ls)`)
    const missing = placementNodes(node.states.state).filter((n) => n.alive && !(node.states.state.value<NodeInfo>(key.node(n.id))?.netKeys ?? []).includes(id)).map((n) => n.name)
    if (missing.length > 0 && (body as { force?: boolean } | null)?.force !== true) {
      throw new UserError(`network key ${id} is not installed on ${missing.sort(compareStrings).join(', ')} yet: they would be cut off; wait, or pass --force`)
    }
    if (v.state === 'in use' && v.dialling.length === v.alive) return { id }
    return { id, sign: prepare(node, [{ k: key.netkey(NETKEY_PRIMARY), value: { keyId: id } satisfies NetKeyPrimary }]) }
  })

  control.route('DELETE', '/network-keys/:id', ({ params }): { removed: string } & Signable => {
    const id = checkId(params.id)
    const v = views(node, ring).find((x) => x.id === id)
    if (v === undefined) throw new UserError(`no network key ${id} (p2p-orch network-key ls)`)
    if (v.state === 'removed') return { removed: id }
    if (v.state === 'in use') throw new UserError(`network key ${id} is in use; \`network-key use\` another one first`)
    if (v.dialling.length > 0) throw new UserError(`network key ${id} is still in use by ${v.dialling.join(', ')}; wait until they dial with the new one`)
    const rec = node.states.state.value<NetKeyRecord>(key.netkey(id))
    const own = ring.all().find((k) => networkKeyId(k) === id)
    const fingerprint = rec?.fingerprint ?? (own !== undefined ? networkKeyFingerprint(own) : undefined)
    if (fingerprint === undefined) throw new UserError(`this node does not know network key ${id}; ask a node that accepts it`)
    return { removed: id, sign: prepare(node, [{ k: key.netkey(id), value: { fingerprint, stage: 'remove' } satisfies NetKeyRecord }]) }
  })
}
