/**
 * Ed25519 signing and verification of records. Deterministic, no IO: node:crypto is used only
 * as a pure function library here.
 *
 * Writers are identified by strings: a libp2p peer id (the key is inside the id, so a node's
 * records are verifiable by anyone who knows the id) or `op:<hex>` for an operator key.
 */
import { createPrivateKey, createPublicKey, sign as edSign, verify as edVerify, type KeyObject } from 'node:crypto'
import { peerIdFromString } from '@libp2p/peer-id'
import { pack } from './codec.ts'
import type { StateRecord } from './record.ts'

export const OPERATOR_PREFIX = 'op:'

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

/** An operator signer from a PKCS#8 PEM private key (the `operator.key` file). */
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
      const hex = writer.slice(OPERATOR_PREFIX.length)
      if (/^[0-9a-f]{64}$/.test(hex)) key = publicKeyFromRaw(Buffer.from(hex, 'hex'))
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
