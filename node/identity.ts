/**
 * The node's identity and cluster membership credentials, kept in its data directory:
 *
 *   node.key      libp2p Ed25519 private key (protobuf) — the node's peer id; never regenerated
 *   cluster.json  cluster id, network key, trusted (founding) operator, seeds
 *
 * The node holds no operator private key: the CLI signs desired-state writes with the user's
 * credential. A start that creates a cluster returns the founding admin credential (and a join
 * token that carries one returns that) for createNode to put in the user's credentials file.
 * `operator.key` (PKCS#8 PEM), where older versions kept the founding key, is read only to move it
 * there.
 *
 * A corrupt file is an error, never a reason to silently become a new node.
 */
import { randomBytes, randomUUID } from 'node:crypto'
import { existsSync } from 'node:fs'
import { chmod, mkdir, readFile, writeFile, rename } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair, generateKeyPairFromSeed, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { credentialSigner, decodeCredential, generateCredential, type Credential } from '../protocol/credential.ts'
import { FOUNDER_KEY_NAME } from '../protocol/keys.ts'
import { seedFromPem } from '../protocol/sign.ts'
import { decodeToken, NETWORK_KEY_BYTES, TokenError, type JoinToken } from '../protocol/token.ts'
import { DataDirError, UserError } from './errors.ts'

export interface ClusterConfig {
  clusterId: string
  networkKey: Uint8Array
  operator: string
  seeds: string[]
}

export interface Identity {
  privateKey: PrivateKey
  cluster: ClusterConfig
  /**
   * An admin credential this start brought, to be put in the user's credentials file: the
   * founding key of a cluster just created, one a join token carried, or a legacy operator.key.
   * Never written to the data directory.
   */
  admin: Credential | null
  /** true if `admin` came from a legacy operator.key file */
  legacyOperatorKey: boolean
  /** true if this start created a brand-new cluster */
  created: boolean
}

export const FILES = {
  nodeKey: 'node.key',
  cluster: 'cluster.json',
  operatorKey: 'operator.key',
  socket: 'control.sock',
  apiToken: 'api.token',
  sealKey: 'seal.key',
  /** the TCP control API's TLS key (PKCS#8 PEM, 0600) and self-signed certificate (api-access.ts) */
  apiKey: 'api.key',
  apiCert: 'api.crt',
  db: 'state'
} as const

export async function writeFileAtomic (path: string, data: string | Uint8Array, mode: number): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`
  await writeFile(tmp, data, { mode })
  await chmod(tmp, mode)
  await rename(tmp, path)
}

async function loadNodeKey (dir: string): Promise<PrivateKey> {
  const path = join(dir, FILES.nodeKey)
  if (!existsSync(path) && existsSync(join(dir, FILES.cluster))) {
    throw new DataDirError(`${path} is missing but ${dir} already belongs to a cluster; refusing to start with a new identity — restore node.key or use a fresh --data directory`)
  }
  if (!existsSync(path)) {
    const key = await generateKeyPair('Ed25519')
    await writeFileAtomic(path, privateKeyToProtobuf(key), 0o600)
    return key
  }
  try {
    const key = privateKeyFromProtobuf(await readFile(path))
    if (key.type !== 'Ed25519') throw new Error(`unexpected key type ${key.type}`)
    // libp2p does not check that the stored public half matches the private half; a flipped bit
    // would silently change the peer id or make every signature invalid.
    const derived = await generateKeyPairFromSeed('Ed25519', key.raw.subarray(0, 32))
    if (!derived.publicKey.equals(key.publicKey)) throw new Error('public and private halves do not match')
    return key
  } catch (err) {
    throw new DataDirError(`${path} is corrupt (${(err as Error).message}); refusing to start with a new identity — restore the file or use a fresh --data directory`)
  }
}

function parseClusterJson (path: string, text: string): ClusterConfig {
  try {
    const j = JSON.parse(text)
    const networkKey = Buffer.from(j.networkKey, 'hex')
    if (typeof j.clusterId !== 'string' || networkKey.length !== NETWORK_KEY_BYTES || typeof j.operator !== 'string' || !Array.isArray(j.seeds)) throw new Error('missing fields')
    return { clusterId: j.clusterId, networkKey: new Uint8Array(networkKey), operator: j.operator, seeds: j.seeds }
  } catch (err) {
    throw new DataDirError(`${path} is corrupt (${(err as Error).message}); restore it or use a fresh --data directory`)
  }
}

async function saveCluster (dir: string, c: ClusterConfig): Promise<void> {
  const text = JSON.stringify({ clusterId: c.clusterId, networkKey: Buffer.from(c.networkKey).toString('hex'), operator: c.operator, seeds: c.seeds }, null, 2)
  await writeFileAtomic(join(dir, FILES.cluster), text + '\n', 0o600)
}

/**
 * Load the identity from `dir`, creating what is missing: a new cluster when there is neither a
 * cluster.json nor a token, or the token's cluster when joining.
 */
export async function loadIdentity (dir: string, joinToken: string | undefined, extraSeeds: string[]): Promise<Identity> {
  // a bad token is refused before anything touches the disk
  const token: JoinToken | undefined = joinToken === undefined ? undefined : decodeToken(joinToken)
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const privateKey = await loadNodeKey(dir)
  const clusterPath = join(dir, FILES.cluster)
  const operatorPath = join(dir, FILES.operatorKey)
  let created = false
  let cluster: ClusterConfig
  let admin: Credential | null = null

  if (existsSync(clusterPath)) {
    cluster = parseClusterJson(clusterPath, await readFile(clusterPath, 'utf8'))
    if (token !== undefined && token.clusterId !== cluster.clusterId) {
      throw new DataDirError(`${dir} belongs to cluster ${cluster.clusterId}, but the join token is for cluster ${token.clusterId}; use a fresh --data directory to join another cluster`)
    }
  } else if (token !== undefined) {
    cluster = { clusterId: token.clusterId, networkKey: token.networkKey, operator: token.operator, seeds: token.seeds }
  } else {
    const clusterId = randomUUID()
    admin = generateCredential(clusterId, FOUNDER_KEY_NAME)
    cluster = { clusterId, networkKey: new Uint8Array(randomBytes(NETWORK_KEY_BYTES)), operator: credentialSigner(admin).id, seeds: [] }
    created = true
  }
  if (token !== undefined && admin === null) admin = tokenCredential(token)
  if (admin !== null && admin.name === FOUNDER_KEY_NAME && credentialSigner(admin).id !== cluster.operator) {
    throw new TokenError('the join token carries an admin key that is not this cluster\'s founding key')
  }
  const seeds = [...new Set([...cluster.seeds, ...(token?.seeds ?? []), ...extraSeeds])]
  cluster = { ...cluster, seeds }
  await saveCluster(dir, cluster)

  let legacyOperatorKey = false
  if (admin === null && existsSync(operatorPath)) {
    try {
      admin = { clusterId: cluster.clusterId, name: FOUNDER_KEY_NAME, seed: seedFromPem(await readFile(operatorPath, 'utf8')) }
    } catch (err) {
      throw new DataDirError(`${operatorPath} is not a valid operator key (${(err as Error).message})`)
    }
    if (credentialSigner(admin).id !== cluster.operator) throw new UserError(`${operatorPath} is not this cluster's operator key`)
    legacyOperatorKey = true
  }
  return { privateKey, cluster, admin, legacyOperatorKey, created }
}

/** The admin credential a join token carries (`join-token --with-admin-key`, or an older full token's PEM). */
function tokenCredential (token: JoinToken): Credential | null {
  try {
    if (token.credential !== undefined) {
      const c = decodeCredential(token.credential)
      if (c.clusterId !== token.clusterId) throw new Error('it is for another cluster')
      return c
    }
    if (token.operatorKey !== undefined) return { clusterId: token.clusterId, name: FOUNDER_KEY_NAME, seed: seedFromPem(token.operatorKey) }
  } catch (err) {
    throw new TokenError(`the join token's admin key is unusable (${(err as Error).message})`)
  }
  return null
}

/**
 * The node's X25519 private key (32 raw bytes, 0600) that secrets' data keys are sealed to
 * (protocol/secrets.ts). Created on first start; a corrupt one is replaced by a new one, which only
 * means the node is sent its secrets' keys again (its public half is in its node/ record).
 */
export async function loadSealKey (dir: string): Promise<Uint8Array> {
  const path = join(dir, FILES.sealKey)
  if (existsSync(path)) {
    const raw = new Uint8Array(await readFile(path))
    if (raw.length === 32) return raw
  }
  const raw = new Uint8Array(randomBytes(32))
  await writeFileAtomic(path, raw, 0o600)
  return raw
}
