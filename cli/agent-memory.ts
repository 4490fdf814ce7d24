/**
 * The agent is a long-running daemon that allocates little, and Node's defaults are tuned for
 * throughput, not for a small idle footprint. Node and glibc read these settings only at start,
 * so `agent` replaces its own process (same pid) with one started with them.
 * Imported first by main.js, before anything heavy loads. Measured effect: README, footprint.
 */

const AGENT_NODE_FLAGS = [
  // V8's default young generation (16 MiB semi-spaces) costs ~15 MB of RSS for nothing; with
  // 1 MiB, scavenges are a little more frequent and cheap at an idle agent's allocation rate.
  '--max-semi-space-size=1',
  // Smaller heap growth steps and less code kept around: ~6 MB less when idle. (Turning off the
  // mid-tier compiler, Maglev, would save ~2 MB more, but made gossip convergence under load
  // ~40% slower in the bench: not worth it.)
  '--optimize-for-size',
  // Background threads for V8's compilers and GC: one is enough for a daemon (~1.5 MB less).
  '--v8-pool-size=1'
]

const AGENT_ENV: Record<string, string> = {
  // glibc gives every thread that mallocs its own arena (V8's and libuv's workers do); two
  // arenas are plenty for a daemon whose work runs on one thread, and save a few MB.
  MALLOC_ARENA_MAX: '2'
}

const args = process.argv.slice(2)
const missing = AGENT_NODE_FLAGS.filter((f) => !process.execArgv.includes(f))
if (args.includes('agent') && missing.length > 0 && typeof process.execve === 'function' && process.env.P2P_ORCH_NO_REEXEC === undefined) {
  process.execve(process.execPath, [process.execPath, ...missing, ...process.execArgv, ...process.argv.slice(1)], { ...AGENT_ENV, ...process.env })
}
