/**
 * Ed25519 signing and verification of records. Deterministic, no IO: node:crypto is used only
 * as a pure function library here.
 *
 * Writers are identified by strings: a libp2p peer id (the key is inside the id, so a node's
 * records are verifiable by anyone who knows the id), `op:<hex>` for the cluster's founding
 * operator key, or `op:<name>:<hex>` for a named operator key (a `key/<name>` record says what
 * it may do). The public key is always inside the id, so a signature is checked without any state.
 */
import { createPrivateKey, createPublicKey, sign as edSign, verify as edVerify, type KeyObject } from 'node:crypto'
import { peerIdFromString } from '@libp2p/peer-id'
import { pack } from './codec.ts'
import { KEY_NAME_PATTERN } from './keys.ts'
import type { StateRecord } from './record.ts'

export const OPERATOR_PREFIX = 'op:'

/** The writer id of an operator key: bare for the founding key, with its name otherwise. */
export function operatorWriterId (name: string | null, publicKeyHex: string): string {
  return name === null ? `${OPERATOR_PREFIX}${publicKeyHex}` : `${OPERATOR_PREFIX}${name}:${publicKeyHex}`
}

/** `op:<hex>` → { name: null, hex }; `op:<name>:<hex>` → { name, hex }; anything else null. */
export function parseOperatorWriter (writer: string): { name: string | null, hex: string } | null {
  if (!writer.startsWith(OPERATOR_PREFIX)) return null
  const rest = writer.slice(OPERATOR_PREFIX.length)
  const colon = rest.lastIndexOf(':')
  const name = colon < 0 ? null : rest.slice(0, colon)
  const hex = colon < 0 ? rest : rest.slice(colon + 1)
  if (!/^[0-9a-f]{64}$/.test(hex)) return null
  if (name !== null && !KEY_NAME_PATTERN.test(name)) return null
  return { name, hex }
}

export interface Signer {
  /** writer id placed in the record's `w` */
  readonly id: string
  sign (data: Uint8Array): Uint8Array
}

/** Bytes a signature covers: the cluster id (no replay into another cluster), key, version, writer, payload. */
export function signingBytes (clusterId: string, r: Pick<StateRecord, 'k' | 't' | 'w' | 'p'>): Uint8Array {
  const head = pack([clusterId, r.k, r.t[0], r.t[1], r.w])
  const out = new Uint8Array(head.length + r.p.length)
  out.set(head, 0)
  out.set(r.p, head.length)
  return out
}

function b64url (bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64url')
}

function publicKeyFromRaw (raw: Uint8Array): KeyObject {
  return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: b64url(raw) }, format: 'jwk' })
}

/** A signer from a raw Ed25519 key: 32-byte seed + 32-byte public key (libp2p's `raw` layout). */
export function signerFromRaw (id: string, raw64: Uint8Array): Signer {
  const key = createPrivateKey({
    key: { kty: 'OKP', crv: 'Ed25519', d: b64url(raw64.subarray(0, 32)), x: b64url(raw64.subarray(32, 64)) },
    format: 'jwk'
  })
  return { id, sign: (data) => new Uint8Array(edSign(null, data, key)) }
}

/** An operator signer from a 32-byte Ed25519 seed; `name` null for the founding key. */
export function operatorSignerFromSeed (name: string | null, seed: Uint8Array): Signer & { publicKeyHex: string } {
  const priv = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, Buffer.from(seed)]), format: 'der', type: 'pkcs8' })
  const jwk = priv.export({ format: 'jwk' })
  const publicKeyHex = Buffer.from(jwk.x as string, 'base64url').toString('hex')
  return { id: operatorWriterId(name, publicKeyHex), publicKeyHex, sign: (data) => new Uint8Array(edSign(null, data, priv)) }
}

/** DER prefix of a PKCS#8 Ed25519 private key; the 32-byte seed follows. */
const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex')

/** The 32-byte seed of a PKCS#8 PEM Ed25519 key (the legacy `operator.key` file). */
export function seedFromPem (pem: string): Uint8Array {
  const key = createPrivateKey(pem)
  if (key.asymmetricKeyType !== 'ed25519') throw new Error('operator key is not an Ed25519 key')
  return new Uint8Array(Buffer.from(key.export({ format: 'jwk' }).d as string, 'base64url'))
}

/** An operator signer from a PKCS#8 PEM private key (the legacy `operator.key` file). */
export function operatorSignerFromPem (pem: string): Signer {
  const key = createPrivateKey(pem)
  if (key.asymmetricKeyType !== 'ed25519') throw new Error('operator key is not an Ed25519 key')
  const jwk = key.export({ format: 'jwk' })
  const pub = Buffer.from(jwk.x as string, 'base64url').toString('hex')
  return { id: OPERATOR_PREFIX + pub, sign: (data) => new Uint8Array(edSign(null, data, key)) }
}

/**
 * Parsed public keys, by writer id. Bounded because writer ids come from the network: an attacker
 * sending endless fresh ids must not grow memory without limit.
 */
const KEY_CACHE_LIMIT = 4096
const keyCache = new Map<string, KeyObject | null>()

function publicKeyOf (writer: string): KeyObject | null {
  const cached = keyCache.get(writer)
  if (cached !== undefined) return cached
  let key: KeyObject | null = null
  try {
    if (writer.startsWith(OPERATOR_PREFIX)) {
      const op = parseOperatorWriter(writer)
      if (op !== null) key = publicKeyFromRaw(Buffer.from(op.hex, 'hex'))
    } else {
      const pid = peerIdFromString(writer)
      if (pid.type === 'Ed25519' && pid.publicKey != null) key = publicKeyFromRaw(pid.publicKey.raw)
    }
  } catch {
    key = null
  }
  if (keyCache.size >= KEY_CACHE_LIMIT) keyCache.delete(keyCache.keys().next().value as string)
  keyCache.set(writer, key)
  return key
}

export function isNodeWriter (writer: string): boolean {
  return !writer.startsWith(OPERATOR_PREFIX) && publicKeyOf(writer) !== null
}

export function verifySignature (writer: string, data: Uint8Array, sig: Uint8Array): boolean {
  const key = publicKeyOf(writer)
  if (key === null || sig.length !== 64) return false
  try {
    return edVerify(null, data, key, sig)
  } catch {
    return false
  }
}

export function signRecord (clusterId: string, signer: Signer, k: string, t: [number, number], p: Uint8Array): StateRecord {
  const r = { k, t, w: signer.id, p }
  return { ...r, s: signer.sign(signingBytes(clusterId, r)) }
}

export function verifyRecord (clusterId: string, r: StateRecord): boolean {
  return verifySignature(r.w, signingBytes(clusterId, r), r.s)
}
