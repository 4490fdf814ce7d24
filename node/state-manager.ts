/**
 * Owns the node's copy of the cluster state: validates what arrives, merges it, persists it,
 * and signs and publishes local writes. Everything else (reconciler, membership, control API)
 * reads state here and subscribes to `change`.
 */
import { EventEmitter } from 'node:events'
import { pack } from '../protocol/codec.ts'
import { receive, tick, ZERO_HLC, type Hlc } from '../protocol/hlc.ts'
import type { StateRecord } from '../protocol/record.ts'
import { signRecord, type Signer } from '../protocol/sign.ts'
import { ClusterState } from '../protocol/state.ts'
import { validateRecord, type Trust } from '../protocol/validate.ts'
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

export interface IngestResult {
  applied: StateRecord[]
  rejected: number
  firstError?: string
}

export class StateManager extends EventEmitter<{ change: [StateRecord[]] }> {
  readonly state = new ClusterState()
  private hlc: Hlc = ZERO_HLC
  private readonly opts: StateManagerOptions
  /** called with every locally written record so gossip can publish it */
  publish: (recs: StateRecord[]) => void = () => {}

  constructor (opts: StateManagerOptions) {
    super()
    this.opts = opts
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
  ingest (recs: StateRecord[], source: string, persist = true): IngestResult {
    const now = this.opts.now()
    const applied: StateRecord[] = []
    let rejected = 0
    let firstError: string | undefined
    for (const r of recs) {
      const v = validateRecord(this.opts.clusterId, r, this.opts.trust, now)
      if (!v.ok) {
        rejected++
        firstError ??= v.reason
        continue
      }
      if (r.k.startsWith('member/') === false) this.hlc = receive(this.hlc, { wall: r.t[0], logical: r.t[1] }, now)
      if (this.state.apply(r, v.value)) {
        applied.push(r)
        if (persist) this.opts.store.putRecord(r)
      }
    }
    if (rejected > 0) {
      this.opts.counters.inc('records_rejected_total', rejected)
      this.opts.logger.warn({ source, rejected, error: firstError }, 'rejected invalid records')
    }
    if (applied.length > 0) {
      this.opts.counters.inc('records_applied_total', applied.length)
      this.emit('change', applied)
    }
    return { applied, rejected, firstError }
  }

  /** Next HLC version for a local last-writer-wins write. */
  nextVersion (): [number, number] {
    this.hlc = tick(this.hlc, this.opts.now())
    return [this.hlc.wall, this.hlc.logical]
  }

  /** Sign, merge, persist and publish a local write. */
  write (k: string, value: unknown, signer: Signer, version: [number, number] = this.nextVersion()): StateRecord {
    const r = signRecord(this.opts.clusterId, signer, k, version, pack(value))
    const res = this.ingest([r], 'local')
    if (res.rejected > 0) throw new Error(`local write of ${k} rejected: ${res.firstError}`)
    this.publish([r])
    return r
  }
}
