/**
 * Service benchmarks with real agent processes (lan profile) on the real Docker engine:
 *
 *   scale      3 agents on 127.0.0.32-34 and a service `web` (busybox httpd, no healthcheck, an
 *              ephemeral published port) deployed with 0 replicas; measured: wall time from
 *              spawning `p2p-orch scale web=10` (the CLI follows the rollout until all 10 run) to
 *              its exit, then `docker ps` must show the 10 containers. Baseline, interleaved with
 *              the measured runs: the same 10 containers (the create body the agents send, from
 *              createOptions(): image, command, labels, ports, host IPs) created and started
 *              directly with dockerode, in parallel, timed until all 10 run. Median of N each.
 *   lost host  4 agents on 127.0.0.32-35, web=8; SIGKILL one agent and force-remove its containers
 *              at the same instant; time until 8 web containers (8 distinct slots) run on the
 *              survivors, the engine's container list polled every 50 ms. The victim is restarted
 *              from its data dir between runs and the cluster left to rebalance.
 *
 *   node_modules/.bin/node test/bench/services.bench.ts [--quick]
 *
 * Prints tables and a pass/fail summary against the goals; writes .bench/services.json.
 * Only this process's agents are ever signalled, and only containers labelled with their node
 * ids (or the baseline's own node label) are removed: other agents may share the engine.
 */
import { execFile, execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdir, writeFile } from 'node:fs/promises'
import { cpus, loadavg, totalmem } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { promisify } from 'node:util'
import Docker from 'dockerode'
import type { InspectResponse, TaskView } from '../../node/api/types.ts'
import { table } from '../../cli/format.ts'
import { createOptions } from '../../node/runtime/docker.ts'
import { benchLog, median, runBench } from '../helpers/bench.ts'
import { LABEL_NODE, LABEL_SERVICE, LABEL_SLOT } from '../../node/runtime/types.ts'
import {
  type Agent, apiJson, cli, freePort, metrics, restartAgent, ROOT, runningAgents,
  sleep, startAgent, stopAll, tempDir, waitFor, waitForMembers
} from '../helpers/agents.ts'

const QUICK = process.argv.includes('--quick')
const CFG = {
  image: 'p2p-orch/busybox:latest',
  service: 'web',
  scaleIps: ['127.0.0.32', '127.0.0.33', '127.0.0.34'],
  scaleReplicas: 10,
  scaleRuns: QUICK ? 2 : 5,
  /** one unrecorded round of each first: first creations after a quiet spell are slower */
  warmupRounds: 1,
  lostIps: ['127.0.0.32', '127.0.0.33', '127.0.0.34', '127.0.0.35'],
  lostReplicas: 8,
  lostRuns: QUICK ? 1 : 3,
  pollIntervalMs: 50,
  /** pause after the engine is quiet again, before the next timed run */
  settleMs: 750,
  basePort: 7960,
  /** hard stop, well above the 8 / 3 minute budget, so a hang never outlives its welcome */
  watchdogMs: QUICK ? 6 * 60_000 : 14 * 60_000
}
const GOALS = { scaleRatio: 1.25, lostHostMs: 5000, durationS: QUICK ? 180 : 480 }

const STACK = (replicas: number): string => `
name: bench
services:
  ${CFG.service}:
    image: ${CFG.image}
    command: ["sh", "-c", "mkdir -p /www && echo hello from $$HOSTNAME > /www/index.html && exec httpd -f -p 80 -h /www"]
    ports: ["80"]
    # httpd runs as PID 1 and ignores SIGTERM: without this every scale-down waits Docker's 10 s
    stop_grace_period: 1s
    deploy:
      replicas: ${replicas}
`

const log = benchLog
const exec = promisify(execFile)
const docker = new Docker()

/** Node ids of every agent this process started; only their containers are ever removed. */
const myNodes = new Set<string>()
/** p2p-orch.node label of the baseline's containers (no agent has this id, so none touches them). */
const DIRECT_NODE = `bench-direct-${randomBytes(4).toString('hex')}`

// ---------------------------------------------------------------------------------------------
// cleanup (also on Ctrl-C: registered before the agent helpers' own handlers, which exit)

function isMine (labels: Record<string, string> | undefined): boolean {
  const n = labels?.[LABEL_NODE]
  return n !== undefined && (myNodes.has(n) || n === DIRECT_NODE)
}

function emergencyCleanup (): void {
  for (const a of runningAgents()) { try { process.kill(a.pid, 'SIGKILL') } catch {} }
  try {
    const out = execFileSync('docker', ['ps', '-aq', '--filter', `label=${LABEL_NODE}`, '--format', `{{.ID}}\t{{.Label "${LABEL_NODE}"}}`], { encoding: 'utf8', timeout: 20_000 })
    const ids = out.split('\n').map((l) => l.split('\t')).filter(([id, node]) => id !== '' && node !== undefined && (myNodes.has(node) || node === DIRECT_NODE)).map(([id]) => id)
    if (ids.length > 0) execFileSync('docker', ['rm', '-f', ...ids], { stdio: 'ignore', timeout: 60_000 })
  } catch {}
}
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.once(sig, emergencyCleanup)

async function removeMyContainers (): Promise<number> {
  const rows = await docker.listContainers({ all: true, filters: { label: [LABEL_NODE] } })
  const mine = rows.filter((r) => isMine(r.Labels))
  await Promise.all(mine.map(async (r) => { await docker.getContainer(r.Id).remove({ force: true, v: true }).catch(() => {}) }))
  // and the nodes' mesh networks, once their containers are gone
  const nets = await docker.listNetworks({ filters: { label: [LABEL_NODE] } })
  await Promise.all(nets.filter((n) => isMine(n.Labels)).map(async (n) => { await docker.getNetwork(n.Id).remove().catch(() => {}) }))
  return mine.length
}

async function stopAgentsAndContainers (): Promise<void> {
  await stopAll()
  const n = await removeMyContainers()
  if (n > 0) log(`removed ${n} leftover container(s)`)
}

// ---------------------------------------------------------------------------------------------
// statistics and formatting

const ms = (x: number): string => Number.isFinite(x) ? x.toFixed(0) : (Number.isNaN(x) ? '-' : 'timeout')
const round = (x: number): number => Math.round(x * 10) / 10

// ---------------------------------------------------------------------------------------------
// the engine's view

interface WebContainer { id: string, node: string, slot: number, state: string }

/** web containers of the given nodes, as the engine lists them (`docker ps`, via the API). */
async function webContainers (nodes: Set<string>, all = false): Promise<WebContainer[]> {
  const rows = await docker.listContainers({ all, filters: { label: [`${LABEL_SERVICE}=${CFG.service}`] } })
  return rows.filter((r) => nodes.has(r.Labels?.[LABEL_NODE] ?? '')).map((r) => ({
    id: r.Id, node: r.Labels[LABEL_NODE], slot: Number(r.Labels[LABEL_SLOT]), state: r.State
  }))
}

/** The same question asked of the docker CLI itself: running web containers of the given nodes. */
async function dockerPsRunning (nodes: Set<string>): Promise<WebContainer[]> {
  const { stdout } = await exec('docker', ['ps', '--filter', `label=${LABEL_SERVICE}=${CFG.service}`, '--format', `{{.ID}}\t{{.Label "${LABEL_NODE}"}}\t{{.Label "${LABEL_SLOT}"}}\t{{.State}}`])
  return stdout.trim().split('\n').filter((l) => l !== '').map((l) => l.split('\t'))
    .filter(([, node, , state]) => nodes.has(node) && state === 'running')
    .map(([id, node, slot, state]) => ({ id, node, slot: Number(slot), state }))
}

interface Timeline { node: string, createdAt: number, startedAt: number }

/** When the engine created and started each container (epoch ms; same clock as Date.now()). */
async function timelines (ids: string[]): Promise<Timeline[]> {
  return await Promise.all(ids.map(async (id) => {
    const i = await docker.getContainer(id).inspect()
    return { node: i.Config.Labels?.[LABEL_NODE] ?? '', createdAt: Date.parse(i.Created), startedAt: Date.parse(i.State.StartedAt) }
  }))
}

// ---------------------------------------------------------------------------------------------
// agents

async function startBenchCluster (root: string, ips: string[], prefix: string): Promise<Agent[]> {
  const port = await freePort(ips, CFG.basePort)
  log(`starting ${ips.length} agents (lan profile, Docker runtime) on ${ips[0]}…${ips[ips.length - 1]} port ${port}`)
  const base = (i: number) => ({ dir: join(root, `${prefix}${i + 1}`), ip: ips[i], port, name: `${prefix}${i + 1}`, runtime: true, profile: 'lan' as const, readyTimeoutMs: 60_000 })
  const first = await startAgent(base(0))
  myNodes.add(first.id)
  const t = await cli(['--data', first.dir, 'join-token'])
  if (t.code !== 0) throw new Error(`join-token failed: ${t.stderr.trim()}`)
  const token = t.stdout.trim()
  const others = await Promise.all(ips.slice(1).map(async (_, j) => await startAgent({ ...base(j + 1), join: token })))
  for (const a of others) myNodes.add(a.id)
  const agents = [first, ...others]
  await waitForMembers(agents, 60_000)
  return agents
}

async function deploy (agent: Agent, root: string, replicas: number): Promise<void> {
  const file = join(root, `stack-${replicas}.yaml`)
  await writeFile(file, STACK(replicas))
  const r = await cli(['--data', agent.dir, 'deploy', '-f', file, '-y'], {}, 180_000)
  if (r.code !== 0) throw new Error(`deploy (replicas ${replicas}) exited ${r.code}: ${r.stderr.trim()}`)
}

async function webTasks (agent: Agent): Promise<TaskView[]> {
  return await apiJson<TaskView[]>(agent.dir, `/ps?service=${CFG.service}`)
}

async function reconcilePasses (agents: Agent[]): Promise<number> {
  const ms = await Promise.all(agents.map(async (a) => (await metrics(a.dir)).reconcile_passes_total ?? 0))
  return ms.reduce((a, b) => a + b, 0)
}

// ---------------------------------------------------------------------------------------------
// bench 1: scale web=10 versus the same containers made directly

interface ScaleSample {
  kind: 'agents' | 'direct'
  round: number
  /** spawn of the CLI (agents) or first create call (direct) → all running */
  wallMs: number
  /** first container created / last container started, according to the engine (ms after t0) */
  firstCreateMs: number
  lastStartMs: number
  /** agents only: first create on the node the CLI talked to, and on the others */
  firstCreateLocalMs?: number
  firstCreateRemoteMs?: number
  /** agents only: CLI exit minus the engine's last start */
  observeLagMs?: number
  /** reconcile passes, summed over the agents, during the run (direct: passes the agents ran for containers not theirs) */
  reconcilePasses?: number
  confirmedRunning: number
  perNode?: number[]
}

async function scaleRun (agents: Agent[], round: number): Promise<ScaleSample> {
  const via = agents[round % agents.length]
  const nodes = new Set(agents.map((a) => a.id))
  const passesBefore = await reconcilePasses(agents)
  const wall0 = Date.now()
  const t0 = performance.now()
  const r = await cli(['--data', via.dir, 'scale', `${CFG.service}=${CFG.scaleReplicas}`], {}, 180_000)
  const wallMs = performance.now() - t0
  if (r.code !== 0) throw new Error(`scale ${CFG.service}=${CFG.scaleReplicas} via ${via.name} exited ${r.code}: ${r.stderr.trim()}`)
  const running = await dockerPsRunning(nodes)
  if (running.length !== CFG.scaleReplicas) throw new Error(`the CLI exited 0 but docker ps shows ${running.length} running ${CFG.service} containers, not ${CFG.scaleReplicas}`)
  const tl = await timelines(running.map((c) => c.id))
  const passesAfter = await reconcilePasses(agents)
  const local = tl.filter((t) => t.node === via.id)
  const remote = tl.filter((t) => t.node !== via.id)
  const lastStart = Math.max(...tl.map((t) => t.startedAt))
  return {
    kind: 'agents',
    round,
    wallMs,
    firstCreateMs: Math.min(...tl.map((t) => t.createdAt)) - wall0,
    lastStartMs: lastStart - wall0,
    firstCreateLocalMs: local.length > 0 ? Math.min(...local.map((t) => t.createdAt)) - wall0 : NaN,
    firstCreateRemoteMs: remote.length > 0 ? Math.min(...remote.map((t) => t.createdAt)) - wall0 : NaN,
    observeLagMs: wall0 + wallMs - lastStart,
    reconcilePasses: passesAfter - passesBefore,
    confirmedRunning: running.length,
    perNode: agents.map((a) => running.filter((c) => c.node === a.id).length)
  }
}

/** Scale back to 0 and wait until the engine shows no web container of ours and the reports are empty. */
async function scaleToZero (agents: Agent[]): Promise<void> {
  const nodes = new Set(agents.map((a) => a.id))
  const r = await cli(['--data', agents[0].dir, 'scale', `${CFG.service}=0`], {}, 120_000)
  if (r.code !== 0) throw new Error(`scale ${CFG.service}=0 exited ${r.code}: ${r.stderr.trim()}`)
  await waitFor(async () => (await webContainers(nodes, true)).length === 0, 60_000, `docker to show no ${CFG.service} container of ours`, 100)
  await waitFor(async () => (await Promise.all(agents.map(webTasks))).every((ts) => ts.length === 0), 30_000, 'every agent to report no web task', 100)
  await sleep(CFG.settleMs)
}

async function directRun (agents: Agent[], spec: InspectResponse['spec'], generation: number, round: number): Promise<ScaleSample> {
  const suffix = randomBytes(3).toString('hex')
  const reqs = Array.from({ length: CFG.scaleReplicas }, (_, slot) => createOptions({
    spec, slot, node: DIRECT_NODE, generation, name: `${CFG.service}-direct.${slot}.${suffix}`, hostIp: CFG.scaleIps[slot % CFG.scaleIps.length]
  }))
  const passesBefore = await reconcilePasses(agents)
  const wall0 = Date.now()
  const t0 = performance.now()
  const ids = await Promise.all(reqs.map(async (opts) => {
    const c = await docker.createContainer(opts)
    await c.start()
    return c.id
  }))
  const wallMs = performance.now() - t0
  try {
    const running = await dockerPsRunning(new Set([DIRECT_NODE]))
    if (running.length !== CFG.scaleReplicas) throw new Error(`direct baseline: docker ps shows ${running.length} running, not ${CFG.scaleReplicas}`)
    const tl = await timelines(ids)
    return {
      kind: 'direct',
      round,
      wallMs,
      firstCreateMs: Math.min(...tl.map((t) => t.createdAt)) - wall0,
      lastStartMs: Math.max(...tl.map((t) => t.startedAt)) - wall0,
      reconcilePasses: await reconcilePasses(agents) - passesBefore,
      confirmedRunning: running.length
    }
  } finally {
    await Promise.all(ids.map(async (id) => { await docker.getContainer(id).remove({ force: true, v: true }) }))
    await waitFor(async () => (await webContainers(new Set([DIRECT_NODE]), true)).length === 0, 30_000, 'the baseline containers to be gone', 100)
    await sleep(CFG.settleMs)
  }
}

interface ScaleResult {
  runs: number
  agents: ScaleSample[]
  direct: ScaleSample[]
  cliNoopMs: number[]
  medianAgentsMs: number
  medianDirectMs: number
  ratio: number
  /** median over rounds of (agents / direct) within the round */
  pairedRatio: number
}

async function scaleBench (): Promise<ScaleResult> {
  const root = await tempDir('p2p-orch-bench-svc-')
  const agents = await startBenchCluster(root, CFG.scaleIps, 's')
  try {
    await deploy(agents[0], root, 0)
    const inspect = await apiJson<InspectResponse>(agents[0].dir, `/services/${CFG.service}`)
    await scaleToZero(agents)
    const agentSamples: ScaleSample[] = []
    const directSamples: ScaleSample[] = []
    const cliNoop: number[] = []
    const total = CFG.warmupRounds + CFG.scaleRuns
    for (let round = 0; round < total; round++) {
      const warm = round < CFG.warmupRounds
      const label = warm ? `warm-up ${round + 1}` : `round ${round - CFG.warmupRounds + 1}/${CFG.scaleRuns}`
      // alternate the order so drift in the machine's load hits both sides alike
      const order: Array<'agents' | 'direct'> = round % 2 === 0 ? ['agents', 'direct'] : ['direct', 'agents']
      for (const kind of order) {
        if (kind === 'agents') {
          const s = await scaleRun(agents, round)
          log(`scale ${label}: agents ${ms(s.wallMs)} ms (engine: first create +${ms(s.firstCreateMs)}, last start +${ms(s.lastStartMs)}; per node ${s.perNode?.join('/')})`)
          if (!warm) agentSamples.push(s)
          await scaleToZero(agents)
        } else {
          const s = await directRun(agents, inspect.spec, inspect.generation, round)
          log(`scale ${label}: direct ${ms(s.wallMs)} ms (agents ran ${s.reconcilePasses} reconcile passes meanwhile)`)
          if (!warm) directSamples.push(s)
        }
      }
      // one trivial CLI call (process start + one API call), untimed relative to the runs above
      const t = performance.now()
      const n = await cli(['--data', agents[round % agents.length].dir, 'services', '--json'])
      if (n.code === 0 && !warm) cliNoop.push(performance.now() - t)
    }
    const medianAgentsMs = median(agentSamples.map((s) => s.wallMs))
    const medianDirectMs = median(directSamples.map((s) => s.wallMs))
    const pairedRatio = median(agentSamples.map((a, i) => a.wallMs / directSamples[i].wallMs))
    return { runs: CFG.scaleRuns, agents: agentSamples, direct: directSamples, cliNoopMs: cliNoop, medianAgentsMs, medianDirectMs, ratio: medianAgentsMs / medianDirectMs, pairedRatio }
  } finally {
    await stopAgentsAndContainers()
  }
}

// ---------------------------------------------------------------------------------------------
// bench 2: lost host

interface LostRun {
  victim: string
  lostReplicas: number
  /** SIGKILL (and the force-removal) → 8 distinct slots running on the survivors */
  recoveredMs: number
  /** from the survivors' logs: first / last of them to mark the victim suspect and dead */
  firstSuspectMs: number
  firstDeadMs: number
  lastDeadMs: number
  /** the engine's first create / last start of a replacement container */
  firstReplacementCreateMs: number
  lastReplacementStartMs: number
  rebalanceMs: number
}

function logEvent (agents: Agent[], msg: string, peer: string, since: number): number[] {
  const out: number[] = []
  for (const a of agents) {
    for (const line of a.stdout().split('\n')) {
      if (!line.includes(`"msg":"${msg}"`) || !line.includes(peer)) continue
      try {
        const j = JSON.parse(line) as { time?: number, peer?: string }
        if (j.peer === peer && typeof j.time === 'number' && j.time >= since) { out.push(j.time - since); break }
      } catch {}
    }
  }
  return out
}

/** The engine runs exactly the wanted replicas, each on the node placement names, and nothing moves. */
async function balanced (agents: Agent[], replicas: number): Promise<boolean> {
  const nodes = new Set(agents.map((a) => a.id))
  const tasks = await webTasks(agents[0])
  if (tasks.length !== replicas || tasks.some((t) => t.desired !== 'running' || t.state !== 'running')) return false
  const cs = await webContainers(nodes, true)
  if (cs.length !== replicas || cs.some((c) => c.state !== 'running')) return false
  return cs.every((c) => tasks.find((t) => t.slot === c.slot)?.node === c.node)
}

async function lostHostBench (): Promise<LostRun[]> {
  const root = await tempDir('p2p-orch-bench-lost-')
  const agents = await startBenchCluster(root, CFG.lostIps, 'h')
  try {
    await deploy(agents[0], root, CFG.lostReplicas)
    await waitFor(async () => await balanced(agents, CFG.lostReplicas), 60_000, `${CFG.lostReplicas} replicas to run where placement puts them`, 200)
    await sleep(CFG.settleMs)
    const runs: LostRun[] = []
    for (let r = 0; r < CFG.lostRuns; r++) {
      const nodes = new Set(agents.map((a) => a.id))
      const all = await webContainers(nodes, true)
      // a victim other than agents[0] (the one the bench asks), that runs at least one replica
      const candidates = [1, 2, 3].map((k) => 1 + ((r + k - 1) % 3))
      const vi = candidates.find((i) => all.some((c) => c.node === agents[i].id)) ?? candidates[0]
      const victim = agents[vi]
      const survivors = agents.filter((a) => a !== victim)
      const survivorIds = new Set(survivors.map((a) => a.id))
      const victimContainers = all.filter((c) => c.node === victim.id).map((c) => c.id)
      const before = new Set(all.map((c) => c.id))

      const wall0 = Date.now()
      const t0 = performance.now()
      process.kill(victim.pid, 'SIGKILL')
      const removal = Promise.all(victimContainers.map(async (id) => { await docker.getContainer(id).remove({ force: true, v: true }).catch(() => {}) }))
      let recoveredMs = Infinity
      const deadline = t0 + 60_000
      while (performance.now() < deadline) {
        const started = performance.now()
        try {
          const running = (await webContainers(survivorIds)).filter((c) => c.state === 'running')
          if (new Set(running.map((c) => c.slot)).size >= CFG.lostReplicas) { recoveredMs = performance.now() - t0; break }
        } catch {}
        const wait = CFG.pollIntervalMs - (performance.now() - started)
        if (wait > 0) await sleep(wait)
      }
      await removal
      await victim.exited
      if (!Number.isFinite(recoveredMs)) throw new Error(`survivors did not run ${CFG.lostReplicas} replicas within 60 s of losing ${victim.name}`)

      const fresh = (await webContainers(survivorIds)).filter((c) => !before.has(c.id))
      const tl = await timelines(fresh.map((c) => c.id))
      const suspect = logEvent(survivors, 'member suspect: no direct or indirect ack', victim.id, wall0)
      const dead = logEvent(survivors, 'member dead', victim.id, wall0)
      log(`lost host run ${r + 1}/${CFG.lostRuns}: ${victim.name} (${victimContainers.length} replicas) → ${CFG.lostReplicas} running on survivors after ${ms(recoveredMs)} ms (dead: +${ms(Math.min(...dead))}…+${ms(Math.max(...dead))})`)

      const tr = performance.now()
      agents[vi] = await restartAgent(victim, { readyTimeoutMs: 60_000 })
      await waitForMembers(agents, 60_000)
      await waitFor(async () => await balanced(agents, CFG.lostReplicas), 90_000, `the cluster to rebalance after ${victim.name} came back`, 200)
      const rebalanceMs = performance.now() - tr
      log(`lost host run ${r + 1}: ${victim.name} restarted and cluster rebalanced in ${ms(rebalanceMs)} ms`)
      await sleep(CFG.settleMs)

      runs.push({
        victim: victim.name,
        lostReplicas: victimContainers.length,
        recoveredMs,
        firstSuspectMs: suspect.length > 0 ? Math.min(...suspect) : NaN,
        firstDeadMs: dead.length > 0 ? Math.min(...dead) : NaN,
        lastDeadMs: dead.length > 0 ? Math.max(...dead) : NaN,
        firstReplacementCreateMs: tl.length > 0 ? Math.min(...tl.map((t) => t.createdAt)) - wall0 : NaN,
        lastReplacementStartMs: tl.length > 0 ? Math.max(...tl.map((t) => t.startedAt)) - wall0 : NaN,
        rebalanceMs
      })
    }
    return runs
  } finally {
    await stopAgentsAndContainers()
  }
}

// ---------------------------------------------------------------------------------------------

async function main (): Promise<void> {
  const started = performance.now()
  const date = new Date().toISOString()
  await docker.ping()
  try {
    await docker.getImage(CFG.image).inspect()
  } catch {
    throw new Error(`image ${CFG.image} is missing: run bash scripts/ensure-docker.sh`)
  }
  const engine = await docker.info() as { ContainersRunning?: number, ServerVersion?: string }
  const load0 = loadavg()
  log(`mode: ${QUICK ? 'quick' : 'full'}; ${cpus().length} cores, Node ${process.version}, Docker ${engine.ServerVersion}; load ${load0.map((x) => x.toFixed(2)).join(' ')}; ${engine.ContainersRunning} containers already running on the engine`)

  const scale = await scaleBench()
  const lost = await lostHostBench()
  const totalS = (performance.now() - started) / 1000
  const load1 = loadavg()

  const out: string[] = []
  out.push('', `scale ${CFG.service}=${CFG.scaleReplicas} on a 3-node cluster (lan profile; ${scale.runs} interleaved rounds after ${CFG.warmupRounds} warm-up; ms)`)
  out.push('agents: wall = spawn of `p2p-orch scale` → its exit; engine columns are container Created / StartedAt relative to the spawn')
  out.push('direct: wall = first create call → last start returned (dockerode, 10 in parallel, same create bodies)')
  const rows: string[][] = []
  for (let i = 0; i < scale.runs; i++) {
    const a = scale.agents[i]
    const d = scale.direct[i]
    rows.push([String(i + 1), ms(a.wallMs), ms(d.wallMs), (a.wallMs / d.wallMs).toFixed(2), ms(a.firstCreateLocalMs ?? NaN), ms(a.firstCreateRemoteMs ?? NaN), ms(a.lastStartMs), ms(a.observeLagMs ?? NaN), ms(d.lastStartMs), String(a.reconcilePasses), String(d.reconcilePasses), a.perNode?.join('/') ?? ''])
  }
  const med = (f: (s: ScaleSample) => number | undefined, xs: ScaleSample[]): string => ms(median(xs.map((s) => f(s) ?? NaN)))
  rows.push(['median', ms(scale.medianAgentsMs), ms(scale.medianDirectMs), scale.ratio.toFixed(2), med((s) => s.firstCreateLocalMs, scale.agents), med((s) => s.firstCreateRemoteMs, scale.agents), med((s) => s.lastStartMs, scale.agents), med((s) => s.observeLagMs, scale.agents), med((s) => s.lastStartMs, scale.direct), med((s) => s.reconcilePasses, scale.agents), med((s) => s.reconcilePasses, scale.direct), ''])
  out.push(table(['run', 'agents wall', 'direct wall', 'ratio', 'agents: 1st create local', '1st create remote', 'last start', 'exit - last start', 'direct: last start', 'passes (agents run)', 'passes (direct run)', 'per node'], rows))
  out.push(`ratio of medians ${scale.ratio.toFixed(2)}; median of per-round ratios ${scale.pairedRatio.toFixed(2)}. "passes" = reconcile passes summed over the 3 agents; during a direct run none of the containers is theirs.`)
  out.push(`CLI process for a no-op (\`p2p-orch services --json\`): median ${ms(median(scale.cliNoopMs))} ms over ${scale.cliNoopMs.length}`)

  out.push('', `lost host (4 agents, lan profile, ${CFG.service}=${CFG.lostReplicas}; SIGKILL + force-remove of its containers at t=0; engine polled every ${CFG.pollIntervalMs} ms; ms)`)
  out.push(table(['run', 'victim', 'replicas lost', `${CFG.lostReplicas} running again`, 'first suspect', 'dead (first)', 'dead (last)', '1st replacement created', 'last replacement started', 'restart + rebalance'],
    lost.map((r, i) => [String(i + 1), r.victim, String(r.lostReplicas), ms(r.recoveredMs), ms(r.firstSuspectMs), ms(r.firstDeadMs), ms(r.lastDeadMs), ms(r.firstReplacementCreateMs), ms(r.lastReplacementStartMs), ms(r.rebalanceMs)])))

  const worstLost = Math.max(...lost.map((r) => r.recoveredMs))
  const checks = [
    { goal: `scale ${CFG.service}=${CFG.scaleReplicas}: median agents / median direct ≤ ${GOALS.scaleRatio}`, value: `${scale.ratio.toFixed(2)} (${ms(scale.medianAgentsMs)} / ${ms(scale.medianDirectMs)} ms; per-round median ${scale.pairedRatio.toFixed(2)})`, pass: scale.ratio <= GOALS.scaleRatio },
    { goal: `lost host: ${CFG.lostReplicas} running again (worst of ${lost.length}) ≤ ${GOALS.lostHostMs} ms`, value: `${ms(worstLost)} ms (median ${ms(median(lost.map((r) => r.recoveredMs)))})`, pass: worstLost <= GOALS.lostHostMs },
    { goal: `bench duration ≤ ${GOALS.durationS} s`, value: `${totalS.toFixed(0)} s`, pass: totalS <= GOALS.durationS }
  ]
  out.push('', `Summary (${QUICK ? 'quick' : 'full'} run, ${date}, ${totalS.toFixed(0)} s; load average ${load0[0].toFixed(2)} → ${load1[0].toFixed(2)} on ${cpus().length} cores)`)
  out.push(table(['goal', 'measured', 'result'], checks.map((c) => [c.goal, c.value, c.pass ? 'PASS' : 'FAIL'])))
  process.stdout.write(out.join('\n') + '\n')

  await mkdir(join(ROOT, '.bench'), { recursive: true })
  const file = join(ROOT, '.bench', 'services.json')
  const rounded = (_k: string, v: unknown): unknown => typeof v === 'number' ? (Number.isFinite(v) ? round(v) : null) : v
  await writeFile(file, JSON.stringify({
    date,
    mode: QUICK ? 'quick' : 'full',
    machine: { cpus: cpus().length, memoryBytes: totalmem(), node: process.version, docker: engine.ServerVersion, loadavgStart: load0, loadavgEnd: load1, engineContainersRunningAtStart: engine.ContainersRunning },
    config: CFG,
    goals: GOALS,
    durationS: Math.round(totalS),
    scale,
    lostHost: lost,
    summary: checks
  }, rounded, 2) + '\n')
  log(`results written to ${file}`)
}

await runBench({ main, cleanup: stopAgentsAndContainers, watchdogMs: CFG.watchdogMs, emergencyCleanup })
