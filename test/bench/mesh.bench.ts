/**
 * Routing mesh benchmark with real agent processes (lan profile, Docker runtime) on the real
 * Docker engine: what a connection through a node's published port costs, against a connection
 * straight to the container, in the same run.
 *
 *   2 agents on 127.0.0.72-73, each with `--ingress-host` its own address, and one service `blob`
 *   (busybox httpd serving a large file and a small one, plus a busybox `nc` echo server) with one
 *   replica pinned to the first node. Three ways to the same container:
 *     direct  the container's own IP (docker inspect), no agent involved: the baseline
 *     local   the first node's published port: the mesh splices two TCP sockets on that node
 *     remote  the second node's published port: a libp2p stream (Noise, Yamux) to the first node,
 *             which splices it to the container
 *
 *   throughput  GET /big (1 GiB; --quick: 256 MiB) with node:http, bytes discarded; rounds
 *               interleave the three (order rotating), after one unrecorded warm-up round.
 *               MB/s = 10^6 bytes per second, from the request's start to the last byte. CPU of
 *               both agents and of this process during each download (/proc/<pid>/stat).
 *   latency     GET /small on a new connection each (each is one mesh decision: pick, connect,
 *               and for remote a stream open), sequential, the three interleaved in batches of
 *               10; time from the request's start to the response's end. p50 / p99 and the mesh
 *               minus direct.
 *   keep-alive  one open TCP connection to the echo port per way; 64-byte round trips,
 *               interleaved in batches: the per-request cost once connected.
 *
 *   node_modules/.bin/node test/bench/mesh.bench.ts [--quick] [--cpu-prof]
 *
 * --cpu-prof writes V8 CPU profiles of both agents to .bench/mesh-prof/ (open them in Chrome's
 * DevTools). Prints tables and a summary against the issue's goals; writes .bench/mesh.json. Only
 * this process's agents are signalled, and only containers and networks labelled with their node
 * ids are removed: other agents may share the engine.
 */
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { request } from 'node:http'
import { connect, type Socket } from 'node:net'
import { cpus, loadavg, totalmem } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import type { InspectResponse, TaskView } from '../../node/api/types.ts'
import { table } from '../../cli/format.ts'
import {
  type Agent, cli, freePort, metrics, ROOT, runningAgents, startAgent, stopAll, tempDir, waitFor, waitForMembers
} from '../helpers/agents.ts'
import { benchLog, median, percentile, runBench } from '../helpers/bench.ts'
import { docker, dockerReplicas, httpGet, removeNodeArtifacts } from '../helpers/docker.ts'

const QUICK = process.argv.includes('--quick')
const CPU_PROF = process.argv.includes('--cpu-prof')
const MiB = 1024 * 1024
const CFG = {
  image: 'p2p-orch/busybox:latest',
  service: 'blob',
  ips: ['127.0.0.72', '127.0.0.73'],
  names: ['mesh1', 'mesh2'],
  basePort: 7990,
  publishedBasePort: 18_280,
  /** about 1.5 s direct on the development machine; the remote way takes several times that */
  bigMiB: QUICK ? 256 : 1024,
  throughputRounds: QUICK ? 2 : 5,
  throughputWarmupRounds: 1,
  requests: QUICK ? 150 : 500,
  warmupRequests: 20,
  batch: 10,
  echoRoundTrips: QUICK ? 500 : 2000,
  echoBatch: 50,
  echoBytes: 64,
  downloadTimeoutMs: 120_000,
  watchdogMs: QUICK ? 6 * 60_000 : 15 * 60_000
}
const GOALS = { localThroughput: 0.8, localAddedP50Ms: 1, remoteThroughput: 0.5 }

const WAYS = ['direct', 'local', 'remote'] as const
type Way = typeof WAYS[number]

const STACK = (httpPort: number, echoPort: number): string => `
name: meshbench
services:
  ${CFG.service}:
    image: ${CFG.image}
    # the file is complete before httpd starts: once /small answers, /big is all there
    command: ["sh", "-c", "mkdir -p /www && dd if=/dev/zero of=/www/big bs=1M count=${CFG.bigMiB} 2>/dev/null && echo ok > /www/small && (nc -ll -p 7 -e cat &) && exec httpd -f -p 80 -h /www"]
    ports: ["${httpPort}:80", "${echoPort}:7"]
    # httpd runs as PID 1 and ignores SIGTERM
    stop_grace_period: 1s
    deploy:
      replicas: 1
      placement:
        constraints: ["node.name==${CFG.names[0]}"]
`

const log = benchLog

/** Node ids of every agent this process started; only their containers and networks are removed. */
const myNodes = new Set<string>()

// ---------------------------------------------------------------------------------------------
// cleanup (also on Ctrl-C: registered before the agent helpers' own handlers, which exit)

function emergencyCleanup (): void {
  for (const a of runningAgents()) { try { process.kill(a.pid, 'SIGKILL') } catch {} }
  for (const id of myNodes) {
    try {
      const cs = execFileSync('docker', ['ps', '-aq', '--filter', `label=p2p-orch.node=${id}`], { encoding: 'utf8', timeout: 20_000 }).split('\n').filter((l) => l !== '')
      if (cs.length > 0) execFileSync('docker', ['rm', '-f', ...cs], { stdio: 'ignore', timeout: 60_000 })
      const ns = execFileSync('docker', ['network', 'ls', '-q', '--filter', `label=p2p-orch.node=${id}`], { encoding: 'utf8', timeout: 20_000 }).split('\n').filter((l) => l !== '')
      for (const n of ns) execFileSync('docker', ['network', 'rm', n], { stdio: 'ignore', timeout: 20_000 })
    } catch {}
  }
}
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.once(sig, emergencyCleanup)

async function cleanup (): Promise<void> {
  await stopAll()
  await removeNodeArtifacts([...myNodes])
}

// ---------------------------------------------------------------------------------------------
// statistics and formatting

const pct = percentile
const f0 = (x: number): string => Number.isFinite(x) ? x.toFixed(0) : '-'
const f2 = (x: number): string => Number.isFinite(x) ? x.toFixed(2) : '-'
const f3 = (x: number): string => Number.isFinite(x) ? x.toFixed(3) : '-'
const signed = (x: number): string => Number.isFinite(x) ? `${x >= 0 ? '+' : ''}${x.toFixed(3)}` : '-'
const round3 = (x: number): number => Math.round(x * 1000) / 1000

/** Rotate `xs` by `k`: interleaved rounds put each way first in turn, so drift hits all alike. */
function rotate<T> (xs: readonly T[], k: number): T[] {
  const n = k % xs.length
  return [...xs.slice(n), ...xs.slice(0, n)]
}

// ---------------------------------------------------------------------------------------------
// CPU time of a process (utime + stime from /proc/<pid>/stat, clock ticks → ms)

const CLK_TCK = ((): number => {
  try { return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100 } catch { return 100 }
})()

function cpuMsOf (pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    // fields[0] is field 3 (state): utime and stime are fields 14 and 15
    return (Number(fields[11]) + Number(fields[12])) * 1000 / CLK_TCK
  } catch {
    return NaN
  }
}

function selfCpuMs (): number {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1000
}

// ---------------------------------------------------------------------------------------------
// clients

interface Download { ms: number, bytes: number, ttfbMs: number }

/** GET `url` on a new connection, counting and discarding the body. */
function download (url: string, expectBytes: number): Promise<Download> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now()
    let ttfbMs = NaN
    let bytes = 0
    const req = request(url, { agent: false, headers: { connection: 'close' }, timeout: CFG.downloadTimeoutMs }, (res) => {
      ttfbMs = performance.now() - t0
      if (res.statusCode !== 200) { res.resume(); reject(new Error(`GET ${url} answered ${res.statusCode}`)); return }
      res.on('data', (c: Buffer) => { bytes += c.byteLength })
      res.on('end', () => {
        const ms = performance.now() - t0
        if (bytes !== expectBytes) reject(new Error(`GET ${url}: ${bytes} bytes, expected ${expectBytes}`))
        else resolve({ ms, bytes, ttfbMs })
      })
      res.on('error', reject)
    })
    req.on('timeout', () => { req.destroy(new Error(`GET ${url} timed out after ${CFG.downloadTimeoutMs} ms`)) })
    req.on('error', reject)
    req.end()
  })
}

/** One GET of a small page on a new connection: ms from the request's start to the response's end. */
function timedGet (url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now()
    const req = request(url, { agent: false, headers: { connection: 'close' }, timeout: 5_000 }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { body += c })
      res.on('end', () => {
        if (res.statusCode !== 200 || body.trim() !== 'ok') reject(new Error(`GET ${url} answered ${res.statusCode} "${body.trim().slice(0, 80)}"`))
        else resolve(performance.now() - t0)
      })
      res.on('error', reject)
    })
    req.on('timeout', () => { req.destroy(new Error(`GET ${url} timed out`)) })
    req.on('error', reject)
    req.end()
  })
}

/** An open TCP connection to an echo server; `roundTrip()` sends `size` bytes and waits for all of them back. */
async function echoConnection (host: string, port: number, size: number): Promise<{ roundTrip: () => Promise<number>, close: () => void }> {
  const s: Socket = await new Promise((resolve, reject) => {
    const c = connect({ host, port, noDelay: true })
    c.once('connect', () => { c.off('error', reject); resolve(c) })
    c.once('error', reject)
  })
  const msg = Buffer.alloc(size, 0x61)
  let pending: { need: number, t0: number, resolve: (ms: number) => void, reject: (e: Error) => void } | undefined
  s.on('data', (c: Buffer) => {
    if (pending === undefined) return
    pending.need -= c.byteLength
    if (pending.need <= 0) { const p = pending; pending = undefined; p.resolve(performance.now() - p.t0) }
  })
  const broken = (err?: Error): void => { const p = pending; pending = undefined; p?.reject(err ?? new Error(`echo connection to ${host}:${port} closed`)) }
  s.on('error', broken)
  s.on('close', () => { broken() })
  return {
    roundTrip: async () => await new Promise<number>((resolve, reject) => {
      pending = { need: size, t0: performance.now(), resolve, reject }
      s.write(msg)
    }),
    close: () => { s.destroy() }
  }
}

// ---------------------------------------------------------------------------------------------
// cluster and service

interface Setup {
  agents: Agent[]
  ids: string[]
  httpPort: number
  echoPort: number
  containerId: string
  containerIp: string
  /** host:port of each way, for HTTP and for the echo server */
  http: Record<Way, string>
  echo: Record<Way, { host: string, port: number }>
}

async function setup (root: string): Promise<Setup> {
  const port = await freePort(CFG.ips, CFG.basePort)
  const httpPort = await freePort(CFG.ips, CFG.publishedBasePort)
  const echoPort = await freePort(CFG.ips, httpPort + 1)
  log(`starting 2 agents (lan profile, Docker runtime) on ${CFG.ips.join(', ')} port ${port}, ingress on the same addresses${CPU_PROF ? ', with --cpu-prof' : ''}`)
  const profDir = join(ROOT, '.bench', 'mesh-prof')
  if (CPU_PROF) await mkdir(profDir, { recursive: true })
  const base = (i: number) => ({
    dir: join(root, CFG.names[i]),
    ip: CFG.ips[i],
    port,
    name: CFG.names[i],
    runtime: true,
    profile: 'lan' as const,
    readyTimeoutMs: 60_000,
    extraArgs: ['--ingress-host', CFG.ips[i]],
    env: CPU_PROF ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${join(profDir, CFG.names[i])}` } : undefined
  })
  const first = await startAgent(base(0))
  myNodes.add(first.id)
  const t = await cli(['--data', first.dir, 'join-token'])
  if (t.code !== 0) throw new Error(`join-token failed: ${t.stderr.trim()}`)
  const second = await startAgent({ ...base(1), join: t.stdout.trim() })
  myNodes.add(second.id)
  const agents = [first, second]
  const ids = agents.map((a) => a.id)
  await waitForMembers(agents, 60_000)

  const file = join(root, 'stack.yaml')
  await writeFile(file, STACK(httpPort, echoPort))
  log(`deploying ${CFG.service} (1 replica on ${CFG.names[0]}, /big ${CFG.bigMiB} MiB) on ports ${httpPort} (http) and ${echoPort} (echo)`)
  const d = await cli(['--data', first.dir, 'deploy', '-f', file, '-y'], {}, 180_000)
  if (d.code !== 0) throw new Error(`deploy exited ${d.code}: ${d.stderr.trim()}`)

  const replica = await waitFor(async () => {
    const rs = await dockerReplicas(CFG.service, ids)
    if (rs.length !== 1 || rs[0].node !== first.id) return undefined
    const ps = JSON.parse((await cli(['--data', first.dir, 'ps', CFG.service, '--json'])).stdout) as TaskView[]
    return ps.length === 1 && ps[0].state === 'running' && ps[0].node === first.id ? rs[0] : undefined
  }, 120_000, `one running ${CFG.service} replica on ${CFG.names[0]} (docker ps and ps --json)`, 200)
  const ipsOut = await docker('inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}', replica.id)
  const containerIp = ipsOut.split(/\s+/).find((x) => x !== '')
  if (containerIp === undefined) throw new Error(`container ${replica.id} has no IP address`)

  // both nodes route to the one replica: local on the first, remote on the second
  await waitFor(async () => {
    for (const [i, a] of agents.entries()) {
      const r = JSON.parse((await cli(['--data', a.dir, 'inspect', CFG.service, '--json'])).stdout) as InspectResponse
      if (r.routes.length !== 1 || r.routes[0].container.slice(0, 12) !== replica.id.slice(0, 12) || r.routes[0].local !== (i === 0)) return false
    }
    return true
  }, 30_000, 'both nodes to route to the replica (local on the first, remote on the second)', 200)

  const http: Record<Way, string> = { direct: `${containerIp}:80`, local: `${CFG.ips[0]}:${httpPort}`, remote: `${CFG.ips[1]}:${httpPort}` }
  const echo: Record<Way, { host: string, port: number }> = { direct: { host: containerIp, port: 7 }, local: { host: CFG.ips[0], port: echoPort }, remote: { host: CFG.ips[1], port: echoPort } }
  // the file is written before httpd starts: wait until every way serves /small
  await waitFor(async () => {
    for (const w of WAYS) if ((await httpGet(`http://${http[w]}/small`, 2_000)).body.trim() !== 'ok') return false
    return true
  }, 120_000, 'httpd to answer on the container, and through both nodes', 200)
  log(`replica ${replica.id.slice(0, 12)} at ${containerIp} serves on every way`)
  return { agents, ids, httpPort, echoPort, containerId: replica.id, containerIp, http, echo }
}

// ---------------------------------------------------------------------------------------------
// throughput

interface ThroughputSample {
  way: Way
  round: number
  mbps: number
  ms: number
  ttfbMs: number
  /** % of one core during the download */
  cpuNode1: number
  cpuNode2: number
  cpuClient: number
}

async function throughputBench (s: Setup): Promise<ThroughputSample[]> {
  const bytes = CFG.bigMiB * MiB
  const out: ThroughputSample[] = []
  const total = CFG.throughputWarmupRounds + CFG.throughputRounds
  for (let round = 0; round < total; round++) {
    const warm = round < CFG.throughputWarmupRounds
    const line: string[] = []
    for (const way of rotate(WAYS, round)) {
      const c1 = cpuMsOf(s.agents[0].pid)
      const c2 = cpuMsOf(s.agents[1].pid)
      const cs = selfCpuMs()
      const d = await download(`http://${s.http[way]}/big`, bytes)
      const sample: ThroughputSample = {
        way,
        round: round - CFG.throughputWarmupRounds + 1,
        mbps: d.bytes / 1e6 / (d.ms / 1000),
        ms: d.ms,
        ttfbMs: d.ttfbMs,
        cpuNode1: (cpuMsOf(s.agents[0].pid) - c1) / d.ms * 100,
        cpuNode2: (cpuMsOf(s.agents[1].pid) - c2) / d.ms * 100,
        cpuClient: (selfCpuMs() - cs) / d.ms * 100
      }
      line.push(`${way} ${f0(sample.mbps)} MB/s (${f0(d.ms)} ms)`)
      if (!warm) out.push(sample)
    }
    log(`throughput ${warm ? 'warm-up' : `round ${round - CFG.throughputWarmupRounds + 1}/${CFG.throughputRounds}`}: ${line.join(', ')}`)
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// latency

async function latencyBench (s: Setup): Promise<Record<Way, number[]>> {
  const out: Record<Way, number[]> = { direct: [], local: [], remote: [] }
  for (const w of WAYS) for (let i = 0; i < CFG.warmupRequests; i++) await timedGet(`http://${s.http[w]}/small`)
  const batches = Math.ceil(CFG.requests / CFG.batch)
  for (let b = 0; b < batches; b++) {
    for (const w of rotate(WAYS, b)) {
      for (let i = 0; i < CFG.batch && out[w].length < CFG.requests; i++) out[w].push(await timedGet(`http://${s.http[w]}/small`))
    }
    if ((b + 1) % Math.ceil(batches / 4) === 0) log(`latency: ${out.direct.length}/${CFG.requests} requests per way`)
  }
  return out
}

async function keepAliveBench (s: Setup): Promise<Record<Way, number[]>> {
  const out: Record<Way, number[]> = { direct: [], local: [], remote: [] }
  const conns = await Promise.all(WAYS.map(async (w) => await echoConnection(s.echo[w].host, s.echo[w].port, CFG.echoBytes)))
  try {
    for (const c of conns) for (let i = 0; i < CFG.warmupRequests; i++) await c.roundTrip()
    const batches = Math.ceil(CFG.echoRoundTrips / CFG.echoBatch)
    for (let b = 0; b < batches; b++) {
      for (const k of rotate([0, 1, 2], b)) {
        const w = WAYS[k]
        for (let i = 0; i < CFG.echoBatch && out[w].length < CFG.echoRoundTrips; i++) out[w].push(await conns[k].roundTrip())
      }
    }
  } finally {
    for (const c of conns) c.close()
  }
  log(`keep-alive: ${CFG.echoRoundTrips} echo round trips per way`)
  return out
}

// ---------------------------------------------------------------------------------------------

interface LatencyRow { way: Way, n: number, p50: number, p90: number, p99: number, max: number, addedP50: number, addedP99: number }

function latencyRows (samples: Record<Way, number[]>): LatencyRow[] {
  const d50 = pct(samples.direct, 50)
  const d99 = pct(samples.direct, 99)
  return WAYS.map((way) => {
    const xs = samples[way]
    const p50 = pct(xs, 50)
    const p99 = pct(xs, 99)
    return { way, n: xs.length, p50, p90: pct(xs, 90), p99, max: pct(xs, 100), addedP50: way === 'direct' ? 0 : p50 - d50, addedP99: way === 'direct' ? 0 : p99 - d99 }
  })
}

function latencyTable (rows: LatencyRow[]): string {
  return table(['way', 'n', 'p50', 'p90', 'p99', 'max', 'added p50', 'added p99'],
    rows.map((r) => [r.way, String(r.n), f3(r.p50), f3(r.p90), f3(r.p99), f3(r.max), r.way === 'direct' ? '' : signed(r.addedP50), r.way === 'direct' ? '' : signed(r.addedP99)]))
}

async function main (): Promise<void> {
  const started = performance.now()
  const date = new Date().toISOString()
  try {
    await docker('image', 'inspect', CFG.image)
  } catch {
    throw new Error(`image ${CFG.image} is missing: run bash scripts/ensure-docker.sh`)
  }
  const engine = await docker('version', '-f', '{{.Server.Version}}')
  const load0 = loadavg()
  log(`mode: ${QUICK ? 'quick' : 'full'}; ${cpus().length} cores, Node ${process.version}, Docker ${engine}; load ${load0.map((x) => x.toFixed(2)).join(' ')}`)

  const root = await tempDir('p2p-orch-bench-mesh-')
  const s = await setup(root)
  const streamsBefore = (await metrics(s.agents[1].dir)).mesh_remote_streams_opened_total ?? 0
  const tp = await throughputBench(s)
  const lat = await latencyBench(s)
  const ka = await keepAliveBench(s)
  const m1 = await metrics(s.agents[0].dir)
  const m2 = await metrics(s.agents[1].dir)
  const remoteStreams = (m2.mesh_remote_streams_opened_total ?? 0) - streamsBefore
  const expectedRemote = CFG.throughputRounds + CFG.requests + 1
  if (remoteStreams < expectedRemote) throw new Error(`${CFG.names[1]} opened ${remoteStreams} mesh streams, fewer than the ${expectedRemote} remote connections measured`)
  const totalS = (performance.now() - started) / 1000
  const load1 = loadavg()

  const by = (w: Way): ThroughputSample[] => tp.filter((x) => x.way === w)
  const med = (w: Way, f: (x: ThroughputSample) => number): number => median(by(w).map(f))
  const mbps = Object.fromEntries(WAYS.map((w) => [w, med(w, (x) => x.mbps)])) as Record<Way, number>
  const localRatio = mbps.local / mbps.direct
  const remoteRatio = mbps.remote / mbps.direct
  const pairedRatio = (w: Way): number => median(by(w).map((x) => x.mbps / (by('direct').find((d) => d.round === x.round)?.mbps ?? NaN)))
  const latRows = latencyRows(lat)
  const kaRows = latencyRows(ka)
  const localLat = latRows.find((r) => r.way === 'local') as LatencyRow
  const remoteLat = latRows.find((r) => r.way === 'remote') as LatencyRow

  const out: string[] = []
  out.push('', `throughput: GET /big (${CFG.bigMiB} MiB) on a new connection, body discarded; MB/s = 10^6 B/s; ${CFG.throughputRounds} interleaved rounds after ${CFG.throughputWarmupRounds} warm-up`)
  const rows: string[][] = []
  for (let r = 1; r <= CFG.throughputRounds; r++) {
    const at = (w: Way): number => tp.find((x) => x.way === w && x.round === r)?.mbps ?? NaN
    rows.push([String(r), f0(at('direct')), f0(at('local')), f0(at('remote')), f2(at('local') / at('direct')), f2(at('remote') / at('direct'))])
  }
  rows.push(['median', f0(mbps.direct), f0(mbps.local), f0(mbps.remote), f2(localRatio), f2(remoteRatio)])
  out.push(table(['round', 'direct MB/s', 'local MB/s', 'remote MB/s', 'local/direct', 'remote/direct'], rows))
  out.push(`ratios of medians; median of per-round ratios: local ${f2(pairedRatio('local'))}, remote ${f2(pairedRatio('remote'))}`)
  out.push('', 'CPU during the downloads (median, % of one core): node 1 runs the replica, node 2 is the remote ingress')
  out.push(table(['way', 'MB/s', 'time to headers ms', `${CFG.names[0]} CPU%`, `${CFG.names[1]} CPU%`, 'client CPU%'],
    WAYS.map((w) => [w, f0(mbps[w]), f2(med(w, (x) => x.ttfbMs)), f0(med(w, (x) => x.cpuNode1)), f0(med(w, (x) => x.cpuNode2)), f0(med(w, (x) => x.cpuClient))])))
  out.push('', `latency: GET /small on a new connection each, sequential, ${CFG.requests} per way interleaved in batches of ${CFG.batch}, after ${CFG.warmupRequests} warm-up each (ms)`)
  out.push(latencyTable(latRows))
  out.push('', `keep-alive: one open connection per way to the echo port, ${CFG.echoBytes}-byte round trips, ${CFG.echoRoundTrips} per way interleaved in batches of ${CFG.echoBatch} (ms)`)
  out.push(latencyTable(kaRows))
  out.push('', `mesh counters: ${CFG.names[1]} opened ${remoteStreams} remote streams during the run; ${CFG.names[0]} accepted ${m1.mesh_streams_accepted_total ?? 0}, connect failures ${(m1.mesh_connect_failures_total ?? 0) + (m2.mesh_connect_failures_total ?? 0)}, failed connections ${(m1.mesh_connections_failed_total ?? 0) + (m2.mesh_connections_failed_total ?? 0)}`)

  const checks = [
    { goal: `local throughput ≥ ${GOALS.localThroughput}× direct`, value: `${f2(localRatio)}× (${f0(mbps.local)} / ${f0(mbps.direct)} MB/s)`, pass: localRatio >= GOALS.localThroughput },
    { goal: `local added p50 ≤ ${GOALS.localAddedP50Ms} ms (new connection)`, value: `${signed(localLat.addedP50)} ms (p50 ${f3(localLat.p50)} vs ${f3(latRows[0].p50)}; added p99 ${signed(localLat.addedP99)})`, pass: localLat.addedP50 <= GOALS.localAddedP50Ms },
    { goal: `remote throughput ≥ ${GOALS.remoteThroughput}× direct`, value: `${f2(remoteRatio)}× (${f0(mbps.remote)} / ${f0(mbps.direct)} MB/s)`, pass: remoteRatio >= GOALS.remoteThroughput },
    { goal: 'remote added latency (new connection; no goal)', value: `p50 ${signed(remoteLat.addedP50)} ms, p99 ${signed(remoteLat.addedP99)} ms`, pass: undefined }
  ]
  out.push('', `Summary (${QUICK ? 'quick' : 'full'} run, ${date}, ${totalS.toFixed(0)} s; load average ${load0[0].toFixed(2)} → ${load1[0].toFixed(2)} on ${cpus().length} cores)`)
  out.push(table(['goal', 'measured', 'result'], checks.map((c) => [c.goal, c.value, c.pass === undefined ? '' : c.pass ? '✔' : '✘'])))
  process.stdout.write(out.join('\n') + '\n')

  await mkdir(join(ROOT, '.bench'), { recursive: true })
  const file = join(ROOT, '.bench', 'mesh.json')
  const rounded = (_k: string, v: unknown): unknown => typeof v === 'number' ? (Number.isFinite(v) ? round3(v) : null) : v
  await writeFile(file, JSON.stringify({
    date,
    mode: QUICK ? 'quick' : 'full',
    machine: { cpus: cpus().length, memoryBytes: totalmem(), node: process.version, docker: engine, loadavgStart: load0, loadavgEnd: load1 },
    config: CFG,
    goals: GOALS,
    durationS: Math.round(totalS),
    throughput: { medianMBps: mbps, localRatio, remoteRatio, samples: tp },
    latency: latRows,
    keepAlive: kaRows,
    samples: { latency: lat, keepAlive: ka },
    summary: checks
  }, rounded, 2) + '\n')
  log(`results written to ${file}`)
}

await runBench({ main, cleanup, watchdogMs: CFG.watchdogMs, emergencyCleanup })
