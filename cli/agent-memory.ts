/**
 * The agent is a long-running daemon that allocates little: V8's default young generation
 * (16 MiB semi-spaces) costs it ~15 MB of RSS for nothing. Node applies that limit only at
 * start, so `agent` replaces its own process (same pid) with one started with a small one.
 * Imported first by main.ts, before anything heavy loads.
 */

/** 1 MiB semi-spaces: scavenges are a little more frequent, and cheap at an idle agent's allocation rate. */
const AGENT_V8_FLAGS = ['--max-semi-space-size=1']

const args = process.argv.slice(2)
const missing = AGENT_V8_FLAGS.filter((f) => !process.execArgv.includes(f))
if (args.includes('agent') && missing.length > 0 && typeof process.execve === 'function' && process.env.P2P_ORCH_NO_REEXEC === undefined) {
  process.execve(process.execPath, [process.execPath, ...missing, ...process.execArgv, ...process.argv.slice(1)], process.env)
}
