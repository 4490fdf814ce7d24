/**
 * DockerRuntime: the Runtime interface on a real Docker Engine, through dockerode.
 *
 * The engine is found the way the docker CLI finds it: DOCKER_HOST, else /var/run/docker.sock.
 * Containers are never restarted by Docker (RestartPolicy 'no'): the agent restarts them itself,
 * with backoff, per the service's restart policy. Images are never pulled implicitly.
 */
import './defer-dockerode-extras.ts' // before dockerode: see there
import Docker from 'dockerode'
import { isMeshPort, type ServiceSpec } from '../../protocol/spec.ts'
import {
  ImageNotFoundError,
  LABEL_GENERATION,
  LABEL_NODE,
  LABEL_SERVICE,
  LABEL_SLOT,
  RuntimeUnavailableError,
  type ContainerHealth,
  type ContainerInfo,
  type ContainerState,
  type CreateRequest,
  type NetworkInfo,
  type NetworkRequest,
  type Resources,
  type Runtime,
  type RuntimeEvent
} from './types.ts'
import { managedLabels } from './labels.ts'

/** The Engine API version we speak; pinned so a newer engine cannot change response shapes under us. */
export const DOCKER_API_VERSION = 'v1.41'

/** An engine that does not answer _ping within this is reported unavailable (a local engine answers in ms). */
export const PING_TIMEOUT_MS = 5_000

/**
 * Ordinary API calls (list, inspect, create, start, remove, logs). A busy engine creating many
 * containers at once can take seconds per call; past 30 s the agent is better off treating the
 * engine as unavailable and retrying on its next reconcile pass.
 */
export const REQUEST_TIMEOUT_MS = 30_000

/**
 * A stop request lasts the grace period plus the kill and the engine's cleanup (unmounts, network
 * teardown); this is the allowance on top of the grace period.
 */
export const STOP_EXTRA_TIMEOUT_MS = 15_000

/** Wait before re-opening the events stream after it ended; keeps a dead engine from being hammered. */
export const EVENTS_RECONNECT_DELAY_MS = 1_000

/**
 * How long list() may reuse a container's inspect details (start/finish times, image, exit code)
 * while its list row shows the same state. Bounds staleness after changes made behind the agent's
 * back (e.g. `docker restart`), while a list of N containers costs about N inspects per 10 s.
 */
export const INSPECT_CACHE_TTL_MS = 10_000

/** Parallel inspects during one list(): enough to hide latency, few enough not to flood the engine. */
export const LIST_INSPECT_CONCURRENCY = 8

/** Largest `tail` logs() asks for: the agent shows recent output, not whole log files, and holds it in memory. */
export const LOGS_MAX_TAIL = 10_000

/** Docker reports "never" as Go's zero time. */
const DOCKER_ZERO_TIME = '0001-01-01T00:00:00Z'

/** Event attributes Docker mixes into the labels of container events that are not labels. */
const NON_LABEL_EVENT_ATTRIBUTES = new Set(['image', 'name', 'exitCode', 'signal', 'execID'])

const CONTAINER_STATES: ReadonlySet<string> = new Set([
  'created', 'running', 'restarting', 'paused', 'exited', 'dead', 'removing'
])

export interface DockerRuntimeOptions {
  /** dockerode connection options; default: DOCKER_HOST, else the default socket */
  docker?: Docker.DockerOptions
  /**
   * Deliver events only for containers of this node (label p2p-orch.node=<node>); default: every
   * container carrying a p2p-orch.node label. Several agents sharing one engine (tests) set it.
   */
  eventsNode?: string
}

interface DockerError extends Error {
  statusCode?: number
  code?: string
  json?: unknown
}

/** Per-container details list() cannot see, taken from inspect. */
interface CachedDetails {
  fingerprint: string
  fetchedAt: number
  info: ContainerInfo
}

export class DockerRuntime implements Runtime {
  readonly docker: Docker
  readonly endpoint: string
  private readonly eventsNode: string | undefined
  private readonly detailsCache = new Map<string, CachedDetails>()

  constructor(options: DockerRuntimeOptions = {}) {
    this.docker = new Docker({ version: DOCKER_API_VERSION, ...options.docker })
    this.endpoint = describeEndpoint(options.docker)
    this.eventsNode = options.eventsNode
  }

  async ping(): Promise<void> {
    // dockerode honours abortSignal on ping and info; its typings do not declare it.
    const ping = this.docker.ping.bind(this.docker) as (opts: { abortSignal: AbortSignal }) => Promise<unknown>
    await this.call('ping', PING_TIMEOUT_MS, signal => ping({ abortSignal: signal }))
  }

  async resources(): Promise<Resources> {
    const engineInfo = this.docker.info.bind(this.docker) as (opts: { abortSignal: AbortSignal }) => Promise<{ NCPU?: number; MemTotal?: number }>
    const info = await this.call('info', REQUEST_TIMEOUT_MS, signal => engineInfo({ abortSignal: signal }))
    return { cpus: Number(info.NCPU) || 0, memoryBytes: Number(info.MemTotal) || 0 }
  }

  async list(node: string): Promise<ContainerInfo[]> {
    const rows = await this.call('list containers', REQUEST_TIMEOUT_MS, signal =>
      this.docker.listContainers({ all: true, filters: { label: [`${LABEL_NODE}=${node}`] }, abortSignal: signal })
    )
    const now = Date.now()
    const seen = new Set<string>()
    const result: (ContainerInfo | null)[] = new Array(rows.length).fill(null)
    const toInspect: number[] = []

    rows.forEach((row, i) => {
      seen.add(row.Id)
      const fromRow = infoFromListRow(row)
      const cached = this.detailsCache.get(row.Id)
      if (cached && cached.fingerprint === fingerprint(fromRow) && now - cached.fetchedAt < INSPECT_CACHE_TTL_MS) {
        // Status shows health only while the container runs; Docker reports an exited one as unhealthy.
        const health = fromRow.state === 'running' ? fromRow.health : cached.info.health
        result[i] = { ...cached.info, state: fromRow.state, health, labels: fromRow.labels, name: fromRow.name, address: fromRow.address }
      } else {
        toInspect.push(i)
      }
    })

    await forEachLimited(toInspect, LIST_INSPECT_CONCURRENCY, async i => {
      const info = await this.inspect(rows[i].Id)
      // null: removed between list and inspect, so no longer there.
      result[i] = info
    })

    for (const id of this.detailsCache.keys()) {
      const entry = this.detailsCache.get(id)
      if (!seen.has(id) && entry && entry.info.node === node) this.detailsCache.delete(id)
    }
    return result.filter((c): c is ContainerInfo => c !== null)
  }

  async inspect(id: string): Promise<ContainerInfo | null> {
    let raw: Docker.ContainerInspectInfo
    try {
      raw = await this.call('inspect container', REQUEST_TIMEOUT_MS, signal =>
        this.docker.getContainer(id).inspect({ abortSignal: signal })
      )
    } catch (err) {
      if (statusOf(err) === 404) {
        this.detailsCache.delete(id)
        return null
      }
      throw err
    }
    const info = infoFromInspect(raw)
    this.detailsCache.set(info.id, { fingerprint: fingerprint(info), fetchedAt: Date.now(), info })
    return info
  }

  async hasImage(image: string): Promise<boolean> {
    try {
      await this.call('inspect image', REQUEST_TIMEOUT_MS, () => this.docker.getImage(image).inspect())
      return true
    } catch (err) {
      if (statusOf(err) === 404) return false
      throw err
    }
  }

  async run(req: CreateRequest): Promise<string> {
    const options = createOptions(req)
    let container: Docker.Container
    try {
      container = await this.call('create container', REQUEST_TIMEOUT_MS, signal =>
        this.docker.createContainer({ ...options, abortSignal: signal })
      )
    } catch (err) {
      if (statusOf(err) === 404) {
        throw new ImageNotFoundError(`image not found: ${req.spec.image} is not on this node; load or pull it here`, { cause: err })
      }
      if (statusOf(err) === 409) {
        throw new Error(`container name "${req.name}" is already in use on this engine`, { cause: err })
      }
      throw err
    }
    try {
      await this.start(container.id)
    } catch (err) {
      // A container that cannot start (e.g. its host port is taken) is not left behind half-made.
      await this.remove(container.id).catch(() => {})
      throw err
    }
    return container.id
  }

  async start(id: string): Promise<void> {
    this.detailsCache.delete(id)
    try {
      await this.call('start container', REQUEST_TIMEOUT_MS, signal => this.docker.getContainer(id).start({ abortSignal: signal }))
    } catch (err) {
      if (statusOf(err) === 304) return // already running
      if (statusOf(err) === 404) throw new Error(`container ${id} not found`, { cause: err })
      if (err instanceof RuntimeUnavailableError) throw err
      throw new Error(`container ${id} did not start: ${engineMessage(err)}`, { cause: err })
    }
  }

  async stop(id: string, graceMs: number): Promise<void> {
    this.detailsCache.delete(id)
    const seconds = Math.max(0, Math.ceil(graceMs / 1000))
    try {
      await this.call('stop container', graceMs + STOP_EXTRA_TIMEOUT_MS, signal =>
        this.docker.getContainer(id).stop({ t: seconds, abortSignal: signal })
      )
    } catch (err) {
      const status = statusOf(err)
      if (status === 304 || status === 404) return // already stopped, or gone: not running either way
      throw err
    }
  }

  async remove(id: string): Promise<void> {
    this.detailsCache.delete(id)
    try {
      await this.call('remove container', REQUEST_TIMEOUT_MS, signal =>
        this.docker.getContainer(id).remove({ force: true, v: true, abortSignal: signal } as Docker.ContainerRemoveOptions)
      )
    } catch (err) {
      const status = statusOf(err)
      if (status === 404) return
      // 409 "removal already in progress": someone else is removing it; the outcome is the same.
      if (status === 409 && /already in progress/i.test(engineMessage(err))) return
      throw err
    }
  }

  events(onEvent: (e: RuntimeEvent) => void): () => void {
    const labelFilter = this.eventsNode === undefined ? LABEL_NODE : `${LABEL_NODE}=${this.eventsNode}`
    let stopped = false
    let stream: NodeJS.ReadableStream | null = null
    let timer: NodeJS.Timeout | null = null
    // The first connection replays from the moment of subscription, so events right after events()
    // returns are not lost while the stream connects; reconnects resume from the last second seen
    // (the engine's resolution for `since` that survives JSON), deduplicated.
    let resumeFrom = Date.now() / 1000
    let sinceSeconds = Math.floor(resumeFrom)
    let seenThisSecond = new Set<string>()

    const handleLine = (line: string): void => {
      const raw = parseJsonLine(line)
      if (!raw) return
      const time = typeof raw.time === 'number' ? raw.time : sinceSeconds
      const key = `${raw.timeNano ?? raw.time}|${raw.id ?? raw.Actor?.ID}|${raw.Action ?? raw.status}`
      if (time > sinceSeconds) {
        sinceSeconds = time
        resumeFrom = time
        seenThisSecond = new Set()
      }
      if (time === sinceSeconds) {
        if (seenThisSecond.has(key)) return
        seenThisSecond.add(key)
      }
      const event = runtimeEventFromDocker(raw)
      if (!event) return
      if (event.type === 'start' || event.type === 'die' || event.type === 'destroy' || event.type === 'stop') {
        this.detailsCache.delete(event.containerId)
      }
      try {
        onEvent(event)
      } catch {
        // A failing subscriber must not tear down the stream for the others.
      }
    }

    const scheduleReconnect = (): void => {
      stream = null
      if (stopped || timer) return
      timer = setTimeout(() => {
        timer = null
        connect()
      }, EVENTS_RECONNECT_DELAY_MS)
      timer.unref()
    }

    const connect = (): void => {
      if (stopped) return
      this.docker
        .getEvents({ since: resumeFrom, filters: { type: ['container'], label: [labelFilter] } })
        .then(s => {
          if (stopped) {
            destroyStream(s)
            return
          }
          stream = s
          let buffer = ''
          s.on('data', (chunk: Buffer | string) => {
            buffer += chunk.toString()
            let newline: number
            while ((newline = buffer.indexOf('\n')) >= 0) {
              const line = buffer.slice(0, newline)
              buffer = buffer.slice(newline + 1)
              handleLine(line)
            }
          })
          let ended = false
          const onEnd = (): void => {
            if (ended) return
            ended = true
            if (buffer.trim()) handleLine(buffer)
            buffer = ''
            scheduleReconnect()
          }
          s.on('end', onEnd)
          s.on('close', onEnd)
          s.on('error', onEnd)
        })
        .catch(() => scheduleReconnect())
    }

    connect()
    return () => {
      stopped = true
      if (timer) clearTimeout(timer)
      timer = null
      if (stream) destroyStream(stream)
      stream = null
    }
  }

  async logs(id: string, tail: number): Promise<string> {
    const lines = Math.max(0, Math.min(Math.floor(tail), LOGS_MAX_TAIL))
    let output: Buffer
    try {
      output = await this.call('container logs', REQUEST_TIMEOUT_MS, signal =>
        this.docker.getContainer(id).logs({ stdout: true, stderr: true, follow: false, tail: lines, abortSignal: signal })
      )
    } catch (err) {
      if (statusOf(err) === 404) throw new Error(`container ${id} not found`, { cause: err })
      throw err
    }
    return demultiplexLogs(Buffer.isBuffer(output) ? output : Buffer.from(String(output)))
  }

  async ensureNetwork(req: NetworkRequest): Promise<NetworkInfo> {
    const existing = await this.inspectNetwork(req.name)
    if (existing !== null) return existing
    try {
      await this.call('create network', REQUEST_TIMEOUT_MS, () =>
        this.docker.createNetwork({
          Name: req.name,
          Driver: 'bridge',
          CheckDuplicate: true,
          Labels: req.labels,
          Options: { 'com.docker.network.bridge.name': req.bridge }
        })
      )
    } catch (err) {
      // 409: another call created it meanwhile; the inspect below returns it
      if (statusOf(err) !== 409) throw new Error(`cannot create network ${req.name}: ${engineMessage(err)}`, { cause: err })
    }
    const created = await this.inspectNetwork(req.name)
    if (created === null) throw new Error(`network ${req.name} vanished right after it was created`)
    return created
  }

  async removeNetwork(name: string): Promise<void> {
    try {
      await this.call('remove network', REQUEST_TIMEOUT_MS, () => this.docker.getNetwork(name).remove())
    } catch (err) {
      const status = statusOf(err)
      // 404: gone already; 403/409: containers still attached (another agent's, or ours being removed)
      if (status === 404 || status === 403 || status === 409) return
      throw err
    }
  }

  private async inspectNetwork(name: string): Promise<NetworkInfo | null> {
    let raw: { Id: string; Name: string; IPAM?: { Config?: Array<{ Subnet?: string; Gateway?: string }> }; Options?: Record<string, string> }
    try {
      raw = await this.call('inspect network', REQUEST_TIMEOUT_MS, () => this.docker.getNetwork(name).inspect())
    } catch (err) {
      if (statusOf(err) === 404) return null
      throw err
    }
    const v4 = (raw.IPAM?.Config ?? []).find(c => c.Subnet !== undefined && c.Subnet.includes('.'))
    if (v4?.Subnet === undefined || v4.Gateway === undefined) throw new Error(`network ${name} has no IPv4 subnet and gateway`)
    return { name: raw.Name, id: raw.Id, subnet: v4.Subnet, gateway: v4.Gateway, bridge: raw.Options?.['com.docker.network.bridge.name'] ?? `br-${raw.Id.slice(0, 12)}` }
  }

  /**
   * Runs one API call with a deadline (the request is aborted where dockerode supports it, and the
   * caller stops waiting in any case); connection failures become RuntimeUnavailableError.
   */
  private async call<T>(what: string, timeoutMs: number, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const controller = new AbortController()
    const signal = controller.signal
    let timer: NodeJS.Timeout | undefined
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const err = new Error(`timed out after ${timeoutMs} ms`)
        controller.abort(err)
        reject(err)
      }, timeoutMs)
    })
    try {
      return await Promise.race([fn(signal), deadline])
    } catch (err) {
      if (signal.aborted) {
        throw new RuntimeUnavailableError(`Docker engine at ${this.endpoint} did not answer ${what} within ${timeoutMs} ms`, { cause: err })
      }
      const reason = unavailableReason(err, this.endpoint)
      if (reason) throw new RuntimeUnavailableError(reason, { cause: err })
      throw err
    } finally {
      clearTimeout(timer)
    }
  }
}

// ---- translation ---------------------------------------------------------------------------------

/** The Docker create body for a request (exported for tests). */
export function createOptions(req: CreateRequest): Docker.ContainerCreateOptions {
  const spec = req.spec
  const labels = managedLabels(req)
  const hostIp = req.hostIp ?? '0.0.0.0'
  const exposed: Record<string, object> = {}
  const bindings: Record<string, { HostIp: string; HostPort: string }[]> = {}
  for (const port of spec.ports) {
    const key = `${port.target}/${port.protocol}`
    exposed[key] = {}
    // Published ingress ports are opened by the node's routing mesh, which connects to the
    // container's own address: only `mode: host` ports are bound on the host, as with Swarm. A port
    // without a published number gets an ephemeral host port where the replica runs, as Compose does.
    if (isMeshPort(port)) continue
    ;(bindings[key] ??= []).push({ HostIp: hostIp, HostPort: port.published !== undefined ? String(port.published) : '' })
  }

  const hostConfig: Docker.HostConfig = {
    RestartPolicy: { Name: 'no' },
    Mounts: [...spec.mounts.map(mountSettings), ...(req.files ?? []).map((f) => ({ Type: 'bind' as const, Source: f.source, Target: f.target, ReadOnly: true }))],
    PortBindings: bindings
  }
  if (req.network !== undefined) hostConfig.NetworkMode = req.network
  if (req.dns !== undefined && req.dns.length > 0) hostConfig.Dns = [...req.dns]
  if (spec.limits.cpus !== undefined) hostConfig.NanoCpus = Math.round(spec.limits.cpus * 1e9)
  if (spec.limits.memoryBytes !== undefined) hostConfig.Memory = Math.round(spec.limits.memoryBytes)
  if (spec.reservations.memoryBytes !== undefined) hostConfig.MemoryReservation = Math.round(spec.reservations.memoryBytes)
  // host-reaching settings: the node's reconciler has checked them against its --allow-* flags
  if (spec.readOnly === true) hostConfig.ReadonlyRootfs = true
  if (spec.privileged === true) hostConfig.Privileged = true
  if (spec.capAdd !== undefined && spec.capAdd.length > 0) hostConfig.CapAdd = [...spec.capAdd]
  if (spec.capDrop !== undefined && spec.capDrop.length > 0) hostConfig.CapDrop = [...spec.capDrop]
  if (spec.devices !== undefined && spec.devices.length > 0) {
    hostConfig.Devices = spec.devices.map((d) => ({ PathOnHost: d.source, PathInContainer: d.target, CgroupPermissions: d.permissions }))
  }
  if (spec.pid === 'host') hostConfig.PidMode = 'host'

  const options: Docker.ContainerCreateOptions = {
    name: req.name,
    Image: spec.image,
    Labels: labels,
    Env: [...spec.env],
    ExposedPorts: exposed,
    HostConfig: hostConfig
  }
  if (spec.command !== undefined) options.Cmd = [...spec.command]
  if (spec.entrypoint !== undefined) options.Entrypoint = [...spec.entrypoint]
  if (spec.user !== undefined) options.User = spec.user
  if (spec.workingDir !== undefined) options.WorkingDir = spec.workingDir
  if (spec.stopSignal !== undefined) options.StopSignal = spec.stopSignal
  if (spec.stopGracePeriodMs !== undefined) options.StopTimeout = Math.max(0, Math.ceil(spec.stopGracePeriodMs / 1000))
  if (spec.healthcheck) options.Healthcheck = healthConfig(spec.healthcheck)
  return options
}

const NS_PER_MS = 1_000_000

function healthConfig(h: NonNullable<ServiceSpec['healthcheck']>): Docker.HealthConfig {
  if (h.test[0] === 'NONE') return { Test: ['NONE'] }
  return {
    Test: [...h.test],
    Interval: Math.round(h.intervalMs * NS_PER_MS),
    Timeout: Math.round(h.timeoutMs * NS_PER_MS),
    StartPeriod: Math.round(h.startPeriodMs * NS_PER_MS),
    Retries: h.retries
  }
}

function mountSettings(m: ServiceSpec['mounts'][number]): Docker.MountSettings {
  if (m.type === 'bind' && !m.source.startsWith('/')) {
    throw new Error(`bind mount source must be an absolute path, got "${m.source}" (target ${m.target})`)
  }
  const settings: Docker.MountSettings = { Type: m.type, Source: m.type === 'tmpfs' ? '' : m.source, Target: m.target, ReadOnly: m.readOnly }
  return settings
}

function parseLabelInt(value: string | undefined): number {
  if (value === undefined || !/^-?\d+$/.test(value)) return -1
  return Number(value)
}

function toState(s: string | undefined): ContainerState {
  const lower = (s ?? '').toLowerCase()
  return CONTAINER_STATES.has(lower) ? (lower as ContainerState) : 'dead'
}

function toHealth(s: string | undefined): ContainerHealth {
  switch (s) {
    case 'starting':
    case 'healthy':
    case 'unhealthy':
      return s
    default:
      return 'none'
  }
}

/** Docker time string → ms since epoch; Docker's zero time (never) → 0. */
export function dockerTime(s: string | undefined): number {
  if (!s || s === DOCKER_ZERO_TIME) return 0
  const ms = Date.parse(s)
  return Number.isFinite(ms) && ms > 0 ? ms : 0
}

function baseInfo(id: string, name: string, image: string, labels: Record<string, string>): ContainerInfo {
  return {
    id,
    name: name.replace(/^\//, ''),
    service: labels[LABEL_SERVICE] ?? '',
    slot: parseLabelInt(labels[LABEL_SLOT]),
    node: labels[LABEL_NODE] ?? '',
    generation: parseLabelInt(labels[LABEL_GENERATION]),
    image,
    state: 'created',
    health: 'none',
    exitCode: null,
    startedAt: 0,
    finishedAt: 0,
    labels: { ...labels },
    address: ''
  }
}

/** The container's IPv4 address: on its mesh network when it has one, else the first it has. */
function addressOf(networks: Record<string, { IPAddress?: string }> | undefined): string {
  const all = Object.values(networks ?? {})
  return all.find(n => typeof n.IPAddress === 'string' && n.IPAddress !== '')?.IPAddress ?? ''
}

function infoFromInspect(raw: Docker.ContainerInspectInfo): ContainerInfo {
  const labels = raw.Config?.Labels ?? {}
  const info = baseInfo(raw.Id, raw.Name ?? '', raw.Config?.Image ?? raw.Image, labels)
  info.state = toState(raw.State?.Status)
  info.health = toHealth(raw.State?.Health?.Status)
  info.exitCode = info.state === 'exited' || info.state === 'dead' ? (raw.State?.ExitCode ?? null) : null
  info.startedAt = dockerTime(raw.State?.StartedAt)
  info.finishedAt = dockerTime(raw.State?.FinishedAt)
  info.address = info.state === 'running' ? addressOf(raw.NetworkSettings?.Networks) : ''
  return info
}

/** What a list row tells: state, health ("(healthy)" in Status) and exit code ("Exited (137) ..."). */
function infoFromListRow(row: Docker.ContainerInfo): ContainerInfo {
  const info = baseInfo(row.Id, row.Names?.[0] ?? '', row.Image, row.Labels ?? {})
  info.state = toState(row.State)
  info.health = healthFromStatus(row.Status ?? '')
  info.exitCode = info.state === 'exited' ? exitCodeFromStatus(row.Status ?? '') : null
  info.address = info.state === 'running' ? addressOf(row.NetworkSettings?.Networks) : ''
  return info
}

export function healthFromStatus(status: string): ContainerHealth {
  if (status.includes('(healthy)')) return 'healthy'
  if (status.includes('(unhealthy)')) return 'unhealthy'
  if (status.includes('(health: starting)')) return 'starting'
  return 'none'
}

export function exitCodeFromStatus(status: string): number | null {
  const m = /^Exited \((-?\d+)\)/.exec(status)
  return m ? Number(m[1]) : null
}

/** What must be unchanged for cached inspect details to still hold (health counts only while running). */
function fingerprint(info: ContainerInfo): string {
  return `${info.state}|${info.exitCode}|${info.state === 'running' ? info.health : ''}`
}

// ---- events --------------------------------------------------------------------------------------

interface DockerEventJson {
  status?: string
  id?: string
  Type?: string
  Action?: string
  Actor?: { ID?: string; Attributes?: Record<string, string> }
  time?: number
  timeNano?: number
}

function parseJsonLine(line: string): DockerEventJson | null {
  const trimmed = line.trim()
  if (!trimmed.startsWith('{')) return null
  try {
    const value: unknown = JSON.parse(trimmed)
    return value && typeof value === 'object' ? (value as DockerEventJson) : null
  } catch {
    return null
  }
}

/** Docker event → RuntimeEvent, or null for actions the runtime does not report (kill, exec_*, attach...). */
export function runtimeEventFromDocker(raw: DockerEventJson): RuntimeEvent | null {
  if (raw.Type !== undefined && raw.Type !== 'container') return null
  const action = raw.Action ?? raw.status ?? ''
  const containerId = raw.Actor?.ID ?? raw.id
  if (!containerId) return null
  let type: RuntimeEvent['type']
  if (action === 'create' || action === 'start' || action === 'die' || action === 'destroy' || action === 'stop') type = action
  else if (action.startsWith('health_status')) type = 'health'
  else return null
  const labels: Record<string, string> = {}
  for (const [k, v] of Object.entries(raw.Actor?.Attributes ?? {})) {
    if (!NON_LABEL_EVENT_ATTRIBUTES.has(k)) labels[k] = v
  }
  return { type, containerId, labels }
}

function destroyStream(s: NodeJS.ReadableStream): void {
  const d = s as NodeJS.ReadableStream & { destroy?: () => void }
  if (typeof d.destroy === 'function') d.destroy()
  else s.removeAllListeners()
}

// ---- logs ----------------------------------------------------------------------------------------

const LOG_FRAME_HEADER_BYTES = 8

/**
 * Docker multiplexes stdout/stderr of non-TTY containers as frames: [stream, 0, 0, 0, size(u32 BE)]
 * then `size` bytes. TTY containers send raw text; anything not framed is passed through as is.
 */
export function demultiplexLogs(buf: Buffer): string {
  const parts: Buffer[] = []
  let offset = 0
  while (offset < buf.length) {
    const header = buf.subarray(offset, offset + LOG_FRAME_HEADER_BYTES)
    const framed =
      header.length === LOG_FRAME_HEADER_BYTES && header[0] <= 2 && header[1] === 0 && header[2] === 0 && header[3] === 0
    if (!framed) {
      parts.push(buf.subarray(offset))
      break
    }
    const size = header.readUInt32BE(4)
    const start = offset + LOG_FRAME_HEADER_BYTES
    parts.push(buf.subarray(start, Math.min(start + size, buf.length)))
    offset = start + size
  }
  return Buffer.concat(parts).toString('utf8')
}

// ---- errors --------------------------------------------------------------------------------------

function statusOf(err: unknown): number | undefined {
  return (err as DockerError | undefined)?.statusCode
}

function engineMessage(err: unknown): string {
  const e = err as DockerError | undefined
  const json = e?.json as { message?: string } | undefined
  return (json && typeof json === 'object' && json.message) || e?.message || String(err)
}

const CONNECTION_ERROR_CODES = new Set([
  'ENOENT', 'ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN'
])

/** A one-line reason when the error means "no engine to talk to", else null. */
function unavailableReason(err: unknown, endpoint: string): string | null {
  const code = (err as DockerError | undefined)?.code
  if (code === 'EACCES' || code === 'EPERM') {
    return `permission denied on ${endpoint} (run as root or join the docker group)`
  }
  if (code && CONNECTION_ERROR_CODES.has(code)) {
    return `no Docker engine answers at ${endpoint} (is dockerd running?) [${code}]`
  }
  return null
}

function describeEndpoint(opts: Docker.DockerOptions | undefined): string {
  if (opts?.socketPath) return opts.socketPath
  if (opts?.host) return `${opts.protocol ?? 'http'}://${opts.host}${opts.port ? `:${opts.port}` : ''}`
  const env = process.env.DOCKER_HOST
  if (env) return env.startsWith('unix://') ? env.slice('unix://'.length) || '/var/run/docker.sock' : env
  return '/var/run/docker.sock'
}

async function forEachLimited<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++]
      await fn(item)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
}
