/**
 * createNode(): wires one p2p-orch node, in this order —
 *   identity (data dir) → store → state → libp2p host → gossip → anti-entropy → membership
 *   → dialer → node info → reconciler (when a runtime is given) → control API.
 * stop() undoes it in reverse, announcing `left` first so peers don't wait for a timeout.
 */
import { cpus, hostname, totalmem } from 'node:os'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { PeerId } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { key, type NodeInfo } from '../protocol/keys.ts'
import { NO_HOST_ACCESS, type HostAccess } from '../protocol/host-access.ts'
import { signerFromRaw } from '../protocol/sign.ts'
import { decodeToken, encodeToken } from '../protocol/token.ts'
import { ControlServer } from './control.ts'
import { AdmissionGate, admitSelf } from './admission.ts'
import { Dialer } from './dialer.ts'
import { Gossip, topicFor } from './gossip.ts'
import { createHost, startHost, type Host } from './host.ts'
import { addCredential, userCredentialsPath } from './api/credentials.ts'
import { FILES, loadSealKey, loadIdentity, type Identity } from './identity.ts'
import { ApiAccess, registerApiTokenRoutes } from './api-access.ts'
import { UserError } from './errors.ts'
import { createLogger, type Logger } from './logger.ts'
import { Membership } from './membership.ts'
import { Counters } from './metrics.ts'
import type { Profile } from './profiles.ts'
import { PROFILES } from './profiles.ts'
import type { Runtime } from './runtime/types.ts'
import { StateManager } from './state-manager.ts'
import { LevelStore, type Store } from './store.ts'
import { AntiEntropy } from './sync.ts'
import { Reconciler } from './reconciler.ts'
import { RolloutRecorder } from './rollouts.ts'
import { registerRolloutRoutes } from './routes-rollouts.ts'
import { Mesh } from './mesh/mesh.ts'
import { registerClusterRoutes } from './routes-cluster.ts'
import { registerServiceRoutes } from './routes-services.ts'
import { registerSecretRoutes } from './routes-secrets.ts'
import { registerNetworkKeyRoutes } from './routes-network-keys.ts'
import { loadKeyring, NetworkKeys } from './network-keys.ts'
import type { NetworkKeyring } from './network-keyring.ts'
import { SecretKeeper } from './secret-keeper.ts'
import { SecretFiles } from './secret-files.ts'
import { ReplicaFiles } from './replica-files.ts'

import { VERSION } from './version.ts'
export { VERSION }
/** Published ports open on every interface unless `--ingress-host` says where (Swarm's default too). */
const DEFAULT_INGRESS_HOST = '0.0.0.0'
/**
 * Where replicas' secret files go unless --secrets-dir says otherwise (one directory per node id
 * under it): /dev/shm is a tmpfs on Linux, so the plain values never reach a disk.
 */
export const DEFAULT_SECRETS_ROOT = '/dev/shm/p2p-orch'
/** Time given to gossip to carry the `left` announcement before the host shuts down. */
const LEAVE_GRACE_MS = 300

/**
 * The IP published ports bind to: the node's own listen IP when it has a specific one (several
 * nodes on one machine, each on its 127.0.0.N), else all interfaces.
 */
export function hostIpOf (listen: string[]): string | undefined {
  for (const l of listen) {
    const m = /^\/ip4\/([0-9.]+)\//.exec(l)
    if (m !== null && m[1] !== '0.0.0.0') return m[1]
  }
  return undefined
}

export interface NodeOptions {
  dataDir: string
  listen: string[]
  join?: string
  seeds?: string[]
  name?: string
  labels?: Record<string, string>
  profile?: Profile
  runtime?: Runtime
  logger?: Logger
  store?: Store
  now?: () => number
  /** serve the control API on <data>/control.sock (default true) */
  control?: boolean
  /** also serve the control API on TCP host:port: HTTPS with a self-signed certificate, the bearer token in <data>/api.token (api-access.ts) */
  apiListen?: string
  /** where the routing mesh opens published ports (default all interfaces) */
  ingressHost?: string
  /** give containers the node network and service-name resolver (default: when there is a runtime) */
  discovery?: boolean
  /** host paths and privileged settings this node's operator allows specs (default: none; protocol/host-access.ts) */
  hostAccess?: HostAccess
  /** tmpfs directory for replicas' secret and config files (default DEFAULT_SECRETS_ROOT/<node id>) */
  secretsDir?: string
  /**
   * where an admin credential this start brings (a new cluster's founding key, one a join token
   * carried) is put: default the user's credentials file (node/api/credentials.ts); false: nowhere
   */
  credentialsFile?: string | false
}

/** An admin credential this start put in the user's credentials file. */
export interface InstalledCredential {
  path: string
  name: string
  /** false when the file already had an entry for this cluster (nothing was written) */
  added: boolean
}

export interface P2pNode {
  readonly id: string
  readonly name: string
  readonly host: Host
  readonly states: StateManager
  readonly membership: Membership
  readonly sync: AntiEntropy
  readonly identity: Identity
  readonly counters: Counters
  readonly logger: Logger
  readonly socketPath: string
  readonly mesh: Mesh
  /** this node's secret keys: which it holds, and sealing them to the nodes that run them */
  readonly secrets: SecretKeeper
  /** the network keys this node accepts and the one it dials with (rotation: network-keys.ts) */
  readonly keyring: NetworkKeyring
  readonly networkKeys: NetworkKeys
  /** where this start put an admin credential, if it brought one */
  readonly credential: InstalledCredential | null
  /** a join token: cluster id, network key, seeds, founding operator's public key; no private key */
  /**
   * The cluster's token without admission (GET /join-token: the CLI adds an admitter key it mints
   * with its credential); `withFirstAdmission`: with the first admitter key, which only the start
   * that created the cluster holds (printed once by the agent, used by in-process tests).
   */
  joinToken (withFirstAdmission?: boolean): string
  stop (): Promise<void>
}

export async function createNode (opts: NodeOptions): Promise<P2pNode> {
  const profile = opts.profile ?? PROFILES.lan
  const now = opts.now ?? Date.now
  // Take the data directory's lock (the store) before writing anything in it: a second agent on
  // the same directory must not touch the identity files. A bad token fails before both.
  const token = opts.join !== undefined ? decodeToken(opts.join) : undefined
  await mkdir(opts.dataDir, { recursive: true, mode: 0o700 })
  const store = opts.store ?? new LevelStore(join(opts.dataDir, FILES.db))
  await store.open()
  let identity: Identity
  try {
    identity = await loadIdentity(opts.dataDir, opts.join, opts.seeds ?? [])
  } catch (err) {
    await store.close()
    throw err
  }
  const peerId: PeerId = peerIdFromPrivateKey(identity.privateKey)
  const id = peerId.toString()
  const name = opts.name ?? hostname()
  const logger = opts.logger ?? createLogger(name)
  const counters = new Counters()

  // The node keeps no operator private key: an admin credential this start brought goes to the
  // user's credentials file, where the CLI finds it.
  let credential: InstalledCredential | null = null
  if (identity.admin !== null && opts.credentialsFile !== false) {
    const path = opts.credentialsFile ?? userCredentialsPath()
    try {
      credential = { path, name: identity.admin.name, added: await addCredential(path, identity.admin) }
    } catch (err) {
      await store.close()
      throw new UserError(`cannot put the admin credential in ${path}: ${(err as Error).message}`)
    }
  }

  const trust = { operators: new Set([identity.cluster.operator]) }
  const states = new StateManager({ clusterId: identity.cluster.clusterId, trust, store, logger, counters, now })
  await states.load()

  // admitted before anything else is written: our own records count only once we are
  const firstAdmission = admitSelf({ states, self: id, created: identity.created, admin: identity.admin, token, logger })
  const gate = new AdmissionGate({ states, logger, counters, graceMs: profile.admissionGraceMs })
  let keyring
  try {
    keyring = await loadKeyring(opts.dataDir, identity.cluster.networkKey)
  } catch (err) {
    await store.close()
    throw err
  }
  const host = await createHost({ privateKey: identity.privateKey, networkKey: keyring, listen: opts.listen, denyPeer: (p) => gate.deny(p), topic: topicFor(identity.cluster.clusterId) })
  const nodeSigner = signerFromRaw(id, identity.privateKey.raw)
  const gossip = new Gossip(host, states, logger, counters)
  const sync = new AntiEntropy(host, states, logger, counters)
  const membership = new Membership({ host, states, signer: nodeSigner, profile, logger, counters, store })

  try {
    await startHost(host, opts.listen)
  } catch (err) {
    await store.close()
    throw err
  }
  gate.start(host)
  gossip.start()
  await sync.start()
  await membership.start()

  const joinedAt = (await store.getMeta<number>('joinedAt')) ?? now()
  await store.putMeta('joinedAt', joinedAt)
  // what the node offers to placement: the engine's view when it runs containers
  const resources = opts.runtime !== undefined ? await opts.runtime.resources() : { cpus: cpus().length, memoryBytes: totalmem() }
  const info: NodeInfo = {
    name,
    addrs: host.getMultiaddrs().map(String),
    labels: opts.labels ?? {},
    cpus: resources.cpus,
    memoryBytes: resources.memoryBytes,
    version: VERSION,
    startedAt: now(),
    joinedAt
  }
  // published only when something is allowed, so nodes without the flags keep their records as before
  const hostAccess = opts.hostAccess ?? NO_HOST_ACCESS
  if (hostAccess.paths.length > 0 || hostAccess.privileged) info.hostAccess = hostAccess
  const sealPrivate = await loadSealKey(opts.dataDir)
  const secrets = new SecretKeeper({ states, self: id, clusterId: identity.cluster.clusterId, sealPrivate, signer: nodeSigner, logger, counters, now })
  info.sealKey = secrets.sealKey
  // the node record says which network keys this node accepts (rotation waits for every node)
  const publishInfo = (): void => { states.write(key.node(id), { ...info, netKeys: keyring.ids() }, nodeSigner) }
  publishInfo()
  secrets.start()
  const networkKeys = new NetworkKeys({ dataDir: opts.dataDir, host, states, self: id, clusterId: identity.cluster.clusterId, keyring, sealPrivate, signer: nodeSigner, logger, counters, publish: publishInfo, now })
  networkKeys.start()

  // Repair on (re)connect: whatever we missed while apart comes over in one exchange.
  const onConnect = (evt: CustomEvent<PeerId>): void => { void sync.syncWith(evt.detail) }
  host.addEventListener('peer:connect', onConnect)
  // Connection churn is the main idle cost (handshakes, identify): worth seeing in metrics.
  const onConnOpen = (): void => { counters.inc('connections_opened_total') }
  const onConnClose = (): void => { counters.inc('connections_closed_total') }
  host.addEventListener('connection:open', onConnOpen)
  host.addEventListener('connection:close', onConnClose)
  const antiEntropyTimer = setInterval(() => {
    const peers = host.getPeers()
    if (peers.length > 0) void sync.syncWith(peers[Math.floor(Math.random() * peers.length)])
  }, profile.antiEntropyIntervalMs)
  antiEntropyTimer.unref()

  const dialer = new Dialer({ host, states, membership, seeds: identity.cluster.seeds, logger, intervalMs: profile.redialIntervalMs })
  dialer.start()

  const mesh = new Mesh({
    self: id,
    host,
    states,
    signer: nodeSigner,
    ...(opts.runtime !== undefined ? { runtime: opts.runtime } : {}),
    logger,
    counters,
    ingressHost: opts.ingressHost ?? DEFAULT_INGRESS_HOST,
    ...(opts.discovery !== undefined ? { discovery: opts.discovery } : {})
  })
  await mesh.start()

  let reconciler: Reconciler | undefined
  if (opts.runtime !== undefined) {
    reconciler = new Reconciler({
      states,
      runtime: opts.runtime,
      self: id,
      signer: nodeSigner,
      profile,
      logger,
      counters,
      hostIp: hostIpOf(opts.listen),
      containerNetwork: () => mesh.containerNetwork(),
      beforeStop: async (container, graceMs) => { await mesh.drain(container, graceMs) },
      hostAccess,
      files: new ReplicaFiles(states, secrets, new SecretFiles(opts.secretsDir ?? join(DEFAULT_SECRETS_ROOT, id), logger))
    })
    reconciler.start()
  }
  const rollouts = new RolloutRecorder({ states, self: id, signer: nodeSigner, logger, counters, now })
  rollouts.start()

  const ownAddrs = info.addrs
  const node: P2pNode = {
    id,
    name,
    host,
    states,
    membership,
    sync,
    identity,
    counters,
    logger,
    socketPath: join(opts.dataDir, FILES.socket),
    mesh,
    secrets,
    keyring,
    networkKeys,
    credential,
    joinToken: (withFirstAdmission = false) => encodeToken({
      clusterId: identity.cluster.clusterId,
      // the key nodes dial with now: a token made after a rotation carries the new one
      networkKey: keyring.primary,
      seeds: [...new Set([...ownAddrs, ...identity.cluster.seeds])],
      operator: identity.cluster.operator,
      // the start that created the cluster holds its first admitter key (printed once)
      ...(withFirstAdmission && firstAdmission !== null ? { admission: firstAdmission } : {})
    }),
    stop: async () => {}
  }

  const control = new ControlServer(logger)
  registerClusterRoutes(control, node)
  registerServiceRoutes(control, node, opts.runtime)
  registerRolloutRoutes(control, node)
  registerSecretRoutes(control, node)
  registerNetworkKeyRoutes(control, node, keyring, networkKeys)
  let apiAccess: ApiAccess | null = null
  if (opts.apiListen !== undefined) {
    const m = /^(.+):(\d+)$/.exec(opts.apiListen)
    if (m === null) throw new UserError(`--api-listen must be HOST:PORT, got "${opts.apiListen}"`)
    const loaded = await ApiAccess.load({ dir: opts.dataDir, url: `https://${opts.apiListen}`, subject: `p2p-orch control API ${name}`, onRotate: () => { control.dropTcpConnections() } })
    const access = loaded.access
    apiAccess = access
    if (loaded.replaced) logger.warn(`${join(opts.dataDir, FILES.apiToken)} held an older version's plain-HTTP token: replaced by a new one`)
    await control.listenTcp(m[1].replace(/^\[(.*)\]$/, '$1'), Number(m[2]), { keyPem: apiAccess.cert.keyPem, certPem: apiAccess.cert.certPem, secret: () => access.secret() })
  }
  registerApiTokenRoutes(control, apiAccess)
  if (opts.control !== false) await control.listen(node.socketPath)
  if (apiAccess !== null) {
    // how to connect, never the token itself: it stays in the 0600 file
    logger.info({ api: apiAccess.url, pin: apiAccess.cert.pin }, `control API on ${apiAccess.url} (HTTPS, certificate sha256 ${apiAccess.cert.pin}); remote CLIs: P2P_ORCH_API_TOKEN=<content of ${join(opts.dataDir, FILES.apiToken)}> p2p-orch --api ${apiAccess.url} … (\`p2p-orch api-token\` prints it, --rotate replaces it)`)
  }

  let stopped = false
  node.stop = async () => {
    if (stopped) return
    stopped = true
    await control.close()
    await reconciler?.stop()
    rollouts.stop()
    secrets.stop()
    await networkKeys.stop()
    await mesh.stop()
    await membership.leave()
    await new Promise((resolve) => setTimeout(resolve, LEAVE_GRACE_MS))
    clearInterval(antiEntropyTimer)
    host.removeEventListener('peer:connect', onConnect)
    gate.stop()
    host.removeEventListener('connection:open', onConnOpen)
    host.removeEventListener('connection:close', onConnClose)
    dialer.stop()
    await membership.stop()
    gossip.stop()
    await sync.stop()
    await host.stop()
    await store.close()
  }
  logger.info({ id, addrs: info.addrs, cluster: identity.cluster.clusterId }, 'node started')
  return node
}
