/**
 * The routing mesh of one node: every service's published ports open here, whatever runs where,
 * and each connection goes to a routable replica anywhere in the cluster (router.ts); mesh
 * streams from other nodes reach our replicas (remote.ts); services find each other by name
 * (discovery.ts).
 *
 * Main flow: a state change → `refresh()` (debounced) → the rotation (endpoints.ts) is recomputed,
 * listeners opened/closed to match the published ports, and this node's `mesh/<id>` report says
 * which ports are open and which it cannot open (a port taken by another program fails here
 * only; the node keeps serving everything else).
 */
import { createServer, type Server } from 'node:net'
import { key, type MeshPortStatus, type MeshReport, type ServiceRecord } from '../../protocol/keys.ts'
import type { StateRecord } from '../../protocol/record.ts'
import type { Signer } from '../../protocol/sign.ts'
import type { ServiceSpec } from '../../protocol/spec.ts'
import type { Host } from '../host.ts'
import type { Logger } from '../logger.ts'
import type { Counters } from '../metrics.ts'
import type { Runtime } from '../runtime/types.ts'
import type { StateManager } from '../state-manager.ts'
import { Balancer } from './balancer.ts'
import { Discovery } from './discovery.ts'
import { endpointKey, meshPorts, routableEndpoints, type Endpoint, type MeshPort } from './endpoints.ts'
import { RemoteEndpoint } from './remote.ts'
import { Router } from './router.ts'
import { UdpIngress, type UdpDeps } from './udp.ts'

/**
 * Client connections one node's published ports hold at once. Each costs two sockets (client and
 * backend) or a socket and a stream; 4096 stays well inside a default 1M file-descriptor limit
 * and a few MiB of buffers, and is far above what one small node serves.
 */
export const MAX_INGRESS_CONNECTIONS = 4_096
/** Coalesce bursts of state changes (a scale brings many task reports) into one refresh. */
const REFRESH_DEBOUNCE_MS = 10
/** A container's address is looked up once, then cached this long (it changes only when it restarts). */
const ADDRESS_CACHE_MS = 60_000
/** How often a drain checks whether the container's last connection is gone. */
const DRAIN_POLL_MS = 50

export interface MeshOptions {
  self: string
  host: Host
  states: StateManager
  signer: Signer
  runtime?: Runtime
  logger: Logger
  counters: Counters
  /** where published ports bind: `--ingress-host` (default all interfaces) */
  ingressHost: string
  /** give containers the node network and service-name resolver (default true when there is a runtime) */
  discovery?: boolean
}

interface Listener {
  port: MeshPort
  tcp?: Server
  udp?: UdpIngress
  error: string
}

export class Mesh {
  private readonly o: MeshOptions
  private readonly balancer: Balancer
  private readonly router: Router
  private readonly remote: RemoteEndpoint
  private readonly discovery: Discovery | undefined
  private readonly udpDeps: UdpDeps
  private readonly listeners = new Map<string, Listener>()
  private rotation = new Map<string, Endpoint[]>()
  private readonly addresses = new Map<string, { addr: string, at: number }>()
  private readonly localConnections = new Map<string, number>()
  private readonly draining = new Set<string>()
  private debounce: NodeJS.Timeout | undefined
  private refreshing: Promise<void> = Promise.resolve()
  private lastReport = ''
  private stopped = false

  constructor (o: MeshOptions) {
    this.o = o
    this.balancer = new Balancer(o.self)
    const endpoints = (service: string): readonly Endpoint[] => this.rotation.get(service) ?? []
    const addressOf = async (id: string): Promise<string> => await this.addressOf(id)
    this.router = new Router({
      self: o.self,
      host: o.host,
      balancer: this.balancer,
      counters: o.counters,
      logger: o.logger,
      endpoints,
      addressOf,
      forgetAddress: (id) => { this.addresses.delete(id) },
      track: (id, delta) => {
        const n = (this.localConnections.get(id) ?? 0) + delta
        if (n <= 0) this.localConnections.delete(id)
        else this.localConnections.set(id, n)
      },
      draining: this.draining
    })
    this.udpDeps = { self: o.self, host: o.host, balancer: this.balancer, counters: o.counters, logger: o.logger, endpoints, addressOf }
    this.remote = new RemoteEndpoint({
      host: o.host,
      router: this.router,
      counters: o.counters,
      logger: o.logger,
      spec: (service) => this.spec(service),
      udpTarget: async (service) => {
        const local = endpoints(service).filter((e) => e.node === o.self && !this.draining.has(e.container))
        const e = this.balancer.pick(local, new Set(), Date.now())
        if (e === null) return null
        const addr = await addressOf(e.container)
        return addr === '' ? null : { addr }
      }
    })
    if (o.runtime !== undefined && o.discovery !== false) {
      this.discovery = new Discovery({ self: o.self, runtime: o.runtime, router: this.router, udp: this.udpDeps, logger: o.logger, counters: o.counters })
    }
  }

  async start (): Promise<void> {
    await this.remote.start()
    await this.discovery?.start()
    this.o.states.on('change', this.onChange)
    this.schedule()
  }

  async stop (): Promise<void> {
    this.stopped = true
    clearTimeout(this.debounce)
    this.o.states.off('change', this.onChange)
    await this.refreshing.catch(() => {})
    for (const l of this.listeners.values()) this.closeListener(l)
    this.listeners.clear()
    this.router.abortAll()
    await this.discovery?.stop()
    await this.remote.stop()
  }

  /** The node network and resolver for new containers (the reconciler asks before each create). */
  containerNetwork (): { network: string, dns: string[] } | undefined {
    return this.discovery?.containerNetwork()
  }

  /**
   * Take a local container out of the rotation and wait until its open connections are done, up
   * to `graceMs` (the service's stop_grace_period): called before the container is stopped.
   */
  async drain (containerId: string, graceMs: number): Promise<void> {
    this.draining.add(containerId)
    const deadline = Date.now() + graceMs
    while ((this.localConnections.get(containerId) ?? 0) > 0 && Date.now() < deadline && !this.stopped) {
      await new Promise((resolve) => setTimeout(resolve, DRAIN_POLL_MS))
    }
    // the id is kept until the container disappears from the rotation (refresh forgets it then)
  }

  /** The replicas this node routes each service to right now (for `inspect`). */
  routes (service: string): Array<Endpoint & { connections: number, local: boolean }> {
    return (this.rotation.get(service) ?? []).map((e) => ({ ...e, connections: this.balancer.connections(e), local: e.node === this.o.self }))
  }

  /** This node's published ports and their state (for `services` and `nodes`). */
  ports (): MeshPortStatus[] {
    return [...this.listeners.values()].map((l) => ({ service: l.port.service, port: l.port.published, protocol: l.port.protocol, error: l.error }))
  }

  private readonly onChange = (recs: StateRecord[]): void => {
    if (recs.some((r) => r.k.startsWith('svc/') || r.k.startsWith('tasks/') || r.k.startsWith('member/'))) this.schedule()
  }

  private schedule (): void {
    if (this.stopped) return
    clearTimeout(this.debounce)
    this.debounce = setTimeout(() => {
      this.refreshing = this.refreshing.then(async () => { await this.refresh() }).catch((err) => {
        this.o.logger.error({ err }, 'mesh refresh failed')
        this.o.counters.inc('mesh_refresh_errors_total')
      })
    }, REFRESH_DEBOUNCE_MS)
  }

  private spec (service: string): ServiceSpec | undefined {
    return this.o.states.state.value<ServiceRecord | null>(key.svc(service))?.spec ?? undefined
  }

  private async addressOf (containerId: string): Promise<string> {
    const cached = this.addresses.get(containerId)
    if (cached !== undefined && Date.now() - cached.at < ADDRESS_CACHE_MS) return cached.addr
    const info = await this.o.runtime?.inspect(containerId)
    const addr = info?.state === 'running' ? info.address : ''
    if (addr !== '') this.addresses.set(containerId, { addr, at: Date.now() })
    return addr
  }

  private async refresh (): Promise<void> {
    if (this.stopped) return
    const state = this.o.states.state
    this.rotation = routableEndpoints(state)
    const live = new Set<string>()
    for (const list of this.rotation.values()) for (const e of list) live.add(endpointKey(e))
    this.balancer.retain(live, Date.now())
    const localLive = new Set([...this.rotation.values()].flat().filter((e) => e.node === this.o.self).map((e) => e.container))
    for (const id of this.addresses.keys()) if (!localLive.has(id)) this.addresses.delete(id)
    for (const id of this.draining) if (!localLive.has(id) && !this.localConnections.has(id)) this.draining.delete(id)

    const wanted = new Map(meshPorts(state).map((p) => [`${p.published}/${p.protocol}`, p]))
    for (const [k, l] of this.listeners) {
      const w = wanted.get(k)
      if (w !== undefined && w.service === l.port.service && w.target === l.port.target && w.proxyProtocol === l.port.proxyProtocol && l.error === '') continue
      this.closeListener(l)
      this.listeners.delete(k)
    }
    for (const [k, p] of wanted) {
      if (this.listeners.has(k)) continue
      this.listeners.set(k, await this.openListener(p))
    }
    const specs: ServiceSpec[] = []
    for (const [, rec] of state.family<ServiceRecord | null>('svc')) if (rec !== null) specs.push(rec.spec)
    await this.discovery?.sync(specs)
    this.report()
  }

  private async openListener (port: MeshPort): Promise<Listener> {
    const l: Listener = { port, error: '' }
    const host = this.o.ingressHost
    try {
      if (port.protocol === 'udp') {
        const u = new UdpIngress(this.udpDeps, port)
        await u.listen(host)
        l.udp = u
      } else {
        const server = createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, (socket) => {
          void this.router.route(socket, { service: port.service, target: port.target, proxyProtocol: port.proxyProtocol })
        })
        // the kernel refuses the rest once this many are open: a flood cannot take the node's sockets
        server.maxConnections = MAX_INGRESS_CONNECTIONS
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject)
          server.listen({ port: port.published, host, backlog: 1024 }, () => { server.off('error', reject); resolve() })
        })
        server.on('error', (err) => { this.o.logger.warn({ port: port.published, error: err.message }, 'ingress listener error') })
        server.on('drop', () => { this.o.counters.inc('mesh_connections_dropped_total') })
        l.tcp = server
      }
      this.o.logger.info({ service: port.service, port: `${host}:${port.published}/${port.protocol}` }, 'published port open')
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      l.error = code === 'EADDRINUSE'
        ? `port ${port.published}/${port.protocol} is already in use on ${host} by another program`
        : `cannot open port ${port.published}/${port.protocol} on ${host}: ${(err as Error).message}`
      this.o.counters.inc('mesh_listen_failures_total')
      this.o.logger.warn({ service: port.service, port: port.published, error: l.error }, 'cannot open a published port; serving everything else')
    }
    return l
  }

  private closeListener (l: Listener): void {
    l.tcp?.close()
    l.udp?.close()
  }

  private report (): void {
    const report: MeshReport = { ports: this.ports() }
    const text = JSON.stringify(report)
    if (text === this.lastReport || this.stopped) return
    this.lastReport = text
    this.o.states.write(key.mesh(this.o.self), report, this.o.signer)
  }
}
