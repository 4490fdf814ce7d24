/**
 * Cluster benchmarks with real agent processes (lan profile) on 127.0.0.2…:
 *
 *   convergence        one signed desired-state write (PATCH /v1/nodes/<n>, what `node update
 *                      --label-add` sends) → time until every node's /v1/nodes shows it;
 *                      3, 10 and 20 agents; baseline: one control-socket round trip
 *   failure detection  5 agents, SIGKILL one, time until all others report it dead (3 runs);
 *                      then an idle window counting false suspicions (members_suspected_total)
 *   footprint          10 idle agents with the Docker runtime: RSS and CPU% per process; baseline: 10 bare js-libp2p
 *                      nodes with the same transports and gossipsub, measured the same way
 *
 *   node_modules/.bin/node test/bench/cluster.bench.ts [--quick]
 *
 * Prints tables and a pass/fail summary against the goals; writes .bench/cluster.json.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { Agent as HttpAgent, request } from 'node:http'
import { cpus, totalmem } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import type { NodeView } from '../../node/api/types.ts'
import { table } from '../../cli/format.ts'
import {
  type Agent, freePort, ipFor, metrics, NODE, restartAgent, ROOT, sleep, startAgent,
  startCluster, stopAll, tempDir, removeTempDirs, waitForMembers
} from '../helpers/agents.ts'
import { removeNodeArtifacts } from '../helpers/docker.ts'

const QUICK = process.argv.includes('--quick')
/** `--only convergence,detection,footprint` runs some of the benches (default: all) */
const onlyArg = process.argv.indexOf('--only')
const ONLY = onlyArg >= 0 ? new Set((process.argv[onlyArg + 1] ?? '').split(',')) : undefined
const wanted = (bench: 'convergence' | 'detection' | 'footprint'): boolean => ONLY === undefined || ONLY.has(bench)
const CFG = {
  sizes: [3, 10, 20],
  writes: QUICK ? 10 : 30,
  baselineRequests: QUICK ? 100 : 300,
  pollIntervalMs: 5,
  /** a write not applied everywhere by then counts as a timeout (12× the goal) */
  writeTimeoutMs: 3000,
  /** cap on the writes phase of one cluster size, so a broken cluster cannot stall the run */
  maxWritesSecondsPerSize: QUICK ? 60 : 100,
  detectionAgents: 5,
  detectionRuns: 3,
  idleSeconds: QUICK ? 20 : 120,
  footprintAgents: 10,
  footprintSettleSeconds: QUICK ? 5 : 10,
  footprintSeconds: QUICK ? 10 : 30,
  /** away from the e2e test's 7946 so both can run at once */
  basePort: 7947
}
const GOALS = { convergenceP99Ms: 250, detectionMs: 3000, falseSuspicions: 0 }
const CLK_TCK = 100 // Linux USER_HZ (getconf CLK_TCK)

const log = (msg: string): void => { process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`) }

// ---------------------------------------------------------------------------------------------
// statistics

function pct (sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN
  const rank = Math.ceil((p / 100) * sorted.length)
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]
}
function summary (xs: number[]): { n: number, median: number, p99: number, max: number, min: number } {
  const s = [...xs].sort((a, b) => a - b)
  return { n: s.length, median: pct(s, 50), p99: pct(s, 99), max: s[s.length - 1] ?? NaN, min: s[0] ?? NaN }
}
const ms = (x: number): string => Number.isFinite(x) ? (x >= 100 ? x.toFixed(0) : x.toFixed(1)) : (Number.isNaN(x) ? '-' : 'timeout')
const mib = (kb: number): string => (kb / 1024).toFixed(1)

// ---------------------------------------------------------------------------------------------
// control socket access tuned for polling: keep-alive connections, no helper overhead

const http = new HttpAgent({ keepAlive: true, maxSockets: 4 })

function get (dir: string, path: string, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: join(dir, 'control.sock'), path: `/v1${path}`, agent: http, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        if (res.statusCode !== 200) reject(new Error(`${path}: ${res.statusCode}`))
        else resolve(Buffer.concat(chunks).toString('utf8'))
      })
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error(`${path} timed out`)))
    req.on('error', reject)
    req.end()
  })
}

function patch (dir: string, path: string, body: unknown): Promise<number> {
  const payload = JSON.stringify(body)
  return new Promise((resolve, reject) => {
    const req = request({
      socketPath: join(dir, 'control.sock'),
      method: 'PATCH',
      path: `/v1${path}`,
      agent: http,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) }
    }, (res) => {
      res.resume()
      res.on('end', () => { resolve(res.statusCode ?? 0) })
    })
    req.on('error', reject)
    req.end(payload)
  })
}

async function nodes (dir: string): Promise<NodeView[]> {
  return JSON.parse(await get(dir, '/nodes')) as NodeView[]
}

/**
 * Poll every `intervalMs` until `check` on the node list holds; resolves with ms since `t0` at
 * which the first answer that satisfied it was received (Infinity on timeout or when `stop()`).
 */
async function pollUntil (dir: string, check: (ns: NodeView[]) => boolean, t0: number, intervalMs: number, timeoutMs: number, rtts?: number[]): Promise<number> {
  for (;;) {
    const started = performance.now()
    try {
      const ns = await nodes(dir)
      const now = performance.now()
      rtts?.push(now - started)
      if (check(ns)) return now - t0
    } catch {}
    if (performance.now() - t0 > timeoutMs) return Infinity
    const wait = intervalMs - (performance.now() - started)
    if (wait > 0) await sleep(wait)
  }
}

// ---------------------------------------------------------------------------------------------
// /proc

function procStat (pid: number): { cpuTicks: number, rssKb: number, anonKb: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // fields after the ")" of comm: state is field 3; utime and stime are fields 14 and 15
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const utime = Number(rest[14 - 3])
  const stime = Number(rest[15 - 3])
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const rss = /VmRSS:\s+(\d+) kB/.exec(status)
  // RssAnon is the process's own memory; the rest of VmRSS is mostly the node binary's pages,
  // which every process on the machine shares
  const anon = /RssAnon:\s+(\d+) kB/.exec(status)
  return { cpuTicks: utime + stime, rssKb: rss !== null ? Number(rss[1]) : NaN, anonKb: anon !== null ? Number(anon[1]) : NaN }
}

interface Footprint { rssKb: number[], anonKb: number[], cpuPct: number[] }

async function measureFootprint (pids: number[], seconds: number): Promise<Footprint> {
  const t0 = performance.now()
  const before = pids.map(procStat)
  await sleep(seconds * 1000)
  const after = pids.map(procStat)
  const wallS = (performance.now() - t0) / 1000
  return {
    rssKb: after.map((a) => a.rssKb),
    anonKb: after.map((a) => a.anonKb),
    cpuPct: after.map((a, i) => ((a.cpuTicks - before[i].cpuTicks) / CLK_TCK) / wallS * 100)
  }
}

// ---------------------------------------------------------------------------------------------
// bench 1: convergence

interface ConvergenceResult {
  nodes: number
  writes: number
  timeouts: number
  baselineRttMs: ReturnType<typeof summary>
  /** round trips of the pollers' own requests while measuring: the floor under that load */
  pollRttMs: ReturnType<typeof summary>
  allAppliedMs: ReturnType<typeof summary>
  perNodeMs: ReturnType<typeof summary>
  writeAckMs: ReturnType<typeof summary>
  samplesAllAppliedMs: number[]
  /** per write, per node (in agent order) ms until applied; null = timeout */
  samplesPerNodeMs: Array<Array<number | null>>
}

async function growCluster (agents: Agent[], size: number, token: string, port: number, root: string): Promise<void> {
  const concurrency = 5
  while (agents.length < size) {
    const batch: Array<Promise<Agent>> = []
    for (let i = agents.length; i < Math.min(size, agents.length + concurrency); i++) {
      batch.push(startAgent({ dir: join(root, `n${i + 1}`), ip: ipFor(i), port, name: `n${i + 1}`, profile: 'lan', join: token, readyTimeoutMs: 60_000 }))
    }
    agents.push(...await Promise.all(batch))
  }
}

async function baselineRtt (dir: string, count: number): Promise<number[]> {
  const out: number[] = []
  for (let i = 0; i < count; i++) {
    const t = performance.now()
    await get(dir, '/nodes')
    out.push(performance.now() - t)
  }
  return out
}

async function convergence (): Promise<ConvergenceResult[]> {
  const root = await tempDir('p2p-orch-bench-conv-')
  const maxSize = Math.max(...CFG.sizes)
  const port = await freePort(Array.from({ length: maxSize }, (_, i) => ipFor(i)), CFG.basePort)
  log(`convergence: starting ${CFG.sizes[0]} agents on 127.0.0.2… port ${port}`)
  const { agents, token } = await startCluster({ root, size: CFG.sizes[0], port, profile: 'lan', readyTimeoutMs: 60_000 })
  const results: ConvergenceResult[] = []
  for (const size of CFG.sizes) {
    if (agents.length < size) {
      log(`convergence: growing to ${size} agents`)
      await growCluster(agents, size, token, port, root)
    }
    await waitForMembers(agents, 120_000)
    await sleep(3000) // past the joiners' start-up bursts and the dialer's first rounds
    const rtt = await baselineRtt(agents[0].dir, CFG.baselineRequests)
    const allApplied: number[] = []
    const perNode: number[] = []
    const acks: number[] = []
    const pollRtts: number[] = []
    const perWrite: Array<Array<number | null>> = []
    let timeouts = 0
    log(`convergence: ${CFG.writes} writes on ${size} agents`)
    const phaseEnd = performance.now() + CFG.maxWritesSecondsPerSize * 1000
    for (let i = 0; i < CFG.writes; i++) {
      if (performance.now() > phaseEnd) {
        log(`convergence: ${size} agents: stopping after ${i} writes (phase cap ${CFG.maxWritesSecondsPerSize} s)`)
        break
      }
      const writer = agents[i % size]
      const target = agents[(i + 1) % size]
      const value = `v${i}-${size}`
      const t0 = performance.now()
      const polls = agents.map(async (a) => await pollUntil(a.dir, (ns) => ns.find((n) => n.id === target.id)?.labels.bench === value, t0, CFG.pollIntervalMs, CFG.writeTimeoutMs, pollRtts))
      const status = await patch(writer.dir, `/nodes/${target.id}`, { labelAdd: { bench: value } })
      acks.push(performance.now() - t0)
      if (status !== 200) throw new Error(`write ${i} via ${writer.name} answered ${status}`)
      const times = await Promise.all(polls)
      const worst = Math.max(...times)
      if (!Number.isFinite(worst)) timeouts++
      allApplied.push(worst)
      perNode.push(...times.filter(Number.isFinite))
      perWrite.push(times.map((x) => Number.isFinite(x) ? Math.round(x * 10) / 10 : null))
      await sleep(100 + Math.random() * 100)
    }
    results.push({
      nodes: size,
      writes: allApplied.length,
      timeouts,
      baselineRttMs: summary(rtt),
      pollRttMs: summary(pollRtts),
      allAppliedMs: summary(allApplied),
      perNodeMs: summary(perNode),
      writeAckMs: summary(acks),
      samplesAllAppliedMs: allApplied.map((x) => Math.round(x * 10) / 10),
      samplesPerNodeMs: perWrite
    })
  }
  await stopAll()
  return results
}

// ---------------------------------------------------------------------------------------------
// bench 2: failure detection and false suspicions

interface DetectionRun { victim: string, firstSuspectMs: number, allDeadMs: number, perObserverMs: number[] }
interface IdleResult { seconds: number, agents: number, suspectedStart: number[], suspectedEnd: number[], deadDeclared: number[], refutations: number[], nonAliveSightings: number }

async function detection (): Promise<{ runs: DetectionRun[], idle: IdleResult }> {
  const n = CFG.detectionAgents
  const ips = Array.from({ length: n }, (_, i) => ipFor(i))
  const port = await freePort(ips, CFG.basePort)
  let root = await tempDir('p2p-orch-bench-fd-')
  log(`failure detection: starting ${n} agents (port ${port})`)
  let { agents } = await startCluster({ root, size: n, port, profile: 'lan', readyTimeoutMs: 60_000 })
  await waitForMembers(agents, 60_000)
  await sleep(3000)
  const runs: DetectionRun[] = []
  for (let r = 0; r < CFG.detectionRuns; r++) {
    const vi = 1 + (r % (n - 1))
    const victim = agents[vi]
    const observers = agents.filter((a) => a !== victim)
    let firstSuspect = Infinity
    const t0 = performance.now()
    process.kill(victim.pid, 'SIGKILL')
    const per = await Promise.all(observers.map(async (o) => await pollUntil(o.dir, (ns) => {
      const s = ns.find((x) => x.id === victim.id)?.status
      if (s === 'suspect' && !Number.isFinite(firstSuspect)) firstSuspect = performance.now() - t0
      if (s === 'dead' && !Number.isFinite(firstSuspect)) firstSuspect = performance.now() - t0
      return s === 'dead'
    }, t0, 10, 15_000)))
    await victim.exited
    runs.push({ victim: victim.name, firstSuspectMs: firstSuspect, allDeadMs: Math.max(...per), perObserverMs: per })
    log(`failure detection run ${r + 1}: ${victim.name} dead everywhere after ${ms(Math.max(...per))} ms`)
    agents[vi] = await restartAgent(victim)
    await waitForMembers(agents, 30_000)
    await sleep(3000)
  }
  await stopAll()

  // Idle: a fresh cluster, so every suspicion counted is a false one.
  root = await tempDir('p2p-orch-bench-idle-')
  log(`idle: starting ${n} agents, then ${CFG.idleSeconds} s idle`)
  ;({ agents } = await startCluster({ root, size: n, port, profile: 'lan', readyTimeoutMs: 60_000 }))
  await waitForMembers(agents, 60_000)
  await sleep(2000)
  const read = async (name: string): Promise<number[]> => await Promise.all(agents.map(async (a) => (await metrics(a.dir))[name] ?? 0))
  const suspectedStart = await read('members_suspected_total')
  let nonAlive = 0
  const end = performance.now() + CFG.idleSeconds * 1000
  while (performance.now() < end) {
    await sleep(1000)
    const views = await Promise.all(agents.map(async (a) => await nodes(a.dir)))
    for (const v of views) nonAlive += v.filter((x) => x.status !== 'alive').length
  }
  const idle: IdleResult = {
    seconds: CFG.idleSeconds,
    agents: n,
    suspectedStart,
    suspectedEnd: await read('members_suspected_total'),
    deadDeclared: await read('members_declared_dead_total'),
    refutations: await read('refutations_total'),
    nonAliveSightings: nonAlive
  }
  await stopAll()
  return { runs, idle }
}

// ---------------------------------------------------------------------------------------------
// bench 3: footprint

/** A bare js-libp2p node with the agent's transports and gossipsub settings (node/host.ts), idle on one topic. */
const BARE_LIBP2P = `
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { gossipsub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import { preSharedKey } from '@libp2p/pnet'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
const [listen, pskHex, ...peers] = process.argv.slice(1)
const psk = new TextEncoder().encode('/key/swarm/psk/1.0.0/\\n/base16/\\n' + pskHex)
const node = await createLibp2p({
  addresses: { listen: [listen] },
  transports: [tcp()],
  connectionProtector: preSharedKey({ psk, timeout: 2000 }),
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  connectionManager: { maxConnections: 400 },
  services: {
    identify: identify(),
    pubsub: gossipsub({ D: 4, Dlo: 2, Dhi: 8, floodPublish: true, allowPublishToZeroTopicPeers: true, ignoreDuplicatePublishError: true, emitSelf: false, maxInboundDataLength: 1024 * 1024 + 4096 })
  }
})
await node.start()
node.services.pubsub.subscribe('/bench/state/1')
await Promise.all(peers.map(async (p) => { try { await node.dial(multiaddr(p)) } catch (e) { console.error('dial failed', p, e.message) } }))
console.log('READY ' + node.getMultiaddrs()[0].toString())
const stop = () => { node.stop().finally(() => process.exit(0)) }
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
`

const bare = new Set<ChildProcess>()
process.on('exit', () => { for (const p of bare) { try { p.kill('SIGKILL') } catch {} } })

async function startBare (listen: string, psk: string, peers: string[]): Promise<{ proc: ChildProcess, addr: string }> {
  const proc = spawn(NODE, ['--input-type=module', '-e', BARE_LIBP2P, listen, psk, ...peers], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] })
  bare.add(proc)
  proc.on('exit', () => bare.delete(proc))
  return await new Promise((resolve, reject) => {
    let buf = ''
    const timer = setTimeout(() => { reject(new Error(`bare libp2p node on ${listen} not ready`)) }, 30_000)
    proc.stdout!.on('data', (c: Buffer) => {
      buf += c.toString()
      const m = /READY (\S+)/.exec(buf)
      if (m !== null) { clearTimeout(timer); resolve({ proc, addr: m[1] }) }
    })
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`bare libp2p node on ${listen} exited ${code}`)) })
  })
}

async function stopBare (): Promise<void> {
  const procs = [...bare]
  for (const p of procs) p.kill('SIGTERM')
  const timer = setTimeout(() => { for (const p of procs) p.kill('SIGKILL') }, 3000)
  await Promise.all(procs.map(async (p) => p.exitCode !== null || p.signalCode !== null ? undefined : await new Promise((resolve) => p.once('exit', resolve))))
  clearTimeout(timer)
}

interface FootprintResult { processes: number, seconds: number, agents: Footprint, bareLibp2p: Footprint }

async function footprint (): Promise<FootprintResult> {
  const n = CFG.footprintAgents
  const ips = Array.from({ length: n }, (_, i) => ipFor(i))
  const port = await freePort(ips, CFG.basePort)
  const root = await tempDir('p2p-orch-bench-fp-')
  log(`footprint: ${n} agents (with the Docker runtime, as a user runs them) idle ${CFG.footprintSeconds} s (after ${CFG.footprintSettleSeconds} s settling)`)
  const { agents } = await startCluster({ root, size: n, port, profile: 'lan', readyTimeoutMs: 60_000, runtime: true })
  await waitForMembers(agents, 60_000)
  await sleep(CFG.footprintSettleSeconds * 1000)
  const agentFp = await measureFootprint(agents.map((a) => a.pid), CFG.footprintSeconds)
  await stopAll()
  await removeNodeArtifacts(agents.map((a) => a.id))

  log(`footprint baseline: ${n} bare js-libp2p + gossipsub nodes idle ${CFG.footprintSeconds} s`)
  const psk = randomBytes(32).toString('hex')
  const addrs: string[] = []
  const pids: number[] = []
  for (let i = 0; i < n; i++) {
    const { proc, addr } = await startBare(`/ip4/${ipFor(i)}/tcp/${port}`, psk, addrs)
    addrs.push(addr)
    pids.push(proc.pid!)
  }
  await sleep(CFG.footprintSettleSeconds * 1000)
  const bareFp = await measureFootprint(pids, CFG.footprintSeconds)
  await stopBare()
  return { processes: n, seconds: CFG.footprintSeconds, agents: agentFp, bareLibp2p: bareFp }
}

// ---------------------------------------------------------------------------------------------

async function main (): Promise<void> {
  const started = performance.now()
  log(`mode: ${QUICK ? 'quick' : 'full'}; ${cpus().length} cores, Node ${process.version}`)
  const conv = wanted('convergence') ? await convergence() : undefined
  const fd = wanted('detection') ? await detection() : undefined
  const fp = wanted('footprint') ? await footprint() : undefined
  const totalS = (performance.now() - started) / 1000

  const out: string[] = []
  const checks: Array<{ goal: string, value: string, pass: boolean }> = []
  if (conv !== undefined) {
    out.push('', `Convergence (lan profile; every node polled every ${CFG.pollIntervalMs} ms; ms from sending the write to the first answer showing it; timeout = not everywhere within ${CFG.writeTimeoutMs} ms)`)
    out.push(table(['nodes', 'writes', 'RTT idle med/p99', 'RTT polling med/p99', 'write ack med', 'all applied med', 'p99', 'max', 'per node med', 'timeouts'],
      conv.map((c) => [String(c.nodes), String(c.writes), `${ms(c.baselineRttMs.median)} / ${ms(c.baselineRttMs.p99)}`, `${ms(c.pollRttMs.median)} / ${ms(c.pollRttMs.p99)}`, ms(c.writeAckMs.median), ms(c.allAppliedMs.median), ms(c.allAppliedMs.p99), ms(c.allAppliedMs.max), ms(c.perNodeMs.median), String(c.timeouts)])))
    out.push('RTT idle: one GET /v1/nodes at a time on an idle cluster (the floor); RTT polling: the pollers\' own requests during the measurement.')
    const conv20 = conv.find((c) => c.nodes === Math.max(...CFG.sizes))!
    checks.push({ goal: `convergence p99 at ${conv20.nodes} nodes ≤ ${GOALS.convergenceP99Ms} ms`, value: Number.isFinite(conv20.allAppliedMs.p99) ? `${ms(conv20.allAppliedMs.p99)} ms` : `> ${CFG.writeTimeoutMs} ms (${conv20.timeouts}/${conv20.writes} timed out)`, pass: conv20.allAppliedMs.p99 <= GOALS.convergenceP99Ms })
  }
  if (fd !== undefined) {
    out.push('', `Failure detection (${CFG.detectionAgents} agents, lan profile, SIGKILL; ms)`)
    out.push(table(['run', 'victim', 'first seen not alive', 'all observers: dead', 'per observer'],
      fd.runs.map((r, i) => [String(i + 1), r.victim, ms(r.firstSuspectMs), ms(r.allDeadMs), r.perObserverMs.map(ms).join(' ')])))
    out.push('', `Idle false suspicions (${fd.idle.agents} agents, ${fd.idle.seconds} s)`)
    out.push(table(['agent', 'suspected (start)', 'suspected (end)', 'declared dead', 'refutations'],
      fd.idle.suspectedEnd.map((_, i) => [`n${i + 1}`, String(fd.idle.suspectedStart[i]), String(fd.idle.suspectedEnd[i]), String(fd.idle.deadDeclared[i]), String(fd.idle.refutations[i])])))
    out.push(`non-alive sightings while polling /v1/nodes once a second: ${fd.idle.nonAliveSightings}`)
    const worstDetection = Math.max(...fd.runs.map((r) => r.allDeadMs))
    const falseSusp = fd.idle.suspectedEnd.reduce((a, b) => a + b, 0)
    checks.push(
      { goal: `failure detection (5 agents, worst of ${fd.runs.length}) ≤ ${GOALS.detectionMs} ms`, value: `${ms(worstDetection)} ms`, pass: worstDetection <= GOALS.detectionMs },
      { goal: `false suspicions in ${fd.idle.seconds} s idle = ${GOALS.falseSuspicions}`, value: String(falseSusp), pass: falseSusp === GOALS.falseSuspicions })
  }
  if (fp !== undefined) {
    const fpRow = (what: string, f: Footprint): string[] => {
      const r = summary(f.rssKb)
      const a = summary(f.anonKb)
      const c = summary(f.cpuPct)
      return [what, mib(r.median), mib(r.max), mib(a.median), c.median.toFixed(2), c.max.toFixed(2)]
    }
    out.push('', `Footprint (${fp.processes} idle processes, ${fp.seconds} s; CPU% of one core)`)
    out.push(table(['processes', 'RSS MiB med', 'RSS MiB max', 'private (RssAnon) MiB med', 'CPU% med', 'CPU% max'], [fpRow('p2p-orch agent', fp.agents), fpRow('bare js-libp2p + gossipsub', fp.bareLibp2p)]))
    checks.push(
      { goal: 'idle agent RSS (median) ≤ 100 MiB', value: `${mib(summary(fp.agents.rssKb).median)} MiB (private ${mib(summary(fp.agents.anonKb).median)}; bare libp2p ${mib(summary(fp.bareLibp2p.rssKb).median)})`, pass: summary(fp.agents.rssKb).median <= 100 * 1024 },
      { goal: 'idle agent CPU (median) ≤ 1% of a core', value: `${summary(fp.agents.cpuPct).median.toFixed(2)}% (bare libp2p ${summary(fp.bareLibp2p.cpuPct).median.toFixed(2)}%)`, pass: summary(fp.agents.cpuPct).median <= 1 })
  }
  out.push('', `Summary (${QUICK ? 'quick' : 'full'} run, ${totalS.toFixed(0)} s)`)
  out.push(table(['goal', 'measured', 'result'], checks.map((c) => [c.goal, c.value, c.pass ? 'PASS' : 'FAIL'])))
  process.stdout.write(out.join('\n') + '\n')

  await mkdir(join(ROOT, '.bench'), { recursive: true })
  const file = join(ROOT, '.bench', 'cluster.json')
  await writeFile(file, JSON.stringify({
    date: new Date().toISOString(),
    mode: QUICK ? 'quick' : 'full',
    machine: { cpus: cpus().length, memoryBytes: totalmem(), node: process.version },
    config: CFG,
    goals: GOALS,
    durationS: Math.round(totalS),
    convergence: conv,
    failureDetection: fd?.runs,
    idle: fd?.idle,
    footprint: fp,
    summary: checks
  }, (_k, v: unknown) => typeof v === 'number' && !Number.isFinite(v) ? null : v, 2) + '\n')
  log(`results written to ${file}`)
}

try {
  await main()
} catch (err) {
  process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`)
  process.exitCode = 1
} finally {
  await stopAll()
  await stopBare()
  http.destroy()
  await removeTempDirs()
}
