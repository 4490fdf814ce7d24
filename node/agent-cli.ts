/**
 * Turns the CLI's `agent` options into NodeOptions: profile by name, the Docker runtime unless
 * --no-runtime, and a clear failure when the engine is missing.
 */
import { flushCompileCache } from 'node:module'
import { runAgent } from './agent.ts'
import { profileByName } from './profiles.ts'
import type { Runtime } from './runtime/types.ts'
import { UserError } from './errors.ts'
import { normaliseHostPath } from '../protocol/host-access.ts'
import type { HostAccess } from '../protocol/host-access.ts'

/** `--allow-host-path` values as the rules compare them; a path that is not plain and absolute is the user's mistake. */
function hostAccessOf (o: AgentCliOptions): HostAccess {
  const paths: string[] = []
  for (const raw of o.allowHostPaths) {
    const p = normaliseHostPath(raw)
    if (p === null) throw new UserError(`--allow-host-path ${JSON.stringify(raw)}: give an absolute path without "." or ".." segments, e.g. /srv/data`)
    if (!paths.includes(p)) paths.push(p)
  }
  return { paths: paths.sort(), privileged: o.allowPrivileged }
}

export interface AgentCliOptions {
  dataDir: string
  listen: string[]
  join?: string
  seeds: string[]
  name?: string
  labels: Record<string, string>
  profile: string
  runtime: boolean
  apiListen?: string
  ingressHost?: string
  discovery: boolean
  allowHostPaths: string[]
  allowPrivileged: boolean
  secretsDir?: string
}

export async function runAgentFromCli (o: AgentCliOptions): Promise<void> {
  let profile
  try {
    profile = profileByName(o.profile)
  } catch (err) {
    throw new UserError((err as Error).message)
  }
  const hostAccess = hostAccessOf(o)
  let runtime: Runtime | undefined
  if (o.runtime) {
    const { DockerRuntime } = await import('./runtime/docker.ts')
    runtime = new DockerRuntime()
    try {
      await runtime.ping()
    } catch (err) {
      throw new UserError(`${(err as Error).message} — start Docker, or run a control-plane-only node with --no-runtime`)
    }
  }
  await runAgent({ dataDir: o.dataDir, listen: o.listen, join: o.join, seeds: o.seeds, name: o.name, labels: o.labels, profile, runtime, apiListen: o.apiListen, ingressHost: o.ingressHost, discovery: o.discovery, hostAccess, ...(o.secretsDir !== undefined ? { secretsDir: o.secretsDir } : {}) }, (l) => { console.log(l) })
  // Node writes its compile cache at exit, which a daemon may never reach (or reach by SIGKILL):
  // write it now that every module is loaded, so the next start skips TypeScript stripping.
  flushCompileCache?.()
}
