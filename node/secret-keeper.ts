/**
 * Keeps each secret's data key with exactly the nodes that need it (protocol/secrets.ts):
 *
 *  - the nodes placement gives a slot of a service using the secret get a share (the data key
 *    sealed to their X25519 key), written by a node that holds one — the first holder in id order
 *    at once, the others after a stagger each, so one dead or broken holder does not stall it;
 *  - a holder that no longer needs it withdraws its share once every node that does holds one;
 *  - while no task uses a secret, MIN_CUSTODIANS nodes keep it (the node `secret create` went
 *    through, and one more), so losing one node does not lose the secret;
 *  - shares of a removed or re-created secret are withdrawn by their owners.
 *
 * A pure decision (`plan`) from the state, and a thin loop that writes what it says. The plain
 * value is decrypted only when a replica starts (`value`), and never kept.
 */
import { createHash, randomBytes } from 'node:crypto'
import { key, type NodeInfo, type ServiceRecord } from '../protocol/keys.ts'
import { compareStrings } from '../protocol/order.ts'
import type { ClusterState } from '../protocol/state.ts'
import {
  DATA_KEY_BYTES, decryptSecret, NONCE_BYTES, openShare, parseShareId, sealPublicKey, sealShare, X25519_KEY_BYTES,
  type SecretRecord, type ShareRecord
} from '../protocol/secrets.ts'
import type { Signer } from '../protocol/sign.ts'
import { placement, placementNodes } from './desired.ts'
import { UserError } from './errors.ts'
import type { Logger } from './logger.ts'
import type { Counters } from './metrics.ts'
import type { StateManager } from './state-manager.ts'

/** Holders kept for a secret no task uses: survives the loss of one node, and no more hold it than that. */
export const MIN_CUSTODIANS = 2
/** How long each holder after the first waits before it seals a missing share itself. */
export const SHARE_STAGGER_MS = 2_000
/** Decisions are re-checked this often too: staggered holders act on time even when the state is quiet. */
const KEEPER_INTERVAL_MS = 1_000
/** Coalesce bursts of state changes (a deploy, a task report per replica). */
const KEEPER_DEBOUNCE_MS = 20

export interface SecretKeeperOptions {
  states: StateManager
  self: string
  clusterId: string
  /** this node's X25519 private key (identity.ts loadSealKey) */
  sealPrivate: Uint8Array
  signer: Signer
  logger: Logger
  counters: Counters
  now?: () => number
}

/** What one pass of the keeper writes. */
export interface KeeperPlan {
  /** recipients to seal a share of secret `name` for */
  seal: Array<{ name: string, to: string }>
  /** own shares to withdraw (secret removed, re-created, or no longer needed here) */
  withdraw: string[]
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

/** A secret's holders: nodes whose share is for its current version and their current seal key. */
export function holdersOf (state: ClusterState, name: string, rec: SecretRecord, alive: ReadonlySet<string>): string[] {
  const out: string[] = []
  for (const n of alive) {
    const share = state.value<ShareRecord | null>(key.share(n, name))
    if (share == null || share.id !== rec.id) continue
    if (share.to === state.value<NodeInfo>(key.node(n))?.sealKey) out.push(n)
  }
  return out.sort(compareStrings)
}

/** The nodes placement gives a slot of a service using each secret, by secret name. */
export function secretUsers (state: ClusterState): Map<string, Set<string>> {
  const users = new Map<string, Set<string>>()
  const bySvc = new Map<string, string[]>()
  for (const [name, rec] of state.family<ServiceRecord | null>('svc')) {
    const used = (rec?.spec.secrets ?? []).map((f) => f.source)
    if (used.length > 0) bySvc.set(name, used)
  }
  if (bySvc.size === 0) return users
  for (const a of placement(state).slots.values()) {
    if (a.node === null) continue
    for (const s of bySvc.get(a.service) ?? []) {
      let set = users.get(s)
      if (set === undefined) users.set(s, set = new Set())
      set.add(a.node)
    }
  }
  return users
}

/** Rendezvous order of the custodian candidates of a secret version: every node computes the same. */
function custodianOrder (name: string, id: string, nodes: string[]): string[] {
  const score = (n: string): string => createHash('sha256').update(`${name}\0${id}\0${n}`).digest('hex')
  return [...nodes].sort((a, b) => compareStrings(score(a), score(b)))
}

/**
 * What node `self` (holding the data keys of `held`) should write now. `missingSince` remembers
 * when each missing share was first seen (updated here), for the stagger.
 */
export function plan (state: ClusterState, self: string, held: (name: string, rec: SecretRecord) => boolean, missingSince: Map<string, number>, now: number): KeeperPlan {
  const out: KeeperPlan = { seal: [], withdraw: [] }
  // the common case, every second on every node: no secrets at all
  const live = (f: 'secret' | 'share'): boolean => state.family<unknown>(f).some(([, v]) => v !== null)
  if (!live('secret') && !live('share')) return out
  const alive = new Set(placementNodes(state).filter((n) => n.alive).map((n) => n.id))
  const canReceive = (n: string): boolean => alive.has(n) && typeof state.value<NodeInfo>(key.node(n))?.sealKey === 'string'
  const secrets = new Map(state.family<SecretRecord | null>('secret'))
  const users = secrets.size > 0 ? secretUsers(state) : new Map<string, Set<string>>()
  const stillMissing = new Set<string>()

  for (const [name, rec] of secrets) {
    if (rec === null || !held(name, rec)) continue
    const holders = holdersOf(state, name, rec, alive)
    const holding = new Set(holders)
    const need = [...(users.get(name) ?? [])].filter(canReceive)
    let targets: string[]
    if (need.length > 0) targets = need
    else {
      const lacking = MIN_CUSTODIANS - holders.length
      targets = lacking > 0 ? custodianOrder(name, rec.id, [...alive].filter((n) => canReceive(n) && !holding.has(n))).slice(0, lacking) : []
    }
    const rank = holding.has(self) ? holders.indexOf(self) : holders.length
    for (const to of targets) {
      if (holding.has(to)) continue
      const k = `${name}\0${to}`
      stillMissing.add(k)
      const since = missingSince.get(k) ?? now
      missingSince.set(k, since)
      if (now - since >= rank * SHARE_STAGGER_MS) out.seal.push({ name, to })
    }
    if (need.length > 0 && !need.includes(self) && holding.has(self) && need.every((n) => holding.has(n))) out.withdraw.push(name)
  }
  for (const k of missingSince.keys()) if (!stillMissing.has(k)) missingSince.delete(k)

  // own shares of secrets that are gone or were created again under the same name
  for (const [id, share] of state.family<ShareRecord | null>('share')) {
    const p = parseShareId(id)
    if (share === null || p === null || p.node !== self) continue
    // a share may arrive before its secret: only a removed (null) or re-created one makes it stale
    if (!secrets.has(p.name)) continue
    const rec = secrets.get(p.name)
    if ((rec == null || rec.id !== share.id) && !out.withdraw.includes(p.name)) out.withdraw.push(p.name)
  }
  return out
}

export class SecretKeeper {
  private readonly o: SecretKeeperOptions
  private readonly now: () => number
  readonly sealKey: string
  /** data keys opened from our own shares, by secret name and version */
  private readonly keys = new Map<string, { id: string, key: Uint8Array }>()
  private readonly missingSince = new Map<string, number>()
  private debounce: NodeJS.Timeout | undefined
  private periodic: NodeJS.Timeout | undefined

  constructor (o: SecretKeeperOptions) {
    this.o = o
    this.now = o.now ?? Date.now
    this.sealKey = hex(sealPublicKey(o.sealPrivate))
  }

  start (): void {
    this.o.states.on('change', this.onChange)
    this.periodic = setInterval(() => { this.pass() }, KEEPER_INTERVAL_MS)
    this.periodic.unref()
    this.schedule()
  }

  stop (): void {
    this.o.states.off('change', this.onChange)
    clearTimeout(this.debounce)
    clearInterval(this.periodic)
    for (const k of this.keys.values()) k.key.fill(0)
    this.keys.clear()
  }

  private readonly onChange = (): void => { this.schedule() }

  private schedule (): void {
    clearTimeout(this.debounce)
    this.debounce = setTimeout(() => { this.pass() }, KEEPER_DEBOUNCE_MS)
  }

  /** The data key of secret `name` at version `rec`, from our own share; null when we hold none that opens it. */
  private dataKey (name: string, rec: SecretRecord): Uint8Array | null {
    const cached = this.keys.get(name)
    if (cached !== undefined && cached.id === rec.id) return cached.key
    this.keys.delete(name)
    const share = this.o.states.state.value<ShareRecord | null>(key.share(this.o.self, name))
    if (share == null || share.id !== rec.id) return null
    const dk = openShare(this.o.clusterId, name, this.o.self, share, this.o.sealPrivate)
    // a data key that does not open the operator-signed ciphertext is not the operator's
    if (dk === null || decryptSecret(this.o.clusterId, name, rec, dk) === null) {
      this.o.counters.inc('secret_share_unusable_total')
      return null
    }
    this.keys.set(name, { id: rec.id, key: dk })
    return dk
  }

  private secret (name: string): SecretRecord | null {
    return this.o.states.state.value<SecretRecord | null>(key.secret(name)) ?? null
  }

  /** The plain value of secret `name` for a replica about to start, or null when this node holds no key to it (yet). */
  value (name: string): Uint8Array | null {
    const rec = this.secret(name)
    if (rec === null) return null
    const dk = this.dataKey(name, rec)
    return dk === null ? null : decryptSecret(this.o.clusterId, name, rec, dk)
  }

  /**
   * Take the data key of a secret just created through this node (`secret create`): it must open
   * the signed value held here. This node is its first holder.
   */
  adopt (name: string, id: string, dataKey: Uint8Array): void {
    const rec = this.secret(name)
    if (rec === null) throw new UserError(`no secret named "${name}" (create it first)`)
    if (rec.id !== id) throw new UserError(`secret "${name}" was created again meanwhile; its key is not this one`)
    if (dataKey.length !== DATA_KEY_BYTES || decryptSecret(this.o.clusterId, name, rec, dataKey) === null) throw new UserError(`that key does not open secret "${name}"`)
    this.sealFor(name, rec, this.o.self, this.sealKey, dataKey)
    this.schedule()
  }

  private sealFor (name: string, rec: SecretRecord, to: string, toKey: string, dataKey: Uint8Array): void {
    const share = sealShare(this.o.clusterId, name, rec.id, to, new Uint8Array(Buffer.from(toKey, 'hex')), dataKey,
      new Uint8Array(randomBytes(X25519_KEY_BYTES)), new Uint8Array(randomBytes(NONCE_BYTES)))
    this.o.states.write(key.share(to, name), share, this.o.signer)
    this.o.counters.inc('secret_shares_sealed_total')
  }

  /** One decision from the current state, and its writes. */
  pass (): void {
    const state = this.o.states.state
    const p = plan(state, this.o.self, (name, rec) => this.dataKey(name, rec) !== null, this.missingSince, this.now())
    for (const { name, to } of p.seal) {
      const rec = this.secret(name)
      const toKey = state.value<NodeInfo>(key.node(to))?.sealKey
      const dk = rec === null ? null : this.dataKey(name, rec)
      if (rec === null || dk === null || toKey === undefined) continue
      this.sealFor(name, rec, to, toKey, dk)
      this.o.logger.info({ secret: name, to }, 'secret key given to a node that runs it')
    }
    for (const name of p.withdraw) {
      this.keys.get(name)?.key.fill(0)
      this.keys.delete(name)
      this.o.states.write(key.share(this.o.self, name), null, this.o.signer)
      this.o.counters.inc('secret_shares_withdrawn_total')
    }
  }
}
