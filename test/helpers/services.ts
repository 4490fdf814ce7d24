/**
 * In-process helpers for service tests: p2p-orch nodes over real libp2p TCP on 127.0.0.1, each with
 * its own MemoryRuntime, all on one shared MemoryEngine (several agents on one Docker engine).
 * Desired state is written the way the control API's deploy/scale/rm routes write it, and observed
 * both on the engine (containers and their labels) and through taskViews() of each node's state.
 */
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { isDeepStrictEqual } from 'node:util'
import { generateKeyPairFromSeed, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { TaskView } from '../../node/api/types.ts'
import { placement, services, type ServiceState } from '../../node/desired.ts'
import { pausedRecord, promotedRecord, rolledBackRecord, updatedRecord } from '../../node/rollout-writes.ts'
import { FILES } from '../../node/identity.ts'
import { silentLogger } from '../../node/logger.ts'
import { createNode, type P2pNode } from '../../node/node.ts'
import { PROFILES } from '../../node/profiles.ts'
import { MemoryEngine, MemoryRuntime } from '../../node/runtime/memory.ts'
import {
  LABEL_GENERATION, LABEL_NODE, LABEL_SERVICE, LABEL_SLOT, type ContainerInfo
} from '../../node/runtime/types.ts'
import { taskViews } from '../../node/tasks-view.ts'
import { key, type ScaleRecord, type ServiceRecord } from '../../protocol/keys.ts'
import type { StateRecord } from '../../protocol/record.ts'
import type { Signer } from '../../protocol/sign.ts'
import { newServiceSpec, type ServiceSpec } from '../../protocol/spec.ts'
import { adminSigner, LOOPBACK_LISTEN, registerAdmin, TempDirs } from './cluster.ts'

export const TEST_IMAGE = 'p2p-orch/busybox:latest'
export const STACK = 'svc-it'

/** A replicated service running `sleep infinity` (runs until stopped); override anything. */
export function svcSpec (name: string, overrides: Partial<ServiceSpec> = {}): ServiceSpec {
  return newServiceSpec({
    name,
    stack: STACK,
    image: TEST_IMAGE,
    command: ['sleep', 'infinity'],
    restartPolicy: { condition: 'any', delayMs: 200, maxAttempts: 0, windowMs: 0 },
    ...overrides
  })
}

/** The cluster's founding admin key (what the CLI signs these writes with). */
export function operatorOf (n: P2pNode): Signer {
  return adminSigner(n)
}

// ---- desired state, written as node/routes-services.ts writes it ------------------------------

/** POST /deploy for one service: generation 1 for a new service, +1 when the spec changed. */
export function deploy (via: P2pNode, spec: ServiceSpec): ServiceRecord {
  const op = operatorOf(via)
  const prev = via.states.state.value<ServiceRecord | null>(key.svc(spec.name))
  if (prev == null) {
    const rec: ServiceRecord = { spec, generation: 1, rollout: { kind: 'update', startedAt: Date.now(), epoch: 0 } }
    via.states.write(key.svc(spec.name), rec, op)
    via.states.write(key.scale(spec.name), { replicas: spec.replicas } satisfies ScaleRecord, op)
    return rec
  }
  const svc = serviceState(via, spec.name)
  const next = updatedRecord(svc, spec, Date.now())
  if (next !== null) via.states.write(key.svc(spec.name), next, op)
  if (svc.replicas !== spec.replicas) via.states.write(key.scale(spec.name), { replicas: spec.replicas } satisfies ScaleRecord, op)
  return next ?? svc.record
}

/** The service as `via` sees it now (desired.ts), or a failed assertion. */
export function serviceState (via: P2pNode, name: string): ServiceState {
  const svc = services(via.states.state).find((x) => x.spec.name === name)
  if (svc === undefined) throw new Error(`no service ${name} on ${via.name}`)
  return svc
}

/** POST /update with a changed spec (what `p2p-orch update` writes). */
export function update (via: P2pNode, name: string, change: Partial<ServiceSpec>): ServiceRecord {
  const svc = serviceState(via, name)
  const next = updatedRecord(svc, { ...svc.spec, ...change }, Date.now())
  if (next === null) return svc.record
  via.states.write(key.svc(name), next, operatorOf(via))
  return next
}

/** POST /rollback, /promote, /update --pause and --resume. */
export function rollback (via: P2pNode, name: string): ServiceRecord {
  const rec = rolledBackRecord(serviceState(via, name), Date.now())
  via.states.write(key.svc(name), rec, operatorOf(via))
  return rec
}

export function promote (via: P2pNode, name: string): ServiceRecord {
  const rec = promotedRecord(serviceState(via, name))
  via.states.write(key.svc(name), rec, operatorOf(via))
  return rec
}

export function pause (via: P2pNode, name: string, paused: boolean): ServiceRecord {
  const rec = pausedRecord(serviceState(via, name), paused, Date.now())
  via.states.write(key.svc(name), rec, operatorOf(via))
  return rec
}

/** Scale writes the scale register, as `p2p-orch scale` does. */
export function scale (via: P2pNode, name: string, replicas: number): StateRecord {
  return via.states.write(key.scale(name), { replicas } satisfies ScaleRecord, operatorOf(via))
}

/** DELETE /services/:name. */
export function removeService (via: P2pNode, name: string): StateRecord {
  return via.states.write(key.svc(name), null, operatorOf(via))
}

// ---- nodes -------------------------------------------------------------------------------------

export interface SvcNode {
  name: string
  node: P2pNode
  runtime: MemoryRuntime
  dataDir: string
  labels: Record<string, string>
}

export interface StartSvcNodeOptions {
  labels?: Record<string, string>
  /** reuse this data directory (agent restart); default: a fresh one */
  dataDir?: string
  /** join the cluster with the first node's token (ignored for a data dir that already joined) */
  join?: boolean
  /** where the node's routing mesh opens published ports (default all interfaces) */
  ingressHost?: string
  /** where replicas' secret files go (default a fresh tmpfs directory under /dev/shm) */
  secretsDir?: string
}

/**
 * Nodes of one cluster on one MemoryEngine. Node keys are derived from `seed` and the node name,
 * so node ids, and therefore placement, are the same on every run.
 */
export class ServiceCluster {
  readonly engine: MemoryEngine
  readonly dirs = new TempDirs()
  /** current instance per node name */
  readonly byName = new Map<string, SvcNode>()
  /** every node instance ever started, for cleanup */
  private readonly started = new Set<P2pNode>()
  private readonly seed: string
  token = ''

  constructor (seed: string, engine = new MemoryEngine()) {
    this.seed = seed
    this.engine = engine
  }

  get (name: string): SvcNode {
    const n = this.byName.get(name)
    if (n === undefined) throw new Error(`no node ${name}`)
    return n
  }

  /** Current instances, in start order. */
  list (): SvcNode[] {
    return [...this.byName.values()]
  }

  nodes (): P2pNode[] {
    return this.list().map((n) => n.node)
  }

  private async writeNodeKey (dataDir: string, name: string): Promise<void> {
    const path = join(dataDir, FILES.nodeKey)
    if (existsSync(path)) return
    const seed = createHash('sha256').update(`${this.seed}/${name}`).digest()
    const k = await generateKeyPairFromSeed('Ed25519', new Uint8Array(seed))
    await mkdir(dataDir, { recursive: true, mode: 0o700 })
    await writeFile(path, privateKeyToProtobuf(k), { mode: 0o600 })
  }

  /** Start (or restart) node `name` with a new MemoryRuntime on the shared engine. */
  async start (name: string, o: StartSvcNodeOptions = {}): Promise<SvcNode> {
    const dataDir = o.dataDir ?? await this.dirs.make(`p2p-orch-svc-${name}-`)
    await this.writeNodeKey(dataDir, name)
    const runtime = new MemoryRuntime({ engine: this.engine })
    const labels = o.labels ?? {}
    const join = o.join === true && this.token !== '' ? this.token : undefined
    const node = await createNode({
      dataDir,
      listen: LOOPBACK_LISTEN,
      profile: PROFILES.local,
      logger: silentLogger(),
      control: false,
      credentialsFile: false,
      name,
      labels,
      runtime,
      secretsDir: o.secretsDir ?? await this.dirs.make(`p2p-orch-secrets-${name}-`, '/dev/shm'),
      ...(join !== undefined ? { join } : {}),
      ...(o.ingressHost !== undefined ? { ingressHost: o.ingressHost } : {})
    })
    registerAdmin(node)
    this.started.add(node)
    if (this.token === '') this.token = node.joinToken(true)
    const sn: SvcNode = { name, node, runtime, dataDir, labels }
    this.byName.set(name, sn)
    return sn
  }

  /** Graceful stop (announces `left`); the node's containers stay on the engine. */
  async stop (name: string): Promise<SvcNode> {
    const sn = this.get(name)
    await sn.node.stop()
    this.started.delete(sn.node)
    this.byName.delete(name)
    return sn
  }

  /**
   * The node dies without a word: its libp2p host stops (no `left`), then the rest of the agent is
   * shut down so its reconciler, now cut off, cannot act on its stale view, and its containers go
   * with the machine.
   */
  async crash (name: string): Promise<SvcNode> {
    const sn = this.get(name)
    await sn.node.host.stop()
    await sn.node.stop().catch(() => {})
    this.started.delete(sn.node)
    this.byName.delete(name)
    for (const c of this.engine.all()) if (c.labels[LABEL_NODE] === sn.node.id) sn.runtime.removeBehindBack(c.id)
    return sn
  }

  async cleanup (): Promise<void> {
    await Promise.all([...this.started].map(async (n) => { await n.stop().catch(() => {}) }))
    this.started.clear()
    this.byName.clear()
    for (const c of this.engine.all()) this.engine.remove(this.engine.find(c.id)!)
    await this.dirs.cleanup()
  }

  // ---- observation -----------------------------------------------------------------------------

  containers (service: string): ContainerInfo[] {
    return this.engine.all().filter((c) => c.labels[LABEL_SERVICE] === service)
  }

  running (service: string): ContainerInfo[] {
    return this.containers(service).filter((c) => c.state === 'running')
  }

  nameOf (id: string): string {
    for (const sn of this.byName.values()) if (sn.node.id === id) return sn.name
    return id.slice(-6)
  }

  /**
   * Where every node's placement puts the slots of `service` (key → node id), or null when the
   * nodes disagree.
   */
  agreedPlacement (service: string): Map<string, string | null> | null {
    let first: Map<string, string | null> | null = null
    for (const n of this.nodes()) {
      const m = new Map<string, string | null>()
      for (const [k, a] of placement(n.states.state).slots) if (a.service === service) m.set(k, a.node)
      if (first === null) first = m
      else if (!isDeepStrictEqual(first, m)) return null
    }
    return first
  }

  /** taskViews(service) of every node, or null when they differ. */
  agreedTasks (service: string): TaskView[] | null {
    let first: TaskView[] | null = null
    for (const n of this.nodes()) {
      const t = taskViews(n.states.state, service)
      if (first === null) first = t
      else if (!isDeepStrictEqual(first, t)) return null
    }
    return first
  }

  /**
   * A replicated service is settled at `replicas`: every node places slots 0..replicas-1 on the
   * same nodes; the engine holds exactly one container per slot (none other for the service), running
   * on its placed node with the current generation; and every node's taskViews agree, listing the
   * same containers as running and nothing being moved away.
   */
  replicatedSettled (service: string, replicas: number): boolean {
    const nodes = this.nodes()
    const gen = nodes[0].states.state.value<ServiceRecord | null>(key.svc(service))?.generation
    if (gen === undefined) return false
    const placed = this.agreedPlacement(service)
    if (placed === null || placed.size !== replicas) return false
    const cs = this.containers(service)
    if (cs.length !== replicas || cs.some((c) => c.state !== 'running' || c.generation !== gen)) return false
    const bySlot = new Map(cs.map((c) => [c.slot, c]))
    if (bySlot.size !== replicas) return false
    for (let i = 0; i < replicas; i++) {
      const c = bySlot.get(i)
      if (c === undefined || placed.get(`${service}/${i}`) !== c.node) return false
    }
    const tasks = this.agreedTasks(service)
    if (tasks === null || tasks.length !== replicas) return false
    return tasks.every((t) => t.desired === 'running' && t.state === 'running' && bySlot.get(t.slot)?.id === t.container && t.node === bySlot.get(t.slot)?.node)
  }

  /** What the engine and each node's taskViews hold for `service`, for timeout messages. */
  describe (service: string): string {
    const cs = this.containers(service).sort((a, b) => a.slot - b.slot)
    const engine = cs.map((c) => `${c.slot}@${this.nameOf(c.node)}:${c.state}${c.health !== 'none' ? `/${c.health}` : ''}:g${c.generation}`).join(' ')
    const views = this.nodes().map((n) => {
      const ts = taskViews(n.states.state, service)
      return `${n.name}: ${ts.map((t) => `${t.slot}@${t.nodeName || '-'}:${t.desired === 'shutdown' ? 'x' : ''}${t.state}${t.error !== '' ? `(${t.error})` : ''}`).join(' ')}`
    }).join('\n    ')
    return `engine (${cs.length}): ${engine}\n    ${views}`
  }
}

/** The four p2p-orch labels of a container, as strings; asserts they are present. */
export function p2pLabels (c: ContainerInfo): { service: string, slot: string, node: string, generation: string } {
  return { service: c.labels[LABEL_SERVICE], slot: c.labels[LABEL_SLOT], node: c.labels[LABEL_NODE], generation: c.labels[LABEL_GENERATION] }
}

/**
 * Counts the running containers of `service` every `everyMs`, and also at every engine event (the
 * engine changes synchronously, so that sees every intermediate state). stop() returns the minima.
 */
export function watchRunning (cluster: ServiceCluster, service: string, everyMs = 20): { stop: () => { samples: number, sampledMin: number, eventMin: number, events: number } } {
  const count = (): number => cluster.running(service).length
  let samples = 0
  let sampledMin = Infinity
  let events = 0
  let eventMin = Infinity
  const sample = (): void => { samples++; sampledMin = Math.min(sampledMin, count()) }
  sample()
  const timer = setInterval(sample, everyMs)
  const unsubscribe = cluster.engine.subscribe((c) => {
    if (c.labels[LABEL_SERVICE] !== service) return
    events++
    eventMin = Math.min(eventMin, count())
  })
  return {
    stop: () => {
      clearInterval(timer)
      unsubscribe()
      sample()
      return { samples, sampledMin, eventMin, events }
    }
  }
}
