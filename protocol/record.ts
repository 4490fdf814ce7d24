/**
 * The unit of replicated state: one signed register.
 *
 * Every piece of cluster state (a service spec, its scale, a node's liveness, a node's replicas)
 * is a record under a key. Records merge by keeping, per key, the one with the greatest version
 * (see `newer`), which makes merge commutative, associative and idempotent.
 *
 * The payload travels as the exact msgpack bytes that were signed, so a record is verified
 * against the bytes on the wire and never depends on re-encoding a decoded value.
 */

export interface StateRecord {
  /** key, e.g. `svc/web` (see keys.ts for the families and who may write them) */
  k: string
  /**
   * version tuple, compared lexicographically: [HLC wall, HLC logical] for last-writer-wins
   * registers, [incarnation, status rank] for membership.
   */
  t: [number, number]
  /** writer id: a node's peer id, or `op:<hex public key>` for an operator key */
  w: string
  /** msgpack-encoded value; an encoded `null` is a tombstone */
  p: Uint8Array
  /** Ed25519 signature by `w` over signingBytes(clusterId, record) */
  s: Uint8Array
}

export function compareBytes (a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) {
    if (a[i] !== b[i]) return a[i] < b[i] ? -1 : 1
  }
  return a.length - b.length
}

export function compareVersion (a: StateRecord, b: StateRecord): number {
  if (a.t[0] !== b.t[0]) return a.t[0] < b.t[0] ? -1 : 1
  if (a.t[1] !== b.t[1]) return a.t[1] < b.t[1] ? -1 : 1
  if (a.w !== b.w) return a.w < b.w ? -1 : 1
  return 0
}

/**
 * Total order used by merge. Version first, then writer; payload and signature bytes break the
 * remaining tie (only reachable if one writer signs two payloads at one version), so every node
 * picks the same winner whatever order records arrive in.
 */
export function compareRecords (a: StateRecord, b: StateRecord): number {
  return compareVersion(a, b) || compareBytes(a.p, b.p) || compareBytes(a.s, b.s)
}

/** Whether `candidate` replaces `current` in the state. */
export function newer (candidate: StateRecord, current: StateRecord | undefined): boolean {
  return current === undefined || compareRecords(candidate, current) > 0
}
