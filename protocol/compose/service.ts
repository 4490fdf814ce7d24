/** One service → one ServiceSpec: environment, env files, labels, and the fields of the other stages. */
import { compareStrings } from '../order.ts'
import type { MountSpec, ResourcesSpec, ServiceSpec } from '../spec.ts'
import { DEFAULT_RESTART_POLICY, MAX_REPLICAS, SERVICE_NAME_PATTERN } from '../spec.ts'
import { deploy, healthcheck, restartShorthand } from './deploy.ts'
import { parseEnvFile } from './envfile.ts'
import { lookupVar } from './interpolate.ts'
import { hostSettings } from './host.ts'
import { fileRefs } from './files.ts'
import { exposedPorts, ports } from './ports.ts'
import { applyRollout } from './rollout.ts'
import { ENV_FILE, SERVICE, checkKeys } from './support.ts'
import type { Ctx, Obj, Path } from './types.ts'
import { describe, err, get, has, isRecord, pathOrPaths, report } from './types.ts'
import { bool, bytes, commandList, cpus, duration, int, scalarText, str } from './values.ts'
import { mounts, tmpfsMounts } from './volumes.ts'

/** `KEY=VALUE` pairs from a list (`K=V`, `K`) or a mapping; `K` / null take the value from variables or drop. */
function keyValues (ctx: Ctx, v: unknown, path: Path, kind: 'environment' | 'labels', into: Map<string, string>): void {
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
    v.forEach((raw, i) => {
      const p = [...path, i]
      const item = String(raw)
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
      if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') put(key, scalarText(ctx, value, p), p, 'key')
    }
  }
}

/** `env_file:` — a path, or a list of paths and `{path, required}` mappings; later files win. */
function envFileEntries (ctx: Ctx, v: unknown, path: Path, into: Map<string, string>): void {
  for (const { item, path: p } of pathOrPaths(v, path)) {
    let file: string | undefined
    let required = true
    if (typeof item === 'string') file = item
    else if (isRecord(item)) {
      checkKeys(ctx, item, p, ENV_FILE)
      file = str(ctx, get(item, 'path'), [...p, 'path'])
      const req = get(item, 'required')
      if (req !== undefined) required = bool(ctx, req, [...p, 'required']) ?? true
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

function sortedEnv (m: Map<string, string>): string[] {
  return [...m.keys()].sort(compareStrings).map((k) => `${k}=${m.get(k) ?? ''}`)
}

function sortedObject (m: Map<string, string>): Record<string, string> {
  return Object.fromEntries([...m.keys()].sort(compareStrings).map((k) => [k, m.get(k) ?? '']))
}

function optionalString (ctx: Ctx, svc: Obj, key: string, path: Path): string | undefined {
  const v = get(svc, key)
  return v === undefined ? undefined : str(ctx, v, [...path, key])
}

/** Service-level shorthand (cpus, mem_limit, …) as a fallback for the deploy value; both must agree. */
function shorthand (ctx: Ctx, deployValue: number | undefined, svc: Obj, key: string, path: Path, parse: (v: unknown, p: Path) => number | undefined, deployPath: string): number | undefined {
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

export function translateService (ctx: Ctx, name: string, raw: unknown): ServiceSpec | undefined {
  const path: Path = ['services', name]
  if (!SERVICE_NAME_PATTERN.test(name)) {
    err(ctx, path, `invalid service name ${describe(name)}: must start with a letter or digit and use only letters, digits, "_", "." or "-" (at most 63 characters)`, 'key')
  }
  if (!isRecord(raw)) return undefined
  const svc = raw
  checkKeys(ctx, svc, path, SERVICE, ['build'])

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

  const user = optionalString(ctx, svc, 'user', path)
  let workingDir = optionalString(ctx, svc, 'working_dir', path)
  if (workingDir !== undefined && !workingDir.startsWith('/')) {
    err(ctx, [...path, 'working_dir'], `must be an absolute path, got ${describe(workingDir)}`)
    workingDir = undefined
  }
  let stopSignal = optionalString(ctx, svc, 'stop_signal', path)
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
  hostSettings(ctx, svc, path, spec)
  const secrets = fileRefs(ctx, get(svc, 'secrets'), [...path, 'secrets'], 'secret')
  if (secrets !== undefined) spec.secrets = secrets
  const configs = fileRefs(ctx, get(svc, 'configs'), [...path, 'configs'], 'config')
  if (configs !== undefined) spec.configs = configs
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
  applyRollout(ctx, d.rollout, spec, [...path, 'deploy'])
  return spec
}

/** Ingress ports open on every node: two services cannot publish the same port/protocol. */
export function checkPortConflicts (ctx: Ctx, services: ServiceSpec[]): void {
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
