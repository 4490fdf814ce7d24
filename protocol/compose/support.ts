/**
 * The support matrix: for every key the Compose schema knows in a mapping we read, whether it is
 * supported, ignored (a warning: skipping it leaves the service behaving as the user expects) or
 * refused (an error: skipping it would silently change what runs). These tables only classify
 * keys of a file the schema has accepted; test/unit/compose-schema.test.ts checks that each table
 * lists exactly the keys of the schema object it names, and README.md's matrix is printed from
 * them (scripts/compose-matrix.ts).
 */
import { MAX_ROLLOUT_WAIT_MS } from '../spec.ts'
import type { Ctx, Obj, Path } from './types.ts'
import { err, report } from './types.ts'

export type Support =
  | { status: 'supported', note?: string }
  | { status: 'ignored', reason: string }
  | { status: 'refused', reason: string }

export interface KeyTable {
  /** where the keys sit, as the matrix shows it */
  where: string
  /** JSON pointer of the mapping's definition in the Compose schema (`$ref`s are followed) */
  schema: string
  keys: Readonly<Record<string, Support>>
}

const yes = (note?: string): Support => (note === undefined ? { status: 'supported' } : { status: 'supported', note })
const ignored = (reason: string): Support => ({ status: 'ignored', reason })
const refused = (reason: string): Support => ({ status: 'refused', reason })

export const TOP: KeyTable = {
  where: '(top level)',
  schema: '',
  keys: {
    name: yes('the stack name (overridden by --name)'),
    services: yes(),
    volumes: yes('local named volumes, `<stack>_<name>` unless `name:` or `external`'),
    version: ignored('obsolete in the Compose specification'),
    networks: ignored('every node gives its replicas one network; services reach each other by name'),
    secrets: yes('`file`, `environment` or `external`; created as cluster secrets `<stack>_<name>` unless `name:` or external'),
    configs: yes('`file`, `content`, `environment` or `external`; as secrets, `<stack>_<name>`'),
    models: ignored('declarations only; services that use models are refused'),
    include: refused('the included files would be left out of the stack')
  }
}

export const SERVICE: KeyTable = {
  where: 'services.*',
  schema: '/definitions/service',
  keys: {
    image: yes('required (images are pulled, never built)'),
    command: yes('a list, or a string split into words like Compose; shell operators are refused'),
    entrypoint: yes('as command'),
    environment: yes(),
    env_file: yes('read by the CLI beside the Compose file; `format:` is refused'),
    labels: yes('container labels'),
    ports: yes('ingress ports open on every node (routing mesh); a specific host IP is refused'),
    expose: yes('ports other services reach by name'),
    healthcheck: yes(),
    volumes: yes('named volumes, tmpfs, and binds (absolute after resolving against the file), which run only on nodes that allow the host path (--allow-host-path)'),
    tmpfs: yes('mount options are ignored with a warning'),
    user: yes(),
    working_dir: yes('an absolute path'),
    stop_signal: yes(),
    stop_grace_period: yes(),
    deploy: yes(),
    restart: yes('mapped to the restart policy; deploy.restart_policy wins'),
    scale: yes('as deploy.replicas; the two must agree'),
    cpus: yes('as deploy.resources.limits.cpus'),
    mem_limit: yes('as deploy.resources.limits.memory'),
    mem_reservation: yes('as deploy.resources.reservations.memory'),
    read_only: yes(),
    cap_drop: yes(),
    privileged: yes('admin keys only; runs only on nodes started with --allow-privileged'),
    cap_add: yes('as privileged'),
    devices: yes('as privileged; short (HOST[:CONTAINER[:rwm]]) and long syntax'),
    pid: yes('`host` only, as privileged'),
    build: ignored('the image is pulled, never built; refused when there is no image:'),
    // harmless to skip: the containers still run as the user expects
    depends_on: ignored('start order is not enforced; replicas restart until their dependencies answer'),
    container_name: ignored('container names are generated per replica'),
    networks: ignored('all services of a stack share one network'),
    logging: ignored('containers use the engine default log driver'),
    hostname: ignored('containers keep the engine-assigned hostname'),
    domainname: ignored('containers keep the engine default domain name'),
    links: ignored('legacy option; services reach each other by name'),
    external_links: ignored('legacy option'),
    annotations: ignored('metadata only'),
    attach: ignored('log attachment is a client-side option'),
    develop: ignored('development-only watch settings'),
    pull_policy: ignored('images are pulled when missing'),
    pull_refresh_after: ignored('images are pulled when missing'),
    platform: ignored('the engine pulls the image for its own platform'),
    stdin_open: ignored('no interactive attachment'),
    tty: ignored('no terminal attachment'),
    init: ignored('no init process is injected'),
    mac_address: ignored('addresses are engine-assigned'),
    cpu_count: ignored('CPU tuning; use deploy.resources.limits.cpus'),
    cpu_percent: ignored('CPU tuning; use deploy.resources.limits.cpus'),
    cpu_shares: ignored('CPU tuning; use deploy.resources.limits.cpus'),
    cpu_quota: ignored('CPU tuning; use deploy.resources.limits.cpus'),
    cpu_period: ignored('CPU tuning; use deploy.resources.limits.cpus'),
    cpu_rt_period: ignored('CPU tuning'),
    cpu_rt_runtime: ignored('CPU tuning'),
    cpuset: ignored('CPU pinning is node-specific'),
    mem_swappiness: ignored('memory tuning'),
    memswap_limit: ignored('memory tuning'),
    oom_kill_disable: ignored('memory tuning'),
    oom_score_adj: ignored('memory tuning'),
    pids_limit: ignored('resource tuning'),
    blkio_config: ignored('I/O tuning'),
    // would change behaviour if skipped
    security_opt: refused('security options would be dropped'),
    device_cgroup_rules: refused('device access rules would be dropped'),
    gpus: refused('the GPUs would be missing'),
    network_mode: refused('the container would run on the stack network instead'),
    ipc: refused('the IPC namespace would not be shared'),
    uts: refused('the UTS namespace would not be shared'),
    userns_mode: refused('the user namespace setting would be dropped'),
    cgroup: refused('the cgroup namespace setting would be dropped'),
    cgroup_parent: refused('the cgroup placement would be dropped'),
    secrets: yes('mounted on tmpfs at /run/secrets/NAME (or target), only where a replica runs'),
    configs: yes('mounted read-only at /NAME (or target)'),
    volumes_from: refused('the shared volumes would be missing'),
    extends: refused('the extended configuration would be left out'),
    profiles: refused('services in profiles would start unconditionally'),
    dns: refused('custom DNS servers would not be used'),
    dns_opt: refused('DNS options would be dropped'),
    dns_search: refused('DNS search domains would be dropped'),
    extra_hosts: refused('the extra host names would not resolve'),
    sysctls: refused('kernel parameters would not be set'),
    ulimits: refused('the ulimits would not be set'),
    shm_size: refused('/dev/shm would keep the engine default size'),
    group_add: refused('the extra groups would be missing'),
    storage_opt: refused('storage options would be dropped'),
    runtime: refused('the container would run under the default runtime'),
    isolation: refused('the isolation technology would be dropped'),
    credential_spec: refused('the credential spec would be dropped'),
    label_file: refused('label files are not read; use labels'),
    post_start: refused('lifecycle hooks would not run'),
    pre_stop: refused('lifecycle hooks would not run'),
    provider: refused('provider services are not containers'),
    models: refused('the models would be missing'),
    use_api_socket: refused('the engine API socket would be missing')
  }
}

export const DEPLOY: KeyTable = {
  where: 'services.*.deploy',
  schema: '/definitions/deployment',
  keys: {
    mode: yes('replicated or global (the job modes are refused)'),
    replicas: yes(),
    resources: yes(),
    restart_policy: yes(),
    placement: yes(),
    labels: ignored('service-level labels; use labels for container labels'),
    update_config: yes('how a new generation replaces replicas; Swarm\'s defaults for the keys left out'),
    rollback_config: yes('as update_config, for `p2p-orch rollback` and failure_action: rollback'),
    endpoint_mode: refused('the service is always reached through its virtual address')
  }
}

export const RESOURCES: KeyTable = {
  where: 'services.*.deploy.resources',
  schema: '/definitions/deployment/properties/resources',
  keys: { limits: yes(), reservations: yes('placement only picks nodes with room for them') }
}

export const LIMITS: KeyTable = {
  where: 'services.*.deploy.resources.limits',
  schema: '/definitions/deployment/properties/resources/properties/limits',
  keys: { cpus: yes(), memory: yes(), pids: ignored('the PID limit is not enforced') }
}

export const RESERVATIONS: KeyTable = {
  where: 'services.*.deploy.resources.reservations',
  schema: '/definitions/deployment/properties/resources/properties/reservations',
  keys: {
    cpus: yes(),
    memory: yes(),
    generic_resources: refused('the reserved resources would not be accounted for'),
    devices: refused('the reserved devices (e.g. GPUs) would be missing')
  }
}

export const RESTART_POLICY: KeyTable = {
  where: 'services.*.deploy.restart_policy',
  schema: '/definitions/deployment/properties/restart_policy',
  keys: { condition: yes('none, on-failure or any'), delay: yes(), max_attempts: yes(), window: yes() }
}

export const PLACEMENT: KeyTable = {
  where: 'services.*.deploy.placement',
  schema: '/definitions/deployment/properties/placement',
  keys: {
    constraints: yes('node.labels.KEY, node.name, node.hostname, node.id with == or !='),
    max_replicas_per_node: yes(),
    preferences: ignored('spread preferences are not applied')
  }
}

/** The keys of `update_config` (→ ServiceSpec.update) and `rollback_config` (→ ServiceSpec.rollback). */
const MAX_WAIT = `at most ${MAX_ROLLOUT_WAIT_MS / 3_600_000}h`
const rolloutKeys = (slots: string, failureActions: string): Record<string, Support> => ({
  parallelism: yes(`${slots} at once; 0 = all at once`),
  delay: yes(`wait between batches; ${MAX_WAIT}`),
  failure_action: yes(failureActions),
  monitor: yes(`how long each new replica must stay ready before the next batch, and within which a failure counts; ${MAX_WAIT}`),
  max_failure_ratio: yes('0 to 1: the failed fraction tolerated before failure_action'),
  order: yes('stop-first, or start-first (refused with a fixed host-mode port)')
})

export const UPDATE_CONFIG: KeyTable = {
  where: 'services.*.deploy.update_config',
  schema: '/definitions/deployment/properties/update_config',
  keys: rolloutKeys('slots updated', 'pause, continue or rollback')
}

export const ROLLBACK_CONFIG: KeyTable = {
  where: 'services.*.deploy.rollback_config',
  schema: '/definitions/deployment/properties/rollback_config',
  keys: rolloutKeys('slots rolled back', 'pause or continue (a rollback cannot roll back)')
}

/** Our own extension of `deploy:`: `x-p2p-orch: {canary: N}`. */
export const DEPLOY_EXTENSION: KeyTable = {
  where: 'services.*.deploy.x-p2p-orch',
  schema: '',
  keys: {
    canary: yes('1 or more (replicated services only): this many slots take the new generation first, then the rollout waits for `p2p-orch promote` (or `rollback`); equal to the replica count or more: blue-green')
  }
}

export const HEALTHCHECK: KeyTable = {
  where: 'services.*.healthcheck',
  schema: '/definitions/healthcheck',
  keys: {
    test: yes(),
    interval: yes(),
    timeout: yes(),
    retries: yes(),
    start_period: yes(),
    disable: yes(),
    start_interval: ignored('the interval is used during the start period too')
  }
}

export const PORT: KeyTable = {
  where: 'services.*.ports[] (long syntax)',
  schema: '/definitions/service/properties/ports/items/oneOf/2',
  keys: {
    target: yes(),
    published: yes('a single port; ranges are refused'),
    protocol: yes('tcp or udp'),
    mode: yes('ingress (every node) or host (where a replica runs)'),
    host_ip: yes('only 0.0.0.0 or ::; a specific address is refused'),
    name: ignored('metadata only'),
    app_protocol: ignored('metadata only')
  }
}

/** Our own extension of a long-syntax port: `x-p2p-orch: {proxy_protocol: true}`. */
export const PORT_EXTENSION: KeyTable = {
  where: 'services.*.ports[].x-p2p-orch',
  schema: '',
  keys: { proxy_protocol: yes('true or "v2": the routing mesh sends a PROXY protocol v2 header first') }
}

export const MOUNT: KeyTable = {
  where: 'services.*.volumes[] (long syntax)',
  schema: '/definitions/service/properties/volumes/items/oneOf/1',
  keys: {
    type: yes('volume, bind or tmpfs (cluster, npipe and image are refused)'),
    source: yes(),
    target: yes(),
    read_only: yes(),
    bind: yes(),
    volume: yes(),
    tmpfs: yes(),
    consistency: ignored('platform-specific hint'),
    image: refused('image mounts are not supported')
  }
}

export const MOUNT_BIND: KeyTable = {
  where: 'services.*.volumes[].bind',
  schema: '/definitions/service/properties/volumes/items/oneOf/1/properties/bind',
  keys: {
    propagation: ignored('mounts use the default propagation'),
    create_host_path: ignored('the engine default applies'),
    selinux: ignored('no SELinux relabelling'),
    recursive: ignored('the engine default applies')
  }
}

export const MOUNT_VOLUME: KeyTable = {
  where: 'services.*.volumes[].volume',
  schema: '/definitions/service/properties/volumes/items/oneOf/1/properties/volume',
  keys: {
    nocopy: ignored('the image content is copied into a new volume'),
    labels: ignored('volume labels are not set'),
    subpath: refused('the whole volume would be mounted instead of the sub-path')
  }
}

export const MOUNT_TMPFS: KeyTable = {
  where: 'services.*.volumes[].tmpfs',
  schema: '/definitions/service/properties/volumes/items/oneOf/1/properties/tmpfs',
  keys: {
    size: ignored('the tmpfs is not size-limited'),
    mode: ignored('the tmpfs keeps the default mode')
  }
}

export const VOLUME: KeyTable = {
  where: 'volumes.*',
  schema: '/definitions/volume',
  keys: {
    name: yes('the engine name, used as is'),
    external: yes('the volume is used as is, not prefixed with the stack'),
    driver: yes('local only; other drivers are refused'),
    labels: ignored('volume labels are not set'),
    driver_opts: refused('the volume would be created without its driver options')
  }
}

export const VOLUME_EXTERNAL: KeyTable = {
  where: 'volumes.*.external',
  schema: '/definitions/volume/properties/external',
  keys: { name: yes('deprecated; the engine name') }
}

export const SECRET: KeyTable = {
  where: 'secrets.*',
  schema: '/definitions/secret',
  keys: {
    name: yes('the cluster secret\'s name, used as is'),
    file: yes('read by the CLI, relative to the Compose file; created if the secret does not exist'),
    environment: yes('the value of this variable in the CLI\'s environment'),
    external: yes('created beforehand with `p2p-orch secret create`; `external: {name: N}` (deprecated) names it'),
    labels: ignored('secret labels are not kept'),
    driver: refused('only the built-in encrypted store holds secrets'),
    driver_opts: refused('only the built-in encrypted store holds secrets'),
    template_driver: refused('secrets are not templated')
  }
}

export const CONFIG: KeyTable = {
  where: 'configs.*',
  schema: '/definitions/config',
  keys: {
    name: yes('the cluster config\'s name, used as is'),
    file: yes('as secrets'),
    content: yes('the config\'s text, inline'),
    environment: yes('as secrets'),
    external: yes('created beforehand with `p2p-orch config create`'),
    labels: ignored('config labels are not kept'),
    template_driver: refused('configs are not templated')
  }
}

/** Not in TABLES: the schema leaves this mapping open, so checkKeys' unknown-key error is what guards it. */
export const FILE_EXTERNAL: KeyTable = {
  where: 'secrets.*.external, configs.*.external',
  schema: '/definitions/secret/properties/external',
  keys: { name: yes('deprecated; the cluster name') }
}

export const FILE_REF: KeyTable = {
  where: 'services.*.secrets[], services.*.configs[] (long syntax)',
  schema: '/definitions/service_config_or_secret/items/oneOf/1',
  keys: {
    source: yes(),
    target: yes('a file name under /run/secrets, or an absolute path'),
    uid: yes(),
    gid: yes(),
    mode: yes('octal, e.g. 0400')
  }
}

export const ENV_FILE: KeyTable = {
  where: 'services.*.env_file[]',
  schema: '/definitions/env_file/oneOf/1/items/oneOf/1',
  keys: {
    path: yes(),
    required: yes(),
    format: refused('only the default env file format is read')
  }
}

export const DEVICE: KeyTable = {
  where: 'services.*.devices[] (long syntax)',
  schema: '/definitions/service/properties/devices/items/oneOf/1',
  keys: {
    source: yes(),
    target: yes('default: the source path'),
    permissions: yes('some of r, w, m; default rwm')
  }
}

/** Every table, in the matrix's order. */
export const TABLES: readonly KeyTable[] = [
  TOP, SERVICE, DEPLOY, RESOURCES, LIMITS, RESERVATIONS, RESTART_POLICY, PLACEMENT, UPDATE_CONFIG, ROLLBACK_CONFIG,
  DEPLOY_EXTENSION, HEALTHCHECK, PORT, PORT_EXTENSION, MOUNT, MOUNT_BIND, MOUNT_VOLUME, MOUNT_TMPFS, VOLUME,
  VOLUME_EXTERNAL, ENV_FILE, DEVICE, SECRET, CONFIG, FILE_REF
]

/**
 * Reports a mapping's ignored and refused keys (per its table), and keys the table does not know
 * (only reachable inside our own `x-p2p-orch` extension: the schema refuses unknown keys first).
 * `x-*` keys pass, and so do `reportedByCaller` (keys whose class depends on the rest of the mapping).
 */
export function checkKeys (ctx: Ctx, o: Obj, path: Path, table: KeyTable, reportedByCaller: readonly string[] = []): void {
  for (const k of Object.keys(o)) {
    if (k.startsWith('x-') || reportedByCaller.includes(k)) continue
    const rule = Object.hasOwn(table.keys, k) ? table.keys[k] : undefined
    if (rule === undefined) err(ctx, [...path, k], 'unknown key', 'key')
    else if (rule.status === 'ignored') report(ctx, 'warning', [...path, k], `ignored: not supported yet (${rule.reason})`, 'key')
    else if (rule.status === 'refused') err(ctx, [...path, k], `not supported yet: ${rule.reason}`, 'key')
  }
}

/** The matrix as Markdown (README.md's "Compose support" section is this text). */
export function supportMatrix (): string {
  const lines: string[] = []
  const cell = (s: string): string => s.replace(/\|/g, '\\|')
  for (const t of TABLES) {
    lines.push(`**\`${t.where}\`**`, '', '| key | support | notes |', '| --- | --- | --- |')
    const order = { supported: 0, ignored: 1, refused: 2 }
    const keys = Object.keys(t.keys).sort((a, b) => order[t.keys[a].status] - order[t.keys[b].status] || (a < b ? -1 : a > b ? 1 : 0))
    for (const k of keys) {
      const s = t.keys[k]
      const note = s.status === 'supported' ? (s.note ?? '') : s.reason
      lines.push(`| \`${k}\` | ${s.status === 'supported' ? 'supported' : s.status === 'ignored' ? 'ignored (warning)' : 'refused (error)'} | ${cell(note)} |`)
    }
    lines.push('')
  }
  return lines.join('\n')
}
