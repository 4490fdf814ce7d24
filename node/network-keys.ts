/**
 * Network key rotation across the cluster, from the state alone (install → use → remove):
 *
 *  - `netkey/<id>` stage `install` (an admin's write): each node that lacks the key gets it sealed
 *    to its X25519 key (`share/<node>.~net-<id>`, as a secret's data key) by a node that has it — the
 *    first in id order at once, the others after a stagger each — checks it against the record's
 *    SHA-256, installs it in its keyring (accepted from now on), withdraws the share and lists it in
 *    its `node/` record's `netKeys`;
 *  - `netkey/primary`: each node dials with that key once it has it;
 *  - `netkey/<id>` stage `remove`: each node stops accepting it and closes the connections made
 *    with it (never the key it dials with).
 *
 * The keyring is kept in `<data>/network-keys.json` (0600), so a restart dials with the current key.
 * A node that was away during a whole rotation comes back with a key nobody accepts: it must join
 * again with a new token, as after a Serf key rotation.
 */
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { key, NETKEY_PRIMARY, type NetKeyPrimary, type NetKeyRecord, type NodeInfo } from '../protocol/keys.ts'
import { compareStrings } from '../protocol/order.ts'
import { netKeyShareName, NONCE_BYTES, openShare, parseShareId, sealShare, X25519_KEY_BYTES, type ShareRecord } from '../protocol/secrets.ts'
import type { Signer } from '../protocol/sign.ts'
import { NETWORK_KEY_BYTES } from '../protocol/token.ts'
import { placementNodes } from './desired.ts'
import { DataDirError, UserError } from './errors.ts'
import { writeFileAtomic } from './identity.ts'
import type { Logger } from './logger.ts'
import type { Counters } from './metrics.ts'
import { networkKeyFingerprint, networkKeyId, NetworkKeyring } from './network-keyring.ts'
import { SHARE_STAGGER_MS } from './secret-keeper.ts'
import type { StateManager } from './state-manager.ts'
import type { Host } from './host.ts'

export const NETWORK_KEYS_FILE = 'network-keys.json'
/** Decisions are re-checked this often too, so staggered sealers act on time in a quiet cluster. */
const NETWORK_KEYS_INTERVAL_MS = 1_000
/** A replacement connection that takes longer than this is tried again on the next pass. */
const MIGRATE_DIAL_TIMEOUT_MS = 5_000
/**
 * A removed key is still accepted this long while connections made with it are open: their
 * diallers replace them within a pass or two (migrate), and closing them first would leave peers
 * unreachable for a moment. Past it, they are closed anyway.
 */
const REMOVE_GRACE_MS = 5_000
/** Coalesce bursts of state changes. */
const NETWORK_KEYS_DEBOUNCE_MS = 20

/** The node's keyring: from network-keys.json when a rotation has happened, else the cluster's one key. */
export async function loadKeyring (dataDir: string, clusterKey: Uint8Array): Promise<NetworkKeyring> {
  const path = join(dataDir, NETWORK_KEYS_FILE)
  if (!existsSync(path)) return new NetworkKeyring(clusterKey)
  try {
    const j = JSON.parse(await readFile(path, 'utf8')) as { primary: string, keys: string[] }
    const keys = j.keys.map((h) => new Uint8Array(Buffer.from(h, 'hex')))
    const primary = keys.find((k) => networkKeyId(k) === j.primary)
    if (primary === undefined || keys.some((k) => k.length !== NETWORK_KEY_BYTES)) throw new Error('no valid primary key')
    return new NetworkKeyring(primary, keys.filter((k) => k !== primary))
  } catch (err) {
    throw new DataDirError(`${path} is corrupt (${(err as Error).message}); restore it, or remove it to dial with the cluster's first network key`)
  }
}

async function saveKeyring (dataDir: string, ring: NetworkKeyring): Promise<void> {
  const text = JSON.stringify({ primary: ring.primaryKeyId, keys: ring.all().map((k) => Buffer.from(k).toString('hex')) }, null, 2)
  await writeFileAtomic(join(dataDir, NETWORK_KEYS_FILE), text + '\n', 0o600)
}

/** The share id of a network key: its fingerprint's first 32 digits (shares carry 32-digit ids). */
const shareIdOf = (fingerprint: string): string => fingerprint.slice(0, 32)

export interface NetworkKeysOptions {
  dataDir: string
  /** the libp2p host, whose connections move to the key in use (make-before-break) */
  host?: Host
  states: StateManager
  self: string
  clusterId: string
  keyring: NetworkKeyring
  sealPrivate: Uint8Array
  signer: Signer
  logger: Logger
  counters: Counters
  /** write this node's `node/` record again (its netKeys changed) */
  publish: () => void
  now?: () => number
}

export class NetworkKeys {
  private readonly o: NetworkKeysOptions
  private readonly now: () => number
  private readonly missingSince = new Map<string, number>()
  private debounce: NodeJS.Timeout | undefined
  private periodic: NodeJS.Timeout | undefined
  private migrating = false
  /** when each removal was first seen, for REMOVE_GRACE_MS */
  private readonly removeSeen = new Map<string, number>()
  /** saves run one after another, the last state winning */
  private saving: Promise<void> = Promise.resolve()

  constructor (o: NetworkKeysOptions) {
    this.o = o
    this.now = o.now ?? Date.now
  }

  start (): void {
    this.o.states.on('change', this.onChange)
    this.periodic = setInterval(() => { this.pass() }, NETWORK_KEYS_INTERVAL_MS)
    this.periodic.unref()
    this.schedule()
  }

  async stop (): Promise<void> {
    this.o.states.off('change', this.onChange)
    clearTimeout(this.debounce)
    clearInterval(this.periodic)
    await this.saving
  }

  private readonly onChange = (): void => { this.schedule() }
  private schedule (): void {
    clearTimeout(this.debounce)
    this.debounce = setTimeout(() => { this.pass() }, NETWORK_KEYS_DEBOUNCE_MS)
  }

  private records (): Map<string, NetKeyRecord> {
    const out = new Map<string, NetKeyRecord>()
    for (const [id, v] of this.o.states.state.family<NetKeyRecord | NetKeyPrimary>('netkey')) if (id !== NETKEY_PRIMARY) out.set(id, v as NetKeyRecord)
    return out
  }

  private changed (what: string, id: string): void {
    this.o.logger.info({ networkKey: id, primary: this.o.keyring.primaryKeyId }, what)
    this.o.publish()
    const ring = this.o.keyring
    this.saving = this.saving.then(async () => { await saveKeyring(this.o.dataDir, ring) }).catch((err: Error) => {
      this.o.logger.error({ err }, 'cannot save the network keyring')
    })
  }

  /** Take a key just installed through this node (`network-key install`): it must be the one its record names. */
  adopt (id: string, k: Uint8Array): void {
    const rec = this.records().get(id)
    if (rec === undefined || rec.stage !== 'install') throw new UserError(`no network key ${id} is being installed`)
    if (k.length !== NETWORK_KEY_BYTES || networkKeyFingerprint(k) !== rec.fingerprint) throw new UserError(`that is not network key ${id}`)
    if (this.o.keyring.install(k)) this.changed('network key installed', id)
    this.schedule()
  }

  /** Apply the records: install what arrived for us, switch to the primary, drop removed keys. */
  private apply (): void {
    const ring = this.o.keyring
    const state = this.o.states.state
    for (const [id, rec] of this.records()) {
      const ownShare = state.value<ShareRecord | null>(key.share(this.o.self, netKeyShareName(id)))
      if (rec.stage === 'install' && !ring.has(id) && ownShare != null && ownShare.id === shareIdOf(rec.fingerprint)) {
        const k = openShare(this.o.clusterId, netKeyShareName(id), this.o.self, ownShare, this.o.sealPrivate)
        if (k === null || networkKeyFingerprint(k) !== rec.fingerprint) {
          this.o.counters.inc('network_key_share_unusable_total')
        } else {
          try {
            ring.install(k)
            this.changed('network key installed', id)
          } catch (err) {
            this.o.logger.warn({ networkKey: id, error: (err as Error).message }, 'cannot install network key')
          }
        }
      }
      if (rec.stage === 'remove' && ring.has(id) && ring.primaryKeyId !== id) {
        // peers are still moving the connections they dialled with it to the new key: give them a moment
        const since = this.removeSeen.get(id) ?? this.now()
        this.removeSeen.set(id, since)
        if ((ring.connectionsByKey().get(id) ?? 0) > 0 && this.now() - since < REMOVE_GRACE_MS) continue
        this.removeSeen.delete(id)
        ring.remove(id)
        this.changed('network key removed', id)
      }
    }
    const primary = state.value<NetKeyPrimary>(key.netkey(NETKEY_PRIMARY))?.keyId
    if (primary !== undefined && ring.has(primary) && ring.primaryKeyId !== primary) {
      ring.use(primary)
      this.changed('dialling with network key', primary)
      // a key removed while it was still ours to dial with can go now
      this.apply()
    }
  }

  /** Seal installed keys to the alive nodes that lack them; withdraw our own shares once used. */
  private seal (): void {
    const state = this.o.states.state
    const ring = this.o.keyring
    const alive = placementNodes(state).filter((n) => n.alive).map((n) => n.id).sort(compareStrings)
    const info = (n: string): NodeInfo | undefined => state.value<NodeInfo>(key.node(n))
    const still = new Set<string>()
    const records = this.records()
    for (const [id, rec] of records) {
      if (rec.stage !== 'install' || !ring.has(id)) continue
      const name = netKeyShareName(id)
      const holders = alive.filter((n) => info(n)?.netKeys?.includes(id) === true)
      const rank = holders.includes(this.o.self) ? holders.indexOf(this.o.self) : holders.length
      for (const to of alive) {
        const toKey = info(to)?.sealKey
        if (to === this.o.self || toKey === undefined || holders.includes(to)) continue
        const share = state.value<ShareRecord | null>(key.share(to, name))
        if (share != null && share.id === shareIdOf(rec.fingerprint) && share.to === toKey) continue
        const k = `${id}\0${to}`
        still.add(k)
        const since = this.missingSince.get(k) ?? this.now()
        this.missingSince.set(k, since)
        if (this.now() - since < rank * SHARE_STAGGER_MS) continue
        const keyBytes = ring.all().find((x) => networkKeyId(x) === id) as Uint8Array
        this.o.states.write(key.share(to, name), sealShare(this.o.clusterId, name, shareIdOf(rec.fingerprint), to, new Uint8Array(Buffer.from(toKey, 'hex')), keyBytes,
          new Uint8Array(randomBytes(X25519_KEY_BYTES)), new Uint8Array(randomBytes(NONCE_BYTES))), this.o.signer)
        this.o.counters.inc('network_key_shares_sealed_total')
      }
    }
    for (const k of this.missingSince.keys()) if (!still.has(k)) this.missingSince.delete(k)
    // our own share is spent once the key is in our keyring, or once the key is removed
    for (const [sid, share] of state.family<ShareRecord | null>('share')) {
      const p = parseShareId(sid)
      if (share === null || p === null || p.node !== this.o.self || !p.name.startsWith('~net-')) continue
      const id = p.name.slice('~net-'.length)
      // (a share may arrive before its record: only a removed key's share is dropped unused)
      if (ring.has(id) || records.get(id)?.stage === 'remove') this.o.states.write(key.share(this.o.self, p.name), null, this.o.signer)
    }
  }

  /**
   * Connections we dialled with a key we no longer dial with are replaced: a new connection with
   * the key in use first, then the old one closed, so no peer is ever unreachable (the peer does
   * the same with the connections it dialled). Removing the old key then closes nothing live.
   */
  private async migrate (): Promise<void> {
    const host = this.o.host
    const ring = this.o.keyring
    if (host === undefined || this.migrating) return
    const stale = host.getConnections().filter((c) => c.direction === 'outbound' && c.status === 'open' &&
      (ring.keyOfConnection(c.remoteAddr.toString()) ?? ring.primaryKeyId) !== ring.primaryKeyId)
    if (stale.length === 0) return
    this.migrating = true
    try {
      for (const c of stale) {
        try {
          await host.dial(c.remotePeer, { force: true, signal: AbortSignal.timeout(MIGRATE_DIAL_TIMEOUT_MS) })
          await c.close()
          this.o.counters.inc('network_key_connections_migrated_total')
        } catch (err) {
          this.o.logger.debug({ peer: c.remotePeer.toString(), error: (err as Error).message }, 'cannot move a connection to the new network key yet')
        }
      }
    } finally {
      this.migrating = false
    }
  }

  pass (): void {
    // the common case, every second on every node: no rotation has ever happened
    if (this.o.states.state.family('netkey').length === 0 && this.o.keyring.ids().length === 1) return
    this.apply()
    this.seal()
    if (this.o.keyring.ids().length > 1) void this.migrate()
  }
}
