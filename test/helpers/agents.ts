/**
 * Helpers to run real p2p-orch agent PROCESSES (and the CLI) from end-to-end tests and benches.
 *
 *   const dir = await tempDir('p2p-orch-e2e-')
 *   const port = await freePort(['127.0.0.2', '127.0.0.3'])   // 7946 unless someone uses it
 *   const n1 = await startAgent({ dir: join(dir, 'n1'), ip: '127.0.0.2', port, name: 'n1' })
 *   const token = (await cli(['--data', n1.dir, 'join-token'])).stdout.trim()
 *   const n2 = await startAgent({ dir: join(dir, 'n2'), ip: '127.0.0.3', port, name: 'n2', join: token })
 *   await waitForMembers([n1, n2], 10_000)              // both see both alive
 *   const r = await cli(['--data', n2.dir, 'nodes'])    // { code, stdout, stderr }
 *   await kill(n2, 'SIGKILL'); n2 = await restartAgent(n2)
 *   after(async () => { await stopAll(); await removeTempDirs() })
 *
 * Or all at once: startCluster({ root, size: 5, profile: 'lan' }). For polling, prefer the
 * direct control-socket calls (nodesApi, apiJson, metrics) over nodesJson, which runs the CLI.
 *
 * Agents are started as `<root>/node_modules/.bin/node <root>/cli/main.js --data DIR agent ...`,
 * exactly as a user runs them, with `--no-runtime` unless `runtime: true`. Each agent gets its own
 * 127.0.0.x address (every 127.0.0.0/8 address is local). Its stdout (pino JSON lines and the
 * join instructions) is appended to `<dir>/agent.log` and its stderr to `<dir>/agent.err`; the
 * Agent object reads back only what the current run wrote.
 *
 * Every process started here is tracked: `stopAll()` stops them (SIGTERM, then SIGKILL after a
 * grace period), and if the test process itself exits or is interrupted, the survivors are
 * SIGKILLed so no agent outlives its test.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, statSync } from 'node:fs'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { request } from 'node:http'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { NodeView } from '../../node/api/types.ts'

/** The repository root. */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..')
/** The Node binary the project ships (Node 24; runs .ts directly). */
export const NODE = join(ROOT, 'node_modules', '.bin', 'node')
/** The CLI entry point. */
export const CLI = join(ROOT, 'cli', 'main.js')
/** Default libp2p TCP port of an agent (each agent has its own IP, so they can share it). */
export const DEFAULT_PORT = 7946

export type Profile = 'lan' | 'local'

export interface AgentOptions {
  /** data directory (created if missing; made absolute) */
  dir: string
  /** IPv4 address to listen on, e.g. 127.0.0.2 — give every agent its own */
  ip: string
  /** TCP port (default 7946) */
  port?: number
  /** node name (--name) */
  name: string
  /** join token (--join); omit for the first node of a new cluster, or to restart a node */
  join?: string
  /** node labels (--label k=v, repeated) */
  labels?: Record<string, string>
  /** timing profile (default 'local': short timers for tests) */
  profile?: Profile
  /** run the Docker runtime; default false (`--no-runtime`) */
  runtime?: boolean
  /** further arguments appended to the `agent` command */
  extraArgs?: string[]
  /** extra environment for the agent (e.g. P2P_ORCH_LOG=debug) */
  env?: Record<string, string>
  /** how long startAgent waits for the control socket (default 20 s) */
  readyTimeoutMs?: number
  /** run the agent inside this network namespace (`ip netns exec`, which execs: the pid is the agent's) */
  netns?: string
}

export interface ExitInfo {
  code: number | null
  signal: NodeJS.Signals | null
}

export interface Agent {
  readonly opts: AgentOptions
  readonly name: string
  /** absolute data directory */
  readonly dir: string
  readonly ip: string
  readonly port: number
  /** the listen multiaddr, without /p2p */
  readonly listen: string
  /** <dir>/control.sock */
  readonly socketPath: string
  readonly logFile: string
  readonly errFile: string
  readonly proc: ChildProcess
  readonly pid: number
  /** peer id; set by startAgent once the control socket answers ('' before) */
  id: string
  /** Date.now() when the process was spawned */
  readonly spawnedAt: number
  /** null while the process runs */
  exit: ExitInfo | null
  /** resolves when the process has exited */
  readonly exited: Promise<ExitInfo>
  /** what this run wrote to stdout so far */
  stdout (): string
  /** what this run wrote to stderr so far */
  stderr (): string
}

const running = new Set<Agent>()

/** Agents started by this process that have not exited yet. */
export function runningAgents (): Agent[] {
  return [...running]
}

export function sleep (ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

// ---------------------------------------------------------------------------------------------
// temp dirs

const tempDirs = new Set<string>()

let configHome: string | undefined
/**
 * The XDG_CONFIG_HOME every agent and CLI started from here share: the agent that creates a
 * cluster puts its admin credential in `<it>/p2p-orch/credentials.json`, and the CLI finds it
 * there, as for a user on one machine, without touching the real home directory.
 */
export function testConfigHome (): string {
  if (configHome === undefined) {
    configHome = mkdtempSync(join(tmpdir(), 'p2p-orch-config-'))
    tempDirs.add(configHome)
  }
  return configHome
}

/** A fresh directory under the OS temp dir (short path: unix socket paths are limited to 107 bytes). */
export async function tempDir (prefix = 'p2p-orch-'): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), prefix))
  tempDirs.add(d)
  return d
}

/** Remove every directory made by tempDir(); set KEEP_TMP=1 to keep them for a post-mortem. */
export async function removeTempDirs (): Promise<void> {
  if (process.env.KEEP_TMP === '1') {
    for (const d of tempDirs) process.stderr.write(`kept ${d}\n`)
    return
  }
  await Promise.all([...tempDirs].map(async (d) => await rm(d, { recursive: true, force: true })))
  tempDirs.clear()
  configHome = undefined
}

// ---------------------------------------------------------------------------------------------
// waiting

/**
 * Poll `cond` every `intervalMs` until it returns something truthy (which is returned), or fail
 * after `timeoutMs` with "timed out after N ms waiting for <what>" plus the last value or error.
 * Errors thrown by `cond` count as "not yet".
 */
export async function waitFor<T> (cond: () => T | Promise<T>, timeoutMs: number, what: string, intervalMs = 50): Promise<NonNullable<T>> {
  const start = Date.now()
  let last: unknown
  for (;;) {
    try {
      const v = await cond()
      if (v !== undefined && v !== null && v !== false && (v as unknown) !== 0 && (v as unknown) !== '') return v as NonNullable<T>
      last = v
    } catch (err) {
      last = err
    }
    if (Date.now() - start >= timeoutMs) {
      const detail = last instanceof Error ? `last error: ${last.message}` : `last value: ${JSON.stringify(last)?.slice(0, 500)}`
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (${detail})`)
    }
    await sleep(intervalMs)
  }
}

// ---------------------------------------------------------------------------------------------
// control API (directly over the unix socket, without a CLI process)

export interface ApiResponse {
  status: number
  body: string
}

/**
 * One request to the control API of the agent whose data dir is `dir` (or a socket path ending
 * in .sock). `path` is below /v1, e.g. '/nodes'.
 */
export function api (dirOrSocket: string, path: string, o: { method?: string, body?: unknown, timeoutMs?: number } = {}): Promise<ApiResponse> {
  const socketPath = dirOrSocket.endsWith('.sock') ? dirOrSocket : join(dirOrSocket, 'control.sock')
  const payload = o.body === undefined ? undefined : JSON.stringify(o.body)
  return new Promise((resolve, reject) => {
    const req = request({
      socketPath,
      method: o.method ?? 'GET',
      path: `/v1${path}`,
      headers: payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
      timeout: o.timeoutMs ?? 5000
    }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }) })
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error(`control API ${path} at ${socketPath} timed out`)))
    req.on('error', reject)
    if (payload !== undefined) req.write(payload)
    req.end()
  })
}

/** GET a JSON endpoint of the control API; throws on a non-2xx answer. */
export async function apiJson<T> (dirOrSocket: string, path: string, o: { method?: string, body?: unknown, timeoutMs?: number } = {}): Promise<T> {
  const r = await api(dirOrSocket, path, o)
  if (r.status < 200 || r.status >= 300) throw new Error(`control API ${o.method ?? 'GET'} ${path} answered ${r.status}: ${r.body.slice(0, 300)}`)
  return JSON.parse(r.body) as T
}

/** The node list as the agent at `dir` sees it, straight from its control socket (fast; for polling). */
export async function nodesApi (dir: string): Promise<NodeView[]> {
  return await apiJson<NodeView[]>(dir, '/nodes')
}

/** Prometheus text of /v1/metrics parsed into { name: value } (names without the p2p_orch_ prefix). */
export async function metrics (dir: string): Promise<Record<string, number>> {
  const r = await api(dir, '/metrics')
  if (r.status !== 200) throw new Error(`metrics answered ${r.status}`)
  const out: Record<string, number> = {}
  for (const line of r.body.split('\n')) {
    const m = /^p2p_orch_(\S+)\s+(\S+)$/.exec(line.trim())
    if (m !== null) out[m[1]] = Number(m[2])
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// the CLI

export interface CliResult {
  code: number
  stdout: string
  stderr: string
}

/**
 * Run `p2p-orch ARGS` (the CLI as a separate process) and return its exit code and output.
 * Never throws on a non-zero exit; `env` is added to the current environment. A CLI killed by a
 * signal (or by the timeout) has code -1.
 */
export function cli (args: string[], env: Record<string, string> = {}, timeoutMs = 30_000): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(NODE, [CLI, ...args], { cwd: ROOT, env: { ...process.env, XDG_CONFIG_HOME: testConfigHome(), ...env }, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1
      resolve({ code, stdout, stderr })
    })
  })
}

/** `p2p-orch --data DIR nodes --json`, parsed; throws with the CLI's stderr if it fails. */
export async function nodesJson (dir: string): Promise<NodeView[]> {
  const r = await cli(['--data', dir, 'nodes', '--json'])
  if (r.code !== 0) throw new Error(`nodes --json on ${dir} exited ${r.code}: ${r.stderr.trim()}`)
  return JSON.parse(r.stdout) as NodeView[]
}

// ---------------------------------------------------------------------------------------------
// agents

function readFrom (file: string, offset: number): string {
  try {
    return readFileSync(file).subarray(offset).toString('utf8')
  } catch {
    return ''
  }
}

function sizeOf (file: string): number {
  try {
    return statSync(file).size
  } catch {
    return 0
  }
}

/** The command-line arguments startAgent uses (after `node cli/main.js`). */
export function agentArgs (o: AgentOptions): string[] {
  const args = ['--data', resolve(o.dir), 'agent', '--listen', `/ip4/${o.ip}/tcp/${o.port ?? DEFAULT_PORT}`, '--name', o.name, '--profile', o.profile ?? 'local']
  if (o.join !== undefined) args.push('--join', o.join)
  for (const [k, v] of Object.entries(o.labels ?? {})) args.push('--label', `${k}=${v}`)
  if (o.runtime !== true) args.push('--no-runtime')
  args.push(...(o.extraArgs ?? []))
  return args
}

let exitHooksInstalled = false
function installExitHooks (): void {
  if (exitHooksInstalled) return
  exitHooksInstalled = true
  // Last resort: never leave agents behind when the test process goes away.
  process.on('exit', () => {
    for (const a of running) {
      try { process.kill(a.pid, 'SIGKILL') } catch {}
    }
  })
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      for (const a of running) {
        try { process.kill(a.pid, 'SIGKILL') } catch {}
      }
      if (process.env.KEEP_TMP !== '1') for (const d of tempDirs) rmSync(d, { recursive: true, force: true })
      process.exit(128 + (sig === 'SIGINT' ? 2 : sig === 'SIGTERM' ? 15 : 1))
    })
  }
}

/**
 * Spawn an agent process and return at once, without waiting for it to be ready. Use this for
 * agents expected to fail (then `await agent.exited`); use startAgent otherwise.
 */
export async function spawnAgent (o: AgentOptions): Promise<Agent> {
  installExitHooks()
  const dir = resolve(o.dir)
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const logFile = join(dir, 'agent.log')
  const errFile = join(dir, 'agent.err')
  const outOffset = sizeOf(logFile)
  const errOffset = sizeOf(errFile)
  const spawnedAt = Date.now()
  const out = openSync(logFile, 'a')
  const err = openSync(errFile, 'a')
  let proc: ChildProcess
  try {
    const argv = [CLI, ...agentArgs({ ...o, dir })]
    proc = spawn(o.netns !== undefined ? 'ip' : NODE, o.netns !== undefined ? ['netns', 'exec', o.netns, NODE, ...argv] : argv, {
      cwd: ROOT,
      env: { ...process.env, XDG_CONFIG_HOME: testConfigHome(), ...(o.env ?? {}) },
      stdio: ['ignore', out, err]
    })
  } finally {
    closeSync(out)
    closeSync(err)
  }
  if (proc.pid === undefined) throw new Error(`could not spawn agent ${o.name}`)
  const port = o.port ?? DEFAULT_PORT
  let resolveExit!: (e: ExitInfo) => void
  const exited = new Promise<ExitInfo>((resolve) => { resolveExit = resolve })
  const agent: Agent = {
    opts: { ...o, dir },
    name: o.name,
    dir,
    ip: o.ip,
    port,
    listen: `/ip4/${o.ip}/tcp/${port}`,
    socketPath: join(dir, 'control.sock'),
    logFile,
    errFile,
    proc,
    pid: proc.pid,
    id: '',
    spawnedAt,
    exit: null,
    exited,
    stdout: () => readFrom(logFile, outOffset),
    stderr: () => readFrom(errFile, errOffset)
  }
  running.add(agent)
  proc.on('exit', (code, signal) => {
    agent.exit = { code, signal }
    running.delete(agent)
    resolveExit(agent.exit)
  })
  proc.on('error', () => {
    agent.exit ??= { code: null, signal: null }
    running.delete(agent)
    resolveExit(agent.exit)
  })
  return agent
}

/** Whether the control socket in `a.dir` was created by this run of the agent (not left by an earlier one). */
function socketIsOurs (a: Agent): boolean {
  try {
    return statSync(a.socketPath).mtimeMs >= a.spawnedAt - 100 || a.stdout().includes('"msg":"node started"')
  } catch {
    return false
  }
}

/**
 * Start an agent and wait until it is up: its control socket was created by this process and
 * answers /v1/info (whose id is stored in agent.id). If the process exits first, or is not up
 * within readyTimeoutMs, this throws with the agent's stderr and the tail of its log (and the
 * process is killed).
 */
export async function startAgent (o: AgentOptions): Promise<Agent> {
  const agent = await spawnAgent(o)
  const timeoutMs = o.readyTimeoutMs ?? 20_000
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (agent.exit !== null) {
      throw new Error(`agent ${o.name} exited (code ${agent.exit.code}, signal ${agent.exit.signal}) before it was ready; stderr: ${agent.stderr().trim() || '(empty)'}; log tail: ${tail(agent.stdout(), 5)}`)
    }
    // Rules out a stale socket, or another agent still answering on the same data dir.
    if (socketIsOurs(agent)) {
      try {
        const info = await apiJson<{ id: string }>(agent.dir, '/info', { timeoutMs: 2000 })
        agent.id = info.id
        return agent
      } catch {}
    }
    if (Date.now() > deadline) {
      await kill(agent, 'SIGKILL')
      throw new Error(`agent ${o.name} was not ready within ${timeoutMs} ms; stderr: ${agent.stderr().trim() || '(empty)'}; log tail: ${tail(agent.stdout(), 5)}`)
    }
    await sleep(50)
  }
}

/** Start an agent again from its data directory (same id), as a user would: without --join. */
export async function restartAgent (a: Agent, overrides: Partial<AgentOptions> = {}): Promise<Agent> {
  if (a.exit === null) throw new Error(`agent ${a.name} is still running (pid ${a.pid})`)
  const { join: _join, ...rest } = a.opts
  return await startAgent({ ...rest, ...overrides })
}

/**
 * Send `signal` to the agent's process. With wait (default true) resolve once it has exited
 * (after waitMs, SIGKILL is sent; the result is its ExitInfo). No-op if it already exited.
 */
export async function kill (a: Agent, signal: NodeJS.Signals = 'SIGTERM', o: { wait?: boolean, waitMs?: number } = {}): Promise<ExitInfo | null> {
  if (a.exit !== null) return a.exit
  try {
    process.kill(a.pid, signal)
  } catch {}
  if (o.wait === false) return null
  const timer = setTimeout(() => { try { process.kill(a.pid, 'SIGKILL') } catch {} }, o.waitMs ?? 10_000)
  try {
    return await a.exited
  } finally {
    clearTimeout(timer)
  }
}

/** Stop every agent started by this process: SIGTERM, then SIGKILL those still running after graceMs. */
export async function stopAll (graceMs = 3000): Promise<void> {
  const agents = [...running]
  for (const a of agents) {
    try { process.kill(a.pid, 'SIGTERM') } catch {}
  }
  const timer = setTimeout(() => {
    for (const a of agents) if (a.exit === null) { try { process.kill(a.pid, 'SIGKILL') } catch {} }
  }, graceMs)
  await Promise.all(agents.map(async (a) => await a.exited))
  clearTimeout(timer)
}

/** Whether a TCP listener can bind ip:port right now. */
function canListen (ip: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer()
    s.once('error', () => { resolve(false) })
    s.listen({ host: ip, port, exclusive: true }, () => { s.close(() => { resolve(true) }) })
  })
}

/**
 * The first port from `start` that is free on every one of `ips` (other agents may run on this
 * machine, on the same 127.0.0.x addresses). There is a short race until the agents bind it.
 */
export async function freePort (ips: string[], start = DEFAULT_PORT, tries = 200): Promise<number> {
  for (let port = start; port < start + tries; port++) {
    const free = await Promise.all(ips.map(async (ip) => await canListen(ip, port)))
    if (free.every(Boolean)) return port
  }
  throw new Error(`no port in ${start}..${start + tries - 1} is free on ${ips.join(', ')}`)
}

export interface ClusterOptions {
  /** parent directory; agent i gets <root>/<name> */
  root: string
  /** number of agents */
  size: number
  /** last octet of the first agent's IP (default 2: 127.0.0.2, 127.0.0.3, …) */
  firstOctet?: number
  /** TCP port of every agent (default: the first port from 7946 free on all their IPs) */
  port?: number
  /** names are <prefix><i>, i from 1 (default 'n') */
  namePrefix?: string
  profile?: Profile
  /** how many joiners start at once (default 5; 2 cores do not like 20 node processes booting together) */
  concurrency?: number
  env?: Record<string, string>
  readyTimeoutMs?: number
  /** run containers on the local Docker engine (default: control-plane-only agents) */
  runtime?: boolean
  /** further `agent` arguments for agent i (0-based) */
  extraArgs?: (i: number) => string[]
}

/** The IP of the i-th agent (0-based) of a cluster: 127.0.0.<firstOctet + i>. */
export function ipFor (i: number, firstOctet = 2): string {
  const octet = firstOctet + i
  if (octet < 2 || octet > 254) throw new Error(`no IP for agent ${i} (octet ${octet})`)
  return `127.0.0.${octet}`
}

/**
 * Start a cluster as a user would: the first agent without --join, `join-token` on it, the
 * others with --join. Resolves when every agent is up (not yet when all see each other: use
 * waitForMembers).
 */
export async function startCluster (o: ClusterOptions): Promise<{ agents: Agent[], token: string }> {
  const prefix = o.namePrefix ?? 'n'
  const port = o.port ?? await freePort(Array.from({ length: o.size }, (_, i) => ipFor(i, o.firstOctet)))
  const base = (i: number): AgentOptions => ({ dir: join(o.root, `${prefix}${i + 1}`), ip: ipFor(i, o.firstOctet), port, name: `${prefix}${i + 1}`, profile: o.profile, env: o.env, readyTimeoutMs: o.readyTimeoutMs, runtime: o.runtime, ...(o.extraArgs !== undefined ? { extraArgs: o.extraArgs(i) } : {}) })
  const first = await startAgent(base(0))
  const t = await cli(['--data', first.dir, 'join-token'])
  if (t.code !== 0) throw new Error(`join-token failed: ${t.stderr.trim()}`)
  const token = t.stdout.trim()
  const agents: Agent[] = [first]
  const concurrency = o.concurrency ?? 5
  for (let i = 1; i < o.size; i += concurrency) {
    const batch = []
    for (let j = i; j < Math.min(o.size, i + concurrency); j++) batch.push(startAgent({ ...base(j), join: token }))
    agents.push(...await Promise.all(batch))
  }
  return { agents, token }
}

/**
 * Wait until every agent in `observers` lists exactly the ids of `expected` as alive
 * (default: the observers themselves).
 */
export async function waitForMembers (observers: Agent[], timeoutMs: number, expected: Agent[] = observers): Promise<void> {
  const want = new Set(expected.map((a) => a.id))
  await waitFor(async () => {
    const views = await Promise.all(observers.map(async (a) => await nodesApi(a.dir)))
    return views.every((v) => {
      const alive = v.filter((n) => n.status === 'alive')
      return alive.length === want.size && alive.every((n) => want.has(n.id))
    })
  }, timeoutMs, `${observers.length} agents to see ${want.size} alive members`, 100)
}

/** The last `n` lines of a text. */
export function tail (text: string, n: number): string {
  return text.trimEnd().split('\n').slice(-n).join('\n')
}
