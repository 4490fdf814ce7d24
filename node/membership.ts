/**
 * Failure detection, SWIM-style: every probe interval one member is pinged directly over a
 * libp2p stream; if it does not answer in time, `indirectProbes` other members are asked to
 * ping it; if nobody reaches it, it is declared suspect. A suspect that does not refute within
 * the suspicion timeout is declared dead. A node that hears a rumour about itself refutes it
 * by re-announcing itself alive with a higher incarnation.
 *
 * Member records live in the replicated state (member/<id>), so gossip spreads verdicts fast
 * and anti-entropy repairs any that were lost.
 */
import type { Connection, PeerId } from '@libp2p/interface'
import { key, type MemberRecord } from '../protocol/keys.ts'
import { memberVersion, refutation, type MemberStatus, type MemberView } from '../protocol/membership.ts'
import type { StateRecord } from '../protocol/record.ts'
import type { Signer } from '../protocol/sign.ts'
import type { Host } from './host.ts'
import type { Logger } from './logger.ts'
import type { Counters } from './metrics.ts'
import type { Profile } from './profiles.ts'
import type { StateManager } from './state-manager.ts'
import type { Store } from './store.ts'
import { ProbeChannels, type ProbeMessage } from './probe-channels.ts'

export { SWIM_PROTOCOL } from './probe-channels.ts'

export interface MemberEntry extends MemberView {
  id: string
}

export class Membership {
  private readonly host: Host
  private readonly states: StateManager
  private readonly signer: Signer
  private readonly profile: Profile
  private readonly logger: Logger
  private readonly counters: Counters
  private readonly store: Store
  private readonly channels: ProbeChannels
  private incarnation = 0
  private timer: NodeJS.Timeout | undefined
  private readonly suspicionTimers = new Map<string, NodeJS.Timeout>()
  private probeOrder: string[] = []
  private readonly probing = new Set<string>()
  /**
   * When each member last proved itself alive to us (it probed us, or answered our probe). SWIM
   * probes only to learn that; a member heard from within the last probe interval needs no probe
   * of its own, which roughly halves probe traffic in a busy cluster.
   */
  private readonly lastHeard = new Map<string, number>()
  private stopped = true

  constructor (o: { host: Host, states: StateManager, signer: Signer, profile: Profile, logger: Logger, counters: Counters, store: Store }) {
    this.host = o.host
    this.states = o.states
    this.signer = o.signer
    this.profile = o.profile
    this.logger = o.logger
    this.counters = o.counters
    this.store = o.store
    this.channels = new ProbeChannels(o.host)
  }

  get self (): string {
    return this.signer.id
  }

  members (): MemberEntry[] {
    return this.states.state.family<MemberRecord>('member').map(([id, v]) => {
      const rec = this.states.state.get(key.member(id)) as StateRecord
      return { id, status: v.status, incarnation: rec.t[0] }
    })
  }

  status (id: string): MemberStatus | undefined {
    return this.states.state.value<MemberRecord>(key.member(id))?.status
  }

  private view (id: string): MemberView | undefined {
    const rec = this.states.state.get(key.member(id))
    const v = this.states.state.value<MemberRecord>(key.member(id))
    return rec === undefined || v === undefined ? undefined : { status: v.status, incarnation: rec.t[0] }
  }

  private announce (id: string, m: MemberView): void {
    this.states.write(key.member(id), { status: m.status } satisfies MemberRecord, this.signer, memberVersion(m))
  }

  async start (): Promise<void> {
    this.stopped = false
    // A restarted node may be remembered as dead or suspect: start above anything seen.
    const stored = (await this.store.getMeta<number>('incarnation')) ?? 0
    const seen = this.view(this.self)?.incarnation ?? 0
    this.incarnation = Math.max(stored, seen) + 1
    await this.store.putMeta('incarnation', this.incarnation)
    this.announce(this.self, { status: 'alive', incarnation: this.incarnation })

    await this.channels.serve(async (msg, conn) => await this.answer(msg, conn), (conn) => {
      this.counters.inc('swim_frames_rejected_total')
      this.logger.warn({ peer: conn.remotePeer.toString() }, 'rejected malformed probe frame')
    })
    this.states.on('change', this.onChange)
    this.host.addEventListener('peer:disconnect', this.onDisconnect)
    this.timer = setInterval(() => { this.probeNext() }, this.profile.probeIntervalMs)
    this.timer.unref()
    for (const m of this.members()) if (m.status === 'suspect') this.startSuspicion(m.id, m.incarnation)
  }

  /** Announce a graceful leave so others don't wait for the failure detector. */
  async leave (): Promise<void> {
    this.stopped = true
    this.announce(this.self, { status: 'left', incarnation: this.incarnation })
  }

  async stop (): Promise<void> {
    this.stopped = true
    clearInterval(this.timer)
    for (const t of this.suspicionTimers.values()) clearTimeout(t)
    this.suspicionTimers.clear()
    this.states.off('change', this.onChange)
    this.host.removeEventListener('peer:disconnect', this.onDisconnect)
    await this.channels.stop()
  }

  private readonly onDisconnect = (evt: CustomEvent<PeerId>): void => {
    // A crashed process closes its sockets: probe right away instead of waiting our turn.
    const id = evt.detail.toString()
    if (this.status(id) === 'alive') void this.probe(id)
  }

  private readonly onChange = (recs: StateRecord[]): void => {
    for (const r of recs) {
      if (!r.k.startsWith('member/')) continue
      const id = r.k.slice('member/'.length)
      const v = this.view(id)
      if (v === undefined) continue
      if (id === this.self) {
        if (this.stopped) continue
        const refute = refutation({ status: 'alive', incarnation: this.incarnation }, v)
        if (refute !== null) {
          this.incarnation = refute.incarnation
          void this.store.putMeta('incarnation', this.incarnation)
          this.logger.info({ rumour: v.status, incarnation: this.incarnation }, 'refuting a rumour about this node')
          this.counters.inc('refutations_total')
          this.announce(this.self, refute)
        }
        continue
      }
      if (v.status === 'suspect') this.startSuspicion(id, v.incarnation)
      else this.cancelSuspicion(id)
      if (v.status === 'dead' || v.status === 'left') this.logger.info({ peer: id, status: v.status }, `member ${v.status}`)
    }
  }

  private startSuspicion (id: string, incarnation: number): void {
    if (this.suspicionTimers.has(id)) return
    const t = setTimeout(() => {
      this.suspicionTimers.delete(id)
      const v = this.view(id)
      if (this.stopped || v === undefined || v.status !== 'suspect' || v.incarnation !== incarnation) return
      this.counters.inc('members_declared_dead_total')
      this.announce(id, { status: 'dead', incarnation })
    }, this.profile.suspicionTimeoutMs)
    t.unref()
    this.suspicionTimers.set(id, t)
  }

  private cancelSuspicion (id: string): void {
    const t = this.suspicionTimers.get(id)
    if (t !== undefined) clearTimeout(t)
    this.suspicionTimers.delete(id)
  }

  private probeTargets (): string[] {
    return this.members().filter((m) => m.id !== this.self && (m.status === 'alive' || m.status === 'suspect')).map((m) => m.id)
  }

  /** Round-robin over a shuffled member list (SWIM's bounded detection time). */
  private probeNext (): void {
    if (this.probeOrder.length === 0) {
      this.probeOrder = this.probeTargets()
      for (let i = this.probeOrder.length - 1; i > 0; i--) {
        const j = Math.floor(Math.random() * (i + 1))
        ;[this.probeOrder[i], this.probeOrder[j]] = [this.probeOrder[j], this.probeOrder[i]]
      }
    }
    const id = this.probeOrder.pop()
    if (id === undefined) return
    if (Date.now() - (this.lastHeard.get(id) ?? 0) < this.profile.probeIntervalMs) {
      this.counters.inc('probes_skipped_total')
      return
    }
    void this.probe(id)
  }

  /** One probe exchange with `peer`: send `msg`, true if it answers `ack` in time. */
  private async exchange (peer: string, msg: ProbeMessage, timeoutMs: number): Promise<boolean> {
    const reply = await this.channels.request(peer, msg, timeoutMs)
    if (reply?.t === 'ack') this.lastHeard.set(peer, Date.now())
    return reply?.t === 'ack'
  }

  /** Ping `target` directly; returns whether it answered. */
  async ping (target: string, timeoutMs: number): Promise<boolean> {
    return await this.exchange(target, { t: 'ping' }, timeoutMs)
  }

  private async probe (target: string): Promise<void> {
    if (this.stopped || this.probing.has(target)) return
    this.probing.add(target)
    try {
      this.counters.inc('probes_total')
      if (await this.ping(target, this.profile.probeTimeoutMs)) return
      const helpers = this.probeTargets().filter((id) => id !== target && this.status(id) === 'alive')
        .sort(() => Math.random() - 0.5).slice(0, this.profile.indirectProbes)
      const indirect = await Promise.all(helpers.map(async (h) => await this.pingReq(h, target)))
      if (indirect.some(Boolean)) return
      const v = this.view(target)
      if (this.stopped || v === undefined || v.status !== 'alive') return
      this.counters.inc('members_suspected_total')
      this.logger.info({ peer: target }, 'member suspect: no direct or indirect ack')
      this.announce(target, { status: 'suspect', incarnation: v.incarnation })
    } finally {
      this.probing.delete(target)
    }
  }

  /** Ask `helper` to ping `target` for us; it waits up to one probe timeout itself. */
  private async pingReq (helper: string, target: string): Promise<boolean> {
    return await this.exchange(helper, { t: 'ping-req', target }, this.profile.probeTimeoutMs * 2)
  }

  private async answer (msg: ProbeMessage, conn: Connection): Promise<ProbeMessage | null> {
    if (msg.t === 'ping') {
      this.lastHeard.set(conn.remotePeer.toString(), Date.now())
      return { t: 'ack' }
    }
    if (msg.t === 'ping-req' && typeof msg.target === 'string' && this.status(msg.target) !== undefined) {
      return { t: (await this.ping(msg.target, this.profile.probeTimeoutMs)) ? 'ack' : 'nack' }
    }
    this.counters.inc('swim_frames_rejected_total')
    this.logger.warn({ peer: conn.remotePeer.toString() }, 'rejected malformed probe frame')
    return null
  }

}
