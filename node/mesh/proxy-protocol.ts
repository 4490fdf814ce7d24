/**
 * HAProxy PROXY protocol, version 2 (binary): the header a replica's node sends to the container
 * before the client's first byte, when the service asks for it, so the backend learns the real
 * client address instead of the mesh's. Spec: https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt
 * (section 2.2).
 *
 *   12 bytes  signature \r\n\r\n\0\r\nQUIT\n
 *    1 byte   version (high nibble, 2) | command (low nibble: 0 LOCAL, 1 PROXY)
 *    1 byte   family (high nibble: 1 INET, 2 INET6) | transport (low nibble: 1 STREAM, 2 DGRAM)
 *    2 bytes  length of what follows, big-endian
 *   INET:  source addr (4), dest addr (4), source port (2), dest port (2)
 *   INET6: source addr (16), dest addr (16), source port (2), dest port (2)
 *   then optional TLVs up to the length
 */
import { parseIpLiteral } from '../../protocol/mesh.ts'

export const PROXY_V2_SIGNATURE = Uint8Array.of(0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a)
/** Signature, version/command, family/transport and length: the fixed part of every v2 header. */
export const PROXY_V2_FIXED_BYTES = 16
const VERSION_2 = 0x20
const COMMAND_LOCAL = 0x0
const COMMAND_PROXY = 0x1
const FAMILY_UNSPEC = 0x00
const FAMILY_INET = 0x10
const FAMILY_INET6 = 0x20
const FAMILY_UNIX = 0x30
const TRANSPORT_STREAM = 0x1
const TRANSPORT_DGRAM = 0x2
/** Address block lengths: two addresses and two 2-byte ports. */
const INET_ADDRESS_BYTES = 4 + 4 + 2 + 2
const INET6_ADDRESS_BYTES = 16 + 16 + 2 + 2

export interface ProxyEndpoint {
  addr: string
  port: number
}

export interface ProxyAddresses {
  proto: 'tcp' | 'udp'
  source: ProxyEndpoint
  dest: ProxyEndpoint
}

export interface ParsedProxyV2Header {
  command: 'local' | 'proxy'
  /**
   * null for LOCAL, and for families or transports this parser does not read (UNSPEC, UNIX):
   * the spec says the receiver then uses the connection's own addresses.
   */
  addresses: ProxyAddresses | null
  /** the TLV extensions after the addresses, unparsed */
  tlvs: Uint8Array
  /** the header's total size: the proxied payload starts at this offset */
  length: number
}

export class ProxyHeaderError extends Error {
  name = 'ProxyHeaderError'
}

function isV4Mapped (b: Uint8Array): boolean {
  if (b.length !== 16) return false
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return false
  return b[10] === 0xff && b[11] === 0xff
}

/** Address bytes, with IPv4-mapped IPv6 (::ffff:a.b.c.d) turned into plain IPv4. */
function addressBytes (addr: string): Uint8Array {
  const b = parseIpLiteral(addr)
  if (b === null) throw new ProxyHeaderError(`not an IP address: ${addr.slice(0, 64)}`)
  return isV4Mapped(b) ? b.subarray(12) : b
}

function v4Mapped (v4: Uint8Array): Uint8Array {
  const out = new Uint8Array(16)
  out[10] = 0xff
  out[11] = 0xff
  out.set(v4, 12)
  return out
}

function checkPort (port: number): void {
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ProxyHeaderError(`bad port ${port}`)
}

/**
 * The v2 PROXY header for one proxied connection or datagram flow. Both addresses must be of one
 * family on the wire: IPv4-mapped IPv6 addresses are sent as IPv4; otherwise the source's family
 * wins and the destination is mapped to it. The one mix that cannot be written as IPv4 (an IPv4
 * source with a genuine IPv6 destination) is sent as IPv6, with the source IPv4-mapped.
 */
export function proxyV2Header (h: ProxyAddresses): Uint8Array {
  checkPort(h.source.port)
  checkPort(h.dest.port)
  let src = addressBytes(h.source.addr)
  let dst = addressBytes(h.dest.addr)
  if (src.length === 16 && dst.length === 4) dst = v4Mapped(dst)
  else if (src.length === 4 && dst.length === 16) src = v4Mapped(src)
  const inet6 = src.length === 16
  const addressBytesLength = inet6 ? INET6_ADDRESS_BYTES : INET_ADDRESS_BYTES
  const out = new Uint8Array(PROXY_V2_FIXED_BYTES + addressBytesLength)
  const view = new DataView(out.buffer)
  out.set(PROXY_V2_SIGNATURE, 0)
  out[12] = VERSION_2 | COMMAND_PROXY
  out[13] = (inet6 ? FAMILY_INET6 : FAMILY_INET) | (h.proto === 'udp' ? TRANSPORT_DGRAM : TRANSPORT_STREAM)
  view.setUint16(14, addressBytesLength)
  out.set(src, PROXY_V2_FIXED_BYTES)
  out.set(dst, PROXY_V2_FIXED_BYTES + src.length)
  view.setUint16(PROXY_V2_FIXED_BYTES + 2 * src.length, h.source.port)
  view.setUint16(PROXY_V2_FIXED_BYTES + 2 * src.length + 2, h.dest.port)
  return out
}

function formatIpv4 (b: Uint8Array): string {
  return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`
}

/**
 * RFC 5952 text: lowercase, no leading zeros, the longest run of two or more zero groups as `::`,
 * and IPv4-mapped addresses as ::ffff:a.b.c.d.
 */
function formatIpv6 (b: Uint8Array): string {
  if (isV4Mapped(b)) return `::ffff:${formatIpv4(b.subarray(12))}`
  const groups: number[] = []
  for (let i = 0; i < 16; i += 2) groups.push((b[i] << 8) | b[i + 1])
  let bestStart = -1
  let bestLength = 1
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) { i++; continue }
    let j = i
    while (j < 8 && groups[j] === 0) j++
    if (j - i > bestLength) { bestStart = i; bestLength = j - i }
    i = j
  }
  const hex = (gs: number[]): string => gs.map((g) => g.toString(16)).join(':')
  if (bestStart < 0) return hex(groups)
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLength))}`
}

/**
 * Reads a v2 header at the start of `buf`. Returns null while `buf` may still be the start of one
 * (fewer bytes than the header needs); throws ProxyHeaderError when it is not a v2 header.
 */
export function parseProxyV2Header (buf: Uint8Array): ParsedProxyV2Header | null {
  const seen = Math.min(buf.length, PROXY_V2_SIGNATURE.length)
  for (let i = 0; i < seen; i++) {
    if (buf[i] !== PROXY_V2_SIGNATURE[i]) throw new ProxyHeaderError('no PROXY v2 signature')
  }
  if (buf.length < PROXY_V2_FIXED_BYTES) return null
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength)
  const versionCommand = buf[12]
  if ((versionCommand & 0xf0) !== VERSION_2) throw new ProxyHeaderError(`unsupported PROXY version ${versionCommand >> 4}`)
  const commandBits = versionCommand & 0x0f
  if (commandBits !== COMMAND_LOCAL && commandBits !== COMMAND_PROXY) throw new ProxyHeaderError(`unknown PROXY command ${commandBits}`)
  const family = buf[13] & 0xf0
  const transport = buf[13] & 0x0f
  const rest = view.getUint16(14)
  const length = PROXY_V2_FIXED_BYTES + rest
  if (buf.length < length) return null
  const block = buf.subarray(PROXY_V2_FIXED_BYTES, length)
  const command = commandBits === COMMAND_PROXY ? 'proxy' : 'local'
  const proto = transport === TRANSPORT_STREAM ? 'tcp' : transport === TRANSPORT_DGRAM ? 'udp' : null
  const addrLength = family === FAMILY_INET ? 4 : family === FAMILY_INET6 ? 16 : 0
  if (command === 'local' || addrLength === 0 || proto === null) {
    if (family !== FAMILY_UNSPEC && family !== FAMILY_INET && family !== FAMILY_INET6 && family !== FAMILY_UNIX) {
      throw new ProxyHeaderError(`unknown PROXY address family ${family >> 4}`)
    }
    return { command, addresses: null, tlvs: block, length }
  }
  const need = 2 * addrLength + 4
  if (rest < need) throw new ProxyHeaderError(`PROXY address block of ${rest} bytes is shorter than ${need}`)
  const format = addrLength === 4 ? formatIpv4 : formatIpv6
  const blockView = new DataView(block.buffer, block.byteOffset, block.byteLength)
  return {
    command,
    addresses: {
      proto,
      source: { addr: format(block.subarray(0, addrLength)), port: blockView.getUint16(2 * addrLength) },
      dest: { addr: format(block.subarray(addrLength, 2 * addrLength)), port: blockView.getUint16(2 * addrLength + 2) }
    },
    tlvs: block.subarray(need),
    length
  }
}
