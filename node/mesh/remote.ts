/**
 * The serving end of the mesh stream protocol: another node forwards a client's connection to a
 * replica we run. We check what it asks for against the state — a service we run a routable
 * replica of, on a port that service declares — connect to our container, then say yes (so the
 * caller can still try another replica when we cannot) and splice.
 *
 * Everything about the request is untrusted: a malformed open frame resets the stream and is
 * counted; a request for a service or port we do not serve is refused and counted.
 */
import type { Connection, Stream } from '@libp2p/interface'
import type { Socket as UdpSocket } from 'node:dgram'
import { dgram } from './lazy-builtins.ts'
import { WireError } from '../../protocol/codec.ts'
import type { MeshOpen } from '../../protocol/mesh.ts'
import { MESH_PROTOCOL } from '../../protocol/mesh.ts'
import type { ServiceSpec } from '../../protocol/spec.ts'
import type { Host } from '../host.ts'
import type { Logger } from '../logger.ts'
import type { Counters } from '../metrics.ts'
import { DatagramReader, encodeDatagram } from './datagrams.ts'
import { acceptMeshStream } from './handshake.ts'
import { spliceSocketStream } from './pipe.ts'
import type { Router } from './router.ts'

/**
 * Mesh streams one peer may have open to us at once: each is one client connection it forwards.
 * Sized with the ingress limit (MAX_INGRESS_CONNECTIONS) so one busy peer fits, and bounded so a
 * peer cannot exhaust our sockets.
 */
export const MAX_INBOUND_MESH_STREAMS = 4_096
/** The open frame must arrive within this after the stream opens; a silent opener is dropped. */
const OPEN_TIMEOUT_MS = 5_000
/** A forwarded UDP flow with no datagram either way for this long is closed (clients re-open on the next datagram). */
export const UDP_FLOW_IDLE_MS = 30_000

export interface RemoteDeps {
  host: Host
  router: Router
  counters: Counters
  logger: Logger
  /** the spec of a service by name, when it exists */
  spec: (service: string) => ServiceSpec | undefined
  /** the local replica's address for UDP flows */
  udpTarget: (service: string) => Promise<{ addr: string } | null>
}

/** Whether `service` answers on `target`/`proto`: a port it declares in `ports` or `expose`. */
export function servesPort (spec: ServiceSpec, target: number, proto: 'tcp' | 'udp'): boolean {
  return spec.ports.some((p) => p.target === target && p.protocol === proto) ||
    (spec.expose ?? []).some((p) => p.target === target && p.protocol === proto)
}

export class RemoteEndpoint {
  private readonly d: RemoteDeps

  constructor (deps: RemoteDeps) {
    this.d = deps
  }

  async start (): Promise<void> {
    await this.d.host.handle(MESH_PROTOCOL, (stream: Stream, conn: Connection) => {
      void this.serve(stream, conn).catch((err) => {
        // the boundary: nothing a peer sends may crash the node
        this.d.logger.warn({ peer: conn.remotePeer.toString(), error: (err as Error).message }, 'mesh stream failed')
        stream.abort(err as Error)
      })
    }, { maxInboundStreams: MAX_INBOUND_MESH_STREAMS })
  }

  async stop (): Promise<void> {
    await this.d.host.unhandle(MESH_PROTOCOL)
  }

  private async serve (stream: Stream, conn: Connection): Promise<void> {
    let req: Awaited<ReturnType<typeof acceptMeshStream>>
    try {
      req = await acceptMeshStream(stream, AbortSignal.timeout(OPEN_TIMEOUT_MS))
    } catch (err) {
      if (err instanceof WireError) {
        this.d.counters.inc('mesh_streams_rejected_total')
        this.d.logger.warn({ peer: conn.remotePeer.toString(), error: err.message }, 'rejected malformed mesh stream')
      }
      stream.abort(err as Error)
      return
    }
    const open = req.open
    const spec = this.d.spec(open.service)
    if (spec === undefined || !servesPort(spec, open.target, open.proto)) {
      this.d.counters.inc('mesh_streams_refused_total')
      await req.refuse(spec === undefined ? `no service ${open.service}` : `service ${open.service} does not serve ${open.target}/${open.proto}`)
      return
    }
    if (open.proto === 'udp') {
      await this.serveUdp(open, req)
      return
    }
    const local = await this.d.router.connectLocal({ service: open.service, target: open.target, proxyProtocol: open.proxyProtocol }, open.client, open.dest ?? { addr: '0.0.0.0', port: 0 })
    if (local === null) {
      this.d.counters.inc('mesh_streams_refused_total')
      await req.refuse(`no running replica of ${open.service} on this node`)
      return
    }
    let raw: Stream
    try {
      raw = await req.accept()
    } catch (err) {
      local.socket.destroy()
      throw err
    }
    this.d.counters.inc('mesh_streams_accepted_total')
    await this.d.router.track(local.endpoint, () => spliceSocketStream(local.socket, raw), () => { raw.abort(new Error('node stopping')); local.socket.resetAndDestroy() })
  }

  /** A UDP flow: datagrams framed on the stream, one local UDP socket connected to the replica. */
  private async serveUdp (open: MeshOpen, req: Awaited<ReturnType<typeof acceptMeshStream>>): Promise<void> {
    const target = await this.d.udpTarget(open.service)
    if (target === null) {
      this.d.counters.inc('mesh_streams_refused_total')
      await req.refuse(`no running replica of ${open.service} on this node`)
      return
    }
    const stream = await req.accept()
    const sock: UdpSocket = dgram().createSocket(target.addr.includes(':') ? 'udp6' : 'udp4')
    const reader = new DatagramReader()
    let idle: NodeJS.Timeout | undefined
    const close = (): void => {
      clearTimeout(idle)
      try { sock.close() } catch {}
      if (stream.status === 'open') void stream.close().catch(() => { stream.abort(new Error('close failed')) })
    }
    const touch = (): void => { clearTimeout(idle); idle = setTimeout(close, UDP_FLOW_IDLE_MS) }
    sock.on('error', close)
    sock.on('message', (msg) => {
      touch()
      try { stream.send(encodeDatagram(msg)) } catch { close() }
    })
    sock.connect(open.target, target.addr, () => {
      stream.addEventListener('message', (evt) => {
        touch()
        try {
          for (const d of reader.feed(evt.data)) sock.send(d)
        } catch {
          this.d.counters.inc('mesh_streams_rejected_total')
          stream.abort(new Error('malformed datagram frame'))
          close()
        }
      })
      stream.addEventListener('close', close)
      stream.addEventListener('remoteCloseWrite', close)
      touch()
    })
  }
}
