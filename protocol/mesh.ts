/**
 * The routing mesh's stream protocol: how one node asks another to connect a proxied client to
 * a replica it runs.
 *
 *   ingress node                            replica's node
 *   open {service, target, proto,     ──►
 *         client, proxyProtocol}
 *                                    ◄──    reply {ok} | {ok: false, reason}
 *   raw bytes (TCP) or length-prefixed
 *   datagrams (UDP), both ways        ◄─►
 *
 * One length-prefixed msgpack frame each way, then the stream carries the client's bytes
 * untouched. Pure: the IO side is node/mesh/.
 */
import { pack, unpack, WireError } from './codec.ts'
import { SERVICE_NAME_PATTERN } from './spec.ts'

export const MESH_PROTOCOL = '/p2p-orch/mesh/1.0.0'
/** Version of the open and reply frames; a node refuses frames of another version. */
export const MESH_VERSION = 1
/**
 * Largest open or reply frame. An open is about 100 bytes (a 63-character service name, a 45-character
 * address, a few numbers); 1 KiB leaves room for fields added later without letting a peer make
 * us buffer much before the first byte of payload.
 */
export const MAX_MESH_FRAME_BYTES = 1024
/** A refusal's reason is a short human-readable phrase ("no replica", "connection refused"). */
export const MAX_REFUSAL_REASON_LENGTH = 256
/** The longest textual IP address: an IPv6 address with an IPv4 tail (INET6_ADDRSTRLEN - 1). */
export const MAX_IP_LITERAL_LENGTH = 45

export type MeshTransport = 'tcp' | 'udp'

export interface MeshEndpoint {
  /** an IPv4 or IPv6 literal, without a zone (`%eth0`) */
  addr: string
  port: number
}

export interface MeshOpen {
  v: typeof MESH_VERSION
  service: string
  /** the container port to connect to, 1..65535 */
  target: number
  proto: MeshTransport
  /** the proxied client, for the PROXY protocol header and for logs */
  client: MeshEndpoint
  /** the address the client connected to (the ingress node's), for the PROXY protocol header */
  dest?: MeshEndpoint
  /** prepend a PROXY protocol v2 header before the client's first byte */
  proxyProtocol: boolean
}

export type MeshReply = { ok: true } | { ok: false, reason: string }

// ---- IP literals --------------------------------------------------------------------------

const IPV4_OCTET = /^(0|[1-9][0-9]{0,2})$/
const IPV6_GROUP = /^[0-9a-fA-F]{1,4}$/

function parseIpv4 (s: string): Uint8Array | null {
  const parts = s.split('.')
  if (parts.length !== 4) return null
  const out = new Uint8Array(4)
  for (let i = 0; i < 4; i++) {
    // leading zeros are refused: some parsers read "010" as octal, so it is ambiguous
    if (!IPV4_OCTET.test(parts[i])) return null
    const n = Number(parts[i])
    if (n > 255) return null
    out[i] = n
  }
  return out
}

function parseIpv6Groups (part: string): number[] | null {
  if (part === '') return []
  const groups: number[] = []
  const fields = part.split(':')
  for (let i = 0; i < fields.length; i++) {
    const f = fields[i]
    if (i === fields.length - 1 && f.includes('.')) {
      const v4 = parseIpv4(f)
      if (v4 === null) return null
      groups.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3])
    } else if (IPV6_GROUP.test(f)) {
      groups.push(parseInt(f, 16))
    } else {
      return null
    }
  }
  return groups
}

function parseIpv6 (s: string): Uint8Array | null {
  const halves = s.split('::')
  if (halves.length > 2) return null
  const head = parseIpv6Groups(halves[0])
  const tail = halves.length === 2 ? parseIpv6Groups(halves[1]) : []
  if (head === null || tail === null) return null
  // an IPv4 tail is only allowed at the very end
  if (halves.length === 2 && halves[0].includes('.')) return null
  let groups: number[]
  if (halves.length === 2) {
    const missing = 8 - head.length - tail.length
    if (missing < 1) return null
    groups = [...head, ...new Array<number>(missing).fill(0), ...tail]
  } else {
    if (head.length !== 8) return null
    groups = head
  }
  const out = new Uint8Array(16)
  groups.forEach((g, i) => { out[2 * i] = g >> 8; out[2 * i + 1] = g & 0xff })
  return out
}

/**
 * The bytes of an IPv4 (4 bytes) or IPv6 (16 bytes) literal, or null if `s` is not one. Zones
 * (`fe80::1%eth0`) are refused: they name an interface of one host and mean nothing on another.
 */
export function parseIpLiteral (s: string): Uint8Array | null {
  if (s.length === 0 || s.length > MAX_IP_LITERAL_LENGTH) return null
  return s.includes(':') ? parseIpv6(s) : parseIpv4(s)
}

// ---- frames -------------------------------------------------------------------------------

function isPort (n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= 65535
}

/** A msgpack map: not an array, a byte string, or msgpackr's stand-in for a reserved byte (0xc1). */
function isPlainObject (x: unknown): x is Record<string, unknown> {
  if (x === null || typeof x !== 'object') return false
  const proto = Object.getPrototypeOf(x)
  return proto === Object.prototype || proto === null
}

function decodeFrame (bytes: Uint8Array, what: string): Record<string, unknown> {
  if (bytes.length > MAX_MESH_FRAME_BYTES) throw new WireError(`mesh ${what} of ${bytes.length} bytes exceeds the ${MAX_MESH_FRAME_BYTES}-byte limit`)
  let msg: unknown
  try {
    msg = unpack(bytes)
  } catch (err) {
    throw new WireError(`undecodable mesh ${what}: ${(err as Error).message}`)
  }
  if (!isPlainObject(msg)) throw new WireError(`mesh ${what} is not a map`)
  if (msg.v !== MESH_VERSION) throw new WireError(`unsupported mesh ${what} version ${typeof msg.v === 'number' ? msg.v : typeof msg.v}`)
  return msg
}

/** Checks an open's fields; returns the first problem, or null. */
function openProblem (o: Record<string, unknown>): string | null {
  if (typeof o.service !== 'string' || !SERVICE_NAME_PATTERN.test(o.service)) return 'bad service name'
  if (!isPort(o.target)) return 'bad target port'
  if (o.proto !== 'tcp' && o.proto !== 'udp') return 'bad transport'
  if (typeof o.proxyProtocol !== 'boolean') return 'bad proxyProtocol flag'
  const c = o.client
  if (!isPlainObject(c)) return 'bad client'
  const { addr, port } = c
  if (typeof addr !== 'string' || parseIpLiteral(addr) === null) return 'bad client address'
  if (!isPort(port)) return 'bad client port'
  if (o.dest !== undefined) {
    const d = o.dest
    if (!isPlainObject(d) || typeof d.addr !== 'string' || parseIpLiteral(d.addr) === null) return 'bad destination address'
    if (!isPort(d.port) && d.port !== 0) return 'bad destination port'
  }
  return null
}

/** Encodes an open; throws WireError if a field is out of bounds (the peer would refuse it anyway). */
export function encodeMeshOpen (o: MeshOpen): Uint8Array {
  const problem = openProblem(o as unknown as Record<string, unknown>)
  if (problem !== null) throw new WireError(`cannot encode mesh open: ${problem}`)
  const bytes = pack({
    v: MESH_VERSION,
    service: o.service,
    target: o.target,
    proto: o.proto,
    client: { addr: o.client.addr, port: o.client.port },
    ...(o.dest !== undefined ? { dest: { addr: o.dest.addr, port: o.dest.port } } : {}),
    proxyProtocol: o.proxyProtocol
  })
  if (bytes.length > MAX_MESH_FRAME_BYTES) throw new WireError(`mesh open of ${bytes.length} bytes exceeds the ${MAX_MESH_FRAME_BYTES}-byte limit`)
  return bytes
}

/** Decodes an open from the network. Unknown extra fields are ignored, so later versions of 1 may add some. */
export function decodeMeshOpen (bytes: Uint8Array): MeshOpen {
  const f = decodeFrame(bytes, 'open')
  const problem = openProblem(f)
  if (problem !== null) throw new WireError(`mesh open: ${problem}`)
  const client = f.client as MeshEndpoint
  return {
    v: MESH_VERSION,
    service: f.service as string,
    target: f.target as number,
    proto: f.proto as MeshTransport,
    client: { addr: client.addr, port: client.port },
    ...(f.dest !== undefined ? { dest: { addr: (f.dest as MeshEndpoint).addr, port: (f.dest as MeshEndpoint).port } } : {}),
    proxyProtocol: f.proxyProtocol as boolean
  }
}

/** Encodes a reply; a refusal's reason is cut to MAX_REFUSAL_REASON_LENGTH rather than failing the refusal. */
export function encodeMeshReply (r: MeshReply): Uint8Array {
  return pack(r.ok
    ? { v: MESH_VERSION, ok: true }
    : { v: MESH_VERSION, ok: false, reason: r.reason.slice(0, MAX_REFUSAL_REASON_LENGTH) })
}

export function decodeMeshReply (bytes: Uint8Array): MeshReply {
  const f = decodeFrame(bytes, 'reply')
  if (f.ok === true) return { ok: true }
  if (f.ok !== false) throw new WireError('mesh reply: bad ok flag')
  if (typeof f.reason !== 'string' || f.reason.length > MAX_REFUSAL_REASON_LENGTH) throw new WireError('mesh reply: bad refusal reason')
  return { ok: false, reason: f.reason }
}
