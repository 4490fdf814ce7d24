/**
 * Admitted nodes. Only nodes with an `admit/<id>` record count as members (protocol/validate.ts
 * refuses the observed records of any other); this file is the node's side of it:
 *  - `admitSelf`: at the start that creates a cluster, the founding key admits this node and
 *    mints the first join token's admitter key; a joining node admits itself with the admitter
 *    key its token carries (or an admin credential it brought).
 *  - `AdmissionGate`: peers are let in by the private-network key; one that is not admitted within
 *    ADMISSION_GRACE_MS of connecting is disconnected (and refused for REFUSED_PEER_MS), and a
 *    removed node (`node rm`) is refused at once, also at the connection gater.
 */
import { randomBytes } from 'node:crypto'
import type { PeerId } from '@libp2p/interface'
import { pack } from '../protocol/codec.ts'
import { credentialSigner, decodeCredential, encodeCredential, generateCredential, type Credential } from '../protocol/credential.ts'
import { key, type AdmitRecord, type KeyRecord } from '../protocol/keys.ts'
import type { StateRecord } from '../protocol/record.ts'
import { signRecord, type Signer } from '../protocol/sign.ts'
import type { JoinToken } from '../protocol/token.ts'
import type { Host } from './host.ts'
import type { Logger } from './logger.ts'
import type { Counters } from './metrics.ts'
import type { StateManager } from './state-manager.ts'

/** Default grace without an admission (the `lan` profile's admissionGraceMs, profiles.ts, says why). */
export const ADMISSION_GRACE_MS = 10_000
/** A peer disconnected for want of an admission is refused this long before it may try again. */
export const REFUSED_PEER_MS = 60_000
/** Prefix of the admitter keys `join-token` mints (`join-<8 hex>`). */
export const JOIN_KEY_PREFIX = 'join-'

/** A new admitter key: its credential and its `key/` record signed by `admin` (what a token carries). */
export function mintAdmission (clusterId: string, admin: Signer, version: [number, number], expiresAt?: number): { credential: Credential, keyRecord: StateRecord } {
  const credential = generateCredential(clusterId, `${JOIN_KEY_PREFIX}${randomBytes(4).toString('hex')}`)
  const value: KeyRecord = { publicKey: credentialSigner(credential).publicKeyHex, role: 'admitter', ...(expiresAt !== undefined ? { expiresAt } : {}) }
  return { credential, keyRecord: signRecord(clusterId, admin, key.key(credential.name), version, pack(value)) }
}

/**
 * Admit this node if it is not admitted yet. Returns the admission a new cluster's first join
 * token carries (only at the start that creates the cluster), else null.
 */
export function admitSelf (o: {
  states: StateManager
  self: string
  created: boolean
  admin: Credential | null
  token: JoinToken | undefined
  logger: Logger
}): JoinToken['admission'] | null {
  const { states, self } = o
  const clusterId = states.clusterId
  let first: JoinToken['admission'] | null = null
  if (o.created && o.admin !== null) {
    const founder = credentialSigner(o.admin)
    states.write(key.admit(self), {} satisfies AdmitRecord, founder)
    const minted = mintAdmission(clusterId, founder, states.nextVersion())
    const res = states.submit([minted.keyRecord])
    if (res.applied.length !== 1) throw new Error(`the first join key was refused: ${res.firstError}`)
    first = { credential: encodeCredential(minted.credential), keyRecord: minted.keyRecord }
  }
  if (states.admission(self) === 'admitted') return first
  let signer: Signer | null = null
  if (o.token?.admission !== undefined) {
    // the key record first, so the admission it authorises is decided here and now
    states.submit([o.token.admission.keyRecord])
    signer = credentialSigner(decodeCredential(o.token.admission.credential))
  } else if (o.admin !== null) {
    signer = credentialSigner(o.admin)
  }
  if (signer === null) {
    o.logger.warn('this node is not admitted to the cluster and its token carries no admission: other nodes will not count it as a member; join with a token from `p2p-orch join-token`')
    return first
  }
  const rec = signRecord(clusterId, signer, key.admit(self), states.nextVersion(), pack({} satisfies AdmitRecord))
  const res = states.submit([rec])
  if (res.applied.length === 0 && res.firstError !== undefined && !/is not known/.test(res.firstError)) {
    o.logger.warn({ error: res.firstError }, 'this node could not admit itself with its join token (rotated or expired?): ask an admin for a new one')
  }
  return first
}

/** Disconnects and refuses peers that are not admitted members. */
export class AdmissionGate {
  private readonly refusedUntil = new Map<string, number>()
  private readonly timers = new Map<string, NodeJS.Timeout>()
  private host: Host | undefined
  private readonly o: { states: StateManager, logger: Logger, counters: Counters, graceMs: number, now: () => number }

  constructor (o: { states: StateManager, logger: Logger, counters: Counters, graceMs?: number, now?: () => number }) {
    this.o = { ...o, graceMs: o.graceMs ?? ADMISSION_GRACE_MS, now: o.now ?? Date.now }
  }

  /** For the connection gater: a removed node, or a peer recently sent away, is refused after the handshake. */
  deny (peer: string): boolean {
    if (this.o.states.admission(peer) === 'revoked') return true
    const until = this.refusedUntil.get(peer)
    if (until === undefined) return false
    if (until > this.o.now() && this.o.states.admission(peer) !== 'admitted') return true
    this.refusedUntil.delete(peer)
    return false
  }

  start (host: Host): void {
    this.host = host
    host.addEventListener('peer:connect', this.onConnect)
    this.o.states.on('change', this.onChange)
  }

  stop (): void {
    this.host?.removeEventListener('peer:connect', this.onConnect)
    this.o.states.off('change', this.onChange)
    for (const t of this.timers.values()) clearTimeout(t)
    this.timers.clear()
  }

  private readonly onConnect = (evt: CustomEvent<PeerId>): void => {
    const peer = evt.detail.toString()
    if (this.o.states.admission(peer) === 'admitted' || this.timers.has(peer)) return
    const t = setTimeout(() => {
      this.timers.delete(peer)
      if (this.o.states.admission(peer) !== 'admitted') this.refuse(peer, 'not admitted')
    }, this.o.graceMs)
    t.unref()
    this.timers.set(peer, t)
  }

  private readonly onChange = (recs: StateRecord[]): void => {
    for (const r of recs) {
      if (!r.k.startsWith('admit/')) continue
      const peer = r.k.slice('admit/'.length)
      if (this.o.states.admission(peer) === 'revoked') this.refuse(peer, 'removed from the cluster')
    }
  }

  private refuse (peer: string, why: string): void {
    const host = this.host
    if (host === undefined) return
    const connected = host.getConnections().filter((c) => c.remotePeer.toString() === peer)
    this.refusedUntil.set(peer, this.o.now() + REFUSED_PEER_MS)
    if (connected.length === 0) return
    this.o.counters.inc('peers_refused_total')
    this.o.logger.warn({ peer, reason: why }, 'disconnecting a peer that is not an admitted member')
    void host.hangUp(connected[0].remotePeer).catch(() => {})
  }
}
