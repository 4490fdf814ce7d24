/**
 * Wire encoding: msgpack (msgpackr) with versioned envelopes and hard size limits.
 *
 * Everything decoded here came from the network, so decoding never trusts a shape: frames are
 * size-checked before decoding and every field is type-checked after. A bad frame is a
 * `WireError`, which callers count and punish; it is never a crash.
 */
import { Packr } from 'msgpackr'
import type { StateRecord } from './record.ts'

/** Wire format version; a node rejects envelopes of another major version. */
export const WIRE_VERSION = 1
/** Largest gossip message: a batch of records. Gossipsub's own default limit is 1 MiB too. */
export const MAX_GOSSIP_BYTES = 1024 * 1024
/** Largest single anti-entropy frame: a full digest of ~100k keys fits. */
export const MAX_SYNC_FRAME_BYTES = 8 * 1024 * 1024
/** Largest encoded record value: a service spec is a few KiB; 64 KiB leaves room without inviting abuse. */
export const MAX_PAYLOAD_BYTES = 64 * 1024
/** Keys are short paths like `svc/web`; 256 bytes is ample. */
export const MAX_KEY_LENGTH = 256
/** Records per gossip batch. */
export const MAX_RECORDS_PER_MESSAGE = 1024
/** A record's writer id: a peer id (~52 chars) or `op:` + 64 hex. */
export const MAX_WRITER_LENGTH = 128

// useRecords:false keeps plain msgpack (no msgpackr structure extension), so any msgpack
// implementation can read our frames and re-encoding is stable.
const packr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true, int64AsType: 'number' })

export function pack (value: unknown): Uint8Array {
  return packr.pack(value)
}

export function unpack (bytes: Uint8Array): unknown {
  return packr.unpack(bytes)
}

export class WireError extends Error {
  name = 'WireError'
}

/** A record on the wire: a positional array keeps frames small. */
export type WireRecord = [string, number, number, string, Uint8Array, Uint8Array]

export function recordToWire (r: StateRecord): WireRecord {
  return [r.k, r.t[0], r.t[1], r.w, r.p, r.s]
}

function isUint (n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0
}

function isBytes (b: unknown): b is Uint8Array {
  return b instanceof Uint8Array
}

/** Shape check of one wire record (no signature check: see validate.ts). */
export function recordFromWire (x: unknown): StateRecord {
  if (!Array.isArray(x) || x.length !== 6) throw new WireError('record is not a 6-element array')
  const [k, t0, t1, w, p, s] = x
  if (typeof k !== 'string' || k.length === 0 || k.length > MAX_KEY_LENGTH) throw new WireError('bad record key')
  if (!isUint(t0) || !isUint(t1)) throw new WireError('bad record version')
  if (typeof w !== 'string' || w.length === 0 || w.length > MAX_WRITER_LENGTH) throw new WireError('bad record writer')
  if (!isBytes(p) || p.length > MAX_PAYLOAD_BYTES) throw new WireError('bad record payload')
  if (!isBytes(s) || s.length !== 64) throw new WireError('bad record signature')
  return { k, t: [t0, t1], w, p: new Uint8Array(p), s: new Uint8Array(s) }
}

function decodeEnvelope (bytes: Uint8Array, limit: number): Record<string, unknown> {
  if (bytes.length > limit) throw new WireError(`frame of ${bytes.length} bytes exceeds the ${limit}-byte limit`)
  let msg: unknown
  try {
    msg = unpack(bytes)
  } catch (err) {
    throw new WireError(`undecodable frame: ${(err as Error).message}`)
  }
  if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) throw new WireError('frame is not a map')
  const env = msg as Record<string, unknown>
  if (env.v !== WIRE_VERSION) throw new WireError(`unsupported wire version ${typeof env.v === 'number' ? env.v : typeof env.v}`)
  return env
}

// ---- gossip -------------------------------------------------------------------------------

export interface GossipMessage {
  recs: StateRecord[]
}

export function encodeGossip (recs: StateRecord[]): Uint8Array {
  return pack({ v: WIRE_VERSION, recs: recs.map(recordToWire) })
}

export function decodeGossip (bytes: Uint8Array): GossipMessage {
  const env = decodeEnvelope(bytes, MAX_GOSSIP_BYTES)
  const recs = env.recs
  if (!Array.isArray(recs) || recs.length === 0 || recs.length > MAX_RECORDS_PER_MESSAGE) throw new WireError('bad record batch')
  return { recs: recs.map(recordFromWire) }
}

// ---- anti-entropy sync --------------------------------------------------------------------

/** One digest entry: key, version, writer, and the first bytes of the signature as a content tag. */
export type DigestEntry = [string, number, number, string, Uint8Array]

export type SyncMessage =
  | { type: 'hello', root: Uint8Array }
  | { type: 'equal' }
  | { type: 'digest', entries: DigestEntry[] }
  | { type: 'push', recs: StateRecord[], want: string[] }
  | { type: 'records', recs: StateRecord[] }

export function encodeSync (m: SyncMessage): Uint8Array {
  switch (m.type) {
    case 'push': return pack({ v: WIRE_VERSION, type: m.type, recs: m.recs.map(recordToWire), want: m.want })
    case 'records': return pack({ v: WIRE_VERSION, type: m.type, recs: m.recs.map(recordToWire) })
    default: return pack({ v: WIRE_VERSION, ...m })
  }
}

function digestEntryFromWire (x: unknown): DigestEntry {
  if (!Array.isArray(x) || x.length !== 5) throw new WireError('bad digest entry')
  const [k, t0, t1, w, tag] = x
  if (typeof k !== 'string' || k.length > MAX_KEY_LENGTH || !isUint(t0) || !isUint(t1) ||
    typeof w !== 'string' || w.length > MAX_WRITER_LENGTH || !isBytes(tag) || tag.length > 32) {
    throw new WireError('bad digest entry')
  }
  return [k, t0, t1, w, tag]
}

function stringList (x: unknown): string[] {
  if (!Array.isArray(x) || !x.every((s) => typeof s === 'string' && s.length <= MAX_KEY_LENGTH)) throw new WireError('bad key list')
  return x as string[]
}

function recordList (x: unknown): StateRecord[] {
  if (!Array.isArray(x)) throw new WireError('bad record list')
  return x.map(recordFromWire)
}

export function decodeSync (bytes: Uint8Array): SyncMessage {
  const env = decodeEnvelope(bytes, MAX_SYNC_FRAME_BYTES)
  switch (env.type) {
    case 'hello':
      if (!isBytes(env.root) || env.root.length > 64) throw new WireError('bad root hash')
      return { type: 'hello', root: env.root }
    case 'equal':
      return { type: 'equal' }
    case 'digest':
      if (!Array.isArray(env.entries)) throw new WireError('bad digest')
      return { type: 'digest', entries: env.entries.map(digestEntryFromWire) }
    case 'push':
      return { type: 'push', recs: recordList(env.recs), want: stringList(env.want) }
    case 'records':
      return { type: 'records', recs: recordList(env.recs) }
    default:
      throw new WireError(`unknown sync message type ${typeof env.type === 'string' ? env.type.slice(0, 32) : typeof env.type}`)
  }
}
