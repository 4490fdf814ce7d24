/**
 * Service discovery between containers: `http://api:8080` from any container reaches service
 * `api`, wherever its replicas run, with no change to the images.
 *
 * How: each node gives its containers a bridge network of its own (`p2p-orch-<node>`), and
 * creates them with the network's gateway as their DNS server. Docker's embedded resolver in each
 * container (127.0.0.11) answers container names itself and forwards the rest to us; our
 * resolver (dns.ts) answers a service's name with a virtual address — one per service, taken
 * from the top of the network's subnet and added to the node's bridge interface — and forwards
 * every other name to the host's resolvers. The node listens on each virtual address, on every
 * port the service declares (`ports` targets and `expose`), and routes connections through the
 * mesh like ingress traffic: to a local replica directly, to a remote one over a mesh stream.
 * Names are cluster-wide (service names are unique in the cluster); `<service>.<stack>` works too.
 *
 * Needs root (adding addresses to the bridge, binding port 53) and the `ip` command (iproute2).
 * Without them the node says so once and runs without discovery; published ports still work.
 */
import { createServer, type Server } from 'node:net'
import type { ServiceSpec } from '../../protocol/spec.ts'
import type { Logger } from '../logger.ts'
import type { Counters } from '../metrics.ts'
import type { NetworkInfo, Runtime } from '../runtime/types.ts'
import { DnsResponder, readUpstreams } from './dns.ts'
import type { Router } from './router.ts'
import { childProcess } from './lazy-builtins.ts'
import { UdpIngress, type UdpDeps } from './udp.ts'


/** Port the resolver answers on: the standard DNS port, where Docker's embedded resolver forwards. */
const DNS_PORT = 53
/** An `ip` invocation finishes in milliseconds; this only catches a stuck one. */
const IP_COMMAND_TIMEOUT_MS = 5_000
/** Label on the node's network, so cleanup tools find the networks of a node that is gone. */
export const NETWORK_LABEL_NODE = 'p2p-orch.node'

/** Network and bridge names for a node: unique per node id, within Linux's 15-character interface names. */
export function networkNames (nodeId: string): { name: string, bridge: string } {
  const tail = nodeId.slice(-10).toLowerCase().replace(/[^a-z0-9]/g, 'x')
  return { name: `p2p-orch-${nodeId.slice(-12)}`, bridge: `p2po-${tail}` }
}

function ipToInt (ip: string): number {
  return ip.split('.').reduce((n, part) => (n * 256) + Number(part), 0)
}

function intToIp (n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.')
}

/**
 * The k-th virtual address of a subnet, counted down from the last usable one: Docker hands out
 * container addresses from the bottom, so the top stays ours. Null when the subnet is too small.
 */
export function virtualAddress (subnet: string, k: number): string | null {
  const m = /^(\d+\.\d+\.\d+\.\d+)\/(\d+)$/.exec(subnet)
  if (m === null) return null
  const bits = Number(m[2])
  const size = 2 ** (32 - bits)
  // keep the lower half for containers
  if (k >= size / 2 - 2) return null
  const base = ipToInt(m[1]) - (ipToInt(m[1]) % size)
  return intToIp(base + size - 2 - k)
}

export interface DiscoveryDeps {
  self: string
  runtime: Runtime
  router: Router
  udp: UdpDeps
  logger: Logger
  counters: Counters
}

interface ServiceAddress {
  vip: string
  servers: Server[]
  udp: UdpIngress[]
  ports: string
}

export class Discovery {
  private readonly d: DiscoveryDeps
  private network: NetworkInfo | undefined
  private dns: DnsResponder | undefined
  private enabled = false
  private readonly byService = new Map<string, ServiceAddress>()
  /** stack of each service, for `<service>.<stack>` names */
  private readonly stacks = new Map<string, string>()
  private syncing: Promise<void> = Promise.resolve()
  /** the services last seen, applied once discovery is active */
  private specs: ServiceSpec[] = []
  private activated = false
  private activation: Promise<void> = Promise.resolve()

  constructor (deps: DiscoveryDeps) {
    this.d = deps
  }

  /**
   * Create (or reuse) the node's network. The resolver and the service addresses start with the
   * node's first container (`containerNetwork()`): a node that runs none needs neither.
   */
  async start (): Promise<void> {
    const names = networkNames(this.d.self)
    try {
      this.network = await this.d.runtime.ensureNetwork({ ...names, labels: { [NETWORK_LABEL_NODE]: this.d.self } })
    } catch (err) {
      this.d.logger.warn({ error: (err as Error).message }, 'cannot create the node network: containers use the engine default network, without service discovery')
      return
    }
    // Adding addresses to the bridge and binding port 53 need root (or CAP_NET_ADMIN and
    // CAP_NET_BIND_SERVICE, which a non-root agent rarely has): say so now, not at the first query.
    if (process.getuid?.() !== 0) {
      this.d.logger.warn('service discovery is off on this node: it needs root (service addresses on the node network, a resolver on port 53); published ports still work')
      return
    }
    this.enabled = true
  }

  private async activate (): Promise<void> {
    const network = this.network
    if (network === undefined) return
    try {
      const dns = new DnsResponder({
        host: network.gateway,
        port: DNS_PORT,
        lookup: (name: string) => this.lookup(name),
        upstreams: await readUpstreams(),
        logger: this.d.logger,
        counters: this.d.counters
      })
      await dns.start()
      this.dns = dns
      this.d.logger.info({ network: network.name, subnet: network.subnet, dns: network.gateway }, 'service discovery on the node network')
      await this.sync(this.specs)
    } catch (err) {
      this.enabled = false
      this.d.logger.warn({ error: (err as Error).message }, 'service discovery is off on this node; published ports still work')
    }
  }

  /** What new containers attach to: the node network, with our resolver when discovery runs. */
  containerNetwork (): { network: string, dns: string[] } | undefined {
    if (this.network === undefined) return undefined
    if (this.enabled && !this.activated) {
      this.activated = true
      this.activation = this.activate()
    }
    return { network: this.network.name, dns: this.enabled ? [this.network.gateway] : [] }
  }

  private async ip (args: string[]): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      childProcess().execFile('ip', args, { timeout: IP_COMMAND_TIMEOUT_MS }, (err, _stdout, stderr) => {
        if (err === null) resolve()
        else reject(new Error(`ip ${args.join(' ')}: ${String(stderr).trim() || err.message}`))
      })
    })
  }

  lookup (name: string): string[] | null {
    const lower = name.toLowerCase().replace(/\.$/, '')
    for (const [service, addr] of this.byService) {
      const s = service.toLowerCase()
      if (lower === s || lower === `${s}.${(this.stacks.get(service) ?? '').toLowerCase()}`) return [addr.vip]
    }
    return null
  }

  /** Bring the virtual addresses and their listeners in line with the services (serialised). */
  sync (specs: ServiceSpec[]): Promise<void> {
    this.specs = specs
    if (this.dns === undefined) return Promise.resolve()
    this.syncing = this.syncing.then(async () => { await this.apply(specs) }, async () => { await this.apply(specs) })
    return this.syncing
  }

  private async apply (specs: ServiceSpec[]): Promise<void> {
    if (!this.enabled || this.network === undefined || this.dns === undefined) return
    const wanted = new Map<string, ServiceSpec>()
    for (const s of specs) {
      this.stacks.set(s.name, s.stack)
      const ports = portsOf(s)
      if (ports.length > 0) wanted.set(s.name, s)
    }
    for (const [service, addr] of this.byService) {
      const spec = wanted.get(service)
      if (spec !== undefined && portsKey(spec) === addr.ports) continue
      await this.release(service, addr, spec === undefined)
    }
    const used = new Set([...this.byService.values()].map((a) => a.vip))
    for (const [service, spec] of wanted) {
      if (this.byService.has(service)) continue
      let k = 0
      let vip = virtualAddress(this.network.subnet, k)
      while (vip !== null && used.has(vip)) vip = virtualAddress(this.network.subnet, ++k)
      if (vip === null) {
        this.d.logger.warn({ service, subnet: this.network.subnet }, 'no virtual address left in the node network for this service')
        continue
      }
      used.add(vip)
      const addr: ServiceAddress = { vip, servers: [], udp: [], ports: portsKey(spec) }
      try {
        await this.ip(['addr', 'replace', `${vip}/32`, 'dev', this.network.bridge])
        for (const p of portsOf(spec)) {
          if (p.protocol === 'udp') {
            const u = new UdpIngress(this.d.udp, { service, stack: spec.stack, published: p.target, target: p.target, protocol: 'udp', proxyProtocol: false })
            await u.listen(vip)
            addr.udp.push(u)
          } else {
            addr.servers.push(await this.listenTcp(vip, service, p.target))
          }
        }
        this.byService.set(service, addr)
      } catch (err) {
        this.d.logger.warn({ service, vip, error: (err as Error).message }, 'cannot give the service its virtual address')
        await this.release(service, addr, true)
      }
    }
  }

  private async listenTcp (vip: string, service: string, target: number): Promise<Server> {
    const server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => {
      void this.d.router.route(socket, { service, target, proxyProtocol: false })
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(target, vip, () => { server.off('error', reject); resolve() })
    })
    server.on('error', (err) => { this.d.logger.warn({ service, vip, error: err.message }, 'service address listener error') })
    return server
  }

  private async release (service: string, addr: ServiceAddress, dropAddress: boolean): Promise<void> {
    for (const s of addr.servers) s.close()
    for (const u of addr.udp) u.close()
    this.byService.delete(service)
    if (dropAddress && this.network !== undefined) await this.ip(['addr', 'del', `${addr.vip}/32`, 'dev', this.network.bridge]).catch(() => {})
  }

  async stop (): Promise<void> {
    await this.activation.catch(() => {})
    await this.syncing.catch(() => {})
    for (const [service, addr] of [...this.byService]) await this.release(service, addr, true)
    await this.dns?.stop()
    this.dns = undefined
    this.enabled = false
  }
}

/** Every container port a service answers on by name: its `ports` targets and `expose`, once each. */
function portsOf (s: ServiceSpec): Array<{ target: number, protocol: 'tcp' | 'udp' }> {
  const seen = new Map<string, { target: number, protocol: 'tcp' | 'udp' }>()
  for (const p of [...s.ports, ...(s.expose ?? [])]) seen.set(`${p.target}/${p.protocol}`, { target: p.target, protocol: p.protocol })
  return [...seen.values()].sort((a, b) => a.target - b.target || (a.protocol < b.protocol ? -1 : a.protocol > b.protocol ? 1 : 0))
}

function portsKey (s: ServiceSpec): string {
  return portsOf(s).map((p) => `${p.target}/${p.protocol}`).join(',')
}
