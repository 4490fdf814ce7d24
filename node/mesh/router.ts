/**
 * Routes one TCP connection to a replica: pick (balancer) → connect (the container directly when
 * the replica is local, else a mesh stream to its node) → splice until both sides are done.
 *
 * A failed connect is retried on another replica, up to MAX_CONNECT_ATTEMPTS, before the client
 * sees anything: the client's socket stays paused and unread until a backend accepted, so no
 * byte is lost between attempts. The node that accepted a mesh stream connects to its own
 * replica the same way (`connectLocal`), so it alone knows — and drains — every connection its
 * containers serve.
 */
import { connect, type Socket } from 'node:net'
import { peerIdFromString } from '@libp2p/peer-id'
import type { MeshOpen } from '../../protocol/mesh.ts'
import type { Host } from '../host.ts'
import type { Logger } from '../logger.ts'
import type { Counters } from '../metrics.ts'
import type { Balancer } from './balancer.ts'
import { endpointKey, type Endpoint } from './endpoints.ts'
import { openMeshStream } from './handshake.ts'
import { connectWithLargeReads } from './large-reads.ts'
import { type SpliceResult, spliceSockets, spliceSocketStream } from './pipe.ts'
import { proxyV2Header } from './proxy-protocol.ts'

/** Replicas tried for one connection before the client is reset: enough to step over a dead node and a dying replica. */
export const MAX_CONNECT_ATTEMPTS = 3
/**
 * A container on this host accepts a TCP connection in well under a millisecond; one that has not
 * within this is stuck or gone, and the next replica gets the connection.
 */
export const LOCAL_CONNECT_TIMEOUT_MS = 1_000
/**
 * Opening a mesh stream to a connected peer takes a round trip plus the remote connect; this
 * also covers dialing a peer we have no connection to. A dead peer fails fast (connection
 * refused or reset); this catches one that is frozen.
 */
export const REMOTE_CONNECT_TIMEOUT_MS = 3_000

export interface Target {
  service: string
  /** container port */
  target: number
  proxyProtocol: boolean
}

export interface RouterDeps {
  self: string
  host: Host
  balancer: Balancer
  counters: Counters
  logger: Logger
  /** routable replicas of a service right now */
  endpoints: (service: string) => readonly Endpoint[]
  /** the container's address on this host, '' when unknown */
  addressOf: (containerId: string) => Promise<string>
  /** forget a cached address (the container restarted, or is gone) */
  forgetAddress: (containerId: string) => void
  /** called when a connection to a local container opens and closes (drain bookkeeping) */
  track: (containerId: string, delta: 1 | -1) => void
  /** containers being drained: they take no new connections */
  draining: ReadonlySet<string>
}

interface Address { addr: string, port: number }

function remoteOf (s: Socket): Address {
  return { addr: s.remoteAddress ?? '0.0.0.0', port: s.remotePort ?? 0 }
}

function localOf (s: Socket): Address {
  return { addr: s.localAddress ?? '0.0.0.0', port: s.localPort ?? 0 }
}

/**
 * Connect to host:port within timeoutMs; the socket is half-open capable (the pipe needs it).
 * With `largeReads` it reads in large chunks and stays paused until the splice resumes it: only
 * for a socket-to-socket splice. Spliced into a mesh stream, 1 MiB sends made yamux streams end
 * early under load (a 256 MiB download reset midway, seen in the bench), so those keep Node's
 * default reads.
 */
async function dialTcp (addr: string, port: number, timeoutMs: number, largeReads: boolean): Promise<Socket> {
  return await new Promise<Socket>((resolve, reject) => {
    const opts = { host: addr, port, allowHalfOpen: true, noDelay: true }
    const s = largeReads ? connectWithLargeReads(opts) : connect(opts)
    const timer = setTimeout(() => { s.destroy(); reject(new Error(`connect to ${addr}:${port} timed out`)) }, timeoutMs)
    s.once('connect', () => { clearTimeout(timer); s.removeAllListeners('error'); resolve(s) })
    s.once('error', (err) => { clearTimeout(timer); s.destroy(); reject(err) })
  })
}

/**
 * The client socket was accepted paused (nothing read while a replica was being found); once the
 * splice has its listeners on it — synchronously, inside the call that made `splice` — let it flow.
 */
function startSplice<T> (client: Socket, splice: Promise<T>): Promise<T> {
  client.resume()
  return splice
}

export class Router {
  private readonly d: RouterDeps
  /** how to reset each connection being spliced */
  private readonly active = new Set<() => void>()

  constructor (deps: RouterDeps) {
    this.d = deps
  }

  /**
   * Connect to a local replica of `target.service`: the chosen one, or — when `container` is not
   * given — the least loaded local one, trying others when a connect fails.
   */
  async connectLocal (target: Target, client: Address, dest: Address): Promise<{ socket: Socket, endpoint: Endpoint } | null> {
    const tried = new Set<string>()
    for (let attempt = 0; attempt < MAX_CONNECT_ATTEMPTS; attempt++) {
      const local = this.d.endpoints(target.service).filter((e) => e.node === this.d.self && !this.d.draining.has(e.container))
      const e = this.d.balancer.pick(local, tried, Date.now())
      if (e === null) return null
      tried.add(endpointKey(e))
      const socket = await this.dialContainer(e, target, client, dest, false)
      if (socket !== null) return { socket, endpoint: e }
    }
    return null
  }

  private async dialContainer (e: Endpoint, target: Target, client: Address, dest: Address, largeReads: boolean): Promise<Socket | null> {
    const addr = await this.d.addressOf(e.container).catch(() => '')
    if (addr === '') {
      this.d.balancer.failed(e, Date.now())
      return null
    }
    try {
      const s = await dialTcp(addr, target.target, LOCAL_CONNECT_TIMEOUT_MS, largeReads)
      if (target.proxyProtocol) s.write(proxyV2Header({ proto: 'tcp', source: client, dest }))
      return s
    } catch (err) {
      this.d.counters.inc('mesh_connect_failures_total')
      this.d.logger.debug({ service: e.service, slot: e.slot, error: (err as Error).message }, 'local replica refused a connection')
      this.d.balancer.failed(e, Date.now())
      this.d.forgetAddress(e.container)
      return null
    }
  }

  /** Route an accepted client connection (paused) to a replica; resets it when none can take it. */
  async route (client: Socket, target: Target): Promise<void> {
    const from = remoteOf(client)
    const dest = localOf(client)
    // a client that goes away while we connect must not crash us; the splice handles it after
    client.on('error', () => {})
    const tried = new Set<string>()
    for (let attempt = 0; attempt < MAX_CONNECT_ATTEMPTS && !client.destroyed; attempt++) {
      const candidates = this.d.endpoints(target.service).filter((e) => !(e.node === this.d.self && this.d.draining.has(e.container)))
      const e = this.d.balancer.pick(candidates, tried, Date.now())
      if (e === null) break
      tried.add(endpointKey(e))
      if (e.node === this.d.self) {
        const backend = await this.dialContainer(e, target, from, dest, true)
        if (backend === null) continue
        await this.track(e, () => startSplice(client, spliceSockets(client, backend)), () => { client.resetAndDestroy(); backend.resetAndDestroy() })
        return
      }
      const open: MeshOpen = { v: 1, service: target.service, target: target.target, proto: 'tcp', client: from, dest, proxyProtocol: target.proxyProtocol }
      try {
        const stream = await openMeshStream(this.d.host, peerIdFromString(e.node), open, AbortSignal.timeout(REMOTE_CONNECT_TIMEOUT_MS))
        this.d.counters.inc('mesh_remote_streams_opened_total')
        await this.track(e, () => startSplice(client, spliceSocketStream(client, stream)), () => { stream.abort(new Error('node stopping')); client.resetAndDestroy() })
        return
      } catch (err) {
        this.d.counters.inc('mesh_connect_failures_total')
        this.d.balancer.failed(e, Date.now())
        this.d.logger.debug({ service: e.service, node: e.node, error: (err as Error).message }, 'remote replica unreachable; trying another')
      }
    }
    this.d.counters.inc('mesh_connections_failed_total')
    // No replica took it: a reset says "nothing there" at once, instead of a hanging connect.
    if (!client.destroyed) client.resetAndDestroy()
  }

  /**
   * Count a connection to `e` (balancer, drain, metrics) for as long as `run` splices it;
   * `abort` resets both sides when the node stops.
   */
  async track (e: Endpoint, run: () => Promise<SpliceResult>, abort: () => void): Promise<void> {
    const local = e.node === this.d.self
    this.active.add(abort)
    this.d.balancer.opened(e)
    if (local) this.d.track(e.container, 1)
    this.d.counters.inc('mesh_connections_total')
    try {
      const r = await run()
      this.d.counters.inc('mesh_bytes_in_total', r.bytesToStream)
      this.d.counters.inc('mesh_bytes_out_total', r.bytesToSocket)
      if (r.error !== undefined) this.d.logger.debug({ service: e.service, node: e.node, error: r.error.message }, 'spliced connection ended abruptly')
    } finally {
      this.active.delete(abort)
      this.d.balancer.closed(e)
      if (local) this.d.track(e.container, -1)
    }
  }

  /**
   * Reset every connection this node is splicing. A graceful libp2p stop would close each mesh
   * stream's writable end, which the far side cannot tell from the client's own FIN (an upload
   * would look complete); a reset says what happened.
   */
  abortAll (): void {
    for (const abort of [...this.active]) {
      try { abort() } catch {}
    }
    this.active.clear()
  }
}
