/**
 * Secrets and configs: the top-level declarations (`secrets:`, `configs:`) and what each service
 * mounts. A declaration names a cluster secret or config — `<stack>_<key>`, as `docker stack
 * deploy` names them, unless it sets `name:` or is `external` — and says where the CLI reads the
 * value to create it (`file:`, `environment:`, `content:`); the translation only records that, the
 * CLI reads and creates (cli/commands-secrets.ts).
 */
import { defaultConfigTarget, defaultSecretTarget, DEFAULT_FILE_MODE, MAX_FILE_OWNER_ID, MAX_FILE_REFS, SECRET_NAME_PATTERN, type FileRef } from '../secrets.ts'
import { lookupVar } from './interpolate.ts'
import { CONFIG, FILE_EXTERNAL, FILE_REF, SECRET, checkKeys } from './support.ts'
import type { Ctx, FileSource, Path } from './types.ts'
import { describe, err, get, isRecord, pathKey } from './types.ts'
import { int, str } from './values.ts'
import { externalOf, hostPathOf } from './volumes.ts'

type Kind = 'secret' | 'config'


export function declareFiles (ctx: Ctx, v: unknown, path: Path, kind: Kind): void {
  if (!isRecord(v)) return
  for (const key of Object.keys(v)) {
    if (key.startsWith('x-')) continue
    const p = [...path, key]
    const decl = v[key]
    if (!isRecord(decl)) continue
    checkKeys(ctx, decl, p, kind === 'secret' ? SECRET : CONFIG)
    const { external, name: externalName } = externalOf(ctx, decl, p, FILE_EXTERNAL)
    const nameRaw = get(decl, 'name')
    const given = nameRaw === undefined ? undefined : str(ctx, nameRaw, [...p, 'name'])
    const name = given ?? externalName ?? (external ? key : `${ctx.stack}_${key}`)
    if (!SECRET_NAME_PATTERN.test(name)) {
      err(ctx, nameRaw !== undefined ? [...p, 'name'] : p, `invalid ${kind} name ${describe(name)}: use letters, digits, "_", "." or "-", at most 64`, nameRaw !== undefined ? 'value' : 'key')
      continue
    }
    const src: FileSource = { kind, name, external }
    // declared even when its value is wrong below, so the services that use it get no second error
    ctx.files[kind].set(key, src)
    const sources = ['file', 'environment', 'content'].filter((k) => get(decl, k) !== undefined)
    if (external) {
      if (sources.length > 0) err(ctx, [...p, sources[0]], `an external ${kind} is created beforehand (\`p2p-orch ${kind} create\`); remove ${sources[0]}:`, 'key')
    } else if (sources.length !== 1) {
      err(ctx, p, sources.length === 0
        ? `give the ${kind}'s value with ${kind === 'config' ? 'file:, content: or environment:' : 'file: or environment:'}, or mark it external: true`
        : `give one of ${sources.join(', ')}, not ${sources.length}`, 'key')
      continue
    } else if (sources[0] === 'file') {
      const f = str(ctx, get(decl, 'file'), [...p, 'file'])
      const abs = f === undefined ? undefined : hostPathOf(ctx, f, [...p, 'file'], `${kind} file`)
      if (abs === undefined) continue
      src.file = abs
    } else if (sources[0] === 'environment') {
      const variable = str(ctx, get(decl, 'environment'), [...p, 'environment'])
      if (variable === undefined) continue
      const value = lookupVar(ctx.variables, variable)
      if (value === undefined) {
        err(ctx, [...p, 'environment'], `variable ${variable} is not set: set it, or give the ${kind} with file:`)
        continue
      }
      src.environment = variable
      src.content = value
    } else {
      const c = str(ctx, get(decl, 'content'), [...p, 'content'])
      if (c === undefined) continue
      src.content = c
    }
  }
}

/**
 * Permission bits, as Docker Compose reads them: a number is its value (`0o440`, or `288`), except
 * that a plain number written with a leading zero is octal (`0440`: YAML 1.2 would read 440, which
 * no Compose user means); a string is octal (`"0440"`).
 */
function fileMode (ctx: Ctx, v: unknown, path: Path): number | undefined {
  const raw = ctx.positions.get(pathKey(path))?.raw
  let mode: number | undefined
  if (typeof v === 'number') {
    if (raw !== undefined && /^0\d+$/.test(raw)) mode = /^0[0-7]+$/.test(raw) ? parseInt(raw, 8) : undefined
    else mode = v
  }
  else if (typeof v === 'string' && /^(0o?)?[0-7]{1,4}$/.test(v.trim())) mode = parseInt(v.trim().replace(/^0o/, ''), 8)
  if (mode === undefined || !Number.isSafeInteger(mode) || mode < 0 || mode > 0o7777) {
    err(ctx, path, `must be octal permission bits such as 0440, got ${describe(v)}`)
    return undefined
  }
  return mode
}

/** A service's `secrets:` or `configs:`: names or `{source, target, uid, gid, mode}`. */
export function fileRefs (ctx: Ctx, v: unknown, path: Path, kind: Kind): FileRef[] | undefined {
  if (!Array.isArray(v)) return undefined
  if (v.length > MAX_FILE_REFS) {
    err(ctx, path, `at most ${MAX_FILE_REFS} ${kind}s per service, got ${v.length}`)
    return undefined
  }
  const out: FileRef[] = []
  const targets = new Set<string>()
  v.forEach((item, i) => {
    const p = [...path, i]
    let key: string | undefined
    let target: string | undefined
    let uid = 0
    let gid = 0
    let mode = DEFAULT_FILE_MODE
    if (typeof item === 'string') key = item
    else if (isRecord(item)) {
      checkKeys(ctx, item, p, FILE_REF)
      key = str(ctx, get(item, 'source'), [...p, 'source'])
      const t = get(item, 'target')
      if (t !== undefined) target = str(ctx, t, [...p, 'target'])
      for (const [field, set] of [['uid', (n: number) => { uid = n }], ['gid', (n: number) => { gid = n }]] as const) {
        const raw = get(item, field)
        if (raw === undefined) continue
        const n = int(ctx, raw, [...p, field], 0, MAX_FILE_OWNER_ID)
        if (n !== undefined) set(n)
      }
      const m = get(item, 'mode')
      if (m !== undefined) mode = fileMode(ctx, m, [...p, 'mode']) ?? mode
    }
    if (key === undefined) return
    const decl = ctx.files[kind].get(key)
    if (decl === undefined) {
      err(ctx, typeof item === 'string' ? p : [...p, 'source'], `${kind} ${describe(key)} is not declared under the top-level ${kind}s key`)
      return
    }
    // Compose: a relative secret target is a file name under /run/secrets; a config's is under /
    const dflt = kind === 'secret' ? defaultSecretTarget(key) : defaultConfigTarget(key)
    let abs = target === undefined ? dflt : target.startsWith('/') ? target : kind === 'secret' ? defaultSecretTarget(target) : defaultConfigTarget(target)
    if (abs.includes('\0') || abs.split('/').some((s) => s === '..')) {
      err(ctx, [...p, 'target'], `invalid target ${describe(target)}`)
      return
    }
    abs = abs.replace(/\/+$/, '')
    if (targets.has(abs)) {
      err(ctx, p, `two ${kind}s are mounted at ${abs}`)
      return
    }
    targets.add(abs)
    out.push({ source: decl.name, target: abs, uid, gid, mode })
  })
  return out.length > 0 ? out : undefined
}
