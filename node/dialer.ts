/**
 * Keeps this node connected: dials the seeds at start and every known, live member it has no
 * connection to, every redial interval. A failure to reach any seed is reported with the
 * reason (dial-errors.ts tells a seed that is down from one with another network key).
 */
import type { PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import type { NodeInfo } from '../protocol/keys.ts'
import { explainSeedFailures } from './dial-errors.ts'
import type { Host } from './host.ts'
import type { Logger } from './logger.ts'
import type { Membership } from './membership.ts'
import type { StateManager } from './state-manager.ts'

/** One dial must not block the loop; TCP connect + pnet + noise + yamux on a LAN take milliseconds. */
const DIAL_TIMEOUT_MS = 3000
/**
 * Of two members, only the one with the smaller id dials, so a pair does not open two
 * connections at once; the other dials too once the pair has been apart this long (in case the
 * link only works one way).
 */
const DIAL_YIELD_MS = 6000
/** Repeat "cannot reach any seed" warnings at most this often, to keep logs readable. */
const SEED_WARNING_INTERVAL_MS = 15_000

export class Dialer {
  private readonly host: Host
  private readonly states: StateManager
  private readonly membership: Membership
  private readonly seeds: Multiaddr[]
  private readonly logger: Logger
  private readonly intervalMs: number
  private timer: NodeJS.Timeout | undefined
  private lastSeedWarning = 0
  private lastSeedWarningText = ''
  private readonly dialing = new Set<string>()
  /** when we first found each member unconnected */
  private readonly apartSince = new Map<string, number>()

  constructor (o: { host: Host, states: StateManager, membership: Membership, seeds: string[], logger: Logger, intervalMs: number }) {
    this.host = o.host
    this.states = o.states
    this.membership = o.membership
    this.logger = o.logger
    this.intervalMs = o.intervalMs
    this.seeds = o.seeds.map((s) => multiaddr(s))
  }

  start (): void {
    void this.tick()
    this.timer = setInterval(() => { void this.tick() }, this.intervalMs)
    this.timer.unref()
  }

  stop (): void {
    clearInterval(this.timer)
  }

  private connected (id: string): boolean {
    return this.host.getConnections().some((c) => c.remotePeer.toString() === id && c.status === 'open')
  }

  private async dialOne (id: string, target: PeerId | Multiaddr | Multiaddr[]): Promise<string | null> {
    if (this.dialing.has(id)) return null
    this.dialing.add(id)
    try {
      await this.host.dial(target, { signal: AbortSignal.timeout(DIAL_TIMEOUT_MS) })
      return null
    } catch (err) {
      const e = err as Error & { errors?: Error[] }
      return e.errors?.map((x) => x.message).join('; ') ?? e.message
    } finally {
      this.dialing.delete(id)
    }
  }

  async tick (): Promise<void> {
    const self = this.membership.self
    const dials: Array<Promise<unknown>> = []
    const now = Date.now()
    for (const [id, info] of this.states.state.family<NodeInfo>('node')) {
      if (id === self || this.connected(id)) { this.apartSince.delete(id); continue }
      const status = this.membership.status(id)
      if (status === 'dead' || status === 'left') continue
      const since = this.apartSince.get(id) ?? now
      this.apartSince.set(id, since)
      if (id < self && now - since < DIAL_YIELD_MS) continue
      const addrs = info.addrs.map((a) => { try { return multiaddr(a) } catch { return null } }).filter((a) => a !== null)
      if (addrs.length === 0) continue
      await this.host.peerStore.merge(peerIdFromString(id), { multiaddrs: addrs }).catch(() => {})
      dials.push(this.dialOne(id, addrs))
    }
    if (this.host.getConnections().length === 0 && this.seeds.length > 0) {
      const seeds = this.seeds.filter((s) => s.getComponents().find((c) => c.name === 'p2p')?.value !== self)
      const errors = await Promise.all(seeds.map(async (s) => await this.dialOne(s.toString(), s)))
      const failures = errors.flatMap((error, i) => error === null ? [] : [{ seed: seeds[i].toString(), error }])
      const explanation = failures.length > 0 && failures.length === seeds.length ? explainSeedFailures(failures) : ''
      // a new diagnosis is worth a line at once; the same one again only after the interval
      if (explanation !== '' && (explanation !== this.lastSeedWarningText || Date.now() - this.lastSeedWarning > SEED_WARNING_INTERVAL_MS)) {
        this.lastSeedWarning = Date.now()
        this.lastSeedWarningText = explanation
        this.logger.warn({ seeds: failures }, explanation)
      }
    }
    await Promise.all(dials)
  }
}
