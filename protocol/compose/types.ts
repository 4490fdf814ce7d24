/**
 * What every stage of the Compose translation shares: the public input/output types, paths into
 * the document, positions, and the issue reporter.
 */
import type { PosEntry } from './load.ts'

export interface ComposeInput {
  fileName: string
  text: string
  /** contents of env_file files, keyed by the path as written in the compose file */
  envFiles?: Record<string, string>
  /** stack name from -n/--name; overrides the file's top-level `name:` */
  stackName?: string
  /** values for ${VAR} interpolation (the caller passes process.env) */
  variables?: Record<string, string>
}

export interface ComposeIssue {
  severity: 'error' | 'warning'
  /** e.g. services.web.deploy.replicas; list items as services.web.ports[0]; '' for the file */
  path: string
  line?: number
  col?: number
  message: string
}

export type Seg = string | number
export type Path = readonly Seg[]
export type Obj = Record<string, unknown>

export interface Pos {
  line: number
  col: number
}

/** The state one translation carries from stage to stage. */
export interface Ctx {
  issues: ComposeIssue[]
  positions: Map<string, PosEntry>
  variables: Record<string, string>
  envFiles: Record<string, string>
  envFilesNeeded: string[]
  stack: string
  fileName: string
  /** declared volume name → volume name on the engine */
  volumes: Map<string, string>
  /** declared secret / config → what the cluster calls it and where its value comes from (files.ts) */
  files: { secret: Map<string, FileSource>, config: Map<string, FileSource> }
  unsetWarned: Set<string>
}

/** A top-level secret or config: its cluster name, and where the CLI gets its value (none when external). */
export interface FileSource {
  kind: 'secret' | 'config'
  /** the name in the cluster (`<stack>_<key>` unless `name:` or external) */
  name: string
  /** absolute path of the file holding the value */
  file?: string
  /** variable holding the value */
  environment?: string
  /** inline value (configs only) */
  content?: string
  external: boolean
}

export function isRecord (v: unknown): v is Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false
  const proto: unknown = Object.getPrototypeOf(v)
  return proto === Object.prototype || proto === null
}

export function has (o: Obj, k: string): boolean {
  return Object.hasOwn(o, k)
}

/** The value of an own key; null (`key:` with nothing after it) reads as absent. */
export function get (o: Obj, k: string): unknown {
  if (!Object.hasOwn(o, k)) return undefined
  const v = o[k]
  return v === null ? undefined : v
}

export function setOwn (o: Obj, k: string, v: unknown): void {
  Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true })
}

export function pathKey (path: Path): string {
  return path.map(String).join('\u0000')
}

export function pathString (path: Path): string {
  let out = ''
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`
    else out += out === '' ? seg : `.${seg}`
  }
  return out
}

/** Where a path is in the source: its own key or value, else its nearest located ancestor's key. */
export function locate (positions: Map<string, PosEntry>, path: Path, at: 'key' | 'value'): Pos | undefined {
  for (let n = path.length; n >= 0; n--) {
    const e = positions.get(pathKey(path.slice(0, n)))
    if (e === undefined) continue
    if (n === path.length) return at === 'key' ? (e.key ?? e.value) : (e.value ?? e.key)
    return e.key ?? e.value
  }
  return undefined
}

export function report (ctx: Ctx, severity: 'error' | 'warning', path: Path, message: string, at: 'key' | 'value' = 'value'): void {
  const pos = locate(ctx.positions, path, at)
  // field order: severity, path, line, col, message
  ctx.issues.push({ severity, path: pathString(path), ...(pos ? { line: pos.line, col: pos.col } : {}), message })
}

export const err = (ctx: Ctx, path: Path, message: string, at: 'key' | 'value' = 'value'): void => report(ctx, 'error', path, message, at)

/** A value as quoted in messages: strings in JSON quotes (shortened), lists and mappings by kind. */
export function describe (v: unknown): string {
  if (v === null || v === undefined) return 'null'
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? `${v.slice(0, 57)}...` : v)
  if (typeof v === 'number' || typeof v === 'boolean') return String(v)
  if (Array.isArray(v)) return 'a list'
  if (isRecord(v)) return 'a mapping'
  return 'an unsupported value'
}

/**
 * Parse a list field item by item: an absent field is an empty list, and each item's parser
 * reports its own errors (returning undefined to skip the item). The schema has checked it is a list.
 */
export function listItems<T> (v: unknown, path: Path, item: (x: unknown, p: Path) => T | undefined): T[] {
  if (!Array.isArray(v)) return []
  const out: T[] = []
  v.forEach((x, i) => {
    const parsed = item(x, [...path, i])
    if (parsed !== undefined) out.push(parsed)
  })
  return out
}

/** A field that takes one path or a list of them (the schema's string_or_list), as items with their own paths. */
export function pathOrPaths (v: unknown, path: Path): { item: unknown, path: Path }[] {
  if (typeof v === 'string') return [{ item: v, path }]
  if (Array.isArray(v)) return v.map((item, i) => ({ item, path: [...path, i] }))
  return []
}
