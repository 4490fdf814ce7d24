/**
 * Which replica gets the next connection: least outstanding connections through this node, with
 * a preference for local replicas, in turn among equals.
 *
 * - Each open connection to a remote replica counts REMOTE_CONNECTION_WEIGHT times, so under load
 *   a node keeps most of its traffic on its own replicas (no extra hop), while at light load —
 *   where every count is 0 — connections go round-robin over all replicas, local and remote alike
 *   (as Swarm's routing mesh spreads them).
 * - A replica whose connect just failed sits out FAILED_ENDPOINT_COOLDOWN_MS (passive health
 *   check): the cluster state may not have caught up yet with a replica that died a moment ago.
 * - `pick` takes the replicas already tried for this connection, so a retry goes elsewhere.
 * - Round-robin keeps a cursor per service (a few bytes each, one per service name seen).
 *
 * No IO; the clock is passed in.
 */
import { endpointKey, type Endpoint } from './endpoints.ts'

/** An open connection to a remote replica weighs this much more than one to a local replica. */
export const REMOTE_CONNECTION_WEIGHT = 2
/**
 * A replica that refused or failed a connect is skipped this long. Longer than the time the
 * cluster needs to learn of a dead replica (its node's next report: tens of ms; a dead node: ~2 s)
 * would only matter for false alarms, which this keeps short.
 */
export const FAILED_ENDPOINT_COOLDOWN_MS = 2_000

export class Balancer {
  private readonly self: string
  private readonly outstanding = new Map<string, number>()
  private readonly failedUntil = new Map<string, number>()
  /** per service: where the next round-robin walk starts */
  private readonly cursor = new Map<string, number>()

  constructor (self: string) {
    this.self = self
  }

  /** The replica for a new connection, or null when none is left to try. */
  pick (endpoints: readonly Endpoint[], tried: ReadonlySet<string>, now: number): Endpoint | null {
    const fresh = endpoints.filter((e) => !tried.has(endpointKey(e)))
    if (fresh.length === 0) return null
    const healthy = fresh.filter((e) => (this.failedUntil.get(endpointKey(e)) ?? 0) <= now)
    // when every replica failed recently, try them anyway: a cooldown must not turn into an outage
    const pool = healthy.length > 0 ? healthy : fresh
    let best = Infinity
    for (const e of pool) best = Math.min(best, this.load(e))
    // Walk the list from where the last pick for this service stopped, and take the first of the
    // least loaded: a replica passed over because it was busy a moment ago is next in line.
    const service = pool[0].service
    const start = (this.cursor.get(service) ?? 0) % pool.length
    for (let k = 0; k < pool.length; k++) {
      const i = (start + k) % pool.length
      if (this.load(pool[i]) !== best) continue
      this.cursor.set(service, i + 1)
      return pool[i]
    }
    return pool[start]
  }

  private load (e: Endpoint): number {
    const n = this.outstanding.get(endpointKey(e)) ?? 0
    return e.node === this.self ? n : n * REMOTE_CONNECTION_WEIGHT
  }

  opened (e: Endpoint): void {
    const k = endpointKey(e)
    this.outstanding.set(k, (this.outstanding.get(k) ?? 0) + 1)
    this.failedUntil.delete(k)
  }

  closed (e: Endpoint): void {
    const k = endpointKey(e)
    const n = (this.outstanding.get(k) ?? 0) - 1
    if (n <= 0) this.outstanding.delete(k)
    else this.outstanding.set(k, n)
  }

  failed (e: Endpoint, now: number): void {
    this.failedUntil.set(endpointKey(e), now + FAILED_ENDPOINT_COOLDOWN_MS)
  }

  /** Forget replicas that are gone, so the maps stay as small as the rotation. */
  retain (live: ReadonlySet<string>, now: number): void {
    for (const [k, until] of this.failedUntil) if (until <= now || !live.has(k)) this.failedUntil.delete(k)
    for (const k of this.outstanding.keys()) if (!live.has(k)) this.outstanding.delete(k)
  }

  connections (e: Endpoint): number {
    return this.outstanding.get(endpointKey(e)) ?? 0
  }
}
