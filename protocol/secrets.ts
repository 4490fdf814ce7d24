/**
 * Secrets and configs in the replicated state, and the sealing that keeps a secret's value away
 * from the nodes that do not run it. Pure: node:crypto is used as a function library, and every
 * random input (data key, nonces, ephemeral keys) is a parameter.
 *
 * Envelope encryption, so that the desired state may go everywhere while the value does not:
 *   secret/<name>            SecretRecord, operator-signed: the value encrypted under a random
 *                            32-byte data key (ChaCha20-Poly1305). Every node holds it; only the
 *                            data key opens it, and the operator's signature fixes the value.
 *   share/<node>.<name>      ShareRecord, written by a node that holds the data key: the data key
 *                            sealed to one node's X25519 key (its `sealKey` in `node/<id>`), via an
 *                            ephemeral X25519 agreement, HKDF-SHA256 and ChaCha20-Poly1305.
 * Shares exist only for the nodes that run a task using the secret (and, while no task uses it, for
 * its custodians: node/secret-keeper.ts). A forged share can at worst make its recipient fail to
 * open the secret: a data key that is not the operator's cannot decrypt the signed ciphertext.
 *
 *   config/<name>            ConfigRecord, operator-signed: a config's bytes in clear (Compose
 *                            `configs:` are not secret; they are mounted read-only).
 */
import { createCipheriv, createDecipheriv, createPrivateKey, createPublicKey, diffieHellman, hkdfSync, type KeyObject } from 'node:crypto'

/** Secret and config names, as Docker's: they become file names under /run/secrets. */
export const SECRET_NAME_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$/
/**
 * Largest secret or config value. Its record (ciphertext, nonce, tag, id, msgpack framing) must fit
 * the record payload limit (MAX_PAYLOAD_BYTES, 64 KiB) that every peer enforces; certificates and
 * key files are far smaller (Swarm's own limit is 500 KB, rarely approached).
 */
export const MAX_SECRET_BYTES = 60 * 1024
export const DATA_KEY_BYTES = 32
export const NONCE_BYTES = 12
export const TAG_BYTES = 16
export const X25519_KEY_BYTES = 32
/** A secret version's id: random, so a re-created secret's old shares are recognised as stale. */
export const SECRET_ID_PATTERN = /^[0-9a-f]{32}$/
/** Largest uid/gid of a secret or config file: Linux's 32-bit ids, less the reserved (uid_t)-1. */
export const MAX_FILE_OWNER_ID = 2 ** 32 - 2
/** At most this many secrets and configs per service: a handful in practice. */
export const MAX_FILE_REFS = 64

/** What `secret create` writes under `secret/<name>`. */
export interface SecretRecord {
  id: string
  nonce: Uint8Array
  /** ciphertext followed by the 16-byte tag */
  data: Uint8Array
  /** bytes of the plain value */
  size: number
}

/** What `config create` writes under `config/<name>`. */
export interface ConfigRecord {
  id: string
  data: Uint8Array
}

/** The data key of secret `id`, sealed to the node whose X25519 public key is `to`. */
export interface ShareRecord {
  id: string
  /** recipient's X25519 public key, hex: a node that changes its key gets a new share */
  to: string
  /** sender's ephemeral X25519 public key */
  eph: Uint8Array
  nonce: Uint8Array
  /** sealed data key followed by the tag */
  box: Uint8Array
}

/** How a service uses a secret or config (Compose `secrets:` / `configs:` of a service). */
export interface FileRef {
  /** the cluster's secret or config name */
  source: string
  /** absolute path in the container */
  target: string
  uid: number
  gid: number
  /** file permission bits */
  mode: number
}

/** Compose's defaults: secrets at /run/secrets/<name>, configs at /<name>; world-readable, owned by root. */
export const DEFAULT_FILE_MODE = 0o444
export function defaultSecretTarget (name: string): string { return `/run/secrets/${name}` }
export function defaultConfigTarget (name: string): string { return `/${name}` }

/** A network key's id: the first 16 hex digits of its SHA-256. */
export const NETKEY_ID_PATTERN = /^[0-9a-f]{16}$/
/** The share name a network key travels under (`share/<node>.~net-<id>`): no secret name starts with `~`. */
export function netKeyShareName (keyId: string): string { return `~net-${keyId}` }
const NETKEY_SHARE_PATTERN = /^~net-[0-9a-f]{16}$/

/** `share/<node>.<name>`: the node id never contains a dot, the name may. */
export function shareKeyId (node: string, name: string): string { return `${node}.${name}` }
export function parseShareId (id: string): { node: string, name: string } | null {
  const dot = id.indexOf('.')
  if (dot <= 0) return null
  const node = id.slice(0, dot)
  const name = id.slice(dot + 1)
  return SECRET_NAME_PATTERN.test(name) || NETKEY_SHARE_PATTERN.test(name) ? { node, name } : null
}

const te = new TextEncoder()

/** What a secret's ciphertext is bound to: a value moved to another name or cluster does not open. */
function secretAad (clusterId: string, name: string, id: string): Uint8Array {
  return te.encode(`p2p-orch secret v1\0${clusterId}\0${name}\0${id}`)
}

function seal (key: Uint8Array, nonce: Uint8Array, plain: Uint8Array, aad: Uint8Array): Uint8Array {
  const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG_BYTES })
  c.setAAD(aad, { plaintextLength: plain.length })
  return new Uint8Array(Buffer.concat([c.update(plain), c.final(), c.getAuthTag()]))
}

function open (key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Uint8Array | null {
  if (sealed.length < TAG_BYTES || nonce.length !== NONCE_BYTES || key.length !== DATA_KEY_BYTES) return null
  try {
    const d = createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG_BYTES })
    d.setAAD(aad, { plaintextLength: sealed.length - TAG_BYTES })
    d.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES))
    return new Uint8Array(Buffer.concat([d.update(sealed.subarray(0, sealed.length - TAG_BYTES)), d.final()]))
  } catch {
    return null
  }
}

export function encryptSecret (clusterId: string, name: string, plain: Uint8Array, dataKey: Uint8Array, id: string, nonce: Uint8Array): SecretRecord {
  return { id, nonce, data: seal(dataKey, nonce, plain, secretAad(clusterId, name, id)), size: plain.length }
}

/** The plain value, or null when `dataKey` is not the one the secret was encrypted with. */
export function decryptSecret (clusterId: string, name: string, rec: SecretRecord, dataKey: Uint8Array): Uint8Array | null {
  return open(dataKey, rec.nonce, rec.data, secretAad(clusterId, name, rec.id))
}

// ---- X25519 keys as raw 32-byte strings ----------------------------------------------------------

const PKCS8_X25519_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex')
const SPKI_X25519_PREFIX = Buffer.from('302a300506032b656e032100', 'hex')

function privateKeyObject (raw: Uint8Array): KeyObject {
  return createPrivateKey({ key: Buffer.concat([PKCS8_X25519_PREFIX, raw]), format: 'der', type: 'pkcs8' })
}

function publicKeyObject (raw: Uint8Array): KeyObject {
  return createPublicKey({ key: Buffer.concat([SPKI_X25519_PREFIX, raw]), format: 'der', type: 'spki' })
}

/** The public half of a raw X25519 private key (any 32 bytes are a valid private key). */
export function sealPublicKey (privateRaw: Uint8Array): Uint8Array {
  const spki = createPublicKey(privateKeyObject(privateRaw)).export({ format: 'der', type: 'spki' })
  return new Uint8Array(spki.subarray(spki.length - X25519_KEY_BYTES))
}

function shareInfo (clusterId: string, name: string, id: string, recipient: string): Uint8Array {
  return te.encode(`p2p-orch share v1\0${clusterId}\0${name}\0${id}\0${recipient}`)
}

function shareKey (shared: Uint8Array, eph: Uint8Array, to: Uint8Array, info: Uint8Array): Uint8Array {
  return new Uint8Array(hkdfSync('sha256', shared, Buffer.concat([eph, to]), info, DATA_KEY_BYTES))
}

/**
 * Seal the data key of secret `name`/`id` to `recipient` (a node id) whose X25519 public key is
 * `to`. `ephemeralRaw` (32 random bytes) and `nonce` are the caller's randomness.
 */
export function sealShare (clusterId: string, name: string, id: string, recipient: string, to: Uint8Array, dataKey: Uint8Array, ephemeralRaw: Uint8Array, nonce: Uint8Array): ShareRecord {
  const eph = sealPublicKey(ephemeralRaw)
  const shared = new Uint8Array(diffieHellman({ privateKey: privateKeyObject(ephemeralRaw), publicKey: publicKeyObject(to) }))
  const info = shareInfo(clusterId, name, id, recipient)
  return { id, to: Buffer.from(to).toString('hex'), eph, nonce, box: seal(shareKey(shared, eph, to, info), nonce, dataKey, info) }
}

/** The data key a share holds for `recipient` (this node, whose private key is `privateRaw`), or null. */
export function openShare (clusterId: string, name: string, recipient: string, share: ShareRecord, privateRaw: Uint8Array): Uint8Array | null {
  if (share.eph.length !== X25519_KEY_BYTES) return null
  const to = sealPublicKey(privateRaw)
  if (Buffer.from(to).toString('hex') !== share.to) return null
  let shared: Uint8Array
  try {
    shared = new Uint8Array(diffieHellman({ privateKey: privateKeyObject(privateRaw), publicKey: publicKeyObject(share.eph) }))
  } catch {
    return null
  }
  const info = shareInfo(clusterId, name, share.id, recipient)
  const key = open(shareKey(shared, share.eph, to, info), share.nonce, share.box, info)
  return key !== null && key.length === DATA_KEY_BYTES ? key : null
}
