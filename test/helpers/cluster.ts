/**
 * In-process test helpers: signers with real keys, deadline-bounded polling, temp dirs, and a
 * small harness that starts p2p-orch nodes over real libp2p TCP on 127.0.0.1.
 */
import { generateKeyPairSync } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { credentialSigner } from '../../protocol/credential.ts'
import { operatorSignerFromPem, signerFromRaw, type Signer } from '../../protocol/sign.ts'
import { silentLogger } from '../../node/logger.ts'
import { createNode, type NodeOptions, type P2pNode } from '../../node/node.ts'
import { PROFILES } from '../../node/profiles.ts'

// ---- keys ---------------------------------------------------------------------------------

/** A node signer: writer id is the libp2p peer id of a fresh Ed25519 key. */
export async function makeNodeSigner (): Promise<Signer> {
  const key = await generateKeyPair('Ed25519')
  return signerFromRaw(peerIdFromPrivateKey(key).toString(), key.raw)
}

/** An operator signer (`op:<hex>`) with its PEM, as in operator.key. */
export function makeOperatorSigner (): Signer & { pem: string } {
  const { privateKey } = generateKeyPairSync('ed25519')
  const pem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString()
  return Object.assign(operatorSignerFromPem(pem), { pem })
}

// ---- polling ------------------------------------------------------------------------------

export const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

/**
 * Poll `cond` until it holds or `timeoutMs` passes. On timeout the error carries `describe()`,
 * which should say what the state was, so a failure explains itself.
 */
export async function waitFor (
  cond: () => boolean | Promise<boolean>,
  timeoutMs: number,
  describe: string | (() => string) = 'condition',
  intervalMs = 25
): Promise<number> {
  const start = Date.now()
  const deadline = start + timeoutMs
  for (;;) {
    if (await cond()) return Date.now() - start
    if (Date.now() >= deadline) {
      const what = typeof describe === 'string' ? describe : describe()
      throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`)
    }
    await sleep(intervalMs)
  }
}

/** Hold `cond` true for `ms` (checked every `intervalMs`); fails as soon as it is false. */
export async function holdsFor (cond: () => boolean, ms: number, describe: string | (() => string), intervalMs = 50): Promise<void> {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    if (!cond()) throw new Error(`no longer holds: ${typeof describe === 'string' ? describe : describe()}`)
    await sleep(intervalMs)
  }
  if (!cond()) throw new Error(`no longer holds: ${typeof describe === 'string' ? describe : describe()}`)
}

// ---- temp dirs ----------------------------------------------------------------------------

export class TempDirs {
  private readonly dirs: string[] = []

  /** A fresh directory under `base` (default the system's temp dir; '/dev/shm' for a tmpfs one). */
  async make (prefix = 'p2p-orch-test-', base = tmpdir()): Promise<string> {
    const dir = await mkdtemp(join(base, prefix))
    this.dirs.push(dir)
    return dir
  }

  async cleanup (): Promise<void> {
    await Promise.all(this.dirs.splice(0).map(async (d) => { await rm(d, { recursive: true, force: true }) }))
  }
}

export const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

// ---- nodes --------------------------------------------------------------------------------

export const LOOPBACK_LISTEN = ['/ip4/127.0.0.1/tcp/0']

export interface StartOptions {
  dataDir: string
  join?: string
  seeds?: string[]
  name?: string
}

/** The founding admin signer of each cluster a test created, by cluster id (tests write no credentials file). */
const admins = new Map<string, Signer>()

/** Remember the admin credential a node's start brought (the founding key of a new cluster). */
export function registerAdmin (n: P2pNode): P2pNode {
  if (n.identity.admin !== null) admins.set(n.identity.cluster.clusterId, credentialSigner(n.identity.admin))
  return n
}

/** The node's own key (what it signs its observed records with): for tests that play a misbehaving node. */
export function signerOfNode (n: P2pNode): Signer {
  return signerFromRaw(n.id, n.identity.privateKey.raw)
}

/** The founding admin key of `n`'s cluster: what a user's CLI signs with. */
export function adminSigner (n: P2pNode): Signer {
  const s = admins.get(n.identity.cluster.clusterId)
  if (s === undefined) throw new Error(`no admin credential known for the cluster of ${n.name}`)
  return s
}

/** Start a node the way the integration tests want it: loopback, local profile, silent, no control socket, no credentials file. */
export async function startNode (o: StartOptions): Promise<P2pNode> {
  const opts: NodeOptions = {
    dataDir: o.dataDir,
    listen: LOOPBACK_LISTEN,
    profile: PROFILES.local,
    logger: silentLogger(),
    control: false,
    credentialsFile: false,
    ...(o.join !== undefined ? { join: o.join } : {}),
    ...(o.seeds !== undefined ? { seeds: o.seeds } : {}),
    ...(o.name !== undefined ? { name: o.name } : {})
  }
  return registerAdmin(await createNode(opts))
}

/** Ids of members `node` currently sees with `status`. */
export function membersWith (node: P2pNode, status: string): string[] {
  return node.membership.members().filter((m) => m.status === status).map((m) => m.id).sort()
}

export function rootHex (node: P2pNode): string {
  return hex(node.states.state.rootHash())
}

/** Every node sees exactly `ids` as alive (and nothing else alive) and all hold the same root hash. */
export function converged (nodes: P2pNode[], ids: string[]): boolean {
  const want = [...ids].sort().join(',')
  const root = rootHex(nodes[0])
  return nodes.every((n) => membersWith(n, 'alive').join(',') === want && rootHex(n) === root)
}

/** One line per node: alive count, statuses, root hash prefix — for timeout messages. */
export function describeCluster (nodes: P2pNode[]): string {
  return nodes.map((n) => {
    const ms = n.membership.members().map((m) => `${m.id.slice(-6)}:${m.status}@${m.incarnation}`).join(' ')
    return `${n.name}(${n.id.slice(-6)}) root=${rootHex(n).slice(0, 8)} peers=${n.host.getPeers().length} [${ms}]`
  }).join('\n  ')
}

/** Stop nodes, ignoring errors from ones already (partly) stopped. */
export async function stopAll (nodes: Iterable<P2pNode>): Promise<void> {
  await Promise.all([...nodes].map(async (n) => { await n.stop().catch(() => {}) }))
}
