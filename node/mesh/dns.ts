/**
 * DNS for the containers an agent runs: a service's name answers with the virtual address the agent
 * proxies for it; every other name goes on to the host's resolvers.
 *
 *   container ──► 127.0.0.11 (Docker's embedded resolver) ──► DnsResponder (bridge gateway IP)
 *                                                                ├─ a service: A records, authoritative
 *                                                                └─ anything else: relayed to an upstream
 *
 * Docker's resolver answers container names and network aliases itself and forwards the rest here,
 * because containers are created with the `Dns` host option set to the gateway of the agent's bridge.
 * UDP and TCP on the same port: a client whose UDP answer came back truncated retries over TCP, and
 * Docker's resolver forwards such a retry over TCP as well, so a forwarded TCP query goes upstream
 * over TCP too.
 */
import { randomInt } from 'node:crypto'
import type { RemoteInfo, Socket as UdpSocket } from 'node:dgram'
import { dgram } from './lazy-builtins.ts'
import { readFile } from 'node:fs/promises'
import { BlockList, connect, createServer, isIP, isIPv4, isIPv6, type Server, type Socket as TcpSocket } from 'node:net'
import { createRequire } from 'node:module'
import type * as DnsPacket from 'dns-packet'
import type { Answer, DecodedPacket, OptAnswer, Packet, Question } from 'dns-packet'
import { UserError } from '../errors.ts'
import type { Logger } from '../logger.ts'
import type { Counters } from '../metrics.ts'

/**
 * dns-packet, loaded on first use: the responder starts with the node's first container, and an
 * agent that runs none never parses DNS (the package costs an idle agent ~0.9 MiB resident).
 */
let dnsPacketModule: typeof DnsPacket | undefined
function dnsPacket (): typeof DnsPacket {
  dnsPacketModule ??= createRequire(import.meta.url)('dns-packet') as typeof DnsPacket
  return dnsPacketModule
}

/** The DNS port (RFC 1035), for an upstream given without one. */
const DNS_PORT = 53
/**
 * TTL of our answers. The address is the service's virtual one, so it outlives replicas moving from
 * host to host, but what a name maps to still changes (a service created, removed or given another
 * address), and a client keeps using a cached answer for its whole TTL. A few seconds bounds how long
 * a client holds a stale address and still spares a busy client a query per connection.
 */
export const ANSWER_TTL_SECONDS = 5
/** Size of a DNS message header (RFC 1035 4.1.1). */
const HEADER_BYTES = 12
/**
 * Largest query accepted, over UDP or TCP. A query carries one question (a name is at most 255 bytes)
 * and at most an EDNS OPT record with a few options (cookie, padding): a few hundred bytes. EDNS
 * (RFC 6891) raises what a *response* may carry, not what a query needs, so the classic 512-byte
 * limit fits every query a resolver sends, and refusing more bounds the work one packet can cause.
 */
export const MAX_QUERY_BYTES = 512
/** What a requester without EDNS can take over UDP (RFC 1035 4.2.1); smaller EDNS sizes mean the same (RFC 6891 6.2.5). */
const CLASSIC_UDP_BYTES = 512
/**
 * Largest UDP answer of our own, and the size our OPT record advertises: the DNS Flag Day 2020 value,
 * the largest payload that is not fragmented on common paths (IPv6's 1280-byte minimum MTU less
 * headers). Fragments get lost and are easier to spoof; a longer answer is truncated and the client
 * fetches it over TCP.
 */
const EDNS_UDP_BYTES = 1232
/** The most a TCP message can hold: its length prefix is two bytes (RFC 1035 4.2.2). */
const MAX_TCP_MESSAGE_BYTES = 0xffff
/** Longest label and longest name on the wire, length bytes included (RFC 1035 2.3.4). */
const MAX_LABEL_BYTES = 63
const MAX_NAME_BYTES = 255
/**
 * How long one upstream gets before the next is tried. Docker's embedded resolver waits 4 s for us,
 * and MAX_UPSTREAMS of these fit inside that, so its client gets our SERVFAIL rather than a timeout.
 * An upstream that refuses (ICMP port unreachable) fails at once and costs nothing.
 */
export const UPSTREAM_TIMEOUT_MS = 1_200
/** Upstreams tried per query: resolv.conf's own limit (glibc's MAXNS), which Docker's resolver keeps too. */
const MAX_UPSTREAMS = 3
/**
 * Forwarded queries waiting for an upstream at once. Each holds a socket (a file descriptor) and a
 * timer for up to MAX_UPSTREAMS × UPSTREAM_TIMEOUT_MS; past this, queries are dropped (the client
 * retries), so a flood, or a dead upstream under a busy client, cannot run the agent out of
 * descriptors or memory.
 */
export const MAX_FORWARDS_IN_FLIGHT = 256
/** Concurrent TCP clients. TCP is only the fallback for truncated answers, so few are ever needed. */
const MAX_TCP_CONNECTIONS = 64
/** An idle TCP client is closed after this; RFC 7766 (6.2.3) leaves it to the server, and seconds suffice. */
const TCP_IDLE_TIMEOUT_MS = 10_000
/** Tries at finding a port free for both UDP and TCP when port 0 was asked for. */
const EPHEMERAL_PORT_ATTEMPTS = 5

const OPCODE_QUERY = 0
const RCODE_SERVFAIL = 2
const RCODE_NOTIMP = 4
const RCODE_REFUSED = 5
/** QR, the response bit, in the third header byte. */
const QR_BIT = 0x80

/** Where the host's resolvers are listed; see readUpstreams for the second. */
const RESOLV_CONF = '/etc/resolv.conf'
const SYSTEMD_RESOLV_CONF = '/run/systemd/resolve/resolv.conf'

/** An upstream that is not an IP address with an optional port. */
export class DnsUpstreamError extends UserError {
  name = 'DnsUpstreamError'
}

/** The responder could not listen: the address is not this host's, the port is taken, or port 53 needs privileges. */
export class DnsListenError extends UserError {
  name = 'DnsListenError'
}

/** IPv4 addresses for a name (already normalised, see normalizeDnsName), or null when it is not ours. */
export type DnsLookup = (name: string, clientAddr: string) => string[] | null

export interface DnsResponderOptions {
  /** IP to listen on: the gateway of the agent's bridge network. */
  host: string
  /** 53 in production; 0 picks a free port (tests). */
  port: number
  lookup: DnsLookup
  /** 'IP' or 'IP:port' ('[IPv6]:port'); tried in order. */
  upstreams: string[]
  logger: Logger
  counters: Counters
}

interface Upstream {
  host: string
  port: number
  family: 4 | 6
}

type Transport = 'udp' | 'tcp'

/** A query that passed validation. */
interface Query {
  raw: Buffer
  id: number
  opcode: number
  recursionDesired: boolean
  question: Question
  /** Offset just past the question in `raw`. */
  questionEnd: number
  /** The name to look up, or null when it cannot be a service's (see lookupKey). */
  key: string | null
  edns: boolean
  /** What the requester can take over UDP. */
  udpLimit: number
}

/** What to make of a message from an upstream. */
type Verdict = 'accept' | 'fail' | 'ignore'

/** Lower-case, without a trailing dot: the form names are compared in. */
export function normalizeDnsName (name: string): string {
  return name.toLowerCase().replace(/\.$/, '')
}

/**
 * Resolvers only reachable in the network namespace of whoever reads the file: loopback, and the
 * unspecified address, which glibc takes to mean this host.
 */
const LOCAL_ONLY = new BlockList()
LOCAL_ONLY.addSubnet('127.0.0.0', 8, 'ipv4')
LOCAL_ONLY.addAddress('0.0.0.0', 'ipv4')
LOCAL_ONLY.addAddress('::1', 'ipv6')
LOCAL_ONLY.addAddress('::', 'ipv6')

function isLocalOnly (addr: string): boolean {
  const bare = addr.replace(/%.*$/, '') // an IPv6 zone id (fe80::1%eth0) is no part of the address
  return LOCAL_ONLY.check(bare, isIPv4(bare) ? 'ipv4' : 'ipv6')
}

/**
 * The `nameserver` addresses of resolv.conf text, in order, without duplicates.
 *
 * Loopback resolvers are skipped. Such an address names a resolver in the network namespace of
 * whoever reads the file: 127.0.0.11 is Docker's embedded resolver of the container the file comes
 * from (an agent run in a container), which forwards what it does not know to its own `Dns` servers,
 * possibly us again; 127.0.0.53 is systemd-resolved's stub on the host's loopback. Docker drops them
 * from the resolv.conf it gives containers for the same reason and uses the servers systemd-resolved
 * itself forwards to; readUpstreams does likewise, so an external name resolves through the same
 * servers for our containers as for any other.
 */
export function upstreamsFromResolvConf (text: string): string[] {
  const out: string[] = []
  for (const line of text.split('\n')) {
    const [keyword, addr] = line.replace(/[#;].*$/, '').trim().split(/\s+/)
    if (keyword !== 'nameserver' || addr === undefined) continue
    if (isIP(addr) === 0 || isLocalOnly(addr) || out.includes(addr)) continue
    out.push(addr)
  }
  return out
}

/**
 * The host's upstream resolvers: /etc/resolv.conf, or, when that lists only loopback ones
 * (systemd-resolved's stub), the servers systemd-resolved forwards to, which is what Docker does too.
 * Empty when neither can be read.
 */
export async function readUpstreams (paths: readonly string[] = [RESOLV_CONF, SYSTEMD_RESOLV_CONF]): Promise<string[]> {
  for (const path of paths) {
    try {
      const upstreams = upstreamsFromResolvConf(await readFile(path, 'utf8'))
      if (upstreams.length > 0) return upstreams
    } catch {
      // unreadable or absent: try the next
    }
  }
  return []
}

function parseUpstream (s: string): Upstream {
  let host = s.trim()
  let port = DNS_PORT
  const bracketed = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(host)
  if (bracketed !== null) {
    host = bracketed[1] ?? ''
    if (bracketed[2] !== undefined) port = Number(bracketed[2])
  } else if (!isIPv6(host) && host.includes(':')) {
    const at = host.lastIndexOf(':')
    const p = host.slice(at + 1)
    port = /^\d{1,5}$/.test(p) ? Number(p) : -1
    host = host.slice(0, at)
  }
  const family = isIP(host)
  if (family === 0 || (bracketed !== null && family !== 6) || port < 1 || port > 0xffff) {
    throw new DnsUpstreamError(`DNS upstream ${JSON.stringify(s)} is not an IP address with an optional :port`)
  }
  return { host, port, family: family === 6 ? 6 : 4 }
}

/**
 * Offset just past the first question (name, type, class) of a message, or -1 when it runs past the
 * end, its name is too long, or it uses compression or a reserved label type: the first name in a
 * message has nothing before it to point at.
 */
function questionEnd (msg: Buffer): number {
  let off = HEADER_BYTES
  for (;;) {
    if (off >= msg.length) return -1
    const len = msg[off] as number
    if (len === 0) break
    if (len > MAX_LABEL_BYTES) return -1
    off += 1 + len
  }
  if (off + 1 - HEADER_BYTES > MAX_NAME_BYTES) return -1
  const end = off + 1 + 4
  return end <= msg.length ? end : -1
}

/** Letters, digits, '-' and '_': all a service or stack name is made of. */
function isNameByte (b: number): boolean {
  return (b >= 0x61 && b <= 0x7a) || (b >= 0x41 && b <= 0x5a) || (b >= 0x30 && b <= 0x39) || b === 0x2d || b === 0x5f
}

/**
 * The key to look the question's name up by: its labels lower-cased and joined by dots. Built from the
 * wire rather than from the decoded text, where one label `a.b` and two labels `a`, `b` look the same;
 * null for the root and for any label with another byte, which no service name has (so it is forwarded).
 */
function lookupKey (msg: Buffer): string | null {
  const labels: string[] = []
  let off = HEADER_BYTES
  for (let len = msg[off] as number; len !== 0; len = msg[off] as number) {
    const label = msg.subarray(off + 1, off + 1 + len)
    if (!label.every(isNameByte)) return null
    labels.push(label.toString('latin1').toLowerCase())
    off += 1 + len
  }
  return labels.length > 0 ? labels.join('.') : null
}

/** Whether two messages ask the same question: names compared case-insensitively (RFC 4343), type and class exactly. */
function sameQuestion (a: Buffer, b: Buffer, end: number): boolean {
  if (a.length < end || b.length < end) return false
  const nameEnd = end - 4
  for (let i = HEADER_BYTES; i < end; i++) {
    const x = a[i] as number
    const y = b[i] as number
    // label length bytes are at most 63, below 'A', so folding letters never touches them
    if (x !== y && (i >= nameEnd || (x | 0x20) !== (y | 0x20) || (x | 0x20) < 0x61 || (x | 0x20) > 0x7a)) return false
  }
  return true
}

function framed (msg: Buffer): Buffer {
  const len = Buffer.alloc(2)
  len.writeUInt16BE(msg.length)
  return Buffer.concat([len, msg])
}

/** The OPT record of our replies to EDNS queries: no options, our UDP size. */
const OUR_OPT: OptAnswer = {
  type: 'OPT', name: '.', udpPayloadSize: EDNS_UDP_BYTES, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: []
}
let ourOptBytes: Buffer | undefined
/** OUR_OPT on the wire, encoded once on first use. */
function ourOptWire (): Buffer {
  ourOptBytes ??= dnsPacket().encode({ additionals: [OUR_OPT] }).subarray(HEADER_BYTES)
  return ourOptBytes
}

/**
 * Answers DNS queries from containers on one agent's bridge network: service names itself, the rest
 * through the host's resolvers. A packet it cannot use is dropped and counted, never thrown over.
 */
export class DnsResponder {
  private readonly host: string
  private readonly port: number
  private readonly lookup: DnsLookup
  private readonly upstreams: Upstream[]
  private readonly logger: Logger
  private readonly counters: Counters
  private udp: UdpSocket | null = null
  private tcp: Server | null = null
  private boundPort = 0
  private forwarding = 0
  private stopped = false
  /** Ends each open exchange with an upstream (as failed); stop() calls them all. */
  private readonly exchanges = new Set<() => void>()
  private readonly connections = new Set<TcpSocket>()

  constructor (o: DnsResponderOptions) {
    if (isIP(o.host) === 0) throw new DnsListenError(`DNS responder address ${JSON.stringify(o.host)} is not an IP address`)
    this.host = o.host
    this.port = o.port
    this.lookup = o.lookup
    this.upstreams = o.upstreams.map(parseUpstream).slice(0, MAX_UPSTREAMS)
    this.logger = o.logger
    this.counters = o.counters
  }

  address (): { host: string, port: number } {
    return { host: this.host, port: this.udp === null ? this.port : this.boundPort }
  }

  async start (): Promise<void> {
    if (this.udp !== null) return
    this.stopped = false
    for (let attempt = 1; ; attempt++) {
      const udp = await this.bindUdp(this.port)
      const port = udp.address().port
      try {
        this.tcp = await this.listenTcp(port)
        this.udp = udp
        this.boundPort = port
        break
      } catch (err) {
        udp.close()
        // with port 0 the kernel chose a UDP port whose TCP twin may be taken: choose again
        if (this.port !== 0 || attempt >= EPHEMERAL_PORT_ATTEMPTS || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE') {
          throw this.listenError('tcp', port, err)
        }
      }
    }
    const loop = this.upstreams.find((u) => u.host === this.host && u.port === this.boundPort)
    if (loop !== undefined) this.logger.warn({ upstream: `${loop.host}:${loop.port}` }, 'a DNS upstream is this responder itself; it is skipped')
    if (this.upstreams.length === 0) this.logger.warn('no DNS upstreams: names other than services get SERVFAIL')
    this.logger.info({ host: this.host, port: this.boundPort }, 'DNS responder listening (udp, tcp)')
  }

  async stop (): Promise<void> {
    this.stopped = true
    for (const end of [...this.exchanges]) end()
    for (const c of this.connections) c.destroy()
    const { udp, tcp } = this
    this.udp = null
    this.tcp = null
    await Promise.all([
      udp === null ? undefined : new Promise<void>((resolve) => udp.close(() => resolve())),
      tcp === null ? undefined : new Promise<void>((resolve) => tcp.close(() => resolve()))
    ])
  }

  // ------------------------------------------------------------------------------------------
  // listening

  private listenError (proto: Transport, port: number, err: unknown): DnsListenError {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message
    const hint = code === 'EACCES' ? ' (ports below 1024 need root or CAP_NET_BIND_SERVICE)' : code === 'EADDRINUSE' ? ' (another DNS server is listening there)' : ''
    return new DnsListenError(`cannot listen for DNS on ${this.host}:${port}/${proto}: ${code}${hint}`)
  }

  private bindUdp (port: number): Promise<UdpSocket> {
    return new Promise((resolve, reject) => {
      const sock = dgram().createSocket({ type: isIPv6(this.host) ? 'udp6' : 'udp4' })
      const failed = (err: Error): void => {
        try { sock.close() } catch { /* never bound */ }
        reject(this.listenError('udp', port, err))
      }
      sock.once('error', failed)
      sock.bind({ address: this.host, port, exclusive: true }, () => {
        sock.off('error', failed)
        // errors of a bound UDP socket concern one datagram; an 'error' without a listener would throw
        sock.on('error', (err) => this.logger.debug({ error: err.message }, 'DNS socket error'))
        sock.on('message', (msg, from) => this.onDatagram(msg, from))
        resolve(sock)
      })
    })
  }

  private listenTcp (port: number): Promise<Server> {
    return new Promise((resolve, reject) => {
      const server = createServer((sock) => this.serveTcp(sock))
      server.maxConnections = MAX_TCP_CONNECTIONS
      server.once('error', reject)
      server.listen({ host: this.host, port, exclusive: true }, () => {
        server.off('error', reject)
        server.on('error', (err) => this.logger.warn({ error: err.message }, 'DNS TCP listener error'))
        resolve(server)
      })
    })
  }

  private onDatagram (msg: Buffer, from: RemoteInfo): void {
    // port 0 cannot be replied to (send would throw); only a forged packet comes from it
    if (from.port === 0) {
      this.drop('source port 0', from.address)
      return
    }
    this.respond(msg, from.address, 'udp').then((reply) => {
      if (reply === null || this.udp === null) return
      try {
        this.udp.send(reply, from.port, from.address, (err) => {
          if (err !== null) this.logger.debug({ client: from.address, error: err.message }, 'DNS reply not sent')
        })
      } catch (err) {
        this.logger.debug({ client: from.address, error: (err as Error).message }, 'DNS reply not sent')
      }
    }).catch((err: unknown) => this.internalError(err))
  }

  /**
   * One query at a time per connection, in order: the socket is paused while one is answered, so what
   * a connection holds is bounded by one read (the stream's high-water mark) plus one query.
   */
  private serveTcp (sock: TcpSocket): void {
    this.connections.add(sock)
    sock.on('close', () => this.connections.delete(sock))
    sock.on('error', (err) => this.logger.debug({ client: sock.remoteAddress, error: err.message }, 'DNS TCP client error'))
    sock.setTimeout(TCP_IDLE_TIMEOUT_MS, () => sock.destroy())
    const client = sock.remoteAddress ?? ''
    let pending: Buffer = Buffer.alloc(0)
    let busy = false
    const serve = async (): Promise<void> => {
      busy = true
      sock.pause()
      try {
        while (pending.length >= 2 && !sock.destroyed) {
          const len = pending.readUInt16BE(0)
          if (len > MAX_QUERY_BYTES) {
            this.drop('oversized', client)
            sock.destroy()
            return
          }
          if (pending.length < 2 + len) break
          const msg = Buffer.from(pending.subarray(2, 2 + len))
          pending = pending.subarray(2 + len)
          const reply = await this.respond(msg, client, 'tcp')
          // a client whose query gets no reply is broken or flooding: it has to connect again
          if (reply === null) {
            sock.destroy()
            return
          }
          if (!sock.destroyed) sock.write(framed(reply))
        }
      } finally {
        busy = false
        if (!sock.destroyed) sock.resume()
      }
    }
    sock.on('data', (chunk: Buffer) => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk])
      if (!busy) {
        serve().catch((err: unknown) => {
          this.internalError(err)
          sock.destroy()
        })
      }
    })
  }

  private internalError (err: unknown): void {
    this.counters.inc('mesh_dns_internal_errors_total')
    this.logger.error({ error: (err as Error).message, stack: (err as Error).stack }, 'DNS responder failed on a query')
  }

  // ------------------------------------------------------------------------------------------
  // answering

  /** Returns null for a counted drop. */
  private drop (reason: string, client: string): null {
    this.counters.inc('mesh_dns_malformed_total')
    this.logger.debug({ client, reason }, 'dropped DNS packet')
    return null
  }

  private parseQuery (msg: Buffer, client: string): Query | null {
    if (msg.length < HEADER_BYTES) return this.drop('shorter than a header', client)
    if (msg.length > MAX_QUERY_BYTES) return this.drop('oversized', client)
    // a response sent to a server port is stray or forged to make us reflect it; never answered
    if (((msg[2] as number) & QR_BIT) !== 0) return this.drop('a response', client)
    if (msg.readUInt16BE(4) !== 1) return this.drop('not exactly one question', client)
    const end = questionEnd(msg)
    if (end < 0) return this.drop('bad question', client)
    let packet: DecodedPacket
    try {
      packet = dnsPacket().decode(msg)
    } catch {
      return this.drop('undecodable', client)
    }
    const question = packet.questions?.[0]
    if (question === undefined) return this.drop('no question', client)
    const opt = packet.additionals?.find((a): a is OptAnswer => a.type === 'OPT')
    return {
      raw: msg,
      id: msg.readUInt16BE(0),
      opcode: ((msg[2] as number) >> 3) & 0x0f,
      recursionDesired: ((msg[2] as number) & 0x01) !== 0,
      question,
      questionEnd: end,
      key: lookupKey(msg),
      edns: opt !== undefined,
      udpLimit: opt === undefined ? CLASSIC_UDP_BYTES : Math.max(CLASSIC_UDP_BYTES, opt.udpPayloadSize)
    }
  }

  /** The reply to send, or null when nothing should be sent. Never throws for anything a client sends. */
  private async respond (msg: Buffer, client: string, transport: Transport): Promise<Buffer | null> {
    const q = this.parseQuery(msg, client)
    if (q === null) return null
    this.counters.inc('mesh_dns_queries_total')
    if (q.opcode !== OPCODE_QUERY) {
      this.counters.inc('mesh_dns_not_implemented_total')
      return this.errorReply(q, RCODE_NOTIMP)
    }
    if (q.key !== null) {
      let addresses: string[] | null
      try {
        addresses = this.lookup(q.key, client)
      } catch (err) {
        this.counters.inc('mesh_dns_lookup_errors_total')
        this.logger.warn({ name: q.key, error: (err as Error).message }, 'service name lookup failed')
        return this.servfail(q)
      }
      if (addresses !== null) {
        this.counters.inc('mesh_dns_answers_total')
        return this.answer(q, addresses, transport)
      }
    }
    return await this.forward(q, transport)
  }

  /**
   * Our authoritative answer: A records for an A question, none for any other type, so a client asking
   * AAAA falls back to A rather than caching NXDOMAIN for the name. No SOA goes with an empty answer,
   * so nobody caches the absence either (RFC 2308 5). Over UDP, records that do not fit the client's
   * size are left off and TC is set; the client then asks again over TCP.
   */
  private answer (q: Query, addresses: string[], transport: Transport): Buffer {
    const valid = addresses.filter((a) => isIPv4(a))
    if (valid.length < addresses.length) this.logger.debug({ name: q.key, addresses }, 'lookup returned addresses that are not IPv4; left out')
    const records = q.question.type === 'A' && q.question.class === 'IN' ? valid : []
    const limit = transport === 'tcp' ? MAX_TCP_MESSAGE_BYTES : Math.min(q.udpLimit, EDNS_UDP_BYTES)
    const record = (data: string): Answer => ({ type: 'A', class: 'IN', name: q.question.name, ttl: ANSWER_TTL_SECONDS, data })
    const reply: Packet = {
      type: 'response',
      id: q.id,
      flags: dnsPacket().AUTHORITATIVE_ANSWER | dnsPacket().RECURSION_AVAILABLE | (q.recursionDesired ? dnsPacket().RECURSION_DESIRED : 0),
      questions: [q.question],
      answers: [],
      additionals: q.edns ? [OUR_OPT] : []
    }
    const perRecord = dnsPacket().encodingLength({ answers: [record('0.0.0.0')] }) - HEADER_BYTES
    const fit = Math.max(0, Math.floor((limit - dnsPacket().encodingLength(reply)) / perRecord))
    if (fit < records.length) reply.flags = (reply.flags ?? 0) | dnsPacket().TRUNCATED_RESPONSE
    reply.answers = records.slice(0, fit).map(record)
    return dnsPacket().encode(reply)
  }

  /** An error reply that repeats the question exactly as asked (it is copied, not re-encoded). */
  private errorReply (q: Query, rcode: number): Buffer {
    const header = Buffer.alloc(HEADER_BYTES)
    header.writeUInt16BE(q.id, 0)
    header.writeUInt16BE(0x8000 | (q.opcode << 11) | (q.recursionDesired ? dnsPacket().RECURSION_DESIRED : 0) | dnsPacket().RECURSION_AVAILABLE | rcode, 2)
    header.writeUInt16BE(1, 4)
    header.writeUInt16BE(q.edns ? 1 : 0, 10)
    return Buffer.concat([header, q.raw.subarray(HEADER_BYTES, q.questionEnd), q.edns ? ourOptWire() : Buffer.alloc(0)])
  }

  private servfail (q: Query): Buffer {
    this.counters.inc('mesh_dns_servfail_total')
    return this.errorReply(q, RCODE_SERVFAIL)
  }

  // ------------------------------------------------------------------------------------------
  // forwarding

  /**
   * The query as the client sent it (its EDNS size and flags included) to each upstream in turn, under
   * a fresh random id: with a fresh source port per exchange that is 32 bits a forger has to guess.
   * The answer goes back under the client's id; SERVFAIL when no upstream gave one.
   */
  private async forward (q: Query, transport: Transport): Promise<Buffer | null> {
    const upstreams = this.upstreams.filter((u) => !(u.host === this.host && u.port === this.boundPort))
    if (upstreams.length === 0) return this.servfail(q)
    if (this.forwarding >= MAX_FORWARDS_IN_FLIGHT) {
      this.counters.inc('mesh_dns_forwards_dropped_total')
      return null
    }
    this.forwarding++
    this.counters.inc('mesh_dns_forwarded_total')
    try {
      for (const upstream of upstreams) {
        if (this.stopped) return null
        const id = randomInt(0, 0x10000)
        const out = Buffer.from(q.raw)
        out.writeUInt16BE(id, 0)
        const limit = transport === 'udp' ? q.udpLimit : MAX_TCP_MESSAGE_BYTES
        const judge = (reply: Buffer): Verdict => this.judge(reply, id, q, limit, upstream)
        const reply = transport === 'udp' ? await this.exchangeUdp(upstream, out, judge) : await this.exchangeTcp(upstream, out, judge)
        if (reply !== null) {
          reply.writeUInt16BE(q.id, 0)
          return reply
        }
        this.counters.inc('mesh_dns_upstream_failures_total')
      }
    } finally {
      this.forwarding--
    }
    return this.stopped ? null : this.servfail(q)
  }

  /**
   * Whether a message from an upstream answers our query: our id, the response bit, the same question
   * (or none, with an error code). One that does not is ignored (stray or forged); an answer larger
   * than the client can take, or an upstream's own failure, moves on to the next upstream, as glibc
   * and Docker's resolver do.
   */
  private judge (reply: Buffer, id: number, q: Query, limit: number, upstream: Upstream): Verdict {
    if (reply.length < HEADER_BYTES || reply.readUInt16BE(0) !== id || ((reply[2] as number) & QR_BIT) === 0) return this.ignored(upstream)
    const rcode = (reply[3] as number) & 0x0f
    const questions = reply.readUInt16BE(4)
    const matches = questions === 1 ? sameQuestion(reply, q.raw, q.questionEnd) : questions === 0 && rcode !== 0
    if (!matches) return this.ignored(upstream)
    if (reply.length > limit) {
      this.logger.debug({ upstream: upstream.host, bytes: reply.length, limit }, 'DNS upstream answer larger than the client can take')
      return 'fail'
    }
    if (rcode === RCODE_SERVFAIL || rcode === RCODE_REFUSED || rcode === RCODE_NOTIMP) {
      this.logger.debug({ upstream: upstream.host, rcode }, 'DNS upstream could not answer')
      return 'fail'
    }
    return 'accept'
  }

  private ignored (upstream: Upstream): 'ignore' {
    this.counters.inc('mesh_dns_upstream_ignored_total')
    this.logger.debug({ upstream: upstream.host }, 'ignored a DNS message that does not answer our query')
    return 'ignore'
  }

  /** Runs one exchange: `start` gets a `finish` to call once; the timeout and stop() call it too. */
  private exchange (upstream: Upstream, start: (finish: (reply: Buffer | null, why?: string) => void) => () => void): Promise<Buffer | null> {
    return new Promise((resolve) => {
      let close = (): void => {}
      const finish = (reply: Buffer | null, why?: string): void => {
        if (!this.exchanges.delete(end)) return
        clearTimeout(timer)
        close()
        if (reply === null && why !== undefined) this.logger.debug({ upstream: `${upstream.host}:${upstream.port}`, why }, 'DNS upstream failed')
        resolve(reply)
      }
      const end = (): void => finish(null)
      this.exchanges.add(end)
      const timer = setTimeout(() => finish(null, 'timeout'), UPSTREAM_TIMEOUT_MS)
      close = start(finish)
    })
  }

  /** A socket of its own per exchange, connected, so the kernel drops datagrams from anyone else. */
  private exchangeUdp (upstream: Upstream, out: Buffer, judge: (reply: Buffer) => Verdict): Promise<Buffer | null> {
    return this.exchange(upstream, (finish) => {
      const sock = dgram().createSocket(upstream.family === 6 ? 'udp6' : 'udp4')
      sock.on('error', (err) => finish(null, err.message))
      sock.on('message', (reply) => {
        const verdict = judge(reply)
        if (verdict !== 'ignore') finish(verdict === 'accept' ? reply : null, verdict === 'fail' ? 'unusable answer' : undefined)
      })
      sock.connect(upstream.port, upstream.host, () => {
        try {
          sock.send(out, (err) => { if (err !== null) finish(null, err.message) })
        } catch (err) {
          finish(null, (err as Error).message) // closed meanwhile (timeout or stop)
        }
      })
      return () => {
        try { sock.close() } catch { /* already closed */ }
      }
    })
  }

  /** One connection per exchange; what is read is bounded by one message (its two-byte length) plus one read. */
  private exchangeTcp (upstream: Upstream, out: Buffer, judge: (reply: Buffer) => Verdict): Promise<Buffer | null> {
    return this.exchange(upstream, (finish) => {
      const sock = connect({ host: upstream.host, port: upstream.port })
      let got: Buffer = Buffer.alloc(0)
      sock.on('connect', () => sock.write(framed(out)))
      sock.on('error', (err) => finish(null, err.message))
      sock.on('close', () => finish(null, 'closed before answering'))
      sock.on('data', (chunk: Buffer) => {
        got = got.length === 0 ? chunk : Buffer.concat([got, chunk])
        if (got.length < 2 || got.length < 2 + got.readUInt16BE(0)) return
        const reply = Buffer.from(got.subarray(2, 2 + got.readUInt16BE(0)))
        finish(judge(reply) === 'accept' ? reply : null, 'unusable answer')
      })
      return () => sock.destroy()
    })
  }
}
