/** Ports: `ports:` (short and long syntax, our `x-p2p-orch` extension) and `expose:`. */
import type { ExposedPort, PortSpec } from '../spec.ts'
import { PORT, PORT_EXTENSION, checkKeys } from './support.ts'
import type { Ctx, Obj, Path } from './types.ts'
import { describe, err, get, isRecord, listItems } from './types.ts'
import { int, str } from './values.ts'

const PORT_EXPECTED = 'a port number between 1 and 65535'

function portNumber (ctx: Ctx, v: unknown, path: Path): number | undefined {
  if (typeof v === 'string' && /^\s*\d+\s*-\s*\d+\s*$/.test(v)) {
    err(ctx, path, `port ranges are not supported yet, got ${describe(v)}`)
    return undefined
  }
  return int(ctx, v, path, 1, 65535, PORT_EXPECTED)
}

function checkHostIp (ctx: Ctx, ip: string, path: Path): void {
  if (ip === '' || ip === '0.0.0.0' || ip === '::') return
  err(ctx, path, `binding to host IP ${describe(ip)} is not supported: published ports open on every node and every address`)
}

function protocolOf (ctx: Ctx, v: unknown, path: Path): 'tcp' | 'udp' | undefined {
  const s = typeof v === 'string' ? v.trim().toLowerCase() : undefined
  if (s === 'tcp' || s === 'udp') return s
  err(ctx, path, `unsupported protocol ${describe(v)}: expected tcp or udp`)
  return undefined
}

function shortPort (ctx: Ctx, s: string, path: Path): PortSpec | undefined {
  let spec = s.trim()
  let protocol: 'tcp' | 'udp' = 'tcp'
  const slash = spec.lastIndexOf('/')
  if (slash >= 0) {
    const p = protocolOf(ctx, spec.slice(slash + 1), path)
    if (p === undefined) return undefined
    protocol = p
    spec = spec.slice(0, slash)
  }
  const invalid = (): undefined => {
    err(ctx, path, `invalid port ${describe(s)}: expected [[HOST_IP:]PUBLISHED:]TARGET[/PROTOCOL]`)
    return undefined
  }
  let host: string | undefined
  let rest = spec
  if (spec.startsWith('[')) {
    const close = spec.indexOf(']')
    if (close < 0 || spec[close + 1] !== ':') return invalid()
    host = spec.slice(1, close)
    rest = spec.slice(close + 2)
  }
  const parts = rest.split(':')
  if (host === undefined && parts.length === 3) host = parts.shift()
  if (parts.length > 2 || (host !== undefined && parts.length !== 2)) return invalid()
  const targetText = parts[parts.length - 1]
  const publishedText = parts.length === 2 ? parts[0] : undefined
  if (publishedText === '' && host === undefined) return invalid()
  if (host !== undefined) checkHostIp(ctx, host, path)
  const numberOf = (t: string): number | undefined => {
    if (/^\s*\d+\s*-\s*\d+\s*$/.test(t)) {
      err(ctx, path, `port ranges are not supported yet, got ${describe(s)}`)
      return undefined
    }
    const n = /^\d+$/.test(t) ? Number(t) : NaN
    if (!(n >= 1 && n <= 65535)) {
      err(ctx, path, `invalid port ${describe(s)}: ${describe(t)} is not ${PORT_EXPECTED}`)
      return undefined
    }
    return n
  }
  const target = numberOf(targetText)
  if (target === undefined) return undefined
  let published: number | undefined
  if (publishedText !== undefined && publishedText !== '') {
    published = numberOf(publishedText)
    if (published === undefined) return undefined
  }
  return published === undefined ? { target, protocol, mode: 'ingress' } : { target, published, protocol, mode: 'ingress' }
}

function longPort (ctx: Ctx, o: Obj, path: Path): PortSpec | undefined {
  checkKeys(ctx, o, path, PORT)
  const t = get(o, 'target')
  if (t === undefined) {
    err(ctx, [...path, 'target'], 'required')
    return undefined
  }
  const target = portNumber(ctx, t, [...path, 'target'])
  const pub = get(o, 'published')
  const published = pub === undefined || pub === '' ? undefined : portNumber(ctx, pub, [...path, 'published'])
  const protoRaw = get(o, 'protocol')
  const protocol = protoRaw === undefined ? 'tcp' : protocolOf(ctx, protoRaw, [...path, 'protocol'])
  const modeRaw = get(o, 'mode')
  let mode: 'ingress' | 'host' | undefined = 'ingress'
  if (modeRaw !== undefined) {
    if (modeRaw === 'ingress' || modeRaw === 'host') mode = modeRaw
    else {
      err(ctx, [...path, 'mode'], `must be "ingress" or "host", got ${describe(modeRaw)}`)
      mode = undefined
    }
  }
  const ip = get(o, 'host_ip')
  if (ip !== undefined) {
    const s = str(ctx, ip, [...path, 'host_ip'])
    if (s !== undefined) checkHostIp(ctx, s, [...path, 'host_ip'])
  }
  const proxyProtocol = portExtension(ctx, get(o, 'x-p2p-orch'), [...path, 'x-p2p-orch'])
  if (target === undefined || protocol === undefined || mode === undefined || proxyProtocol === null) return undefined
  if (pub !== undefined && pub !== '' && published === undefined) return undefined
  const port: PortSpec = published === undefined ? { target, protocol, mode } : { target, published, protocol, mode }
  if (proxyProtocol) {
    if (mode !== 'ingress' || published === undefined) {
      err(ctx, [...path, 'x-p2p-orch', 'proxy_protocol'], 'applies to published ingress ports only (the routing mesh sends the header)')
      return undefined
    }
    port.proxyProtocol = true
  }
  return port
}

/**
 * A port's `x-p2p-orch:` mapping: `proxy_protocol: true` (or `v2`) makes the routing mesh send a
 * PROXY protocol v2 header first, so the backend learns the client's address. Returns false when
 * absent, null after an error.
 */
function portExtension (ctx: Ctx, v: unknown, path: Path): boolean | null {
  if (v === undefined) return false
  if (!isRecord(v)) {
    err(ctx, path, `must be a mapping like {proxy_protocol: true}, got ${describe(v)}`)
    return null
  }
  checkKeys(ctx, v, path, PORT_EXTENSION)
  const raw = get(v, 'proxy_protocol')
  if (raw === undefined || raw === false || raw === 'false') return false
  if (raw === true || raw === 'true' || raw === 'v2' || raw === 2) return true
  err(ctx, [...path, 'proxy_protocol'], `must be true, false or "v2", got ${describe(raw)}`)
  return null
}

/** `expose:` — container ports other services of the stack reach by name: "3000", "3000/udp", 8080. */
export function exposedPorts (ctx: Ctx, v: unknown, path: Path): ExposedPort[] {
  return listItems(v, path, (item, p) => {
    const text = typeof item === 'number' ? String(item) : typeof item === 'string' ? item.trim() : undefined
    const m = text === undefined ? null : /^(\d+)(?:\/(tcp|udp))?$/i.exec(text)
    if (m === null) {
      err(ctx, p, `must be a container port like "3000" or "3000/udp", got ${describe(item)}`)
      return undefined
    }
    const target = Number(m[1])
    if (!(target >= 1 && target <= 65535)) {
      err(ctx, p, `invalid port ${describe(item)}: not ${PORT_EXPECTED}`)
      return undefined
    }
    return { target, protocol: (m[2] ?? 'tcp').toLowerCase() as 'tcp' | 'udp' }
  })
}

export function ports (ctx: Ctx, v: unknown, path: Path): PortSpec[] {
  return listItems(v, path, (item, p) => {
    if (typeof item === 'number') {
      const target = int(ctx, item, p, 1, 65535, PORT_EXPECTED)
      return target === undefined ? undefined : { target, protocol: 'tcp', mode: 'ingress' }
    }
    if (typeof item === 'string') return shortPort(ctx, item, p)
    return isRecord(item) ? longPort(ctx, item, p) : undefined
  })
}
