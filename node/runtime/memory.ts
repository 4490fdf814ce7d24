/**
 * MemoryRuntime: the Runtime interface in memory, for fast deterministic tests.
 *
 * Containers live in a MemoryEngine; several MemoryRuntime instances may share one engine to
 * simulate several agents on one Docker Engine (names are unique per engine, list(node) and the
 * eventsNode option separate the agents, as labels do on a real engine).
 *
 * Processes are simulated from the container's command, minimally:
 *   - `sh -c "<script>"`: statements separated by `;`, `&&` or newlines; understood are
 *     `exit [N]`, `sleep N` (seconds, fractions allowed; `infinity`), `echo ... [>&2]`, `true`,
 *     `false`, `:`. The container exits with the status of the last statement.
 *   - the same statements as a plain command (`sleep 3600`, `true`...).
 *   - anything else (`httpd -f ...`, no command at all) runs until stopped, crashed or removed.
 * Healthchecks run on a timer every intervalMs with the same interpreter (unknown commands pass);
 * setHealth() pins a health status instead.
 * stop() is immediate whatever the grace period, with exit code 137 (what Docker reports for a
 * PID 1 that ignores SIGTERM and is killed). Events are delivered after a microtask, in order.
 */
import { existsSync } from 'node:fs'
import type { ServiceSpec } from '../../protocol/spec.ts'
import { splitStatements } from '../../protocol/compose/shell.ts'
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
  type FileMount,
  type NetworkInfo,
  type NetworkRequest,
  type Resources,
  type Runtime,
  type RuntimeEvent
} from './types.ts'
import { managedLabels } from './labels.ts'

/**
 * Test-only controls a runtime may offer. MemoryRuntime offers all of them (synchronously); a test
 * harness for a real engine may offer some (asynchronously); the contract uses them when present.
 */
export interface TestHooks {
  /** The container's process dies with this exit code (as if it crashed). */
  crash(id: string, exitCode: number): void | Promise<void>
  /** Pin the container's health (its simulated healthcheck stops running). */
  setHealth(id: string, health: ContainerHealth): void | Promise<void>
  /** Someone ran `docker rm -f` on the engine, behind the agent's back. */
  removeBehindBack(id: string): void | Promise<void>
}

export const DEFAULT_KNOWN_IMAGES: readonly string[] = ['p2p-orch/busybox:latest']

/** Resources a MemoryEngine reports unless told otherwise: a small, plausible machine. */
export const DEFAULT_MEMORY_RESOURCES: Resources = { cpus: 4, memoryBytes: 8 * 1024 ** 3 }

/** Exit code reported after stop(): 128 + SIGKILL, as Docker reports for a PID 1 that ignored SIGTERM. */
export const STOPPED_EXIT_CODE = 137

/** Docker's healthcheck defaults, used when the spec leaves a field at 0. */
const DEFAULT_HEALTH_INTERVAL_MS = 30_000
const DEFAULT_HEALTH_RETRIES = 3

export interface MemoryEngineOptions {
  knownImages?: Iterable<string>
  resources?: Resources
  /** clock for startedAt/finishedAt (ms since epoch) */
  now?: () => number
  /**
   * The address a running container reports (default ''): tests of the routing mesh point it at
   * real TCP servers standing in for containers.
   */
  addressOf?: (c: { name: string, service: string, slot: number, node: string }) => string
}

interface PortBinding {
  ip: string
  port: number
  protocol: string
}

interface LogLine {
  stream: 'stdout' | 'stderr'
  text: string
}

interface MemContainer {
  id: string
  name: string
  image: string
  labels: Record<string, string>
  spec: ServiceSpec
  bindings: PortBinding[]
  /** host files mounted read-only (secrets, configs) */
  files: FileMount[]
  state: ContainerState
  health: ContainerHealth
  healthPinned: boolean
  failingStreak: number
  exitCode: number | null
  startedAt: number
  finishedAt: number
  logs: LogLine[]
  /** incremented on every start and stop; a simulated process step from an older run is ignored */
  run: number
  timers: Set<NodeJS.Timeout>
}

type Subscriber = (c: MemContainer, type: RuntimeEvent['type']) => void

/** One simulated Docker Engine; share it between MemoryRuntime instances to model one machine. */
export class MemoryEngine {
  readonly images: Set<string>
  resources: Resources
  readonly now: () => number
  private up = true
  private nextId = 1
  private readonly containers = new Map<string, MemContainer>()
  private readonly subscribers = new Set<Subscriber>()
  private readonly networks = new Map<string, NetworkInfo>()
  private readonly addressOf: NonNullable<MemoryEngineOptions['addressOf']>

  constructor(options: MemoryEngineOptions = {}) {
    this.addressOf = options.addressOf ?? (() => '')
    this.images = new Set([...(options.knownImages ?? DEFAULT_KNOWN_IMAGES)].map(normalizeImage))
    this.resources = { ...(options.resources ?? DEFAULT_MEMORY_RESOURCES) }
    this.now = options.now ?? Date.now
  }

  addImage(image: string): void {
    this.images.add(normalizeImage(image))
  }

  removeImage(image: string): void {
    this.images.delete(normalizeImage(image))
  }

  /** Simulate the engine going away (every call throws RuntimeUnavailableError) and coming back. */
  setAvailable(up: boolean): void {
    this.up = up
  }

  get available(): boolean {
    return this.up
  }

  /** Every container on the engine, whatever its labels (for assertions). */
  /** The host files a container has mounted (tests read its secrets through them). */
  filesOf(ref: string): FileMount[] {
    return [...(this.find(ref)?.files ?? [])]
  }

  all(): ContainerInfo[] {
    return [...this.containers.values()].map(toInfo)
  }

  // ---- used by MemoryRuntime --------------------------------------------------------------------

  ensureNetwork(req: NetworkRequest): NetworkInfo {
    let n = this.networks.get(req.name)
    if (n === undefined) {
      // a made-up 10.250.<k>.0/24 per network: unique within this engine, never routed anywhere
      const k = this.networks.size + 1
      n = { name: req.name, id: `net${k}`, subnet: `10.250.${k}.0/24`, gateway: `10.250.${k}.1`, bridge: req.bridge }
      this.networks.set(req.name, n)
    }
    return { ...n }
  }

  removeNetwork(name: string): void {
    this.networks.delete(name)
  }

  address(c: ContainerInfo): string {
    return c.state === 'running' ? this.addressOf({ name: c.name, service: c.service, slot: c.slot, node: c.node }) : ''
  }

  assertUp(): void {
    if (!this.up) throw new RuntimeUnavailableError('the in-memory engine is down (MemoryEngine.setAvailable(false))')
  }

  subscribe(fn: Subscriber): () => void {
    this.subscribers.add(fn)
    return () => {
      this.subscribers.delete(fn)
    }
  }

  find(ref: string): MemContainer | undefined {
    const byId = this.containers.get(ref)
    if (byId) return byId
    const name = ref.replace(/^\//, '')
    for (const c of this.containers.values()) if (c.name === name) return c
    if (ref.length === 0) return undefined
    const byPrefix = [...this.containers.values()].filter(c => c.id.startsWith(ref))
    return byPrefix.length === 1 ? byPrefix[0] : undefined
  }

  list(node: string): MemContainer[] {
    return [...this.containers.values()].filter(c => c.labels[LABEL_NODE] === node)
  }

  create(req: CreateRequest): MemContainer {
    const spec = req.spec
    if (!this.images.has(normalizeImage(spec.image))) {
      throw new ImageNotFoundError(`image not found: ${spec.image} is not on this node; load or pull it here`)
    }
    for (const m of spec.mounts) {
      if (m.type === 'bind' && !m.source.startsWith('/')) {
        throw new Error(`bind mount source must be an absolute path, got "${m.source}" (target ${m.target})`)
      }
    }
    for (const f of req.files ?? []) {
      if (!existsSync(f.source)) throw new Error(`invalid mount config for type "bind": bind source path does not exist: ${f.source}`)
    }
    if (this.find(req.name)?.name === req.name) {
      throw new Error(`container name "${req.name}" is already in use on this engine`)
    }
    const hostIp = req.hostIp ?? '0.0.0.0'
    const c: MemContainer = {
      id: this.newId(),
      name: req.name,
      image: spec.image,
      labels: managedLabels(req),
      spec: structuredClone(spec),
      bindings: spec.ports
        .filter(p => p.published !== undefined && p.mode === 'host') // ingress ports belong to the mesh
        .map(p => ({ ip: hostIp, port: p.published as number, protocol: p.protocol })),
      files: [...(req.files ?? [])],
      state: 'created',
      health: 'none',
      healthPinned: false,
      failingStreak: 0,
      exitCode: null,
      startedAt: 0,
      finishedAt: 0,
      logs: [],
      run: 0,
      timers: new Set()
    }
    this.containers.set(c.id, c)
    this.emit(c, 'create')
    return c
  }

  start(c: MemContainer): void {
    if (c.state === 'running') return
    const missing = c.files.find((f) => !existsSync(f.source))
    if (missing !== undefined) throw new Error(`container ${c.id} did not start: bind source path does not exist: ${missing.source}`)
    const conflict = this.portConflict(c)
    if (conflict) {
      throw new Error(
        `container ${c.id} did not start: driver failed programming external connectivity: ` +
          `Bind for ${conflict.ip}:${conflict.port} failed: port is already allocated`
      )
    }
    c.run++
    c.state = 'running'
    c.exitCode = null
    c.startedAt = this.now()
    c.failingStreak = 0
    if (!c.healthPinned) c.health = hasHealthcheck(c.spec) ? 'starting' : 'none'
    this.emit(c, 'start')
    this.startProcess(c)
    this.startHealthchecks(c)
  }

  /** The process ends (by itself, by a crash, or killed). */
  exit(c: MemContainer, exitCode: number): void {
    if (c.state !== 'running') return
    c.run++
    this.clearTimers(c)
    c.state = 'exited'
    c.exitCode = exitCode
    c.finishedAt = this.now()
    if (!c.healthPinned && c.health !== 'none') c.health = 'unhealthy'
    this.emit(c, 'die')
  }

  stop(c: MemContainer): void {
    if (c.state !== 'running') return
    this.exit(c, STOPPED_EXIT_CODE)
    this.emit(c, 'stop')
  }

  remove(c: MemContainer): void {
    if (!this.containers.has(c.id)) return
    this.exit(c, STOPPED_EXIT_CODE)
    this.clearTimers(c)
    this.containers.delete(c.id)
    this.emit(c, 'destroy')
  }

  setHealth(c: MemContainer, health: ContainerHealth): void {
    c.healthPinned = true
    this.updateHealth(c, health)
  }

  // ---- internals --------------------------------------------------------------------------------

  private newId(): string {
    // 64 hex digits like Docker's, deterministic per engine.
    const n = (this.nextId++).toString(16)
    return ('d0c' + '0'.repeat(61 - n.length) + n).slice(0, 64)
  }

  private emit(c: MemContainer, type: RuntimeEvent['type']): void {
    for (const fn of this.subscribers) fn(c, type)
  }

  private portConflict(c: MemContainer): PortBinding | null {
    for (const other of this.containers.values()) {
      if (other === c || other.state !== 'running') continue
      for (const mine of c.bindings) {
        for (const theirs of other.bindings) {
          const sameIp = mine.ip === theirs.ip || mine.ip === '0.0.0.0' || theirs.ip === '0.0.0.0'
          if (sameIp && mine.port === theirs.port && mine.protocol === theirs.protocol) return mine
        }
      }
    }
    return null
  }

  private later(c: MemContainer, ms: number, fn: () => void): void {
    const timer = setTimeout(() => {
      c.timers.delete(timer)
      fn()
    }, ms)
    // A simulated container must not keep a test process alive.
    timer.unref()
    c.timers.add(timer)
  }

  private clearTimers(c: MemContainer): void {
    for (const t of c.timers) clearTimeout(t)
    c.timers.clear()
  }

  private startProcess(c: MemContainer): void {
    const statements = programOf(c.spec)
    const run = c.run
    let status = 0
    const step = (i: number): void => {
      if (c.run !== run || c.state !== 'running') return
      if (statements === null) return // an unknown program: runs until stopped
      if (i >= statements.length) {
        this.exit(c, status)
        return
      }
      const outcome = execute(statements[i], status)
      if (outcome.kind === 'forever') return
      if (outcome.log) c.logs.push(outcome.log)
      if (outcome.kind === 'exit') {
        this.exit(c, outcome.status)
        return
      }
      status = outcome.status
      if (outcome.kind === 'sleep') {
        if (outcome.ms === Infinity) return
        this.later(c, outcome.ms, () => step(i + 1))
      } else {
        step(i + 1)
      }
    }
    // The process runs after run()/start() returned, as on a real engine.
    this.later(c, 0, () => step(0))
  }

  private startHealthchecks(c: MemContainer): void {
    const h = c.spec.healthcheck
    if (!h || !hasHealthcheck(c.spec) || c.healthPinned) return
    const interval = h.intervalMs > 0 ? h.intervalMs : DEFAULT_HEALTH_INTERVAL_MS
    const retries = h.retries > 0 ? h.retries : DEFAULT_HEALTH_RETRIES
    const run = c.run
    const check = (): void => {
      if (c.run !== run || c.state !== 'running' || c.healthPinned) return
      const passed = healthTestPasses(h.test)
      const inStartPeriod = this.now() - c.startedAt < h.startPeriodMs
      if (passed) {
        c.failingStreak = 0
        this.updateHealth(c, 'healthy')
      } else if (!inStartPeriod) {
        c.failingStreak++
        if (c.failingStreak >= retries) this.updateHealth(c, 'unhealthy')
      }
      this.later(c, interval, check)
    }
    this.later(c, interval, check)
  }

  private updateHealth(c: MemContainer, health: ContainerHealth): void {
    if (c.health === health) return
    c.health = health
    this.emit(c, 'health')
  }
}

export interface MemoryRuntimeOptions {
  /** share an engine between runtimes (several agents on one machine); default: a new engine */
  engine?: MemoryEngine
  /** images of a new engine (ignored when `engine` is given); default ['p2p-orch/busybox:latest'] */
  knownImages?: Iterable<string>
  /** resources of a new engine (ignored when `engine` is given) */
  resources?: Resources
  /** deliver events only for this node's containers; default: every p2p-orch container */
  eventsNode?: string
}

export class MemoryRuntime implements Runtime, TestHooks {
  readonly engine: MemoryEngine
  private readonly eventsNode: string | undefined

  constructor(options: MemoryRuntimeOptions = {}) {
    this.engine = options.engine ?? new MemoryEngine({ knownImages: options.knownImages, resources: options.resources })
    this.eventsNode = options.eventsNode
  }

  async ping(): Promise<void> {
    this.engine.assertUp()
  }

  async resources(): Promise<Resources> {
    this.engine.assertUp()
    return { ...this.engine.resources }
  }

  async list(node: string): Promise<ContainerInfo[]> {
    this.engine.assertUp()
    return this.engine.list(node).map(c => this.withAddress(c))
  }

  async inspect(id: string): Promise<ContainerInfo | null> {
    this.engine.assertUp()
    const c = this.engine.find(id)
    return c ? this.withAddress(c) : null
  }

  private withAddress(c: Parameters<typeof toInfo>[0]): ContainerInfo {
    const info = toInfo(c)
    info.address = this.engine.address(info)
    return info
  }

  async ensureNetwork(req: NetworkRequest): Promise<NetworkInfo> {
    this.engine.assertUp()
    return this.engine.ensureNetwork(req)
  }

  async removeNetwork(name: string): Promise<void> {
    this.engine.assertUp()
    this.engine.removeNetwork(name)
  }

  async hasImage(image: string): Promise<boolean> {
    this.engine.assertUp()
    return this.engine.images.has(normalizeImage(image))
  }

  async run(req: CreateRequest): Promise<string> {
    this.engine.assertUp()
    const c = this.engine.create(req)
    try {
      this.engine.start(c)
    } catch (err) {
      this.engine.remove(c)
      throw err
    }
    return c.id
  }

  async start(id: string): Promise<void> {
    this.engine.assertUp()
    this.engine.start(this.mustFind(id))
  }

  async stop(id: string, _graceMs: number): Promise<void> {
    this.engine.assertUp()
    const c = this.engine.find(id)
    if (c) this.engine.stop(c)
  }

  async remove(id: string): Promise<void> {
    this.engine.assertUp()
    const c = this.engine.find(id)
    if (c) this.engine.remove(c)
  }

  events(onEvent: (e: RuntimeEvent) => void): () => void {
    let active = true
    const unsubscribe = this.engine.subscribe((c, type) => {
      const node = c.labels[LABEL_NODE]
      if (node === undefined) return
      if (this.eventsNode !== undefined && node !== this.eventsNode) return
      const event: RuntimeEvent = { type, containerId: c.id, labels: { ...c.labels } }
      queueMicrotask(() => {
        if (!active) return
        try {
          onEvent(event)
        } catch {
          // A failing subscriber must not break the engine for the others.
        }
      })
    })
    return () => {
      active = false
      unsubscribe()
    }
  }

  async logs(id: string, tail: number): Promise<string> {
    this.engine.assertUp()
    const c = this.mustFind(id)
    const n = Math.max(0, Math.floor(tail))
    const lines = n === 0 ? [] : c.logs.slice(-n)
    return lines.map(l => l.text + '\n').join('')
  }

  // ---- test hooks -------------------------------------------------------------------------------

  crash(id: string, exitCode: number): void {
    const c = this.mustFind(id)
    if (c.state !== 'running') throw new Error(`container ${id} is not running (${c.state})`)
    this.engine.exit(c, exitCode)
  }

  setHealth(id: string, health: ContainerHealth): void {
    this.engine.setHealth(this.mustFind(id), health)
  }

  removeBehindBack(id: string): void {
    const c = this.engine.find(id)
    if (c) this.engine.remove(c)
  }

  private mustFind(id: string): MemContainer {
    const c = this.engine.find(id)
    if (!c) throw new Error(`container ${id} not found`)
    return c
  }
}

// ---- helpers -------------------------------------------------------------------------------------

function toInfo(c: MemContainer): ContainerInfo {
  const slot = c.labels[LABEL_SLOT]
  const generation = c.labels[LABEL_GENERATION]
  return {
    id: c.id,
    name: c.name,
    service: c.labels[LABEL_SERVICE] ?? '',
    slot: slot !== undefined && /^-?\d+$/.test(slot) ? Number(slot) : -1,
    node: c.labels[LABEL_NODE] ?? '',
    generation: generation !== undefined && /^-?\d+$/.test(generation) ? Number(generation) : -1,
    image: c.image,
    state: c.state,
    health: c.health,
    exitCode: c.state === 'exited' || c.state === 'dead' ? c.exitCode : null,
    startedAt: c.startedAt,
    finishedAt: c.finishedAt,
    labels: { ...c.labels },
    address: ''
  }
}

/** `busybox` → `busybox:latest`, as Docker resolves a reference without tag or digest. */
export function normalizeImage(ref: string): string {
  if (ref.includes('@')) return ref
  const lastSegment = ref.slice(ref.lastIndexOf('/') + 1)
  return lastSegment.includes(':') ? ref : `${ref}:latest`
}

function hasHealthcheck(spec: ServiceSpec): boolean {
  const test = spec.healthcheck?.test
  return !!test && test.length > 0 && test[0] !== 'NONE'
}

/** The statements of a container's program, or null when it is not one the simulation understands. */
function programOf(spec: ServiceSpec): string[][] | null {
  const argv = [...(spec.entrypoint ?? []), ...(spec.command ?? [])]
  if (argv.length === 0) return null
  const shell = argv[0] === 'sh' || argv[0] === '/bin/sh'
  const statements = shell && argv[1] === '-c' && argv.length >= 3 ? splitScript(argv[2]) : [argv]
  return statements.every(isKnownStatement) ? statements : null
}

function healthTestPasses(test: string[]): boolean {
  let statements: string[][]
  if (test[0] === 'CMD-SHELL') statements = splitScript(test.slice(1).join(' '))
  else if (test[0] === 'CMD') statements = [test.slice(1)]
  else statements = [test]
  let status = 0
  for (const s of statements) {
    if (!isKnownStatement(s)) return true // a command the simulation cannot judge passes
    const outcome = execute(s, status)
    if (outcome.kind === 'exit') return outcome.status === 0
    if (outcome.kind === 'forever') return true
    status = outcome.status
  }
  return status === 0
}

const KNOWN_COMMANDS = new Set(['exit', 'sleep', 'echo', 'true', 'false', ':'])

function isKnownStatement(argv: string[]): boolean {
  const cmd = argv[0]?.replace(/^\/bin\//, '')
  return cmd !== undefined && KNOWN_COMMANDS.has(cmd)
}

type Outcome =
  | { kind: 'next'; status: number; log?: LogLine }
  | { kind: 'sleep'; status: number; ms: number; log?: LogLine }
  | { kind: 'exit'; status: number; log?: LogLine }
  | { kind: 'forever'; log?: LogLine }

function execute(argv: string[], lastStatus: number): Outcome {
  const cmd = (argv[0] ?? '').replace(/^\/bin\//, '')
  const args = argv.slice(1)
  switch (cmd) {
    case 'exit': {
      const n = args.length > 0 ? Number(args[0]) : lastStatus
      return { kind: 'exit', status: Number.isInteger(n) ? ((n % 256) + 256) % 256 : 2 }
    }
    case 'sleep': {
      const arg = args[0] ?? ''
      if (arg === 'infinity' || arg === 'inf') return { kind: 'sleep', status: 0, ms: Infinity }
      const seconds = Number(arg.replace(/s$/, ''))
      if (!Number.isFinite(seconds) || seconds < 0) return { kind: 'next', status: 1 }
      return { kind: 'sleep', status: 0, ms: seconds * 1000 }
    }
    case 'echo': {
      let stream: LogLine['stream'] = 'stdout'
      const words = args.filter(a => {
        if (a === '>&2' || a === '1>&2') {
          stream = 'stderr'
          return false
        }
        return true
      })
      return { kind: 'next', status: 0, log: { stream, text: words.join(' ') } }
    }
    case 'true':
    case ':':
      return { kind: 'next', status: 0 }
    case 'false':
      return { kind: 'next', status: 1 }
    default:
      return { kind: 'forever' }
  }
}

/** A script as statements of words (`;`, `&&` and newlines separate them): the project's one shell splitter. */
export const splitScript = splitStatements
