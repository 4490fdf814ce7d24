/**
 * UDP through the mesh (`protocol: udp` ports). UDP has no connections, so the mesh makes flows:
 * the datagrams of one client address:port go to one replica, chosen like a TCP connection, until
 * the flow has been idle for UDP_FLOW_IDLE_MS. Replies come back from the published port, so the
 * client sees one peer. A local replica gets a UDP socket of ours connected to it; a remote one a
 * mesh stream carrying length-prefixed datagrams (datagrams.ts).
 */
import type { RemoteInfo, Socket } from 'node:dgram'
import { dgram } from './lazy-builtins.ts'
import type { Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Logger } from '../logger.ts'
import type { Counters } from '../metrics.ts'
import type { Host } from '../host.ts'
import type { Balancer } from './balancer.ts'
import { DatagramReader, encodeDatagram } from './datagrams.ts'
import { endpointKey, type Endpoint, type MeshPort } from './endpoints.ts'
import { openMeshStream } from './handshake.ts'
import { UDP_FLOW_IDLE_MS } from './remote.ts'
import { REMOTE_CONNECT_TIMEOUT_MS } from './router.ts'

/** Flows one published UDP port keeps at once; past it new clients are dropped (and counted) until old flows idle out. */
export const MAX_UDP_FLOWS_PER_PORT = 4_096
/** Datagrams held per flow while its replica is being reached; UDP may drop, and a burst must not pile up memory. */
const MAX_QUEUED_DATAGRAMS = 64

export interface UdpDeps {
  self: string
  host: Host
  balancer: Balancer
  counters: Counters
  logger: Logger
  endpoints: (service: string) => readonly Endpoint[]
  addressOf: (containerId: string) => Promise<string>
}

interface Flow {
  endpoint: Endpoint | null
  queue: Uint8Array[]
  send: ((d: Uint8Array) => void) | null
  close: () => void
  idle: NodeJS.Timeout | undefined
}

export class UdpIngress {
  private readonly d: UdpDeps
  private readonly port: MeshPort
  private socket: Socket | undefined
  private readonly flows = new Map<string, Flow>()

  constructor (deps: UdpDeps, port: MeshPort) {
    this.d = deps
    this.port = port
  }

  async listen (host: string): Promise<void> {
    const socket = dgram().createSocket({ type: host.includes(':') ? 'udp6' : 'udp4', reuseAddr: false })
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject)
      socket.bind(this.port.published, host, () => { socket.off('error', reject); resolve() })
    })
    socket.on('error', (err) => { this.d.logger.warn({ port: this.port.published, error: err.message }, 'udp ingress socket error') })
    socket.on('message', (msg, rinfo) => { this.onDatagram(msg, rinfo) })
    this.socket = socket
  }

  close (): void {
    for (const f of this.flows.values()) f.close()
    this.flows.clear()
    try { this.socket?.close() } catch {}
    this.socket = undefined
  }

  private onDatagram (msg: Buffer, rinfo: RemoteInfo): void {
    const k = `${rinfo.address}|${rinfo.port}`
    let flow = this.flows.get(k)
    if (flow === undefined) {
      if (this.flows.size >= MAX_UDP_FLOWS_PER_PORT) {
        this.d.counters.inc('mesh_udp_dropped_total')
        return
      }
      flow = this.openFlow(k, rinfo)
      this.flows.set(k, flow)
    }
    const f = flow
    clearTimeout(f.idle)
    f.idle = setTimeout(() => { f.close() }, UDP_FLOW_IDLE_MS)
    f.idle.unref()
    if (f.send !== null) f.send(msg)
    else if (f.queue.length < MAX_QUEUED_DATAGRAMS) f.queue.push(msg)
    else this.d.counters.inc('mesh_udp_dropped_total')
  }

  private reply (rinfo: RemoteInfo, data: Uint8Array): void {
    this.socket?.send(data, rinfo.port, rinfo.address)
  }

  private openFlow (k: string, rinfo: RemoteInfo): Flow {
    const flow: Flow = { endpoint: null, queue: [], send: null, idle: undefined, close: () => {} }
    let closed = false
    let cleanup = (): void => {}
    flow.close = () => {
      if (closed) return
      closed = true
      clearTimeout(flow.idle)
      if (this.flows.get(k) === flow) this.flows.delete(k)
      if (flow.endpoint !== null) this.d.balancer.closed(flow.endpoint)
      cleanup()
    }
    const ready = (e: Endpoint, send: (d: Uint8Array) => void, done: () => void): void => {
      flow.endpoint = e
      this.d.balancer.opened(e)
      this.d.counters.inc('mesh_udp_flows_total')
      cleanup = done
      flow.send = send
      for (const d of flow.queue.splice(0)) send(d)
      if (closed) done()
    }
    void this.connect(rinfo, ready).then((ok) => {
      if (!ok) {
        this.d.counters.inc('mesh_connections_failed_total')
        flow.close()
      }
    })
    return flow
  }

  /** Reach a replica for a new flow, trying others on failure. */
  private async connect (rinfo: RemoteInfo, ready: (e: Endpoint, send: (d: Uint8Array) => void, done: () => void) => void): Promise<boolean> {
    const tried = new Set<string>()
    for (let attempt = 0; attempt < 3; attempt++) {
      const e = this.d.balancer.pick(this.d.endpoints(this.port.service), tried, Date.now())
      if (e === null) return false
      tried.add(endpointKey(e))
      try {
        if (e.node === this.d.self) {
          const addr = await this.d.addressOf(e.container)
          if (addr === '') throw new Error('replica has no address')
          const s = dgram().createSocket(addr.includes(':') ? 'udp6' : 'udp4')
          await new Promise<void>((resolve, reject) => { s.once('error', reject); s.connect(this.port.target, addr, () => { s.off('error', reject); resolve() }) })
          s.on('message', (m) => { this.reply(rinfo, m) })
          s.on('error', () => {})
          ready(e, (d) => { s.send(d) }, () => { try { s.close() } catch {} })
          return true
        }
        const stream: Stream = await openMeshStream(this.d.host, peerIdFromString(e.node), {
          v: 1, service: this.port.service, target: this.port.target, proto: 'udp', client: { addr: rinfo.address, port: rinfo.port }, proxyProtocol: false
        }, AbortSignal.timeout(REMOTE_CONNECT_TIMEOUT_MS))
        const reader = new DatagramReader()
        stream.addEventListener('message', (evt) => {
          try {
            for (const d of reader.feed(evt.data)) this.reply(rinfo, d)
          } catch {
            stream.abort(new Error('malformed datagram frame'))
          }
        })
        ready(e, (d) => { try { stream.send(encodeDatagram(d)) } catch {} }, () => { void stream.close().catch(() => { stream.abort(new Error('close failed')) }) })
        return true
      } catch (err) {
        this.d.balancer.failed(e, Date.now())
        this.d.logger.debug({ service: e.service, error: (err as Error).message }, 'udp replica unreachable; trying another')
      }
    }
    return false
  }
}
