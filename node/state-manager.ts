/**
 * Owns the node's copy of the cluster state: validates what arrives, merges it, persists it,
 * and signs and publishes local writes. Everything else (reconciler, membership, control API)
 * reads state here and subscribes to `change`.
 *
 * Named operator keys get their authority from `key/<name>` records, which may arrive after the
 * writes they authorise. So that the order of arrival never changes a decision:
 * - a record whose key is not known yet is held aside (bounded, `MAX_PENDING_RECORDS`) and tried
 *   again whenever a key record is applied; one that falls out of the pool is re-delivered by
 *   anti-entropy, because its sender still holds it;
 * - whenever a key record changes (revoked, expiry or role changed), every desired record
 *   written by a named key is checked again and the ones it no longer authorises are dropped
 *   (from memory and disk). Anti-entropy then brings back, from any peer that kept it, the newest
 *   record of that key that is still authorised.
 * A write is therefore decided by the key records alone, on every node the same way. Node
 * admissions (`admit/` records) work the same way for observed records: a node's records wait for
 * its admission, and a revoked admission withdraws them.
 */
import { EventEmitter } from 'node:events'
import { MAX_PAYLOAD_BYTES, pack } from '../protocol/codec.ts'
import { receive, tick, ZERO_HLC, type Hlc } from '../protocol/hlc.ts'
import { DESIRED_FAMILIES, key, parseKey, type AdmitRecord, type KeyRecord } from '../protocol/keys.ts'
import type { StateRecord } from '../protocol/record.ts'
import { parseOperatorWriter, signRecord, type Signer } from '../protocol/sign.ts'
import { ClusterState } from '../protocol/state.ts'
import { admissionError, authorityError, validateRecord, type Admission, type Trust } from '../protocol/validate.ts'
import type { Logger } from './logger.ts'
import type { Counters } from './metrics.ts'
import type { Store } from './store.ts'

export interface StateManagerOptions {
  clusterId: string
  trust: Trust
  store: Store
  logger: Logger
  counters: Counters
  now: () => number
}

/** Records waiting for the key record that authorises them; beyond this the oldest are dropped (anti-entropy re-delivers them). */
export const MAX_PENDING_RECORDS = 1024

export interface IngestResult {
  applied: StateRecord[]
  /** records refused on their own merits (bad signature, shape, writer class): the sender is at fault */
  rejected: number
  /** records refused by this node's key records (unknown, revoked or expired key, role): the sender may just know less */
  deferred: number
  /** of the deferred, those kept aside until the key or admission they wait for arrives */
  held: number
  firstError?: string
}

/** Records other records' validity rests on: operator keys and node admissions. */
const isAuthority = (r: StateRecord): boolean => r.k.startsWith('key/') || r.k.startsWith('admit/')

const pendingId = (r: StateRecord): string => `${r.k}\0${r.w}\0${r.t[0]}.${r.t[1]}`

export class StateManager extends EventEmitter<{ change: [StateRecord[]] }> {
  readonly state = new ClusterState()
  private hlc: Hlc = ZERO_HLC
  private readonly opts: StateManagerOptions
  private readonly trust: Trust
  private readonly pending = new Map<string, StateRecord>()
  /** our own writes among `pending` (pendingId), published again once they apply */
  private readonly localHeld = new Set<string>()
  /** called with every locally written record so gossip can publish it */
  publish: (recs: StateRecord[]) => void = () => {}

  constructor (opts: StateManagerOptions) {
    super()
    this.opts = opts
    this.trust = {
      operators: opts.trust.operators,
      key: (name) => {
        const r = this.state.get(key.key(name))
        return r === undefined ? undefined : { t: r.t, value: this.state.value<KeyRecord>(r.k) as KeyRecord }
      },
      admission: (id) => this.admission(id)
    }
  }

  /** A node's admission as the `admit/` record held here says. */
  admission (id: string): Admission {
    const a = this.state.value<AdmitRecord>(key.admit(id))
    return a === undefined ? 'unknown' : a.revoked === true ? 'revoked' : 'admitted'
  }

  /** Records held back until their key record arrives. */
  get pendingCount (): number {
    return this.pending.size
  }

  get clusterId (): string {
    return this.opts.clusterId
  }

  /** Load persisted records. They were validated when they arrived; signatures are checked again anyway. */
  async load (): Promise<void> {
    const recs = await this.opts.store.loadRecords()
    const res = this.ingest(recs, 'disk', false)
    if (res.rejected > 0) this.opts.logger.warn({ rejected: res.rejected, error: res.firstError }, 'dropped invalid records from the state store')
  }

  /**
   * Validate and merge records from a peer (or disk). Invalid ones are counted and skipped;
   * the caller decides how to punish the sender.
   */
  ingest (recs: StateRecord[], source: string, persist = true, holdUnknown = true): IngestResult {
    const now = this.opts.now()
    const applied: StateRecord[] = []
    const dropped: StateRecord[] = []
    let rejected = 0
    let deferred = 0
    let held = 0
    let firstError: string | undefined
    // key records first, then admissions: a batch often carries a key and the writes it
    // authorises, or a node's admission and its first records
    const rank = (r: StateRecord): number => isAuthority(r) ? (r.k.startsWith('key/') ? 0 : 1) : 2
    const ordered = [...recs].sort((a, b) => rank(a) - rank(b))
    let keysChanged = false
    for (const r of ordered) {
      const v = validateRecord(this.opts.clusterId, r, this.trust, now)
      if (!v.ok) {
        if (v.soft === undefined) rejected++
        else deferred++
        if (v.soft === 'pending' && holdUnknown) {
          this.hold(r)
          held++
        }
        firstError ??= v.reason
        continue
      }
      if (this.applyValid(r, v.value, persist)) {
        applied.push(r)
        if (isAuthority(r)) keysChanged = true
      }
    }
    if (keysChanged) this.keysChanged(applied, dropped, persist, now)
    if (rejected > 0) {
      this.opts.counters.inc('records_rejected_total', rejected)
      this.opts.logger.warn({ source, rejected, error: firstError }, 'rejected invalid records')
    }
    if (deferred > 0) {
      this.opts.counters.inc('records_deferred_total', deferred)
      this.opts.logger.debug({ source, deferred, error: firstError }, 'records not authorised by the key records held here')
    }
    if (dropped.length > 0) {
      this.opts.counters.inc('records_withdrawn_total', dropped.length)
      this.opts.logger.info({ source, withdrawn: dropped.map((r) => r.k).slice(0, 10) }, 'withdrew records their key no longer authorises')
    }
    if (applied.length > 0) this.opts.counters.inc('records_applied_total', applied.length)
    if (applied.length > 0 || dropped.length > 0) this.emit('change', [...applied, ...dropped])
    return { applied, rejected, deferred, held, firstError }
  }

  private applyValid (r: StateRecord, value: unknown, persist: boolean): boolean {
    if (!r.k.startsWith('member/')) this.hlc = receive(this.hlc, { wall: r.t[0], logical: r.t[1] }, this.opts.now())
    if (!this.state.apply(r, value)) return false
    if (persist) this.opts.store.putRecord(r)
    return true
  }

  private hold (r: StateRecord): void {
    const id = pendingId(r)
    this.pending.delete(id)
    this.pending.set(id, r)
    if (this.pending.size > MAX_PENDING_RECORDS) {
      const oldest = this.pending.keys().next().value as string
      this.pending.delete(oldest)
      this.localHeld.delete(oldest)
    }
  }

  /**
   * Key records changed: withdraw what they no longer authorise, then retry the records held for
   * a key, until nothing moves (each round either drops or applies records, so it ends).
   */
  private keysChanged (applied: StateRecord[], dropped: StateRecord[], persist: boolean, now: number): void {
    for (;;) {
      let again = false
      for (const r of this.state.records()) {
        const parsed = parseKey(r.k)
        if (parsed === null) continue
        if (DESIRED_FAMILIES.has(parsed.family)) {
          if (parseOperatorWriter(r.w)?.name == null) continue
          if (authorityError(r, parsed.family, parsed.id, this.trust, this.state.value(r.k)) === null) continue
        } else if (admissionError(r, this.trust) === null) {
          continue
        }
        this.state.forget(r.k)
        if (persist) this.opts.store.deleteRecord(r.k)
        dropped.push(r)
        if (isAuthority(r)) again = true
      }
      for (const [id, r] of [...this.pending]) {
        const v = validateRecord(this.opts.clusterId, r, this.trust, now)
        if (!v.ok && v.soft === 'pending') continue
        this.pending.delete(id)
        const ours = this.localHeld.delete(id)
        if (v.ok && this.applyValid(r, v.value, persist)) {
          applied.push(r)
          if (ours) this.publish([r])
          if (isAuthority(r)) again = true
        }
      }
      if (!again) return
    }
  }

  /** Next HLC version for a local last-writer-wins write. */
  nextVersion (): [number, number] {
    this.hlc = tick(this.hlc, this.opts.now())
    return [this.hlc.wall, this.hlc.logical]
  }

  /** Sign, merge, persist and publish a local write. */
  write (k: string, value: unknown, signer: Signer, version: [number, number] = this.nextVersion()): StateRecord {
    const payload = pack(value)
    // peers refuse a bigger record whole (codec.ts): writing one would be a bug, so stop here
    if (payload.length > MAX_PAYLOAD_BYTES) throw new Error(`local write of ${k} is ${payload.length} bytes; a record holds at most ${MAX_PAYLOAD_BYTES}`)
    const r = signRecord(this.opts.clusterId, signer, k, version, payload)
    const res = this.ingest([r], 'local')
    if (res.rejected > 0 || res.deferred > res.held) throw new Error(`local write of ${k} rejected: ${res.firstError}`)
    // held: our own admission (or the key it rests on) has not arrived yet; it is published now
    // for the peers that have it, and again when it applies here
    if (res.held > 0) this.localHeld.add(pendingId(r))
    this.publish([r])
    return r
  }

  /**
   * Records signed elsewhere (by a CLI, with its credential) and handed to this node: validated
   * like records from the network, merged, persisted and published. Returns the first refusal.
   */
  submit (recs: StateRecord[]): IngestResult {
    const res = this.ingest(recs, 'control', true, false)
    if (res.applied.length > 0) this.publish(res.applied)
    return res
  }
}
