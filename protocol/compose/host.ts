/**
 * Keys that reach the host or change the container's privileges: `read_only`, `privileged`,
 * `cap_add`, `cap_drop`, `devices`, `pid`. Translating them is all this stage does; who may deploy
 * them and which nodes run them is decided on every node (protocol/host-access.ts, validate.ts).
 */
import type { DeviceSpec, ServiceSpec } from '../spec.ts'
import { DEVICE, checkKeys } from './support.ts'
import type { Ctx, Obj, Path } from './types.ts'
import { describe, err, get, isRecord, listItems } from './types.ts'
import { bool, str } from './values.ts'

/** Docker takes `NET_ADMIN` and `CAP_NET_ADMIN` alike; the spec keeps what the user wrote, upper-cased. */
const CAPABILITY = /^[A-Za-z][A-Za-z0-9_]{0,63}$/

function capabilities (ctx: Ctx, v: unknown, path: Path): string[] | undefined {
  if (v === undefined) return undefined
  const out = listItems(v, path, (item, p) => {
    const s = str(ctx, item, p)
    if (s === undefined) return undefined
    if (!CAPABILITY.test(s)) {
      err(ctx, p, `invalid capability ${describe(s)}: expected a name like NET_ADMIN`)
      return undefined
    }
    return s.toUpperCase()
  })
  return out.length > 0 ? out : undefined
}

const PERMISSIONS = /^[rwm]{1,3}$/

function devicePath (ctx: Ctx, s: string, path: Path, what: string): string | undefined {
  if (!s.startsWith('/')) {
    err(ctx, path, `device ${what} must be an absolute path, got ${describe(s)}`)
    return undefined
  }
  return s
}

/** `HOST[:CONTAINER[:PERMISSIONS]]`, as `docker run --device`; or `{source, target, permissions}`. */
function device (ctx: Ctx, item: unknown, path: Path): DeviceSpec | undefined {
  let source: string | undefined
  let target: string | undefined
  let permissions = 'rwm'
  if (typeof item === 'string') {
    const parts = item.split(':')
    if (parts.length > 3 || parts.some((p) => p === '')) {
      err(ctx, path, `invalid device ${describe(item)}: expected HOST_PATH[:CONTAINER_PATH[:PERMISSIONS]]`)
      return undefined
    }
    source = devicePath(ctx, parts[0], path, 'source')
    target = parts.length > 1 ? devicePath(ctx, parts[1], path, 'target') : source
    if (parts.length > 2) permissions = parts[2]
  } else if (isRecord(item)) {
    const o: Obj = item
    checkKeys(ctx, o, path, DEVICE)
    const s = str(ctx, get(o, 'source'), [...path, 'source'])
    if (s !== undefined) source = devicePath(ctx, s, [...path, 'source'], 'source')
    const t = get(o, 'target')
    const ts = t === undefined ? s : str(ctx, t, [...path, 'target'])
    if (ts !== undefined) target = devicePath(ctx, ts, [...path, 'target'], 'target')
    const pRaw = get(o, 'permissions')
    if (pRaw !== undefined) permissions = str(ctx, pRaw, [...path, 'permissions']) ?? permissions
  } else {
    return undefined
  }
  if (!PERMISSIONS.test(permissions)) {
    err(ctx, path, `invalid device permissions ${describe(permissions)}: use some of r, w, m`)
    return undefined
  }
  if (source === undefined || target === undefined) return undefined
  return { source, target, permissions }
}

/** The host and privilege keys of one service, set on `spec` when given. */
export function hostSettings (ctx: Ctx, svc: Obj, path: Path, spec: ServiceSpec): void {
  const ro = get(svc, 'read_only')
  if (ro !== undefined && bool(ctx, ro, [...path, 'read_only']) === true) spec.readOnly = true
  const priv = get(svc, 'privileged')
  if (priv !== undefined && bool(ctx, priv, [...path, 'privileged']) === true) spec.privileged = true
  const add = capabilities(ctx, get(svc, 'cap_add'), [...path, 'cap_add'])
  if (add !== undefined) spec.capAdd = add
  const drop = capabilities(ctx, get(svc, 'cap_drop'), [...path, 'cap_drop'])
  if (drop !== undefined) spec.capDrop = drop
  const devRaw = get(svc, 'devices')
  if (devRaw !== undefined) {
    const devices = listItems(devRaw, [...path, 'devices'], (item, p) => device(ctx, item, p))
    if (devices.length > 0) spec.devices = devices
  }
  const pid = get(svc, 'pid')
  if (pid !== undefined && pid !== null) {
    const s = str(ctx, pid, [...path, 'pid'])
    if (s === 'host') spec.pid = 'host'
    else if (s !== undefined) err(ctx, [...path, 'pid'], `not supported yet: only pid: host is, got ${describe(s)} (sharing another container's PID namespace needs both on one node)`)
  }
}
