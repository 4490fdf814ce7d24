/**
 * Join tokens: everything a new node needs to join, in one copy-pasteable line.
 *
 *   p2porch1.<base64url msgpack body>.<checksum>
 *
 * The body carries the cluster id, the private-network key (pnet), seed addresses and the
 * founding operator's public key the cluster trusts. It carries no private operator key, unless
 * someone asked for one explicitly (`join-token --with-admin-key`: a credential, see
 * credential.ts, that the new node puts in its user's credentials file). Older versions put the
 * founding key's PEM in every token (`operatorKey`); such tokens are still understood. A truncated
 * or altered token fails its checksum and is refused with a clear message before anything starts.
 */
import { createHash } from 'node:crypto'
import { pack, recordFromWire, recordToWire, unpack, WireError } from './codec.ts'
import type { StateRecord } from './record.ts'

export const TOKEN_PREFIX = 'p2porch1'
/** Checksum width: detects typos and tampering; the token's secrecy is what protects the cluster. */
const CHECKSUM_HEX = 16
/** A pnet pre-shared key is 32 bytes. */
export const NETWORK_KEY_BYTES = 32

export interface JoinToken {
  clusterId: string
  networkKey: Uint8Array
  seeds: string[]
  /** trusted operator writer id (`op:<hex>`) */
  operator: string
  /** PKCS#8 PEM of the founding operator key: tokens of older versions only */
  operatorKey?: string
  /** a credential (credential.ts), only in tokens made with `join-token --with-admin-key` */
  credential?: string
  /**
   * What admits the joining node: the credential of an `admitter` key (it can write `admit/`
   * records and nothing else) and that key's signed `key/` record, so the new node can check its
   * own admission before it has synced anything. Rotated with `join-token --rotate`.
   */
  admission?: { credential: string, keyRecord: StateRecord }
}

export class TokenError extends Error {
  name = 'TokenError'
}

function checksum (body: string): string {
  return createHash('sha256').update(`${TOKEN_PREFIX}.${body}`).digest('hex').slice(0, CHECKSUM_HEX)
}

export function encodeToken (t: JoinToken): string {
  const fields: Record<string, unknown> = { c: t.clusterId, k: t.networkKey, s: t.seeds, o: t.operator }
  if (t.operatorKey !== undefined) fields.x = t.operatorKey
  if (t.credential !== undefined) fields.a = t.credential
  if (t.admission !== undefined) fields.j = [t.admission.credential, recordToWire(t.admission.keyRecord)]
  const body = Buffer.from(pack(fields)).toString('base64url')
  return `${TOKEN_PREFIX}.${body}.${checksum(body)}`
}

export function decodeToken (text: string): JoinToken {
  const parts = text.trim().split('.')
  if (parts.length !== 3 || parts[0] !== TOKEN_PREFIX) {
    throw new TokenError(`not a p2p-orch join token (it should start with "${TOKEN_PREFIX}." and have three dot-separated parts)`)
  }
  const [, body, sum] = parts
  if (checksum(body) !== sum) throw new TokenError('join token is corrupt or was altered (checksum mismatch); copy it again with `p2p-orch join-token`')
  let f: Record<string, unknown>
  try {
    f = unpack(Buffer.from(body, 'base64url')) as Record<string, unknown>
  } catch {
    throw new TokenError('join token body is unreadable')
  }
  const ok = f !== null && typeof f === 'object' && typeof f.c === 'string' && f.k instanceof Uint8Array &&
    f.k.length === NETWORK_KEY_BYTES && Array.isArray(f.s) && f.s.every((s) => typeof s === 'string') &&
    typeof f.o === 'string' && (f.x === undefined || typeof f.x === 'string') && (f.a === undefined || typeof f.a === 'string')
  if (!ok) throw new TokenError('join token is missing fields; it was made by an incompatible version')
  const token: JoinToken = { clusterId: f.c as string, networkKey: new Uint8Array(f.k as Uint8Array), seeds: f.s as string[], operator: f.o as string }
  if (f.x !== undefined) token.operatorKey = f.x as string
  if (f.a !== undefined) token.credential = f.a as string
  if (f.j !== undefined) {
    const j = f.j
    if (!Array.isArray(j) || j.length !== 2 || typeof j[0] !== 'string') throw new TokenError('join token admission is unreadable')
    try {
      token.admission = { credential: j[0], keyRecord: recordFromWire(j[1]) }
    } catch (err) {
      if (err instanceof WireError) throw new TokenError('join token admission is unreadable')
      throw err
    }
  }
  return token
}

/** The key file format @libp2p/pnet expects. */
export function pnetKeyFile (networkKey: Uint8Array): Uint8Array {
  return new TextEncoder().encode('/key/swarm/psk/1.0.0/\n/base16/\n' + Buffer.from(networkKey).toString('hex'))
}
