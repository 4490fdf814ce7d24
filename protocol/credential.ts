/**
 * Credentials: what a CLI signs desired-state writes with. One line of text:
 *
 *   p2porchkey1.<cluster id>.<key name>.<base64url 32-byte Ed25519 seed>.<checksum>
 *
 * The key name is the `key/<name>` record that gives the key its role (`founder` for the
 * cluster's founding key, which needs no record). The checksum (sha-256 prefix of the rest)
 * catches a truncated or mistyped credential before anything is signed with it. A credential is
 * a private key: keep it in a 0600 file, never in a join token you share.
 */
import { createHash, randomBytes } from 'node:crypto'
import { FOUNDER_KEY_NAME, KEY_NAME_PATTERN } from './keys.ts'
import { operatorSignerFromSeed, type Signer } from './sign.ts'

export const CREDENTIAL_PREFIX = 'p2porchkey1'
const CHECKSUM_HEX = 8
const SEED_BYTES = 32
/** Cluster ids are UUIDs; anything without dots fits the format. */
const CLUSTER_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/

export interface Credential {
  clusterId: string
  /** key name; `founder` for the founding key */
  name: string
  /** Ed25519 private key seed */
  seed: Uint8Array
}

export class CredentialError extends Error {
  name = 'CredentialError'
}

function checksum (body: string): string {
  return createHash('sha256').update(body).digest('hex').slice(0, CHECKSUM_HEX)
}

export function encodeCredential (c: Credential): string {
  const body = `${CREDENTIAL_PREFIX}.${c.clusterId}.${c.name}.${Buffer.from(c.seed).toString('base64url')}`
  return `${body}.${checksum(body)}`
}

export function decodeCredential (text: string): Credential {
  const parts = text.trim().split('.')
  if (parts.length !== 5 || parts[0] !== CREDENTIAL_PREFIX) throw new CredentialError(`not a p2p-orch credential (it should start with "${CREDENTIAL_PREFIX}." and have five dot-separated parts)`)
  const [, clusterId, name, seedText, sum] = parts
  if (checksum(parts.slice(0, 4).join('.')) !== sum) throw new CredentialError('credential is corrupt or was altered (checksum mismatch)')
  const seed = Buffer.from(seedText, 'base64url')
  if (!CLUSTER_ID_PATTERN.test(clusterId) || !KEY_NAME_PATTERN.test(name) || seed.length !== SEED_BYTES) throw new CredentialError('credential fields are invalid')
  return { clusterId, name, seed: new Uint8Array(seed) }
}

/** A fresh key for `name` in `clusterId`. */
export function generateCredential (clusterId: string, name: string): Credential {
  return { clusterId, name, seed: new Uint8Array(randomBytes(SEED_BYTES)) }
}

/** The signer a credential stands for: `op:<hex>` for the founding key, `op:<name>:<hex>` otherwise. */
export function credentialSigner (c: Credential): Signer & { publicKeyHex: string } {
  return operatorSignerFromSeed(c.name === FOUNDER_KEY_NAME ? null : c.name, c.seed)
}
