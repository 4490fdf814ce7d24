/**
 * Writes the control API prepares for the caller to sign, and the records it gets back signed.
 * The node never signs desired state itself: it holds no operator key (see api/types.ts).
 */
import { MAX_PAYLOAD_BYTES, pack, recordFromWire } from '../protocol/codec.ts'
import type { StateRecord } from '../protocol/record.ts'
import type { SignedRecord, SignRequest, SubmitResponse } from './api/types.ts'
import { UserError } from './errors.ts'
import type { P2pNode } from './node.ts'

/** A signed submission carries what one command writes: a stack of services is far below this. */
export const MAX_SUBMITTED_RECORDS = 1024

export interface Write {
  k: string
  value: unknown
}

/** The records of `writes`, each with the next version of this node's clock, ready to be signed. */
export function prepare (node: P2pNode, writes: Write[]): SignRequest | undefined {
  if (writes.length === 0) return undefined
  const records = writes.map((w) => {
    const p = pack(w.value)
    // refused here, before anyone signs it: a record over the limit would be refused by every peer
    if (p.length > MAX_PAYLOAD_BYTES) throw new UserError(`${w.k}: the value is ${p.length} bytes encoded; a record holds at most ${MAX_PAYLOAD_BYTES}`)
    return { k: w.k, t: node.states.nextVersion(), p: Buffer.from(p).toString('base64') }
  })
  return { clusterId: node.identity.cluster.clusterId, records }
}

function recordFrom (x: unknown): StateRecord {
  const r = x as SignedRecord
  if (r === null || typeof r !== 'object' || typeof r.k !== 'string' || !Array.isArray(r.t) || r.t.length !== 2 ||
    !r.t.every((n) => Number.isSafeInteger(n) && n >= 0) || typeof r.w !== 'string' || typeof r.p !== 'string' || typeof r.s !== 'string') {
    throw new UserError('a signed record needs k, t, w, p and s')
  }
  const p = new Uint8Array(Buffer.from(r.p, 'base64'))
  if (p.length > MAX_PAYLOAD_BYTES) throw new UserError(`${r.k.slice(0, 64)}: the value is ${p.length} bytes encoded; a record holds at most ${MAX_PAYLOAD_BYTES}`)
  // the wire's own limits, so nothing is applied (and gossiped) that peers would refuse as a bad frame
  try {
    return recordFromWire([r.k, r.t[0], r.t[1], r.w, p, new Uint8Array(Buffer.from(r.s, 'base64'))])
  } catch (err) {
    throw new UserError(`malformed signed record: ${(err as Error).message}`)
  }
}

/** Apply records a CLI signed; any refusal is the caller's to fix (a key without the right role, say). */
export function submit (node: P2pNode, body: unknown): SubmitResponse {
  const list = (body as { records?: unknown } | null)?.records
  if (!Array.isArray(list) || list.length === 0 || list.length > MAX_SUBMITTED_RECORDS) throw new UserError(`submit 1 to ${MAX_SUBMITTED_RECORDS} signed records`)
  const res = node.states.submit(list.map(recordFrom))
  if (res.rejected > 0 || res.deferred > 0) throw new UserError(`refused: ${res.firstError ?? 'invalid record'}`)
  return { applied: res.applied.length }
}
