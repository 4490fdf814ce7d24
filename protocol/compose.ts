/**
 * Compose file → ServiceSpec translation.
 *
 * Pure: the caller reads the compose file (and any env_file it references, see
 * `envFilesReferenced`) and passes the contents in, together with the variables used for
 * `${VAR}` interpolation. Nothing here touches the file system, the environment or the clock.
 *
 * Every problem is reported as a `ComposeIssue` located in the source (line/col, 1-based); the
 * translation never throws. Keys we do not implement are reported per key (see the tables below):
 * a 'warning' when skipping the key leaves the service behaving as the user expects, an 'error'
 * when skipping it would silently change what runs (security settings, devices, secrets, …).
 * The caller must refuse to deploy when any 'error' is present.
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
import { compareStrings } from './order.ts'
import { LineCounter, isAlias, isMap, isScalar, isSeq, parseDocument } from 'yaml'
import { DEFAULT_RESTART_POLICY, MAX_REPLICAS, SERVICE_NAME_PATTERN } from './spec.ts'
import type {
  ConstraintSpec,
  ExposedPort,
  HealthcheckSpec,
  MountSpec,
  PortSpec,
  ResourcesSpec,
  RestartPolicySpec,
  ServiceSpec
} from './spec.ts'

// ---- public API ----------------------------------------------------------------------------------

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
}

/** Translates one Compose file. Never throws. */
export function translateCompose(input: ComposeInput): ComposeResult {
  try {
    return translate(input)
  } catch (err) {
    // Last resort (e.g. a stack overflow on absurdly nested input): still an answer, never a throw.
    let stack = ''
    try {
      stack = fallbackStackName(input)
    } catch {
      stack = ''
    }
    const message = err instanceof Error ? err.message : String(err)
    return { stack, services: [], issues: [{ severity: 'error', path: '', message: `cannot translate: ${message}` }], envFilesNeeded: [] }
  }
}

/**
 * The env_file paths a compose text references, so the caller can read them before calling
 * `translateCompose`. Pass the same variables as to the translation when paths use `${VAR}`.
 */
export function envFilesReferenced(text: string, variables?: Record<string, string>): string[] {
  const input: ComposeInput = { fileName: 'compose.yaml', text, envFiles: {}, stackName: 'x' }
  if (variables !== undefined) input.variables = variables
  return translateCompose(input).envFilesNeeded
}

/** `stack.yaml:12:7: error: services.web.deploy.replicas: must be a non-negative integer, got "abc"` */
export function formatIssue(fileName: string, i: ComposeIssue): string {
  const where = i.line !== undefined ? `${fileName}:${i.line}:${i.col ?? 1}` : fileName
  const path = i.path ? `${i.path}: ` : ''
  return `${where}: ${i.severity}: ${path}${i.message}`
}

// ---- key tables ----------------------------------------------------------------------------------

interface KeyRule {
  severity: 'warning' | 'error'
  reason: string
}

const warn = (reason: string): KeyRule => ({ severity: 'warning', reason })
const fail = (reason: string): KeyRule => ({ severity: 'error', reason })

const TOP_KEYS = new Set(['name', 'services', 'volumes'])
const TOP_RULES = new Map<string, KeyRule>([
  ['version', warn('obsolete in the Compose specification')],
  ['networks', warn('every node gives its replicas one network; services reach each other by name')],
  ['secrets', warn('declarations only; services that use secrets are rejected')],
  ['configs', warn('declarations only; services that use configs are rejected')],
  ['models', warn('declarations only; services that use models are rejected')],
  ['include', fail('the included files would be left out of the stack')]
])

const SERVICE_KEYS = new Set([
  'image', 'command', 'entrypoint', 'environment', 'env_file', 'labels', 'ports', 'healthcheck',
  'volumes', 'tmpfs', 'user', 'working_dir', 'stop_signal', 'stop_grace_period', 'deploy',
  'restart', 'scale', 'cpus', 'mem_limit', 'mem_reservation', 'build', 'expose'
])

/** Compose service keys we do not implement. `build` is handled apart (depends on `image`). */
const SERVICE_RULES = new Map<string, KeyRule>([
  // harmless to skip: the containers still run as the user expects
  ['depends_on', warn('start order is not enforced; replicas restart until their dependencies answer')],
  ['container_name', warn('container names are generated per replica')],
  ['networks', warn('all services of a stack share one network')],
  ['logging', warn('containers use the engine default log driver')],
  ['hostname', warn('containers keep the engine-assigned hostname')],
  ['domainname', warn('containers keep the engine default domain name')],
  ['links', warn('legacy option; services reach each other by name')],
  ['external_links', warn('legacy option')],
  ['annotations', warn('metadata only')],
  ['attach', warn('log attachment is a client-side option')],
  ['develop', warn('development-only watch settings')],
  ['pull_policy', warn('images are pulled when missing')],
  ['pull_refresh_after', warn('images are pulled when missing')],
  ['platform', warn('the engine pulls the image for its own platform')],
  ['stdin_open', warn('no interactive attachment')],
  ['tty', warn('no terminal attachment')],
  ['init', warn('no init process is injected')],
  ['mac_address', warn('addresses are engine-assigned')],
  ['cpu_count', warn('CPU tuning; use deploy.resources.limits.cpus')],
  ['cpu_percent', warn('CPU tuning; use deploy.resources.limits.cpus')],
  ['cpu_shares', warn('CPU tuning; use deploy.resources.limits.cpus')],
  ['cpu_quota', warn('CPU tuning; use deploy.resources.limits.cpus')],
  ['cpu_period', warn('CPU tuning; use deploy.resources.limits.cpus')],
  ['cpu_rt_period', warn('CPU tuning')],
  ['cpu_rt_runtime', warn('CPU tuning')],
  ['cpuset', warn('CPU pinning is node-specific')],
  ['mem_swappiness', warn('memory tuning')],
  ['memswap_limit', warn('memory tuning')],
  ['oom_kill_disable', warn('memory tuning')],
  ['oom_score_adj', warn('memory tuning')],
  ['pids_limit', warn('resource tuning')],
  ['blkio_config', warn('I/O tuning')],
  // would change behaviour if skipped
  ['privileged', fail('privileged containers would run unprivileged')],
  ['cap_add', fail('the container would lack the capabilities it asks for')],
  ['cap_drop', fail('the container would keep capabilities meant to be dropped')],
  ['security_opt', fail('security options would be dropped')],
  ['read_only', fail('the root file system would be writable')],
  ['devices', fail('the devices would be missing')],
  ['device_cgroup_rules', fail('device access rules would be dropped')],
  ['gpus', fail('the GPUs would be missing')],
  ['network_mode', fail('the container would run on the stack network instead')],
  ['pid', fail('the PID namespace would not be shared')],
  ['ipc', fail('the IPC namespace would not be shared')],
  ['uts', fail('the UTS namespace would not be shared')],
  ['userns_mode', fail('the user namespace setting would be dropped')],
  ['cgroup', fail('the cgroup namespace setting would be dropped')],
  ['cgroup_parent', fail('the cgroup placement would be dropped')],
  ['secrets', fail('the secrets would be missing in the container')],
  ['configs', fail('the configs would be missing in the container')],
  ['volumes_from', fail('the shared volumes would be missing')],
  ['extends', fail('the extended configuration would be left out')],
  ['profiles', fail('services in profiles would start unconditionally')],
  ['dns', fail('custom DNS servers would not be used')],
  ['dns_opt', fail('DNS options would be dropped')],
  ['dns_search', fail('DNS search domains would be dropped')],
  ['extra_hosts', fail('the extra host names would not resolve')],
  ['sysctls', fail('kernel parameters would not be set')],
  ['ulimits', fail('the ulimits would not be set')],
  ['shm_size', fail('/dev/shm would keep the engine default size')],
  ['group_add', fail('the extra groups would be missing')],
  ['storage_opt', fail('storage options would be dropped')],
  ['runtime', fail('the container would run under the default runtime')],
  ['isolation', fail('the isolation technology would be dropped')],
  ['credential_spec', fail('the credential spec would be dropped')],
  ['label_file', fail('label files are not read; use labels')],
  ['post_start', fail('lifecycle hooks would not run')],
  ['pre_stop', fail('lifecycle hooks would not run')],
  ['provider', fail('provider services are not containers')],
  ['models', fail('the models would be missing')],
  ['use_api_socket', fail('the engine API socket would be missing')]
])

const DEPLOY_KEYS = new Set(['mode', 'replicas', 'resources', 'restart_policy', 'placement'])
const DEPLOY_RULES = new Map<string, KeyRule>([
  ['labels', warn('service-level labels; use labels for container labels')],
  ['update_config', warn('updates replace replicas with the default strategy')],
  ['rollback_config', warn('rollbacks use the default strategy')],
  ['endpoint_mode', fail('the service is always reached through its virtual address')]
])

const RESOURCES_KEYS = new Set(['limits', 'reservations'])
const LIMITS_KEYS = new Set(['cpus', 'memory'])
const LIMITS_RULES = new Map<string, KeyRule>([['pids', warn('the PID limit is not enforced')]])
const RESERVATIONS_KEYS = new Set(['cpus', 'memory'])
const RESERVATIONS_RULES = new Map<string, KeyRule>([
  ['generic_resources', fail('the reserved resources would not be accounted for')],
  ['devices', fail('the reserved devices (e.g. GPUs) would be missing')]
])
const RESTART_KEYS = new Set(['condition', 'delay', 'max_attempts', 'window'])
const PLACEMENT_KEYS = new Set(['constraints', 'max_replicas_per_node'])
const PLACEMENT_RULES = new Map<string, KeyRule>([['preferences', warn('spread preferences are not applied')]])
const HEALTHCHECK_KEYS = new Set(['test', 'interval', 'timeout', 'retries', 'start_period', 'disable'])
const HEALTHCHECK_RULES = new Map<string, KeyRule>([['start_interval', warn('the interval is used during the start period too')]])
const PORT_KEYS = new Set(['target', 'published', 'protocol', 'mode', 'host_ip'])
const PORT_RULES = new Map<string, KeyRule>([
  ['name', warn('metadata only')],
  ['app_protocol', warn('metadata only')]
])
const MOUNT_KEYS = new Set(['type', 'source', 'target', 'read_only', 'bind', 'volume', 'tmpfs'])
const MOUNT_RULES = new Map<string, KeyRule>([
  ['consistency', warn('platform-specific hint')],
  ['image', fail('image mounts are not supported')]
])
const BIND_RULES = new Map<string, KeyRule>([
  ['propagation', warn('mounts use the default propagation')],
  ['create_host_path', warn('the engine default applies')],
  ['selinux', warn('no SELinux relabelling')],
  ['recursive', warn('the engine default applies')]
])
const VOLUME_OPT_RULES = new Map<string, KeyRule>([
  ['nocopy', warn('the image content is copied into a new volume')],
  ['labels', warn('volume labels are not set')],
  ['subpath', fail('the whole volume would be mounted instead of the sub-path')]
])
const TMPFS_OPT_RULES = new Map<string, KeyRule>([
  ['size', warn('the tmpfs is not size-limited')],
  ['mode', warn('the tmpfs keeps the default mode')]
])
const VOLUME_DECL_KEYS = new Set(['name', 'external', 'driver'])
const VOLUME_DECL_RULES = new Map<string, KeyRule>([
  ['labels', warn('volume labels are not set')],
  ['driver_opts', fail('the volume would be created without its driver options')]
])
const ENV_FILE_KEYS = new Set(['path', 'required', 'format'])
const NO_KEYS = new Set<string>()
const NO_RULES = new Map<string, KeyRule>()

// ---- context, paths and positions ----------------------------------------------------------------

type Seg = string | number
type Path = readonly Seg[]

interface Pos {
  line: number
  col: number
}

interface PosEntry {
  key?: Pos
  value?: Pos
  /** source text of a plain scalar and its parsed value: `1.10` stays "1.10" in env values */
  raw?: string
  scalar?: unknown
}

interface Ctx {
  issues: ComposeIssue[]
  positions: Map<string, PosEntry>
  variables: Record<string, string>
  envFiles: Record<string, string>
  envFilesNeeded: string[]
  stack: string
  fileName: string
  /** declared volume name → volume name on the engine */
  volumes: Map<string, string>
  unsetWarned: Set<string>
}

type Obj = Record<string, unknown>

function isRecord(v: unknown): v is Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false
  const proto: unknown = Object.getPrototypeOf(v)
  return proto === Object.prototype || proto === null
}

function has(o: Obj, k: string): boolean {
  return Object.hasOwn(o, k)
}

/** The value of an own key; null (`key:` with nothing after it) reads as absent. */
function get(o: Obj, k: string): unknown {
  if (!Object.hasOwn(o, k)) return undefined
  const v = o[k]
  return v === null ? undefined : v
}

function setOwn(o: Obj, k: string, v: unknown): void {
  Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true })
}

function pathKey(path: Path): string {
  return path.map(String).join('\u0000')
}

function pathString(path: Path): string {
  let out = ''
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`
    else out += out === '' ? seg : `.${seg}`
  }
  return out
}

function locate(ctx: Ctx, path: Path, at: 'key' | 'value'): Pos | undefined {
  for (let n = path.length; n >= 0; n--) {
    const e = ctx.positions.get(pathKey(path.slice(0, n)))
    if (e === undefined) continue
    if (n === path.length) return at === 'key' ? (e.key ?? e.value) : (e.value ?? e.key)
    return e.key ?? e.value
  }
  return undefined
}

function report(ctx: Ctx, severity: 'error' | 'warning', path: Path, message: string, at: 'key' | 'value' = 'value'): void {
  const pos = locate(ctx, path, at)
  // field order: severity, path, line, col, message
  ctx.issues.push({ severity, path: pathString(path), ...(pos ? { line: pos.line, col: pos.col } : {}), message })
}

const err = (ctx: Ctx, path: Path, message: string, at: 'key' | 'value' = 'value'): void => report(ctx, 'error', path, message, at)

function describe(v: unknown): string {
  if (v === null || v === undefined) return 'null'
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? `${v.slice(0, 57)}...` : v)
  if (typeof v === 'number' || typeof v === 'boolean') return String(v)
  if (Array.isArray(v)) return 'a list'
  if (isRecord(v)) return 'a mapping'
  return 'an unsupported value'
}

/** Reports keys that are not in `known`: per the rule table, else as unknown. `x-*` keys pass. */
function checkKeys(ctx: Ctx, o: Obj, path: Path, known: ReadonlySet<string>, rules: ReadonlyMap<string, KeyRule>): void {
  for (const k of Object.keys(o)) {
    if (known.has(k) || k.startsWith('x-')) continue
    const rule = rules.get(k)
    if (rule === undefined) err(ctx, [...path, k], 'unknown key', 'key')
    else if (rule.severity === 'warning') report(ctx, 'warning', [...path, k], `ignored: not supported yet (${rule.reason})`, 'key')
    else err(ctx, [...path, k], `not supported yet: ${rule.reason}`, 'key')
  }
}

/** Line/col of every key and value in the document, by path. Aliases and merges are not entered. */
function indexPositions(root: unknown, text: string, lc: LineCounter): Map<string, PosEntry> {
  const out = new Map<string, PosEntry>()
  const at = (offset: number): Pos => lc.linePos(offset)
  const entry = (path: Path): PosEntry => {
    const k = pathKey(path)
    let e = out.get(k)
    if (e === undefined) {
      e = {}
      out.set(k, e)
    }
    return e
  }
  const recordValue = (node: unknown, path: Path): void => {
    if (node === null || typeof node !== 'object') return
    const range = (node as { range?: [number, number, number] }).range
    if (range) {
      const e = entry(path)
      e.value = at(range[0])
      if (isScalar(node) && node.type === 'PLAIN') {
        e.raw = text.slice(range[0], range[1])
        e.scalar = node.value
      }
    }
    walk(node, path)
  }
  const walk = (node: unknown, path: Path): void => {
    if (isAlias(node)) return
    if (isMap(node)) {
      for (const pair of node.items) {
        const key = pair.key
        if (!isScalar(key) || typeof key.value === 'symbol') continue
        const p = [...path, String(key.value)]
        if (key.range) entry(p).key = at(key.range[0])
        recordValue(pair.value, p)
      }
    } else if (isSeq(node)) {
      node.items.forEach((item, i) => recordValue(item, [...path, i]))
    }
  }
  recordValue(root, [])
  return out
}

// ---- interpolation -------------------------------------------------------------------------------

interface ExpandState {
  unset: string[]
  failed: string[]
  invalid?: string
}

const NAME_RE = /[A-Za-z_][A-Za-z0-9_]*/y

function readName(s: string, from: number): string | undefined {
  NAME_RE.lastIndex = from
  const m = NAME_RE.exec(s)
  return m ? m[0] : undefined
}

function lookupVar(vars: Record<string, string>, name: string): string | undefined {
  if (!Object.hasOwn(vars, name)) return undefined
  const v = vars[name]
  return typeof v === 'string' ? v : undefined
}

/** Index of the `}` closing a `${` whose body starts at `from`, honouring nested `${…}`. */
function closingBrace(s: string, from: number): number {
  let depth = 0
  for (let j = from; j < s.length; j++) {
    const c = s[j]
    if (c === '$' && (s[j + 1] === '$' || s[j + 1] === '{')) {
      if (s[j + 1] === '{') depth++
      j++
    } else if (c === '}') {
      if (depth === 0) return j
      depth--
    }
  }
  return -1
}

const OPERATORS = [':-', ':?', ':+', '-', '?', '+'] as const

/** Compose interpolation: $$, $VAR, ${VAR}, ${VAR:-d}, ${VAR-d}, ${VAR:?e}, ${VAR?e}, ${VAR:+r}, ${VAR+r}. */
function expand(s: string, vars: Record<string, string>, st: ExpandState): string {
  let out = ''
  let i = 0
  while (i < s.length) {
    const c = s[i]
    if (c !== '$') {
      out += c
      i++
      continue
    }
    const next = s[i + 1]
    if (next === '$') {
      out += '$'
      i += 2
      continue
    }
    if (next === '{') {
      const end = closingBrace(s, i + 2)
      if (end < 0) {
        st.invalid ??= s.slice(i)
        return out
      }
      out += expandBraced(s.slice(i + 2, end), vars, st)
      if (st.invalid !== undefined) return out
      i = end + 1
      continue
    }
    const name = readName(s, i + 1)
    if (name === undefined) {
      st.invalid ??= s.slice(i, i + 2)
      return out
    }
    const v = lookupVar(vars, name)
    if (v === undefined) st.unset.push(name)
    out += v ?? ''
    i += 1 + name.length
  }
  return out
}

function expandBraced(body: string, vars: Record<string, string>, st: ExpandState): string {
  const name = readName(body, 0)
  if (name === undefined) {
    st.invalid ??= `\${${body}}`
    return ''
  }
  const rest = body.slice(name.length)
  const v = lookupVar(vars, name)
  if (rest === '') {
    if (v === undefined) st.unset.push(name)
    return v ?? ''
  }
  const op = OPERATORS.find((o) => rest.startsWith(o))
  if (op === undefined) {
    st.invalid ??= `\${${body}}`
    return ''
  }
  const arg = rest.slice(op.length)
  const set = v !== undefined
  const nonEmpty = v !== undefined && v !== ''
  switch (op) {
    case ':-':
      return nonEmpty ? v : expand(arg, vars, st)
    case '-':
      return set ? v : expand(arg, vars, st)
    case ':+':
      return nonEmpty ? expand(arg, vars, st) : ''
    case '+':
      return set ? expand(arg, vars, st) : ''
    case ':?':
    case '?': {
      if (op === ':?' ? nonEmpty : set) return v ?? ''
      const detail = expand(arg, vars, st)
      st.failed.push(`required variable ${name} is ${set ? 'empty' : 'not set'}${detail ? `: ${detail}` : ''}`)
      return ''
    }
  }
}

function interpolate(ctx: Ctx, s: string, path: Path): string {
  if (!s.includes('$')) return s
  const st: ExpandState = { unset: [], failed: [] }
  const out = expand(s, ctx.variables, st)
  if (st.invalid !== undefined) {
    err(ctx, path, `invalid interpolation ${JSON.stringify(st.invalid)} in ${describe(s)}; write a literal $ as $$`)
    return s
  }
  for (const f of st.failed) err(ctx, path, f)
  for (const name of st.unset) {
    const key = `${pathKey(path)}\u0001${name}`
    if (ctx.unsetWarned.has(key)) continue
    ctx.unsetWarned.add(key)
    report(ctx, 'warning', path, `variable ${name} is not set; substituting an empty string`)
  }
  return out
}

/** Interpolates every string value (not keys, not `x-*` extensions), as Compose does before validating. */
function interpolateTree(ctx: Ctx, v: unknown, path: Path, seen: Set<object>): unknown {
  if (typeof v === 'string') return interpolate(ctx, v, path)
  if (Array.isArray(v)) {
    if (seen.has(v)) {
      err(ctx, path, 'recursive YAML alias')
      return null
    }
    seen.add(v)
    const out = v.map((item, i) => interpolateTree(ctx, item, [...path, i], seen))
    seen.delete(v)
    return out
  }
  if (isRecord(v)) {
    if (seen.has(v)) {
      err(ctx, path, 'recursive YAML alias')
      return null
    }
    seen.add(v)
    const out: Obj = {}
    for (const k of Object.keys(v)) setOwn(out, k, k.startsWith('x-') ? v[k] : interpolateTree(ctx, v[k], [...path, k], seen))
    seen.delete(v)
    return out
  }
  return v
}

// ---- scalar readers ------------------------------------------------------------------------------

/** A string; numbers and booleans are accepted as their text when `lenient`. */
function str(ctx: Ctx, v: unknown, path: Path, lenient = false): string | undefined {
  if (typeof v === 'string') return v
  if (lenient && (typeof v === 'number' || typeof v === 'boolean')) return scalarText(ctx, v, path)
  err(ctx, path, `must be a string, got ${describe(v)}`)
  return undefined
}

/** Text of a scalar as written (`1.10` stays "1.10"), or undefined for lists, mappings, null. */
function scalarText(ctx: Ctx, v: unknown, path: Path): string | undefined {
  if (typeof v === 'string') return v
  if (typeof v !== 'number' && typeof v !== 'boolean') return undefined
  const e = ctx.positions.get(pathKey(path))
  if (e !== undefined && e.raw !== undefined && Object.is(e.scalar, v)) return e.raw
  return String(v)
}

function int(ctx: Ctx, v: unknown, path: Path, min: number, max: number, expected?: string): number | undefined {
  let n: number | undefined
  if (typeof v === 'number') n = v
  else if (typeof v === 'string' && /^\s*[+-]?\d+\s*$/.test(v)) n = Number(v)
  const what = expected ?? (min === 0 ? 'a non-negative integer' : `an integer of at least ${min}`)
  if (n === undefined || !Number.isSafeInteger(n) || n < min) {
    err(ctx, path, `must be ${what}, got ${describe(v)}`)
    return undefined
  }
  if (n > max) {
    err(ctx, path, expected ? `must be ${what}, got ${describe(v)}` : `must be at most ${max}, got ${describe(v)}`)
    return undefined
  }
  return n
}

function bool(ctx: Ctx, v: unknown, path: Path): boolean | undefined {
  if (typeof v === 'boolean') return v
  if (typeof v === 'string') {
    const l = v.trim().toLowerCase()
    if (l === 'true') return true
    if (l === 'false') return false
  }
  err(ctx, path, `must be true or false, got ${describe(v)}`)
  return undefined
}

const DURATION_UNITS_NS: Record<string, number> = { ns: 1, us: 1e3, 'µs': 1e3, 'μs': 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 }
const DURATION_PART = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/y

/** Parses a Go/Compose duration ("1m30s", "10s", "500ms", "1.5h") into nanoseconds. */
export function parseDurationNs(s: string): number | undefined {
  const t = s.trim()
  if (t === '0' || t === '+0') return 0
  let i = t.startsWith('+') ? 1 : 0
  if (i >= t.length) return undefined
  let total = 0
  while (i < t.length) {
    DURATION_PART.lastIndex = i
    const m = DURATION_PART.exec(t)
    if (!m) return undefined
    total += Number(m[1]) * (DURATION_UNITS_NS[m[2]] ?? NaN)
    i = DURATION_PART.lastIndex
  }
  return Number.isFinite(total) ? total : undefined
}

function duration(ctx: Ctx, v: unknown, path: Path): number | undefined {
  if (v === 0) return 0
  const ns = typeof v === 'string' ? parseDurationNs(v) : undefined
  if (ns === undefined) {
    err(ctx, path, `must be a duration like "10s", "1m30s" or "500ms", got ${describe(v)}`)
    return undefined
  }
  const ms = Math.round(ns / 1e6)
  if (!Number.isSafeInteger(ms)) {
    err(ctx, path, `duration too large: ${describe(v)}`)
    return undefined
  }
  return ms
}

const BYTE_UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4, p: 1024 ** 5 }

/** Parses a Compose/Docker byte size ("512M", "1g", "100k", "1.5GB", "1024") into bytes (binary units). */
export function parseBytes(s: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?) ?([kmgtp])?i?b?\s*$/i.exec(s)
  if (!m) return undefined
  const n = Math.floor(Number(m[1]) * (BYTE_UNITS[(m[2] ?? '').toLowerCase()] ?? NaN))
  return Number.isSafeInteger(n) ? n : undefined
}

function bytes(ctx: Ctx, v: unknown, path: Path): number | undefined {
  let n: number | undefined
  if (typeof v === 'number') n = Number.isSafeInteger(v) && v >= 0 ? v : undefined
  else if (typeof v === 'string') n = parseBytes(v)
  if (n === undefined) err(ctx, path, `must be a size like "512M", "1g", "100k" or "1.5GB", got ${describe(v)}`)
  return n
}

function cpus(ctx: Ctx, v: unknown, path: Path): number | undefined {
  let n: number | undefined
  if (typeof v === 'number') n = v
  else if (typeof v === 'string' && /^\s*(\d+(\.\d*)?|\.\d+)\s*$/.test(v)) n = Number(v)
  if (n === undefined || !Number.isFinite(n) || n < 0 || n > 1e6) {
    err(ctx, path, `must be a non-negative number of CPUs like 0.5 or "2", got ${describe(v)}`)
    return undefined
  }
  return n
}

// ---- shell words ---------------------------------------------------------------------------------

/** Splits a command string into words as Compose does (quotes and backslashes; no expansion). */
export function shellSplit(s: string): { words: string[] } | { error: string } {
  const words: string[] = []
  let cur = ''
  let inWord = false
  let i = 0
  while (i < s.length) {
    const c = s[i]
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r') {
      if (inWord) words.push(cur)
      cur = ''
      inWord = false
      i++
    } else if (c === "'") {
      const end = s.indexOf("'", i + 1)
      if (end < 0) return { error: 'unterminated single quote' }
      cur += s.slice(i + 1, end)
      inWord = true
      i = end + 1
    } else if (c === '"') {
      inWord = true
      i++
      let closed = false
      while (i < s.length) {
        const d = s[i]
        if (d === '"') {
          closed = true
          i++
          break
        }
        if (d === '\\' && i + 1 < s.length && '"\\$`\n'.includes(s[i + 1])) {
          if (s[i + 1] !== '\n') cur += s[i + 1]
          i += 2
          continue
        }
        cur += d
        i++
      }
      if (!closed) return { error: 'unterminated double quote' }
    } else if (c === '\\') {
      if (i + 1 >= s.length) cur += '\\'
      else if (s[i + 1] !== '\n') cur += s[i + 1]
      inWord = true
      i += 2
    } else if (c === ';' || c === '&' || c === '|' || c === '<' || c === '>') {
      return { error: `unquoted shell operator "${c}"; write the command as a list, e.g. ["sh", "-c", "..."]` }
    } else {
      cur += c
      inWord = true
      i++
    }
  }
  if (inWord) words.push(cur)
  return { words }
}

function commandList(ctx: Ctx, v: unknown, path: Path): string[] | undefined {
  if (v === undefined || v === null) return undefined
  if (typeof v === 'string') {
    const r = shellSplit(v)
    if ('error' in r) {
      err(ctx, path, `invalid command string: ${r.error}`)
      return undefined
    }
    return r.words
  }
  if (Array.isArray(v)) {
    const out: string[] = []
    v.forEach((item, i) => {
      const s = scalarText(ctx, item, [...path, i])
      if (s === undefined) err(ctx, [...path, i], `must be a string, got ${describe(item)}`)
      else out.push(s)
    })
    return out
  }
  err(ctx, path, `must be a string or a list of strings, got ${describe(v)}`)
  return undefined
}

// ---- environment, env files, labels --------------------------------------------------------------

const ENV_KEY_RE = /^[A-Za-z_][A-Za-z0-9_.-]*$/

/** `KEY=VALUE` pairs from a list (`K=V`, `K`) or a mapping; `K` / null take the value from variables or drop. */
function keyValues(ctx: Ctx, v: unknown, path: Path, kind: 'environment' | 'labels', into: Map<string, string>): void {
  if (v === undefined || v === null) return
  const fromVariables = (key: string): string | undefined => (kind === 'labels' ? '' : lookupVar(ctx.variables, key))
  const put = (key: string, value: string | undefined, p: Path, at: 'key' | 'value'): void => {
    if (key === '' || key.includes('=') || /\s/.test(key)) {
      err(ctx, p, `invalid ${kind === 'labels' ? 'label' : 'variable'} name ${describe(key)}`, at)
      return
    }
    if (value === undefined) into.delete(key)
    else into.set(key, value)
  }
  if (Array.isArray(v)) {
    v.forEach((item, i) => {
      const p = [...path, i]
      if (typeof item !== 'string') {
        err(ctx, p, `must be a "KEY=VALUE" string, got ${describe(item)}`)
        return
      }
      const eq = item.indexOf('=')
      if (eq < 0) put(item, fromVariables(item), p, 'value')
      else put(item.slice(0, eq), item.slice(eq + 1), p, 'value')
    })
    return
  }
  if (isRecord(v)) {
    for (const key of Object.keys(v)) {
      const p = [...path, key]
      const value = v[key]
      if (value === null || value === undefined) {
        put(key, fromVariables(key), p, 'key')
        continue
      }
      const text = scalarText(ctx, value, p)
      if (text === undefined) err(ctx, p, `must be a string, number or boolean, got ${describe(value)}`)
      else put(key, text, p, 'key')
    }
    return
  }
  err(ctx, path, `must be a list of "KEY=VALUE" strings or a mapping, got ${describe(v)}`)
}

export interface EnvFileParse {
  entries: [string, string][]
  errors: { line: number; message: string }[]
  unset: string[]
}

function findClosingQuote(body: string, q: string): number {
  if (q === "'") return body.indexOf("'")
  for (let j = 0; j < body.length; j++) {
    if (body[j] === '\\') j++
    else if (body[j] === '"') return j
  }
  return -1
}

function unescapeDouble(s: string): string {
  return s.replace(/\\(.)/gs, (_m, c: string) => {
    switch (c) {
      case 'n':
        return '\n'
      case 't':
        return '\t'
      case 'r':
        return '\r'
      case '$':
        return '$$'
      default:
        return c
    }
  })
}

/**
 * Parses an env file: `KEY=VALUE` lines, `#` comments, optional `export `, single quotes
 * (literal), double quotes (escapes, may span lines), inline ` #` comments after unquoted
 * values, and `${VAR}` interpolation outside single quotes (variables first, then earlier keys
 * of the same file). A bare `KEY` takes its value from the variables, or is dropped.
 */
export function parseEnvFile(content: string, variables: Record<string, string> = {}): EnvFileParse {
  const entries = new Map<string, string>()
  const errors: EnvFileParse['errors'] = []
  const unset: string[] = []
  const lines = content.replace(/^\uFEFF/, '').split(/\r\n|\n|\r/)
  const expandValue = (raw: string, lineNo: number): string => {
    if (!raw.includes('$')) return raw
    const vars: Record<string, string> = Object.create(null) as Record<string, string>
    for (const [k, val] of entries) vars[k] = val
    for (const k of Object.keys(variables)) {
      const val = lookupVar(variables, k)
      if (val !== undefined) vars[k] = val
    }
    const st: ExpandState = { unset: [], failed: [] }
    const out = expand(raw, vars, st)
    if (st.invalid !== undefined) return raw
    unset.push(...st.unset)
    for (const f of st.failed) errors.push({ line: lineNo, message: f })
    return out
  }
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1
    let t = lines[i].replace(/^[ \t]+/, '')
    if (t === '' || t.startsWith('#')) continue
    t = t.replace(/^export[ \t]+/, '')
    const eq = t.indexOf('=')
    const key = (eq < 0 ? t : t.slice(0, eq)).trim()
    if (!ENV_KEY_RE.test(key)) {
      errors.push({ line: lineNo, message: `invalid variable name ${describe(key)}` })
      continue
    }
    if (eq < 0) {
      const val = lookupVar(variables, key)
      if (val !== undefined) entries.set(key, val)
      continue
    }
    const rest = t.slice(eq + 1).replace(/^[ \t]+/, '')
    let value: string
    if (rest.startsWith("'") || rest.startsWith('"')) {
      const q = rest[0]
      let body = rest.slice(1)
      let end = findClosingQuote(body, q)
      while (end < 0 && i + 1 < lines.length) {
        i++
        body += `\n${lines[i]}`
        end = findClosingQuote(body, q)
      }
      if (end < 0) {
        errors.push({ line: lineNo, message: `unterminated ${q === '"' ? 'double' : 'single'} quote` })
        continue
      }
      const inner = body.slice(0, end)
      value = q === "'" ? inner : expandValue(unescapeDouble(inner), lineNo)
    } else {
      const comment = /[ \t]#/.exec(rest)
      value = expandValue((comment ? rest.slice(0, comment.index) : rest).trim(), lineNo)
    }
    entries.set(key, value)
  }
  return { entries: [...entries], errors, unset }
}

/** A field that takes one path or a list of them, as items with their own paths (one error otherwise). */
function pathOrPaths(ctx: Ctx, v: unknown, path: Path): { item: unknown; path: Path }[] {
  if (typeof v === 'string') return [{ item: v, path }]
  if (Array.isArray(v)) return v.map((item, i) => ({ item, path: [...path, i] }))
  err(ctx, path, `must be a path or a list of paths, got ${describe(v)}`)
  return []
}

function envFileEntries(ctx: Ctx, v: unknown, path: Path, into: Map<string, string>): void {
  if (v === undefined || v === null) return
  const items = pathOrPaths(ctx, v, path)
  for (const { item, path: p } of items) {
    let file: string | undefined
    let required = true
    if (typeof item === 'string') file = item
    else if (isRecord(item)) {
      checkKeys(ctx, item, p, ENV_FILE_KEYS, NO_RULES)
      const fp = get(item, 'path')
      if (fp === undefined) err(ctx, [...p, 'path'], 'required')
      else file = str(ctx, fp, [...p, 'path'])
      const req = get(item, 'required')
      if (req !== undefined) required = bool(ctx, req, [...p, 'required']) ?? true
      const format = get(item, 'format')
      if (format !== undefined) err(ctx, [...p, 'format'], `not supported yet: only the default env file format is read`, 'key')
    } else {
      err(ctx, p, `must be a path or a mapping with path:, got ${describe(item)}`)
    }
    if (file === undefined) continue
    if (file === '') {
      err(ctx, p, 'must not be empty')
      continue
    }
    if (!ctx.envFilesNeeded.includes(file)) ctx.envFilesNeeded.push(file)
    const content = Object.hasOwn(ctx.envFiles, file) ? ctx.envFiles[file] : undefined
    if (typeof content !== 'string') {
      if (required) err(ctx, p, `env file ${describe(file)} not found`)
      continue
    }
    const parsed = parseEnvFile(content, ctx.variables)
    for (const e of parsed.errors) err(ctx, p, `${file}:${e.line}: ${e.message}`)
    for (const name of new Set(parsed.unset)) report(ctx, 'warning', p, `${file}: variable ${name} is not set; substituting an empty string`)
    for (const [k, val] of parsed.entries) into.set(k, val)
  }
}

function sortedEnv(m: Map<string, string>): string[] {
  return [...m.keys()].sort(compareStrings).map((k) => `${k}=${m.get(k) ?? ''}`)
}

function sortedObject(m: Map<string, string>): Record<string, string> {
  return Object.fromEntries([...m.keys()].sort(compareStrings).map((k) => [k, m.get(k) ?? '']))
}

// ---- ports ---------------------------------------------------------------------------------------

const PORT_EXPECTED = 'a port number between 1 and 65535'

function portNumber(ctx: Ctx, v: unknown, path: Path): number | undefined {
  if (typeof v === 'string' && /^\s*\d+\s*-\s*\d+\s*$/.test(v)) {
    err(ctx, path, `port ranges are not supported yet, got ${describe(v)}`)
    return undefined
  }
  return int(ctx, v, path, 1, 65535, PORT_EXPECTED)
}

function checkHostIp(ctx: Ctx, ip: string, path: Path): void {
  if (ip === '' || ip === '0.0.0.0' || ip === '::') return
  err(ctx, path, `binding to host IP ${describe(ip)} is not supported: published ports open on every node and every address`)
}

function protocolOf(ctx: Ctx, v: unknown, path: Path): 'tcp' | 'udp' | undefined {
  const s = typeof v === 'string' ? v.trim().toLowerCase() : undefined
  if (s === 'tcp' || s === 'udp') return s
  err(ctx, path, `unsupported protocol ${describe(v)}: expected tcp or udp`)
  return undefined
}

function shortPort(ctx: Ctx, s: string, path: Path): PortSpec | undefined {
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

function longPort(ctx: Ctx, o: Obj, path: Path): PortSpec | undefined {
  checkKeys(ctx, o, path, PORT_KEYS, PORT_RULES)
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

const PORT_EXTENSION_KEYS = new Set(['proxy_protocol'])

/**
 * A port's `x-p2p-orch:` mapping: `proxy_protocol: true` (or `v2`) makes the routing mesh send a
 * PROXY protocol v2 header first, so the backend learns the client's address. Returns false when
 * absent, null after an error.
 */
function portExtension(ctx: Ctx, v: unknown, path: Path): boolean | null {
  if (v === undefined) return false
  if (!isRecord(v)) {
    err(ctx, path, `must be a mapping like {proxy_protocol: true}, got ${describe(v)}`)
    return null
  }
  checkKeys(ctx, v, path, PORT_EXTENSION_KEYS, new Map())
  const raw = get(v, 'proxy_protocol')
  if (raw === undefined || raw === false || raw === 'false') return false
  if (raw === true || raw === 'true' || raw === 'v2' || raw === 2) return true
  err(ctx, [...path, 'proxy_protocol'], `must be true, false or "v2", got ${describe(raw)}`)
  return null
}

/** `expose:` — container ports other services of the stack reach by name: "3000", "3000/udp", 8080. */
function exposedPorts(ctx: Ctx, v: unknown, path: Path): ExposedPort[] {
  return listItems(ctx, v, path, (item, p) => {
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

/**
 * Parse a list field item by item: an absent field is an empty list, a non-list is one error,
 * and each item's parser reports its own errors (returning undefined to skip the item).
 */
function listItems<T>(ctx: Ctx, v: unknown, path: Path, item: (x: unknown, p: Path) => T | undefined): T[] {
  if (v === undefined) return []
  if (!Array.isArray(v)) {
    err(ctx, path, `must be a list, got ${describe(v)}`)
    return []
  }
  const out: T[] = []
  v.forEach((x, i) => {
    const parsed = item(x, [...path, i])
    if (parsed !== undefined) out.push(parsed)
  })
  return out
}

function ports(ctx: Ctx, v: unknown, path: Path): PortSpec[] {
  return listItems(ctx, v, path, (item, p) => {
    if (typeof item === 'number') {
      const target = int(ctx, item, p, 1, 65535, PORT_EXPECTED)
      return target === undefined ? undefined : { target, protocol: 'tcp', mode: 'ingress' }
    }
    if (typeof item === 'string') return shortPort(ctx, item, p)
    if (isRecord(item)) return longPort(ctx, item, p)
    err(ctx, p, `must be a port string like "8080:80", a number or a mapping, got ${describe(item)}`)
    return undefined
  })
}

// ---- volumes -------------------------------------------------------------------------------------

const VOLUME_NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/

function dirOf(fileName: string): string {
  const i = fileName.lastIndexOf('/')
  if (i < 0) return '.'
  return i === 0 ? '/' : fileName.slice(0, i)
}

/** POSIX join + normalisation, without consulting the working directory. */
function joinPath(dir: string, rel: string): string {
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

function bindSource(ctx: Ctx, src: string, path: Path): string | undefined {
  if (src.startsWith('~')) {
    err(ctx, path, `home-relative bind source ${describe(src)} is not supported: use an absolute path`)
    return undefined
  }
  if (src.startsWith('/')) return src
  const resolved = joinPath(dirOf(ctx.fileName), src)
  if (!resolved.startsWith('/')) {
    err(ctx, path, `relative bind source ${describe(src)} cannot be resolved: the compose file path ${describe(ctx.fileName)} is not absolute`)
    return undefined
  }
  return resolved
}

function namedVolume(ctx: Ctx, name: string, path: Path): string | undefined {
  const engineName = ctx.volumes.get(name)
  if (engineName === undefined) err(ctx, path, `volume ${describe(name)} is not declared under the top-level volumes key`)
  return engineName
}

function targetPath(ctx: Ctx, t: string, path: Path): string | undefined {
  if (!t.startsWith('/')) {
    err(ctx, path, `mount target must be an absolute path, got ${describe(t)}`)
    return undefined
  }
  return t
}

const IGNORED_VOLUME_OPTIONS = new Set(['z', 'Z', 'cached', 'delegated', 'consistent', 'nocopy'])

function shortMount(ctx: Ctx, s: string, path: Path): MountSpec | undefined {
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

function longMount(ctx: Ctx, o: Obj, path: Path): MountSpec | undefined {
  checkKeys(ctx, o, path, MOUNT_KEYS, MOUNT_RULES)
  const typeRaw = get(o, 'type')
  let type: MountSpec['type'] | undefined
  if (typeRaw === undefined) err(ctx, [...path, 'type'], 'required: volume, bind or tmpfs')
  else if (typeRaw === 'volume' || typeRaw === 'bind' || typeRaw === 'tmpfs') type = typeRaw
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
  for (const [k, rules] of [['bind', BIND_RULES], ['volume', VOLUME_OPT_RULES], ['tmpfs', TMPFS_OPT_RULES]] as const) {
    const sub = get(o, k)
    if (sub === undefined) continue
    if (!isRecord(sub)) err(ctx, [...path, k], `must be a mapping, got ${describe(sub)}`)
    else checkKeys(ctx, sub, [...path, k], NO_KEYS, rules)
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

function mounts(ctx: Ctx, v: unknown, path: Path, into: MountSpec[]): void {
  into.push(...listItems(ctx, v, path, (item, p) => {
    if (typeof item === 'string') return shortMount(ctx, item, p)
    if (isRecord(item)) return longMount(ctx, item, p)
    err(ctx, p, `must be a string like "data:/var/lib/data" or a mapping, got ${describe(item)}`)
    return undefined
  }))
}

/** Service-level `tmpfs: /run` or `tmpfs: [/run, /tmp:size=64m]`. */
function tmpfsMounts(ctx: Ctx, v: unknown, path: Path, into: MountSpec[]): void {
  if (v === undefined) return
  const items = pathOrPaths(ctx, v, path)
  for (const { item, path: p } of items) {
    if (typeof item !== 'string') {
      err(ctx, p, `must be a path, got ${describe(item)}`)
      continue
    }
    const colon = item.indexOf(':')
    const t = colon < 0 ? item : item.slice(0, colon)
    if (colon >= 0) report(ctx, 'warning', p, `ignored: tmpfs options ${describe(item.slice(colon + 1))} are not supported yet`)
    const target = targetPath(ctx, t, p)
    if (target !== undefined) into.push({ type: 'tmpfs', source: '', target, readOnly: false })
  }
}

function declareVolumes(ctx: Ctx, v: unknown, path: Path): void {
  if (v === undefined) return
  if (!isRecord(v)) {
    err(ctx, path, `must be a mapping of volume names, got ${describe(v)}`)
    return
  }
  for (const key of Object.keys(v)) {
    if (key.startsWith('x-')) continue
    const p = [...path, key]
    if (!VOLUME_NAME_RE.test(key)) {
      err(ctx, p, `invalid volume name ${describe(key)}: use letters, digits, "_", "." or "-"`, 'key')
      continue
    }
    const decl = v[key]
    let engineName = `${ctx.stack}_${key}`
    if (decl !== null && decl !== undefined) {
      if (!isRecord(decl)) {
        err(ctx, p, `must be a mapping or empty, got ${describe(decl)}`)
        continue
      }
      checkKeys(ctx, decl, p, VOLUME_DECL_KEYS, VOLUME_DECL_RULES)
      const driver = get(decl, 'driver')
      if (driver !== undefined && driver !== 'local') err(ctx, [...p, 'driver'], `not supported yet: only the local driver, got ${describe(driver)}`)
      let external = false
      let externalName: string | undefined
      const ext = get(decl, 'external')
      if (isRecord(ext)) {
        external = true
        checkKeys(ctx, ext, [...p, 'external'], new Set(['name']), NO_RULES)
        const n = get(ext, 'name')
        if (n !== undefined) externalName = str(ctx, n, [...p, 'external', 'name'])
      } else if (ext !== undefined) external = bool(ctx, ext, [...p, 'external']) ?? false
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

// ---- healthcheck, deploy -------------------------------------------------------------------------

const HEALTH_DEFAULTS = { intervalMs: 30_000, timeoutMs: 30_000, retries: 3, startPeriodMs: 0 }

function healthcheck(ctx: Ctx, v: unknown, path: Path): HealthcheckSpec | undefined {
  if (v === undefined) return undefined
  if (!isRecord(v)) {
    err(ctx, path, `must be a mapping, got ${describe(v)}`)
    return undefined
  }
  checkKeys(ctx, v, path, HEALTHCHECK_KEYS, HEALTHCHECK_RULES)
  const disableRaw = get(v, 'disable')
  const disable = disableRaw === undefined ? false : (bool(ctx, disableRaw, [...path, 'disable']) ?? false)
  let test: string[] = []
  const testRaw = get(v, 'test')
  if (disable) {
    test = ['NONE']
    if (testRaw !== undefined) report(ctx, 'warning', [...path, 'test'], 'ignored: the healthcheck is disabled', 'key')
  } else if (typeof testRaw === 'string') {
    if (testRaw.trim() === '') err(ctx, [...path, 'test'], 'must not be empty')
    else test = ['CMD-SHELL', testRaw]
  } else if (Array.isArray(testRaw)) {
    const list = commandList(ctx, testRaw, [...path, 'test']) ?? []
    const head = list[0]
    if (head !== 'NONE' && head !== 'CMD' && head !== 'CMD-SHELL') {
      err(ctx, [...path, 'test'], `must start with "CMD", "CMD-SHELL" or "NONE", got ${describe(head ?? null)}`)
    } else if (head !== 'NONE' && list.length < 2) {
      err(ctx, [...path, 'test'], `${head} needs a command`)
    } else test = list
  } else if (testRaw !== undefined) {
    err(ctx, [...path, 'test'], `must be a string or a list of strings, got ${describe(testRaw)}`)
  }
  const dur = (k: string, def: number): number => {
    const raw = get(v, k)
    return raw === undefined ? def : (duration(ctx, raw, [...path, k]) ?? def)
  }
  const retriesRaw = get(v, 'retries')
  return {
    test,
    intervalMs: dur('interval', HEALTH_DEFAULTS.intervalMs),
    timeoutMs: dur('timeout', HEALTH_DEFAULTS.timeoutMs),
    retries: retriesRaw === undefined ? HEALTH_DEFAULTS.retries : (int(ctx, retriesRaw, [...path, 'retries'], 0, 1_000_000) ?? HEALTH_DEFAULTS.retries),
    startPeriodMs: dur('start_period', HEALTH_DEFAULTS.startPeriodMs)
  }
}

function resources(ctx: Ctx, v: unknown, path: Path, keys: ReadonlySet<string>, rules: ReadonlyMap<string, KeyRule>): ResourcesSpec {
  if (v === undefined) return {}
  if (!isRecord(v)) {
    err(ctx, path, `must be a mapping, got ${describe(v)}`)
    return {}
  }
  checkKeys(ctx, v, path, keys, rules)
  const out: ResourcesSpec = {}
  const c = get(v, 'cpus')
  if (c !== undefined) {
    const n = cpus(ctx, c, [...path, 'cpus'])
    if (n !== undefined) out.cpus = n
  }
  const m = get(v, 'memory')
  if (m !== undefined) {
    const n = bytes(ctx, m, [...path, 'memory'])
    if (n !== undefined) out.memoryBytes = n
  }
  return out
}

const RESTART_CONDITIONS = new Set(['none', 'on-failure', 'any'])

function restartPolicy(ctx: Ctx, v: unknown, path: Path): RestartPolicySpec | undefined {
  if (v === undefined) return undefined
  if (!isRecord(v)) {
    err(ctx, path, `must be a mapping, got ${describe(v)}`)
    return undefined
  }
  checkKeys(ctx, v, path, RESTART_KEYS, NO_RULES)
  const out: RestartPolicySpec = { ...DEFAULT_RESTART_POLICY }
  const cond = get(v, 'condition')
  if (cond !== undefined) {
    if (typeof cond === 'string' && RESTART_CONDITIONS.has(cond)) out.condition = cond as RestartPolicySpec['condition']
    else err(ctx, [...path, 'condition'], `must be none, on-failure or any, got ${describe(cond)}`)
  }
  const delay = get(v, 'delay')
  if (delay !== undefined) out.delayMs = duration(ctx, delay, [...path, 'delay']) ?? out.delayMs
  const attempts = get(v, 'max_attempts')
  if (attempts !== undefined) out.maxAttempts = int(ctx, attempts, [...path, 'max_attempts'], 0, Number.MAX_SAFE_INTEGER) ?? out.maxAttempts
  const window = get(v, 'window')
  if (window !== undefined) out.windowMs = duration(ctx, window, [...path, 'window']) ?? out.windowMs
  return out
}

/** Service-level `restart:` (no | always | on-failure[:N] | unless-stopped). */
function restartShorthand(ctx: Ctx, v: unknown, path: Path): RestartPolicySpec | undefined {
  if (v === false) return { ...DEFAULT_RESTART_POLICY, condition: 'none' }
  if (typeof v === 'string') {
    const s = v.trim()
    if (s === 'no') return { ...DEFAULT_RESTART_POLICY, condition: 'none' }
    if (s === 'always' || s === 'unless-stopped') return { ...DEFAULT_RESTART_POLICY, condition: 'any' }
    const m = /^on-failure(?::(\d+))?$/.exec(s)
    if (m) return { ...DEFAULT_RESTART_POLICY, condition: 'on-failure', maxAttempts: m[1] === undefined ? 0 : Number(m[1]) }
  }
  err(ctx, path, `must be "no", "always", "on-failure[:N]" or "unless-stopped", got ${describe(v)}`)
  return undefined
}

const CONSTRAINT_RE = /^\s*node\.(labels\.([^\s=!]+)|name|hostname|id)\s*(==|!=)\s*(\S(?:.*\S)?)\s*$/s

export function parseConstraint(s: string): ConstraintSpec | undefined {
  const m = CONSTRAINT_RE.exec(s)
  if (!m) return undefined
  const attribute = m[2] !== undefined ? `labels.${m[2]}` : m[1] === 'id' ? 'id' : 'name'
  return { attribute, op: m[3] as '==' | '!=', value: m[4] }
}

function constraints(ctx: Ctx, v: unknown, path: Path): ConstraintSpec[] {
  return listItems(ctx, v, path, (item, p) => {
    if (typeof item !== 'string') {
      err(ctx, p, `must be a string like "node.labels.zone==eu", got ${describe(item)}`)
      return undefined
    }
    const c = parseConstraint(item)
    if (c === undefined) err(ctx, p, `unsupported constraint ${describe(item)}: expected node.labels.KEY, node.name, node.hostname or node.id, then == or !=, then a value`)
    return c
  })
}

interface Deploy {
  mode?: 'replicated' | 'global'
  replicas?: number
  limits: ResourcesSpec
  reservations: ResourcesSpec
  restartPolicy?: RestartPolicySpec
  constraints: ConstraintSpec[]
  maxReplicasPerNode: number
}

function deploy(ctx: Ctx, v: unknown, path: Path): Deploy {
  const out: Deploy = { limits: {}, reservations: {}, constraints: [], maxReplicasPerNode: 0 }
  if (v === undefined) return out
  if (!isRecord(v)) {
    err(ctx, path, `must be a mapping, got ${describe(v)}`)
    return out
  }
  checkKeys(ctx, v, path, DEPLOY_KEYS, DEPLOY_RULES)
  const mode = get(v, 'mode')
  if (mode !== undefined) {
    if (mode === 'replicated' || mode === 'global') out.mode = mode
    else if (mode === 'replicated-job' || mode === 'global-job') err(ctx, [...path, 'mode'], `not supported yet: ${mode}`)
    else err(ctx, [...path, 'mode'], `must be replicated or global, got ${describe(mode)}`)
  }
  const replicas = get(v, 'replicas')
  if (replicas !== undefined) {
    out.replicas = int(ctx, replicas, [...path, 'replicas'], 0, MAX_REPLICAS)
    if (out.mode === 'global') report(ctx, 'warning', [...path, 'replicas'], 'ignored in global mode (one replica per eligible node)', 'key')
  }
  const res = get(v, 'resources')
  if (res !== undefined) {
    const rp = [...path, 'resources']
    if (!isRecord(res)) err(ctx, rp, `must be a mapping, got ${describe(res)}`)
    else {
      checkKeys(ctx, res, rp, RESOURCES_KEYS, NO_RULES)
      out.limits = resources(ctx, get(res, 'limits'), [...rp, 'limits'], LIMITS_KEYS, LIMITS_RULES)
      out.reservations = resources(ctx, get(res, 'reservations'), [...rp, 'reservations'], RESERVATIONS_KEYS, RESERVATIONS_RULES)
    }
  }
  const rp = restartPolicy(ctx, get(v, 'restart_policy'), [...path, 'restart_policy'])
  if (rp !== undefined) out.restartPolicy = rp
  const placement = get(v, 'placement')
  if (placement !== undefined) {
    const pp = [...path, 'placement']
    if (!isRecord(placement)) err(ctx, pp, `must be a mapping, got ${describe(placement)}`)
    else {
      checkKeys(ctx, placement, pp, PLACEMENT_KEYS, PLACEMENT_RULES)
      out.constraints = constraints(ctx, get(placement, 'constraints'), [...pp, 'constraints'])
      const max = get(placement, 'max_replicas_per_node')
      if (max !== undefined) out.maxReplicasPerNode = int(ctx, max, [...pp, 'max_replicas_per_node'], 0, MAX_REPLICAS) ?? 0
    }
  }
  return out
}

// ---- services ------------------------------------------------------------------------------------

function optionalString(ctx: Ctx, svc: Obj, key: string, path: Path, lenient = false): string | undefined {
  const v = get(svc, key)
  if (v === undefined) return undefined
  return str(ctx, v, [...path, key], lenient)
}

/** Service-level shorthand (cpus, mem_limit, …) as a fallback for the deploy value; both must agree. */
function shorthand(ctx: Ctx, deployValue: number | undefined, svc: Obj, key: string, path: Path, parse: (v: unknown, p: Path) => number | undefined, deployPath: string): number | undefined {
  const raw = get(svc, key)
  if (raw === undefined) return deployValue
  const n = parse(raw, [...path, key])
  if (n === undefined) return deployValue
  if (deployValue !== undefined && deployValue !== n) {
    err(ctx, [...path, key], `conflicts with ${deployPath} (${deployValue})`)
    return deployValue
  }
  return n
}

function translateService(ctx: Ctx, name: string, raw: unknown): ServiceSpec | undefined {
  const path: Path = ['services', name]
  if (!SERVICE_NAME_PATTERN.test(name)) {
    err(ctx, path, `invalid service name ${describe(name)}: must start with a letter or digit and use only letters, digits, "_", "." or "-" (at most 63 characters)`, 'key')
  }
  if (!isRecord(raw)) {
    err(ctx, path, `must be a mapping, got ${describe(raw)}`)
    return undefined
  }
  const svc = raw
  checkKeys(ctx, svc, path, SERVICE_KEYS, SERVICE_RULES)

  let image = ''
  const imageRaw = get(svc, 'image')
  if (has(svc, 'build')) {
    if (imageRaw === undefined) err(ctx, [...path, 'build'], 'not supported yet: images cannot be built here; set image: to an image the nodes can pull', 'key')
    else report(ctx, 'warning', [...path, 'build'], 'ignored: not supported yet (the image is pulled, never built)', 'key')
  }
  if (imageRaw === undefined) {
    if (!has(svc, 'build')) err(ctx, [...path, 'image'], 'required: every service needs an image', 'key')
  } else {
    const s = str(ctx, imageRaw, [...path, 'image'])
    if (s !== undefined) {
      if (s.trim() === '') err(ctx, [...path, 'image'], 'must not be empty')
      else if (/\s/.test(s)) err(ctx, [...path, 'image'], `invalid image reference ${describe(s)}`)
      else image = s
    }
  }

  const command = commandList(ctx, get(svc, 'command'), [...path, 'command'])
  const entrypoint = commandList(ctx, get(svc, 'entrypoint'), [...path, 'entrypoint'])

  const env = new Map<string, string>()
  envFileEntries(ctx, get(svc, 'env_file'), [...path, 'env_file'], env)
  keyValues(ctx, get(svc, 'environment'), [...path, 'environment'], 'environment', env)
  const labels = new Map<string, string>()
  keyValues(ctx, get(svc, 'labels'), [...path, 'labels'], 'labels', labels)

  const portList = ports(ctx, get(svc, 'ports'), [...path, 'ports'])
  const exposeList = exposedPorts(ctx, get(svc, 'expose'), [...path, 'expose'])
  const health = healthcheck(ctx, get(svc, 'healthcheck'), [...path, 'healthcheck'])
  const mountList: MountSpec[] = []
  mounts(ctx, get(svc, 'volumes'), [...path, 'volumes'], mountList)
  tmpfsMounts(ctx, get(svc, 'tmpfs'), [...path, 'tmpfs'], mountList)

  const user = optionalString(ctx, svc, 'user', path, true)
  let workingDir = optionalString(ctx, svc, 'working_dir', path)
  if (workingDir !== undefined && !workingDir.startsWith('/')) {
    err(ctx, [...path, 'working_dir'], `must be an absolute path, got ${describe(workingDir)}`)
    workingDir = undefined
  }
  let stopSignal = optionalString(ctx, svc, 'stop_signal', path, true)
  if (stopSignal !== undefined && !/^[A-Za-z0-9+-]+$/.test(stopSignal)) {
    err(ctx, [...path, 'stop_signal'], `must be a signal name like SIGTERM, got ${describe(stopSignal)}`)
    stopSignal = undefined
  }
  const graceRaw = get(svc, 'stop_grace_period')
  const stopGracePeriodMs = graceRaw === undefined ? undefined : duration(ctx, graceRaw, [...path, 'stop_grace_period'])

  const d = deploy(ctx, get(svc, 'deploy'), [...path, 'deploy'])
  const dp = 'deploy'
  const replicas = shorthand(ctx, d.replicas, svc, 'scale', path, (v, p) => int(ctx, v, p, 0, MAX_REPLICAS), `${dp}.replicas`)
  const limits: ResourcesSpec = {}
  const limitCpus = shorthand(ctx, d.limits.cpus, svc, 'cpus', path, (v, p) => cpus(ctx, v, p), `${dp}.resources.limits.cpus`)
  if (limitCpus !== undefined) limits.cpus = limitCpus
  const limitMem = shorthand(ctx, d.limits.memoryBytes, svc, 'mem_limit', path, (v, p) => bytes(ctx, v, p), `${dp}.resources.limits.memory`)
  if (limitMem !== undefined) limits.memoryBytes = limitMem
  const reservations: ResourcesSpec = {}
  if (d.reservations.cpus !== undefined) reservations.cpus = d.reservations.cpus
  const resMem = shorthand(ctx, d.reservations.memoryBytes, svc, 'mem_reservation', path, (v, p) => bytes(ctx, v, p), `${dp}.resources.reservations.memory`)
  if (resMem !== undefined) reservations.memoryBytes = resMem
  if (limits.memoryBytes !== undefined && reservations.memoryBytes !== undefined && limits.memoryBytes > 0 && reservations.memoryBytes > limits.memoryBytes) {
    err(ctx, [...path, 'deploy', 'resources', 'reservations', 'memory'], `memory reservation (${reservations.memoryBytes} bytes) exceeds the memory limit (${limits.memoryBytes} bytes)`)
  }

  let restart = d.restartPolicy
  const restartRaw = get(svc, 'restart')
  if (restartRaw !== undefined) {
    const r = restartShorthand(ctx, restartRaw, [...path, 'restart'])
    if (restart !== undefined) report(ctx, 'warning', [...path, 'restart'], 'ignored: deploy.restart_policy takes precedence', 'key')
    else restart = r
  }

  const spec: ServiceSpec = { name, stack: ctx.stack, image } as ServiceSpec
  if (command !== undefined) spec.command = command
  if (entrypoint !== undefined) spec.entrypoint = entrypoint
  spec.env = sortedEnv(env)
  spec.labels = sortedObject(labels)
  spec.ports = portList
  if (exposeList.length > 0) spec.expose = exposeList
  if (health !== undefined) spec.healthcheck = health
  spec.mounts = mountList
  if (user !== undefined) spec.user = user
  if (workingDir !== undefined) spec.workingDir = workingDir
  if (stopSignal !== undefined) spec.stopSignal = stopSignal
  if (stopGracePeriodMs !== undefined) spec.stopGracePeriodMs = stopGracePeriodMs
  spec.mode = d.mode ?? 'replicated'
  spec.replicas = replicas ?? 1
  spec.limits = limits
  spec.reservations = reservations
  spec.restartPolicy = restart ?? { ...DEFAULT_RESTART_POLICY }
  spec.constraints = d.constraints
  spec.maxReplicasPerNode = d.maxReplicasPerNode
  return spec
}

/** Ingress ports open on every node: two services cannot publish the same port/protocol. */
function checkPortConflicts(ctx: Ctx, services: ServiceSpec[]): void {
  const seen = new Map<string, { service: string; mode: string }>()
  for (const s of services) {
    s.ports.forEach((p, i) => {
      if (p.published === undefined) return
      const key = `${p.published}/${p.protocol}`
      const prev = seen.get(key)
      if (prev !== undefined && (prev.mode === 'ingress' || p.mode === 'ingress')) {
        err(ctx, ['services', s.name, 'ports', i], `published port ${key} is already used by service ${describe(prev.service)}`)
      } else if (prev === undefined) seen.set(key, { service: s.name, mode: p.mode })
    })
  }
}

// ---- stack name ----------------------------------------------------------------------------------

const STACK_NAME_RE = /^[a-z0-9][a-z0-9_-]*$/

function sanitizeStackName(s: string): string {
  return s.toLowerCase().replace(/[^a-z0-9_-]+/g, '').replace(/^[_-]+/, '')
}

function baseName(fileName: string): string {
  const slash = Math.max(fileName.lastIndexOf('/'), fileName.lastIndexOf('\\'))
  const base = fileName.slice(slash + 1)
  const dot = base.lastIndexOf('.')
  return dot > 0 ? base.slice(0, dot) : base
}

function fallbackStackName(input: ComposeInput): string {
  if (typeof input.stackName === 'string' && input.stackName !== '') return sanitizeStackName(input.stackName)
  return sanitizeStackName(baseName(typeof input.fileName === 'string' ? input.fileName : ''))
}

function explicitStackName(ctx: Ctx, name: string, path: Path, origin: string): string {
  if (STACK_NAME_RE.test(name)) return name
  err(ctx, path, `invalid stack name ${describe(name)}${origin}: use lowercase letters, digits, "_" and "-", starting with a letter or digit`)
  return sanitizeStackName(name)
}

// ---- driver --------------------------------------------------------------------------------------

function translate(input: ComposeInput): ComposeResult {
  const ctx: Ctx = {
    issues: [],
    positions: new Map(),
    variables: isRecord(input.variables) ? input.variables : {},
    envFiles: isRecord(input.envFiles) ? input.envFiles : {},
    envFilesNeeded: [],
    stack: '',
    fileName: typeof input.fileName === 'string' ? input.fileName : '',
    volumes: new Map(),
    unsetWarned: new Set()
  }
  const result = (services: ServiceSpec[]): ComposeResult => ({ stack: ctx.stack, services, issues: ctx.issues, envFilesNeeded: ctx.envFilesNeeded })

  const optionName = typeof input.stackName === 'string' && input.stackName !== '' ? input.stackName : undefined
  if (optionName !== undefined) ctx.stack = explicitStackName(ctx, optionName, [], ' (from --name)')

  const text = typeof input.text === 'string' ? input.text : ''
  const lc = new LineCounter()
  const doc = parseDocument(text, { lineCounter: lc, merge: true, prettyErrors: false, uniqueKeys: true, logLevel: 'silent' })
  const located = (offset: number | undefined): Pos | undefined => (typeof offset === 'number' ? lc.linePos(offset) : undefined)
  const push = (severity: 'error' | 'warning', offset: number | undefined, message: string): void => {
    const pos = located(offset)
    ctx.issues.push({ severity, path: '', ...(pos ? { line: pos.line, col: pos.col } : {}), message })
  }
  const fileStack = (): string => {
    const derived = sanitizeStackName(baseName(ctx.fileName))
    if (derived === '') err(ctx, [], `cannot derive a stack name from the file name ${describe(ctx.fileName)}: set name: or --name`)
    return derived
  }
  for (const e of doc.errors) push('error', e.pos?.[0], `invalid YAML: ${e.message}`)
  for (const w of doc.warnings) push('warning', w.pos?.[0], `YAML: ${w.message}`)
  if (doc.errors.length > 0) {
    if (optionName === undefined) ctx.stack = fileStack()
    return result([])
  }

  let js: unknown
  try {
    js = doc.toJS({ maxAliasCount: 1000 })
  } catch (e) {
    push('error', undefined, `invalid YAML: ${e instanceof Error ? e.message : String(e)}`)
    if (optionName === undefined) ctx.stack = fileStack()
    return result([])
  }
  ctx.positions = indexPositions(doc.contents, text, lc)

  if (js === null || js === undefined) {
    if (optionName === undefined) ctx.stack = fileStack()
    err(ctx, [], 'empty file: no services defined')
    return result([])
  }
  if (!isRecord(js)) {
    if (optionName === undefined) ctx.stack = fileStack()
    err(ctx, [], `the top level must be a mapping with a services: key, got ${describe(js)}`)
    return result([])
  }
  const root = interpolateTree(ctx, js, [], new Set()) as Obj
  checkKeys(ctx, root, [], TOP_KEYS, TOP_RULES)

  if (optionName === undefined) {
    const nameRaw = get(root, 'name')
    const name = nameRaw === undefined ? undefined : str(ctx, nameRaw, ['name'])
    ctx.stack = name !== undefined && name !== '' ? explicitStackName(ctx, name, ['name'], '') : fileStack()
  }

  declareVolumes(ctx, get(root, 'volumes'), ['volumes'])

  const services = get(root, 'services')
  if (services === undefined) {
    err(ctx, ['services'], 'no services defined', 'key')
    return result([])
  }
  if (!isRecord(services)) {
    err(ctx, ['services'], `must be a mapping of service names, got ${describe(services)}`)
    return result([])
  }
  const out: ServiceSpec[] = []
  for (const name of Object.keys(services)) {
    if (name.startsWith('x-')) continue
    const spec = translateService(ctx, name, services[name])
    if (spec !== undefined) out.push(spec)
  }
  if (out.length === 0 && Object.keys(services).every((k) => k.startsWith('x-'))) err(ctx, ['services'], 'no services defined', 'key')
  checkPortConflicts(ctx, out)
  return result(out)
}
