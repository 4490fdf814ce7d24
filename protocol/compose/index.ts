/**
 * Compose file → ServiceSpec translation, in stages:
 *
 *   load.ts         text → data, with the line/column of every key and value (YAML, limits)
 *   interpolate.ts  `${VAR}` in every string value
 *   schema.ts       the official Compose JSON schema (ajv), failures as sentences at their line
 *   support.ts      which keys are supported, ignored (warning) or refused (error)
 *   service.ts …    the supported keys → specs (ports.ts, volumes.ts, deploy.ts, values.ts)
 *
 * Pure: the caller reads the compose file (and any env_file it references, see
 * `envFilesReferenced`) and passes the contents in, together with the variables used for
 * `${VAR}` interpolation. Nothing here touches the file system, the environment or the clock.
 *
 * Every problem is reported as a `ComposeIssue` located in the source (line/col, 1-based); the
 * translation never throws. A file the schema refuses gets the schema's errors only. The caller
 * must refuse to deploy when any 'error' is present.
 *
 * Differences from Docker Compose worth knowing:
 * - Named volumes get the Compose name `<stack>_<volume>` unless they set `name:` or are
 *   `external` (then the name is used as is).
 * - Relative bind sources are resolved against the compose file's directory (taken from
 *   `fileName`), so the caller should pass an absolute `fileName`; a relative result is an error
 *   because the container runtime needs absolute host paths.
 * - Ports bound to a specific host IP (`127.0.0.1:8080:80`) are rejected: the published port opens
 *   on every node and an address restriction cannot be honoured.
 * - Command strings with unquoted shell operators (`;`, `|`, `&`, `<`, `>`) are rejected instead of
 *   being truncated: write them as `["sh", "-c", "..."]`.
 */
import type { ServiceSpec } from '../spec.ts'
import { interpolateTree } from './interpolate.ts'
import { load } from './load.ts'
import type { PosEntry } from './load.ts'
import { checkSchema } from './schema.ts'
import { checkPortConflicts, translateService } from './service.ts'
import { TOP, checkKeys } from './support.ts'
import type { ComposeInput, ComposeIssue, Ctx, Obj, Path } from './types.ts'
import { describe, err, get, isRecord, pathOrPaths } from './types.ts'
import { str } from './values.ts'
import { declareVolumes } from './volumes.ts'
import { declareFiles } from './files.ts'
import type { FileSource } from './types.ts'

export type { ComposeInput, ComposeIssue, FileSource } from './types.ts'
export { MAX_ALIAS_EXPANSIONS, MAX_COMPOSE_BYTES } from './load.ts'
export { parseEnvFile } from './envfile.ts'
export type { EnvFileParse } from './envfile.ts'
export { parseConstraint } from './deploy.ts'
export { shellSplit, splitStatements } from './shell.ts'
export { parseBytes, parseDurationNs } from './units.ts'
export { TABLES, supportMatrix } from './support.ts'
export type { KeyTable, Support } from './support.ts'

export interface ComposeResult {
  stack: string
  services: ServiceSpec[]
  issues: ComposeIssue[]
  /**
   * Every env_file path the services reference (after interpolation), in file order, without
   * duplicates, including `required: false` ones. Paths missing from `envFiles` are reported as
   * errors (or skipped when not required).
   */
  envFilesNeeded: string[]
  /**
   * The secrets and configs the services use, with where the CLI reads each value (none for an
   * external one), so it can create those that do not exist before it deploys.
   */
  files: FileSource[]
}

/** Translates one Compose file. Never throws. */
export function translateCompose (input: ComposeInput): ComposeResult {
  try {
    return translate(input)
  } catch (e) {
    // Last resort (e.g. a stack overflow on absurdly nested input): still an answer, never a throw.
    let stack = ''
    try {
      stack = fallbackStackName(input)
    } catch {
      stack = ''
    }
    const message = e instanceof Error ? e.message : String(e)
    return { stack, services: [], issues: [{ severity: 'error', path: '', message: `cannot translate: ${message}` }], envFilesNeeded: [], files: [] }
  }
}

/**
 * The env_file paths a compose text references, so the caller can read them before calling
 * `translateCompose`. Pass the same variables as to the translation when paths use `${VAR}`.
 * Empty when the file does not get past the schema (the translation then says why).
 */
export function envFilesReferenced (text: string, variables?: Record<string, string>): string[] {
  try {
    const root = prepare(text, isRecord(variables) ? variables : {}).root
    const services = root === undefined ? undefined : get(root, 'services')
    const out: string[] = []
    if (!isRecord(services)) return out
    for (const name of Object.keys(services)) {
      const svc = services[name]
      if (name.startsWith('x-') || !isRecord(svc)) continue
      for (const { item } of pathOrPaths(get(svc, 'env_file'), [])) {
        const file = typeof item === 'string' ? item : isRecord(item) ? get(item, 'path') : undefined
        if (typeof file === 'string' && file !== '' && !out.includes(file)) out.push(file)
      }
    }
    return out
  } catch {
    return []
  }
}

/** `stack.yaml:12:7: error: services.web.deploy.replicas: must be a non-negative integer, got "abc"` */
export function formatIssue (fileName: string, i: ComposeIssue): string {
  const where = i.line !== undefined ? `${fileName}:${i.line}:${i.col ?? 1}` : fileName
  const path = i.path ? `${i.path}: ` : ''
  return `${where}: ${i.severity}: ${path}${i.message}`
}

// ---- stack name ----------------------------------------------------------------------------------
const STACK_NAME_RE = /^[a-z0-9][a-z0-9_-]*$/

function sanitizeStackName (s: string): string {
  return s.toLowerCase().replace(/[^a-z0-9_-]+/g, '').replace(/^[_-]+/, '')
}

function baseName (fileName: string): string {
  const slash = Math.max(fileName.lastIndexOf('/'), fileName.lastIndexOf('\\'))
  const base = fileName.slice(slash + 1)
  const dot = base.lastIndexOf('.')
  return dot > 0 ? base.slice(0, dot) : base
}

function fallbackStackName (input: ComposeInput): string {
  if (typeof input.stackName === 'string' && input.stackName !== '') return sanitizeStackName(input.stackName)
  return sanitizeStackName(baseName(typeof input.fileName === 'string' ? input.fileName : ''))
}

function explicitStackName (ctx: Ctx, name: string, path: Path, origin: string): string {
  if (STACK_NAME_RE.test(name)) return name
  err(ctx, path, `invalid stack name ${describe(name)}${origin}: use lowercase letters, digits, "_" and "-", starting with a letter or digit`)
  return sanitizeStackName(name)
}

// ---- the stages --------------------------------------------------------------------------------

interface Prepared {
  issues: ComposeIssue[]
  positions: Map<string, PosEntry>
  /** the interpolated document, when it passed the schema */
  root?: Obj
}

/**
 * The last text prepared, so that `deploy` (envFilesReferenced, then translateCompose on the same
 * text and variables) loads, interpolates and validates a file once. A pure function's memo: the
 * answer depends on the text and the variables only, compared in full.
 */
let lastPrepared: { text: string, variables: Record<string, string>, prepared: Prepared } | undefined

function sameVariables (a: Record<string, string>, b: Record<string, string>): boolean {
  const ka = Object.keys(a)
  if (ka.length !== Object.keys(b).length) return false
  return ka.every((k) => Object.hasOwn(b, k) && a[k] === b[k])
}

/** Stages 1–3: load, interpolate, check against the schema. */
function prepare (text: string, variables: Record<string, string>): Prepared {
  if (lastPrepared !== undefined && lastPrepared.text === text && sameVariables(lastPrepared.variables, variables)) return lastPrepared.prepared
  const ctx: Ctx = { issues: [], positions: new Map(), variables, envFiles: {}, envFilesNeeded: [], stack: '', fileName: '', volumes: new Map(), files: { secret: new Map(), config: new Map() }, unsetWarned: new Set() }
  const done = (root?: Obj): Prepared => {
    const prepared: Prepared = root === undefined ? { issues: ctx.issues, positions: ctx.positions } : { issues: ctx.issues, positions: ctx.positions, root }
    lastPrepared = { text, variables: { ...variables }, prepared }
    return prepared
  }
  const loaded = load(text)
  ctx.issues.push(...loaded.issues)
  if (!loaded.ok) return done()
  ctx.positions = loaded.positions
  const js = loaded.data
  if (js === null || js === undefined) {
    err(ctx, [], 'empty file: no services defined')
    return done()
  }
  if (!isRecord(js)) {
    err(ctx, [], `the top level must be a mapping with a services: key, got ${describe(js)}`)
    return done()
  }
  const root = interpolateTree(ctx, js, []) as Obj
  if (hasErrors(ctx) || !checkSchema(ctx, root)) return done()
  return done(root)
}

const hasErrors = (ctx: Ctx): boolean => ctx.issues.some((i) => i.severity === 'error')

function translate (input: ComposeInput): ComposeResult {
  const ctx: Ctx = {
    issues: [],
    positions: new Map(),
    variables: isRecord(input.variables) ? input.variables : {},
    envFiles: isRecord(input.envFiles) ? input.envFiles : {},
    envFilesNeeded: [],
    stack: '',
    fileName: typeof input.fileName === 'string' ? input.fileName : '',
    volumes: new Map(),
    files: { secret: new Map(), config: new Map() },
    unsetWarned: new Set()
  }
  const result = (services: ServiceSpec[]): ComposeResult => {
    const used = new Set(services.flatMap((s) => [...(s.secrets ?? []).map((f) => `secret/${f.source}`), ...(s.configs ?? []).map((f) => `config/${f.source}`)]))
    const files = [...ctx.files.secret.values(), ...ctx.files.config.values()].filter((f) => used.has(`${f.kind}/${f.name}`))
    return { stack: ctx.stack, services, issues: ctx.issues, envFilesNeeded: ctx.envFilesNeeded, files }
  }
  const optionName = typeof input.stackName === 'string' && input.stackName !== '' ? input.stackName : undefined
  if (optionName !== undefined) ctx.stack = explicitStackName(ctx, optionName, [], ' (from --name)')
  const fileStack = (): string => {
    const derived = sanitizeStackName(baseName(ctx.fileName))
    if (derived === '') err(ctx, [], `cannot derive a stack name from the file name ${describe(ctx.fileName)}: set name: or --name`)
    return derived
  }
  const stop = (): ComposeResult => {
    if (optionName === undefined && ctx.stack === '') ctx.stack = fileStack()
    return result([])
  }

  // 1. load, 2. interpolate, 3. schema
  const prepared = prepare(typeof input.text === 'string' ? input.text : '', ctx.variables)
  ctx.issues.push(...prepared.issues.map((i) => ({ ...i })))
  ctx.positions = prepared.positions
  const root = prepared.root
  if (root === undefined) return stop()

  // 4. support tables, 5. translation
  checkKeys(ctx, root, [], TOP)
  if (optionName === undefined) {
    const nameRaw = get(root, 'name')
    const name = nameRaw === undefined ? undefined : str(ctx, nameRaw, ['name'])
    ctx.stack = name !== undefined && name !== '' ? explicitStackName(ctx, name, ['name'], '') : fileStack()
  }
  declareVolumes(ctx, get(root, 'volumes'), ['volumes'])
  declareFiles(ctx, get(root, 'secrets'), ['secrets'], 'secret')
  declareFiles(ctx, get(root, 'configs'), ['configs'], 'config')
  const services = get(root, 'services')
  const names = isRecord(services) ? Object.keys(services).filter((k) => !k.startsWith('x-')) : []
  if (!isRecord(services) || names.length === 0) {
    err(ctx, ['services'], 'no services defined', 'key')
    return result([])
  }
  const out: ServiceSpec[] = []
  for (const name of names) {
    const spec = translateService(ctx, name, services[name])
    if (spec !== undefined) out.push(spec)
  }
  checkPortConflicts(ctx, out)
  return result(out)
}

