/**
 * The node's control loop (swarmkit style): compare the slots placement gives this node with the
 * containers the runtime reports for this node, and act — create, restart with backoff, replace
 * unhealthy ones, stop what is no longer ours — then publish what runs as this node's task report.
 *
 * Runs one full pass at start, then on every state change, runtime event and membership change
 * (debounced), plus a periodic full pass because events can be lost.
 *
 * Moves are make-before-break: a container whose slot now belongs to another node keeps running
 * until that node reports the slot running (and healthy, if it has a healthcheck). The same rule
 * resolves duplicates after a healed partition: placement names one owner, the other yields.
 */
import { hostAccessDenial, NO_HOST_ACCESS, type HostAccess } from '../protocol/host-access.ts'
import { compareStrings } from '../protocol/order.ts'
import { randomBytes } from 'node:crypto'
import { globalKey, slotKey } from '../placement/placement.ts'
import type { SlotAssignment } from '../placement/types.ts'
import type { TaskExit, TaskReport, TaskStatus } from '../protocol/keys.ts'
import { parseTaskId, shardReport, taskShardKey, tasksOf } from '../protocol/tasks.ts'
import type { StateRecord } from '../protocol/record.ts'
import type { Signer } from '../protocol/sign.ts'
import { placement, services, type ServiceState } from './desired.ts'
import { rolloutOf } from './rollout-view.ts'
import { servingGeneration } from '../placement/rollout.ts'
import type { Logger } from './logger.ts'
import type { Counters } from './metrics.ts'
import type { Profile } from './profiles.ts'
import { ImageNotFoundError, LABEL_NODE, LABEL_STOP_GRACE, type ContainerInfo, type Runtime } from './runtime/types.ts'
import type { StateManager } from './state-manager.ts'
import type { ReplicaFileSource } from './replica-files.ts'
import { FileUnavailableError } from './secret-files.ts'

/** Coalesce bursts of triggers (a scale writes one record but Docker then sends many events). */
const RECONCILE_DEBOUNCE_MS = 15
/** Exits kept per slot, like Swarm's task history limit. */
export const TASK_HISTORY_LIMIT = 5
/** Restart backoff doubles from the policy's delay up to this cap. */
const MAX_RESTART_BACKOFF_MS = 60_000
/** A container that ran this long is considered to have recovered: its backoff resets. */
const BACKOFF_RESET_AFTER_MS = 10_000
/** A missing image is retried this often: the operator may load it without touching the service. */
const IMAGE_RETRY_MS = 15_000
/**
 * A replica waiting for its secret's key (sealed to this node by a holder within moments) or for a
 * config is tried again this soon; the share's arrival also triggers a pass at once.
 */
const FILE_RETRY_MS = 1_000
/** A spec this node does not allow is looked at again this often (placement normally moves it away first). */
const HOST_ACCESS_RETRY_MS = 15_000
/** Exited runs remembered per slot so one exit is counted once; far more than can be listed at a time. */
const SEEN_EXITS_LIMIT = 64
/**
 * How long a graceful agent stop waits for containers it is removing: long enough for Docker's
 * default grace period, short enough that a service manager's stop timeout (systemd: 90 s) is safe.
 */
const REMOVAL_DRAIN_MS = 15_000
/** Grace period when the spec sets none (Docker's default). */
const DEFAULT_STOP_GRACE_MS = 10_000

/** What the service's rollout lets one slot do this pass (node/rollout-view.ts). */
interface SlotGate {
  /** the slot may take the service's generation now */
  allowed: boolean
  order: 'stop-first' | 'start-first'
  /** blue-green before promote: the old replica stays beside the new one (and keeps serving) */
  keepOld: boolean
}

const OPEN_GATE: SlotGate = { allowed: true, order: 'start-first', keepOld: false }

interface SlotMemory {
  history: TaskExit[]
  /** runs (`<container id>/<startedAt>`) whose end is already in history */
  seenExits: Set<string>
  /** when each exit happened, newest first: what max_attempts counts (history keeps only a few) */
  exits: number[]
  consecutiveFailures: number
  nextAttemptAt: number
  lastError: string
  rejected: boolean
  /** the generation the backoff (nextAttemptAt, consecutiveFailures) was earned by: a new generation starts afresh */
  attemptGeneration: number
}

export interface ReconcilerOptions {
  states: StateManager
  runtime: Runtime
  self: string
  signer: Signer
  profile: Profile
  logger: Logger
  counters: Counters
  /** host IP `mode: host` published ports bind to */
  hostIp?: string
  /** the network and resolver new containers get (the node's mesh network), when there is one */
  containerNetwork?: () => { network: string, dns: string[] } | undefined
  /**
   * Called before a running container is stopped: the routing mesh takes it out of the rotation
   * and lets its open connections finish, for up to the grace period.
   */
  beforeStop?: (containerId: string, graceMs: number) => Promise<void>
  /**
   * What this node's operator allows specs (default none). Placement already keeps disallowed specs
   * away from this node; this is checked again before every create, for a placement made from a
   * node record older than this start's flags.
   */
  hostAccess?: HostAccess
  /** the secrets and configs replicas are given as files (node/replica-files.ts); without it, specs using them fail */
  files?: ReplicaFileSource
}

export class Reconciler {
  private readonly o: ReconcilerOptions
  private readonly memory = new Map<string, SlotMemory>()
  private readonly stopping = new Set<string>()
  /** removals under way: a graceful agent stop lets them finish (up to REMOVAL_DRAIN_MS) */
  private readonly removals = new Set<Promise<void>>()
  private running = false
  private again = false
  private debounce: NodeJS.Timeout | undefined
  private retry: NodeJS.Timeout | undefined
  private periodic: NodeJS.Timeout | undefined
  private unsubscribe: (() => void) | undefined
  private lastReport = ''
  /** the shard values written last (JSON), by shard */
  private lastShards: string[] = []
  private stopped = false
  /** resolves when the current pass (if any) ends */
  private idle: Promise<void> = Promise.resolve()
  /** when each container was first seen ready: what a rollout's `monitor` counts from */
  private readonly readySince = new Map<string, number>()

  constructor (o: ReconcilerOptions) {
    this.o = o
  }

  start (): void {
    // Keep the task history across agent restarts: it is in our own last report.
    const prev = tasksOf(this.o.states.state, this.o.self)
    const svcs = new Map(services(this.o.states.state).map((s) => [s.spec.name, s]))
    for (const t of prev) {
      const m = this.mem(this.keyOf(t.service, t.slot, svcs.get(t.service)?.spec.mode === 'global'))
      m.history = t.history
      m.exits = t.history.map((h) => h.at)
      if (t.container !== '' && (t.state === 'failed' || t.state === 'complete')) m.seenExits.add(`${t.container}/${t.startedAt}`)
      if (t.container !== '' && t.readySince !== undefined) this.readySince.set(t.container, t.readySince)
    }
    this.o.states.on('change', this.onChange)
    // Several agents may share one engine: only our own containers' events concern us.
    this.unsubscribe = this.o.runtime.events((e) => { if (e.labels[LABEL_NODE] === undefined || e.labels[LABEL_NODE] === this.o.self) this.schedule() })
    this.periodic = setInterval(() => { this.schedule() }, this.o.profile.reconcileIntervalMs)
    this.periodic.unref()
    this.schedule()
  }

  async stop (): Promise<void> {
    this.stopped = true
    this.o.states.off('change', this.onChange)
    this.unsubscribe?.()
    clearTimeout(this.debounce)
    clearTimeout(this.retry)
    clearInterval(this.periodic)
    await this.idle
    await Promise.race([Promise.all(this.removals), new Promise((resolve) => setTimeout(resolve, REMOVAL_DRAIN_MS).unref())])
  }

  /**
   * Every desired-state or membership change can move slots, and so can another node's task
   * report: placement keeps slots where they run, fills what is missing and rebalances once moves
   * complete, all from the reports. A report also tells a replica we hand over that its new owner
   * runs it, so it stops at once (make-before-break without waiting for the periodic pass). Our
   * own report changes only because of a pass.
   */
  private readonly onChange = (recs: StateRecord[]): void => {
    const own = (k: string): boolean => k.startsWith('tasks/') && parseTaskId(k.slice('tasks/'.length))?.node === this.o.self
    if (recs.some((r) => !own(r.k))) this.schedule()
  }

  schedule (delayMs = RECONCILE_DEBOUNCE_MS): void {
    if (this.stopped) return
    if (this.running) { this.again = true; return }
    clearTimeout(this.debounce)
    this.debounce = setTimeout(() => { this.idle = this.run() }, delayMs)
  }

  private async run (): Promise<void> {
    this.running = true
    try {
      do {
        this.again = false
        await this.pass()
      } while (this.again && !this.stopped)
    } catch (err) {
      this.o.logger.error({ err }, 'reconcile pass failed')
      this.o.counters.inc('reconcile_errors_total')
    } finally {
      this.running = false
    }
  }

  private keyOf (service: string, slot: number, global?: boolean): string {
    return global === true ? globalKey(service, this.o.self) : slotKey(service, slot)
  }

  private mem (k: string): SlotMemory {
    let m = this.memory.get(k)
    if (m === undefined) {
      m = { history: [], seenExits: new Set(), exits: [], consecutiveFailures: 0, nextAttemptAt: 0, lastError: '', rejected: false, attemptGeneration: -1 }
      this.memory.set(k, m)
    }
    return m
  }

  private recordExit (m: SlotMemory, c: ContainerInfo, reason: string): void {
    // a restarted container keeps its id: each run ends once
    const run = `${c.id}/${c.startedAt}`
    if (m.seenExits.has(run)) return
    m.seenExits.add(run)
    // only recent runs can still be listed as exited: forget the oldest
    if (m.seenExits.size > SEEN_EXITS_LIMIT) m.seenExits.delete(m.seenExits.values().next().value as string)
    const at = c.finishedAt || Date.now()
    m.history = [{ at, exitCode: c.exitCode, reason, generation: c.generation }, ...m.history].slice(0, TASK_HISTORY_LIMIT)
    m.exits.unshift(at)
    this.o.counters.inc('task_exits_total')
  }

  /** One full comparison of desired and actual state. */
  async pass (): Promise<void> {
    const { states, runtime, self } = this.o
    this.o.counters.inc('reconcile_passes_total')
    const svcs = new Map(services(states.state).map((s) => [s.spec.name, s]))
    const slots = placement(states.state).slots
    const containers = await runtime.list(self)
    // files of containers removed while we were not looking (an agent restart, a removal by hand)
    await this.o.files?.sweep(new Set(containers.map((c) => c.name.replace(/^\//, ''))))
    const byKey = new Map<string, ContainerInfo[]>()
    for (const c of containers) {
      const k = this.keyOf(c.service, c.slot, svcs.get(c.service)?.spec.mode === 'global')
      byKey.set(k, [...(byKey.get(k) ?? []), c])
    }

    const known = new Set(containers.map((c) => c.id))
    for (const id of this.readySince.keys()) if (!known.has(id)) this.readySince.delete(id)

    // each service's rollout decides which of our slots may take its generation now
    const now = Date.now()
    let wakeAt = Infinity
    const gates = new Map<string, (slot: number) => SlotGate>()
    for (const svc of svcs.values()) {
      const plan = rolloutOf(states.state, svc, now)
      if (plan?.wakeAt != null) wakeAt = Math.min(wakeAt, plan.wakeAt)
      const serving = servingGeneration(svc, svc.replicas)
      const keepOld = serving !== null && serving !== svc.generation
      gates.set(svc.spec.name, (slot) => ({ allowed: plan === null || plan.allowed.has(slot), order: svc.rollout.policy.order, keepOld }))
    }

    const work: Array<Promise<TaskStatus>> = []
    const kept: TaskStatus[] = []
    for (const [k, a] of slots) {
      if (a.node !== self) continue
      const svc = svcs.get(a.service)
      if (svc === undefined) continue
      const gate = svc.spec.mode === 'global' ? { ...OPEN_GATE, order: svc.rollout.policy.order } : (gates.get(a.service)?.(a.slot) ?? OPEN_GATE)
      work.push(this.ensureSlot(k, a, svc, byKey.get(k) ?? [], gate, kept))
      byKey.delete(k)
    }
    const tasks = await Promise.all(work)
    tasks.push(...kept)
    const handovers = [...byKey].flatMap(([k, cs]) => this.yieldSlot(k, cs, svcs, slots))
    tasks.push(...handovers)
    const reported = new Set(tasks.map((t) => t.container))
    for (const c of containers) {
      const svc = svcs.get(c.service)
      if (svc === undefined || reported.has(c.id) || !this.stopping.has(c.id)) continue
      tasks.push({ ...this.status(svc, c.slot, c, this.mem(this.keyOf(c.service, c.slot, svc.spec.mode === 'global')), 'stopping'), desired: 'shutdown' })
    }

    // forget slots that are neither ours nor on our engine any more (scaled down, moved away)
    const live = new Set([...[...slots].filter(([, a]) => a.node === self).map(([k]) => k), ...containers.map((c) => this.keyOf(c.service, c.slot, svcs.get(c.service)?.spec.mode === 'global'))])
    for (const k of this.memory.keys()) if (!live.has(k)) this.memory.delete(k)

    let nextRetry = wakeAt
    for (const m of this.memory.values()) if (m.nextAttemptAt > Date.now()) nextRetry = Math.min(nextRetry, m.nextAttemptAt)
    clearTimeout(this.retry)
    if (nextRetry < Infinity && !this.stopped) this.retry = setTimeout(() => { this.schedule() }, Math.max(nextRetry - Date.now(), 0) + 5)
    this.report(tasks)
  }

  private status (svc: ServiceState, slot: number, c: ContainerInfo | undefined, m: SlotMemory, state: TaskStatus['state'], error = ''): TaskStatus {
    let readySince: number | undefined
    if (c !== undefined && state === 'running') {
      // without a healthcheck a replica is ready once started; with one, from the pass that first saw it healthy
      readySince = this.readySince.get(c.id) ?? (svc.spec.healthcheck === undefined && c.startedAt > 0 ? c.startedAt : Date.now())
      this.readySince.set(c.id, readySince)
    } else if (c !== undefined) this.readySince.delete(c.id)
    return {
      ...(readySince !== undefined ? { readySince } : {}),
      service: svc.spec.name,
      slot,
      container: c?.id ?? '',
      state,
      health: c?.health ?? 'none',
      generation: c?.generation ?? svc.generation,
      error,
      startedAt: c?.startedAt ?? 0,
      history: m.history
    }
  }

  private async ensureSlot (k: string, a: SlotAssignment, svc: ServiceState, all: ContainerInfo[], gate: SlotGate, kept: TaskStatus[]): Promise<TaskStatus> {
    const m = this.mem(k)
    // a container we are already stopping (replaced, moved) must not be restarted by its exit
    const cs = all.filter((c) => !this.stopping.has(c.id))
    const newest = (x: ContainerInfo, y: ContainerInfo): number => y.startedAt - x.startedAt
    const current = cs.filter((c) => c.generation === svc.generation).sort(newest)
    const old = cs.filter((c) => c.generation !== svc.generation).sort(newest)
    const live = (c: ContainerInfo): boolean => c.state === 'running' || c.state === 'restarting' || c.state === 'created' || c.state === 'paused'
    const [first, ...dupes] = current
    for (const d of dupes) this.remove(d, svc)
    const now = Date.now()

    if (first === undefined && !gate.allowed && old.length > 0) {
      // not this slot's turn in the rollout yet: its replica stays on the generation it runs
      const [keep, ...rest] = [...old.filter(live), ...old.filter((c) => !live(c))]
      for (const r of rest) this.remove(r, svc)
      return await this.tend(a, svc, keep, m, [], gate, kept)
    }
    if (first === undefined) {
      if (m.attemptGeneration !== svc.generation) {
        // the backoff of a replica of another generation says nothing about this one
        m.attemptGeneration = svc.generation
        m.nextAttemptAt = 0
        m.consecutiveFailures = 0
        m.rejected = false
        m.lastError = ''
      }
      if (gate.order === 'start-first' || gate.keepOld) {
        // the replicas being replaced keep serving until the new one is ready
        for (const o of old) if (o.state === 'running') kept.push({ ...this.status(svc, a.slot, o, m, 'running', `until generation ${svc.generation} is ready`), desired: 'shutdown' })
      }
      if (gate.order === 'stop-first' && !gate.keepOld) {
        // stop-first: the previous generation's replica is gone before the new one starts
        for (const o of old) this.remove(o, svc)
        const leaving = all.filter((c) => c.generation !== svc.generation && (live(c) || this.stopping.has(c.id)))
        if (leaving.length > 0) return this.status(svc, a.slot, undefined, m, 'pending', `stopping generation ${leaving[0].generation} first (stop-first)`)
      }
      if (m.nextAttemptAt > now) return this.status(svc, a.slot, undefined, m, m.rejected ? 'rejected' : 'failed', m.lastError)
      return await this.create(k, a, svc, m)
    }
    return await this.tend(a, svc, first, m, old, gate, kept)
  }

  /**
   * The slot's replica `c` exists: replace it when unhealthy, apply the restart policy when it
   * exited, and once it is ready stop the replicas of other generations `old` (unless a blue-green
   * rollout keeps them serving until promote).
   */
  private async tend (a: SlotAssignment, svc: ServiceState, c: ContainerInfo, m: SlotMemory, old: ContainerInfo[], gate: SlotGate, kept: TaskStatus[]): Promise<TaskStatus> {
    const now = Date.now()
    const ready = c.state === 'running' && c.health !== 'unhealthy' && (svc.spec.healthcheck === undefined || c.health === 'healthy' || c.health === 'none')
    if (gate.keepOld || !ready) {
      // the replicas being replaced keep serving (the mesh routes to them) until this one is ready, or until promote
      const why = gate.keepOld ? 'blue-green: serving until promote' : `until generation ${svc.generation} is ready`
      for (const o of old) if (o.state === 'running') kept.push({ ...this.status(svc, a.slot, o, m, 'running', why), desired: 'shutdown' })
    }
    if (c.state === 'running' && c.health === 'unhealthy') {
      this.recordExit(m, c, 'unhealthy: replaced')
      this.remove(c, svc)
      this.schedule()
      return this.status(svc, a.slot, c, m, 'failed', 'container unhealthy, replacing it')
    }
    if (c.state === 'running') {
      if (now - c.startedAt > BACKOFF_RESET_AFTER_MS) m.consecutiveFailures = 0
      if (ready && !gate.keepOld) for (const o of old) this.remove(o, svc)
      return this.status(svc, a.slot, c, m, ready ? 'running' : 'starting')
    }
    if (c.state === 'created' || c.state === 'restarting' || c.state === 'paused') return this.status(svc, a.slot, c, m, 'starting')
    if (c.state === 'removing') return this.status(svc, a.slot, c, m, 'stopping')

    // exited or dead: apply the restart policy
    const reason = `exited with code ${c.exitCode ?? '?'}`
    this.recordExit(m, c, reason)
    const policy = svc.spec.restartPolicy
    if (policy.condition === 'none' || (policy.condition === 'on-failure' && c.exitCode === 0)) {
      return this.status(svc, a.slot, c, m, c.exitCode === 0 ? 'complete' : 'failed', c.exitCode === 0 ? '' : reason)
    }
    const windowStart = policy.windowMs > 0 ? now - policy.windowMs : 0
    m.exits = m.exits.filter((at) => at >= windowStart).slice(0, policy.maxAttempts + 1)
    const recent = m.exits.length
    if (policy.maxAttempts > 0 && recent > policy.maxAttempts) {
      return this.status(svc, a.slot, c, m, 'failed', `${reason}; restart limit of ${policy.maxAttempts} reached`)
    }
    const backoff = Math.min(Math.max(policy.delayMs, 1) * 2 ** m.consecutiveFailures, MAX_RESTART_BACKOFF_MS)
    const due = (c.finishedAt || now) + (m.consecutiveFailures === 0 ? policy.delayMs : backoff)
    if (due > now) {
      m.nextAttemptAt = due
      m.attemptGeneration = c.generation
      return this.status(svc, a.slot, c, m, 'failed', `${reason}; restarting in ${Math.ceil((due - now) / 1000)}s`)
    }
    m.consecutiveFailures++
    try {
      await this.o.runtime.start(c.id)
      this.o.counters.inc('task_restarts_total')
      return this.status(svc, a.slot, c, m, 'starting')
    } catch (err) {
      // The container cannot be started again (e.g. its mounts vanished): replace it.
      this.remove(c, svc)
      return this.status(svc, a.slot, c, m, 'failed', (err as Error).message)
    }
  }

  private async create (k: string, a: SlotAssignment, svc: ServiceState, m: SlotMemory): Promise<TaskStatus> {
    const denied = hostAccessDenial(svc.spec, this.o.hostAccess ?? NO_HOST_ACCESS)
    if (denied !== null) {
      m.rejected = true
      m.lastError = `this node does not allow it: ${denied}`
      m.nextAttemptAt = Date.now() + HOST_ACCESS_RETRY_MS
      return this.status(svc, a.slot, undefined, m, 'rejected', m.lastError)
    }
    const name = `${svc.spec.name}.${a.slot}.${randomBytes(5).toString('hex')}`
    const usesFiles = (svc.spec.secrets?.length ?? 0) + (svc.spec.configs?.length ?? 0) > 0
    let files
    try {
      if (usesFiles && this.o.files === undefined) throw new FileUnavailableError('this node cannot give replicas secrets or configs')
      files = usesFiles ? await this.o.files?.prepare(svc.spec, name) : undefined
    } catch (err) {
      if (!(err instanceof FileUnavailableError)) throw err
      m.lastError = err.message
      m.nextAttemptAt = Date.now() + FILE_RETRY_MS
      return this.status(svc, a.slot, undefined, m, 'pending', m.lastError)
    }
    try {
      const net = this.o.containerNetwork?.()
      const id = await this.o.runtime.run({ spec: svc.spec, slot: a.slot, node: this.o.self, generation: svc.generation, name, hostIp: this.o.hostIp, ...(net !== undefined ? { network: net.network, dns: net.dns } : {}), ...(files !== undefined && files.length > 0 ? { files } : {}) })
      this.o.counters.inc('tasks_created_total')
      m.lastError = ''
      m.rejected = false
      m.nextAttemptAt = 0
      // the engine has started it; without a healthcheck there is nothing more to wait for
      const state = svc.spec.healthcheck === undefined ? 'running' : 'starting'
      return { ...this.status(svc, a.slot, undefined, m, state), container: id, startedAt: Date.now() }
    } catch (err) {
      if (usesFiles) await this.o.files?.release(name)
      const rejected = err instanceof ImageNotFoundError || (err as Error).name === 'ImageNotFoundError'
      m.rejected = rejected
      m.lastError = (err as Error).message
      m.consecutiveFailures++
      m.nextAttemptAt = Date.now() + (rejected ? IMAGE_RETRY_MS : Math.min(svc.spec.restartPolicy.delayMs * 2 ** (m.consecutiveFailures - 1), MAX_RESTART_BACKOFF_MS))
      this.o.logger.warn({ slot: k, error: m.lastError }, 'cannot start replica')
      this.o.counters.inc('task_create_failures_total')
      return this.status(svc, a.slot, undefined, m, rejected ? 'rejected' : 'failed', m.lastError)
    }
  }

  /**
   * Containers of slots that are not ours (any more): stop them once it is safe. Until they are
   * gone they stay in our report as desired 'shutdown', so `ps` and rollouts see them.
   */
  private yieldSlot (k: string, cs: ContainerInfo[], svcs: Map<string, ServiceState>, slots: Map<string, SlotAssignment>): TaskStatus[] {
    const out: TaskStatus[] = []
    for (const c of cs) {
      const svc = svcs.get(c.service)
      const owner = slots.get(k)?.node ?? null
      const safe = svc === undefined || owner === null || this.ownerRuns(owner, svc, c.slot)
      if (safe || c.state !== 'running') this.remove(c, svc)
      if (svc === undefined) continue
      const handingOver = !safe && c.state === 'running'
      out.push({ ...this.status(svc, c.slot, c, this.mem(k), handingOver ? 'running' : 'stopping', handingOver ? 'waiting for the new owner to run it' : ''), desired: 'shutdown' })
    }
    return out
  }

  /**
   * The new owner runs the slot (healthy, when it has a healthcheck: 'running' means that), and
   * is not itself handing it over — two nodes each waiting for the other must not both stop.
   */
  private ownerRuns (owner: string, svc: ServiceState, slot: number): boolean {
    return tasksOf(this.o.states.state, owner).some((t) => t.service === svc.spec.name && t.slot === slot && t.generation === svc.generation && t.state === 'running' && t.desired !== 'shutdown')
  }

  private remove (c: ContainerInfo, svc: ServiceState | undefined): void {
    if (this.stopping.has(c.id)) return
    this.stopping.add(c.id)
    // the service may be gone already: its grace period then comes from the container's label
    const labelled = Number(c.labels[LABEL_STOP_GRACE] ?? NaN)
    const grace = svc?.spec.stopGracePeriodMs ?? (Number.isFinite(labelled) ? labelled : DEFAULT_STOP_GRACE_MS)
    const removal = (async () => {
      try {
        if (c.state === 'running' || c.state === 'restarting' || c.state === 'paused') {
          await this.o.beforeStop?.(c.id, grace)
          await this.o.runtime.stop(c.id, grace)
        }
        await this.o.runtime.remove(c.id)
        // a secret's file must not outlive its replica
        await this.o.files?.release(c.name.replace(/^\//, ''))
        this.o.counters.inc('tasks_removed_total')
      } catch (err) {
        this.o.logger.warn({ container: c.id, error: (err as Error).message }, 'cannot remove container')
      } finally {
        this.stopping.delete(c.id)
        this.schedule()
      }
    })()
    this.removals.add(removal)
    void removal.finally(() => this.removals.delete(removal))
  }

  /**
   * Publishes our tasks in shards (protocol/tasks.ts), each within the record payload limit; only
   * shards whose content changed are written. Shards a smaller count no longer uses are emptied.
   */
  private report (tasks: TaskStatus[]): void {
    tasks.sort((a, b) => compareStrings(a.service, b.service) || a.slot - b.slot)
    const text = JSON.stringify(tasks)
    if (text === this.lastReport || this.stopped) return
    this.lastReport = text
    const shards = shardReport(tasks, this.lastShards.length)
    const values: TaskReport[] = [...shards]
    for (let i = shards.length; i < this.lastShards.length; i++) values.push({ tasks: [] })
    values.forEach((v, i) => {
      const shardText = JSON.stringify(v)
      if (this.lastShards[i] === shardText) return
      this.o.states.write(taskShardKey(this.o.self, i), v, this.o.signer)
    })
    this.lastShards = shards.map((v) => JSON.stringify(v))
  }
}
