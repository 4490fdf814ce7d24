/**
 * Host-safe specs: what of its host a service spec reaches, and whether a node's operator allows
 * it. Pure, so every node decides the same from the same spec and node record.
 *
 * Two rules, as Nomad's host volumes and Swarm's (absent) privileged mode suggest:
 *  - A bind mount of a host path needs that path under one of the node's allowed prefixes
 *    (`agent --allow-host-path /srv/data`); with none configured, no bind mount runs there.
 *  - Privileged settings (`privileged`, `cap_add`, `devices`, the host PID namespace) are accepted
 *    only from admin keys (validate.ts) and run only on nodes started with `--allow-privileged`.
 * Named volumes and tmpfs stay on the engine's own storage and need neither.
 */
import type { ServiceSpec } from './spec.ts'

/** What a node's operator lets specs reach on that host; published in its `node/` record. */
export interface HostAccess {
  /** absolute, normalised path prefixes a bind mount source may be under */
  paths: string[]
  privileged: boolean
}

export const NO_HOST_ACCESS: HostAccess = { paths: [], privileged: false }

/** At most this many allowed prefixes per node: an operator lists a few data roots, not hundreds. */
export const MAX_ALLOWED_HOST_PATHS = 64
/** Linux PATH_MAX. */
export const MAX_HOST_PATH_LENGTH = 4096

/**
 * A host path as the rules compare it: absolute, no `.`/`..` segments, no empty segments, no NUL,
 * no trailing slash (except `/` itself). Returns null for anything else. `..` is refused rather
 * than resolved: `/srv/data/../../etc` must not pass a prefix test on `/srv/data`, and resolving it
 * here would still differ from what the engine sees through symlinks.
 */
export function normaliseHostPath (p: string): string | null {
  if (typeof p !== 'string' || p.length === 0 || p.length > MAX_HOST_PATH_LENGTH || !p.startsWith('/') || p.includes('\0')) return null
  const parts = p.split('/').slice(1)
  if (parts.length > 0 && parts[parts.length - 1] === '') parts.pop()
  for (const s of parts) if (s === '' || s === '.' || s === '..') return null
  return '/' + parts.join('/')
}

/** Is `path` (normalised) equal to or under `prefix` (normalised), segment by segment? */
export function isUnder (path: string, prefix: string): boolean {
  if (prefix === '/') return true
  return path === prefix || path.startsWith(prefix + '/')
}

/** The host paths a spec bind-mounts, as written. */
export function boundHostPaths (spec: Pick<ServiceSpec, 'mounts'>): string[] {
  return spec.mounts.filter((m) => m.type === 'bind').map((m) => m.source)
}

/** The privileged settings a spec asks for, named as in Compose; empty when none. */
export function privilegedSettings (spec: Pick<ServiceSpec, 'privileged' | 'capAdd' | 'devices' | 'pid'>): string[] {
  const out: string[] = []
  if (spec.privileged === true) out.push('privileged')
  if (spec.capAdd !== undefined && spec.capAdd.length > 0) out.push('cap_add')
  if (spec.devices !== undefined && spec.devices.length > 0) out.push('devices')
  if (spec.pid === 'host') out.push('pid: host')
  return out
}

/**
 * Why a node with `access` may not run `spec`, or null when it may. Names the first thing that is
 * not allowed and the agent option that would allow it.
 */
export function hostAccessDenial (spec: ServiceSpec, access: HostAccess): string | null {
  for (const source of boundHostPaths(spec)) {
    const p = normaliseHostPath(source)
    if (p === null) return `bind mount source ${JSON.stringify(source.slice(0, 200))} is not a plain absolute path`
    if (!access.paths.some((prefix) => isUnder(p, prefix))) return `host path ${p} is not allowed (agent --allow-host-path)`
  }
  const priv = privilegedSettings(spec)
  if (priv.length > 0 && !access.privileged) return `${priv.join(', ')} not allowed (agent --allow-privileged)`
  return null
}
