/**
 * The routing mesh in one process: three nodes over real libp2p TCP, each with its own ingress
 * address (127.0.3.N), on one MemoryEngine whose containers report addresses where real TCP and
 * UDP servers stand in for them (127.0.2.N:8000). Proves TCP spread over local and remote
 * replicas, UDP flows, the PROXY protocol header, refusal of mesh streams for what a node does not
 * serve, and that a stopping replica keeps its open connections until they finish.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { createSocket, type Socket as UdpSocket } from 'node:dgram'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { peerIdFromString } from '@libp2p/peer-id'
import { MESH_PROTOCOL } from '../../protocol/mesh.ts'
import { newServiceSpec, type PortSpec } from '../../protocol/spec.ts'
import { MemoryEngine } from '../../node/runtime/memory.ts'
import { MeshRefusedError, openMeshStream } from '../../node/mesh/handshake.ts'
import { parseProxyV2Header, PROXY_V2_SIGNATURE } from '../../node/mesh/proxy-protocol.ts'
import { deploy, operatorOf, ServiceCluster, STACK, TEST_IMAGE } from '../helpers/services.ts'
import { waitFor } from '../helpers/cluster.ts'
import { key, type ScaleRecord } from '../../protocol/keys.ts'

const BACKEND_PORT = 8000
const POOL = Array.from({ length: 12 }, (_, i) => `127.0.2.${i + 1}`)
const INGRESS = ['127.0.3.1', '127.0.3.2', '127.0.3.3']
const WAIT_MS = 15_000

/** A backend that answers with its own address (and, behind a PROXY header, the client's). */
function tcpBackend (ip: string, open: Set<Socket>): Server {
  return createServer({ allowHalfOpen: true }, (s) => {
    open.add(s)
    s.on('close', () => { open.delete(s) })
    let buf = Buffer.alloc(0)
    s.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c])
      const nl = buf.indexOf('\n')
      if (nl < 0) return
      let from = ''
      if (buf.subarray(0, PROXY_V2_SIGNATURE.length).equals(Buffer.from(PROXY_V2_SIGNATURE))) {
        const h = parseProxyV2Header(buf)
        if (h?.addresses != null) from = ` from ${h.addresses.source.addr}:${h.addresses.source.port}`
        buf = buf.subarray(h?.length ?? 0)
      }
      const line = buf.subarray(0, buf.indexOf('\n')).toString()
      if (line === 'hold') return // keep the connection open until the client ends it
      s.end(`${ip}${from}\n`)
    })
    s.on('end', () => { if (!s.writableEnded) s.end(`${ip} bye\n`) })
    s.on('error', () => {})
  })
}

function udpBackend (ip: string): UdpSocket {
  const u = createSocket('udp4')
  u.on('message', (m, r) => { u.send(`${ip}:${m.toString()}`, r.port, r.address) })
  return u
}

/** One line of answer from host:port after sending `text`. */
function ask (host: string, port: number, text = 'hi\n'): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host, port }, () => { s.write(text) })
    let out = ''
    s.setEncoding('utf8')
    s.on('data', (d: string) => { out += d })
    s.on('end', () => { resolve(out.trim()) })
    s.on('error', reject)
    s.setTimeout(5_000, () => { s.destroy(new Error('timed out')) })
  })
}

function udpAsk (host: string, port: number, payload: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const u = createSocket('udp4')
    const timer = setTimeout(() => { u.close(); reject(new Error('no UDP answer')) }, 3_000)
    u.on('message', (m) => { clearTimeout(timer); u.close(); resolve(m.toString()) })
    u.send(payload, port, host)
  })
}

describe('routing mesh: 3 nodes over libp2p, containers stood in for by real servers', { timeout: 120_000 }, () => {
  const assigned = new Map<string, string>()
  const engine = new MemoryEngine({
    addressOf: (c) => {
      let ip = assigned.get(c.name)
      if (ip === undefined) {
        ip = POOL[assigned.size % POOL.length]
        assigned.set(c.name, ip)
      }
      return ip
    }
  })
  const cluster = new ServiceCluster('mesh-it', engine)
  const servers: Server[] = []
  const udps: UdpSocket[] = []
  const openAt = new Map<string, Set<Socket>>()
  let port = 0

  before(async () => {
    for (const ip of POOL) {
      const open = new Set<Socket>()
      openAt.set(ip, open)
      const srv = tcpBackend(ip, open)
      await new Promise<void>((resolve) => { srv.listen(BACKEND_PORT, ip, resolve) })
      servers.push(srv)
      const u = udpBackend(ip)
      await new Promise<void>((resolve) => { u.bind(BACKEND_PORT, ip, resolve) })
      udps.push(u)
    }
    port = 20_000 + Math.floor(Math.random() * 20_000)
    await cluster.start('a', { ingressHost: INGRESS[0] })
    await cluster.start('b', { join: true, ingressHost: INGRESS[1] })
    await cluster.start('c', { join: true, ingressHost: INGRESS[2] })
    await waitFor(() => cluster.nodes().every((n) => n.membership.members().filter((m) => m.status === 'alive').length === 3), WAIT_MS, () => 'three alive members')
  })

  after(async () => {
    await cluster.cleanup()
    for (const s of servers) s.close()
    for (const u of udps) u.close()
  })

  const routes = (via: number, service: string): number => cluster.nodes()[via].mesh.routes(service).length
  const ports = (...extra: PortSpec[]): PortSpec[] => [
    { target: BACKEND_PORT, published: port, protocol: 'tcp', mode: 'ingress' },
    { target: BACKEND_PORT, published: port, protocol: 'udp', mode: 'ingress' },
    ...extra
  ]

  it('TCP: every node\'s published port reaches every replica, local and remote', async () => {
    const a = cluster.get('a').node
    deploy(a, newServiceSpec({ name: 'web', stack: STACK, image: TEST_IMAGE, replicas: 3, ports: ports() }))
    await waitFor(() => [0, 1, 2].every((i) => routes(i, 'web') === 3), WAIT_MS, () => 'every node routes web to 3 replicas')
    const replicas = new Set(cluster.nodes()[0].mesh.routes('web').map((r) => assigned.get(engine.all().find((c) => c.id === r.container)!.name)))
    for (const ingress of INGRESS) {
      const seen = new Set<string>()
      for (let i = 0; i < 30; i++) seen.add(await ask(ingress, port))
      assert.deepEqual([...seen].sort(), [...replicas].sort(), `${ingress} reached every replica`)
    }
  })

  it('UDP: datagrams reach a replica and the answer comes back from the published port', async () => {
    const seen = new Set<string>()
    for (const ingress of INGRESS) {
      for (let i = 0; i < 6; i++) {
        const answer = await udpAsk(ingress, port, `ping${i}`)
        assert.match(answer, new RegExp(`^127\\.0\\.2\\.\\d+:ping${i}$`))
        seen.add(answer.split(':')[0])
      }
    }
    assert.ok(seen.size >= 2, `UDP flows spread over replicas: ${[...seen].join(', ')}`)
  })

  it('PROXY protocol v2: the backend learns the client\'s address, through local and remote replicas', async () => {
    const a = cluster.get('a').node
    deploy(a, newServiceSpec({ name: 'pp', stack: STACK, image: TEST_IMAGE, replicas: 2, ports: [{ target: BACKEND_PORT, published: port + 1, protocol: 'tcp', mode: 'ingress', proxyProtocol: true }] }))
    await waitFor(() => [0, 1, 2].every((i) => routes(i, 'pp') === 2), WAIT_MS, () => 'every node routes pp to 2 replicas')
    for (const ingress of INGRESS) {
      for (let i = 0; i < 4; i++) {
        const answer = await ask(ingress, port + 1)
        assert.match(answer, /^127\.0\.2\.\d+ from 127\.0\.0\.1:\d+$/, `via ${ingress}: ${answer}`)
      }
    }
  })

  it('a mesh stream for a service or port the node does not serve is refused and counted', async () => {
    const [a, b] = cluster.nodes()
    const before = b.counters.get('mesh_streams_refused_total')
    const open = { v: 1 as const, target: BACKEND_PORT, proto: 'tcp' as const, client: { addr: '127.0.0.1', port: 1 }, proxyProtocol: false }
    await assert.rejects(openMeshStream(a.host, peerIdFromString(b.id), { ...open, service: 'nosuch' }, AbortSignal.timeout(5_000)), (err: Error) => err instanceof MeshRefusedError && /no service nosuch/.test(err.message))
    await assert.rejects(openMeshStream(a.host, peerIdFromString(b.id), { ...open, service: 'web', target: 9 }, AbortSignal.timeout(5_000)), MeshRefusedError)
    assert.equal(b.counters.get('mesh_streams_refused_total'), before + 2)

    const rejected = b.counters.get('mesh_streams_rejected_total')
    const raw = await a.host.dialProtocol(peerIdFromString(b.id), MESH_PROTOCOL)
    raw.send(Uint8Array.of(3, 0xc1, 0xc1, 0xc1))
    await waitFor(() => b.counters.get('mesh_streams_rejected_total') > rejected, WAIT_MS, () => 'the malformed open frame to be counted')
    assert.ok(b.membership.members().length === 3, 'the node is still up')
  })

  it('a stopping replica leaves the rotation and keeps an open connection until it ends', async () => {
    const a = cluster.get('a').node
    deploy(a, newServiceSpec({ name: 'slow', stack: STACK, image: TEST_IMAGE, replicas: 1, stopGracePeriodMs: 10_000, ports: [{ target: BACKEND_PORT, published: port + 2, protocol: 'tcp', mode: 'ingress' }] }))
    await waitFor(() => routes(0, 'slow') === 1, WAIT_MS, () => 'slow to be routable')
    const [route] = cluster.nodes()[0].mesh.routes('slow')
    const held = connect({ host: INGRESS[0], port: port + 2 })
    await new Promise<void>((resolve) => { held.on('connect', resolve) })
    held.write('hold\n')
    const ip = assigned.get(engine.all().find((c) => c.id === route.container)!.name)!
    await waitFor(() => (openAt.get(ip)?.size ?? 0) > 0, WAIT_MS, () => 'the held connection to reach the backend')

    a.states.write(key.scale('slow'), { replicas: 0 } satisfies ScaleRecord, operatorOf(a))
    await waitFor(() => routes(0, 'slow') === 0 && routes(1, 'slow') === 0, WAIT_MS, () => 'slow to leave the rotation')
    await new Promise((resolve) => setTimeout(resolve, 500))
    assert.equal(engine.all().find((c) => c.id === route.container)?.state, 'running', 'not stopped while its connection is open')
    const reply = new Promise<string>((resolve) => { let out = ''; held.setEncoding('utf8'); held.on('data', (d: string) => { out += d }); held.on('end', () => { resolve(out.trim()) }) })
    held.end()
    assert.match(await reply, /bye$/, 'the open connection finished normally')
    await waitFor(() => engine.all().every((c) => c.id !== route.container || c.state !== 'running'), 5_000, () => 'the drained replica to stop once its connection ended')
  })
})
