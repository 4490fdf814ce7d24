/** Volumes: the top-level declarations, service mounts (short and long syntax) and `tmpfs:`. */
import type { MountSpec } from '../spec.ts'
import { MOUNT, MOUNT_BIND, MOUNT_TMPFS, MOUNT_VOLUME, VOLUME, VOLUME_EXTERNAL, checkKeys, type KeyTable } from './support.ts'
import type { Ctx, Obj, Path } from './types.ts'
import { describe, err, get, isRecord, listItems, pathOrPaths, report } from './types.ts'
import { bool, str } from './values.ts'

const VOLUME_NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/

function dirOf (fileName: string): string {
  const i = fileName.lastIndexOf('/')
  if (i < 0) return '.'
  return i === 0 ? '/' : fileName.slice(0, i)
}

/** POSIX join + normalisation, without consulting the working directory. */
function joinPath (dir: string, rel: string): string {
  const abs = dir.startsWith('/')
  const segs: string[] = []
  for (const seg of `${dir}/${rel}`.split('/')) {
    if (seg === '' || seg === '.') continue
    if (seg === '..') {
      if (segs.length > 0 && segs[segs.length - 1] !== '..') segs.pop()
      else if (!abs) segs.push('..')
    } else segs.push(seg)
  }
  const joined = segs.join('/')
  if (abs) return `/${joined}`
  if (joined === '') return '.'
  return joined.startsWith('..') ? joined : `./${joined}`
}

/** A host path from the file (a bind source, a secret's `file:`), made absolute against the Compose file's directory. */
export function hostPathOf (ctx: Ctx, src: string, path: Path, what = 'bind source'): string | undefined {
  if (src.startsWith('~')) {
    err(ctx, path, `home-relative ${what} ${describe(src)} is not supported: use an absolute path`)
    return undefined
  }
  if (src.startsWith('/')) return src
  const resolved = joinPath(dirOf(ctx.fileName), src)
  if (!resolved.startsWith('/')) {
    err(ctx, path, `relative ${what} ${describe(src)} cannot be resolved: the compose file path ${describe(ctx.fileName)} is not absolute`)
    return undefined
  }
  return resolved
}

const bindSource = (ctx: Ctx, src: string, path: Path): string | undefined => hostPathOf(ctx, src, path)

function namedVolume (ctx: Ctx, name: string, path: Path): string | undefined {
  const engineName = ctx.volumes.get(name)
  if (engineName === undefined) err(ctx, path, `volume ${describe(name)} is not declared under the top-level volumes key`)
  return engineName
}

function targetPath (ctx: Ctx, t: string, path: Path): string | undefined {
  if (!t.startsWith('/')) {
    err(ctx, path, `mount target must be an absolute path, got ${describe(t)}`)
    return undefined
  }
  return t
}

const IGNORED_VOLUME_OPTIONS = new Set(['z', 'Z', 'cached', 'delegated', 'consistent', 'nocopy'])

function shortMount (ctx: Ctx, s: string, path: Path): MountSpec | undefined {
  const parts = s.split(':')
  if (parts.length > 3 || parts.some((p, i) => p === '' && !(i === 2))) {
    err(ctx, path, `invalid volume ${describe(s)}: expected [SOURCE:]TARGET[:MODE]`)
    return undefined
  }
  if (parts.length === 1) {
    const target = targetPath(ctx, parts[0], path)
    return target === undefined ? undefined : { type: 'volume', source: '', target, readOnly: false }
  }
  const [src, tgt, modeText = ''] = parts
  let readOnly = false
  let ok = true
  for (const opt of modeText.split(',')) {
    if (opt === '' || opt === 'rw') continue
    if (opt === 'ro') readOnly = true
    else if (IGNORED_VOLUME_OPTIONS.has(opt)) report(ctx, 'warning', path, `ignored: volume option ${describe(opt)} is not supported yet`)
    else {
      err(ctx, path, `unknown volume option ${describe(opt)}: expected ro or rw`)
      ok = false
    }
  }
  const target = targetPath(ctx, tgt, path)
  const isPath = src.startsWith('/') || src.startsWith('.') || src.startsWith('~')
  if (isPath) {
    const source = bindSource(ctx, src, path)
    if (source === undefined || target === undefined || !ok) return undefined
    return { type: 'bind', source, target, readOnly }
  }
  const source = namedVolume(ctx, src, path)
  if (source === undefined || target === undefined || !ok) return undefined
  return { type: 'volume', source, target, readOnly }
}

function longMount (ctx: Ctx, o: Obj, path: Path): MountSpec | undefined {
  checkKeys(ctx, o, path, MOUNT)
  const typeRaw = get(o, 'type')
  let type: MountSpec['type'] | undefined
  if (typeRaw === 'volume' || typeRaw === 'bind' || typeRaw === 'tmpfs') type = typeRaw
  else err(ctx, [...path, 'type'], `must be volume, bind or tmpfs, got ${describe(typeRaw)}`)
  const tgtRaw = get(o, 'target')
  let target: string | undefined
  if (tgtRaw === undefined) err(ctx, [...path, 'target'], 'required')
  else {
    const t = str(ctx, tgtRaw, [...path, 'target'])
    if (t !== undefined) target = targetPath(ctx, t, [...path, 'target'])
  }
  const roRaw = get(o, 'read_only')
  const readOnly = roRaw === undefined ? false : bool(ctx, roRaw, [...path, 'read_only'])
  const srcRaw = get(o, 'source')
  const src = srcRaw === undefined ? undefined : str(ctx, srcRaw, [...path, 'source'])
  for (const [k, table] of [['bind', MOUNT_BIND], ['volume', MOUNT_VOLUME], ['tmpfs', MOUNT_TMPFS]] as const) {
    const sub = get(o, k)
    if (sub === undefined) continue
    if (isRecord(sub)) checkKeys(ctx, sub, [...path, k], table)
    if (type !== undefined && k !== type) err(ctx, [...path, k], `only allowed with type ${k}`, 'key')
  }
  let source: string | undefined
  if (type === 'tmpfs') {
    if (srcRaw !== undefined) err(ctx, [...path, 'source'], 'not allowed with type tmpfs', 'key')
    source = ''
  } else if (type === 'bind') {
    if (srcRaw === undefined) err(ctx, [...path, 'source'], 'required for type bind')
    else if (src !== undefined) source = bindSource(ctx, src, [...path, 'source'])
  } else if (type === 'volume') {
    if (srcRaw === undefined) source = ''
    else if (src !== undefined) source = namedVolume(ctx, src, [...path, 'source'])
  }
  if (type === undefined || target === undefined || readOnly === undefined || source === undefined) return undefined
  return { type, source, target, readOnly }
}

export function mounts (ctx: Ctx, v: unknown, path: Path, into: MountSpec[]): void {
  into.push(...listItems(v, path, (item, p) => {
    if (typeof item === 'string') return shortMount(ctx, item, p)
    return isRecord(item) ? longMount(ctx, item, p) : undefined
  }))
}

/** Service-level `tmpfs: /run` or `tmpfs: [/run, /tmp:size=64m]`. */
export function tmpfsMounts (ctx: Ctx, v: unknown, path: Path, into: MountSpec[]): void {
  for (const { item: raw, path: p } of pathOrPaths(v, path)) {
    const item = String(raw)
    const colon = item.indexOf(':')
    const t = colon < 0 ? item : item.slice(0, colon)
    if (colon >= 0) report(ctx, 'warning', p, `ignored: tmpfs options ${describe(item.slice(colon + 1))} are not supported yet`)
    const target = targetPath(ctx, t, p)
    if (target !== undefined) into.push({ type: 'tmpfs', source: '', target, readOnly: false })
  }
}

/** `external: true`, or the deprecated `external: {name: N}` (of a volume, secret or config). */
export function externalOf (ctx: Ctx, decl: Obj, p: Path, table: KeyTable): { external: boolean, name?: string } {
  const ext = get(decl, 'external')
  if (isRecord(ext)) {
    checkKeys(ctx, ext, [...p, 'external'], table)
    const n = get(ext, 'name')
    const name = n === undefined ? undefined : str(ctx, n, [...p, 'external', 'name'])
    return name === undefined ? { external: true } : { external: true, name }
  }
  return { external: ext !== undefined && (bool(ctx, ext, [...p, 'external']) ?? false) }
}

export function declareVolumes (ctx: Ctx, v: unknown, path: Path): void {
  if (!isRecord(v)) return
  for (const key of Object.keys(v)) {
    if (key.startsWith('x-')) continue
    const p = [...path, key]
    if (!VOLUME_NAME_RE.test(key)) {
      err(ctx, p, `invalid volume name ${describe(key)}: use letters, digits, "_", "." or "-"`, 'key')
      continue
    }
    const decl = v[key]
    let engineName = `${ctx.stack}_${key}`
    if (isRecord(decl)) {
      checkKeys(ctx, decl, p, VOLUME)
      const driver = get(decl, 'driver')
      if (driver !== undefined && driver !== 'local') err(ctx, [...p, 'driver'], `not supported yet: only the local driver, got ${describe(driver)}`)
      const { external, name: externalName } = externalOf(ctx, decl, p, VOLUME_EXTERNAL)
      const nameRaw = get(decl, 'name')
      const name = nameRaw === undefined ? undefined : str(ctx, nameRaw, [...p, 'name'])
      if (name !== undefined && !VOLUME_NAME_RE.test(name)) err(ctx, [...p, 'name'], `invalid volume name ${describe(name)}`)
      if (name !== undefined) engineName = name
      else if (externalName !== undefined) engineName = externalName
      else if (external) engineName = key
    }
    ctx.volumes.set(key, engineName)
  }
}
