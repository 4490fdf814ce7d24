/**
 * Stable, fast, non-cryptographic hashing for placement.
 *
 * Every node computes placement on its own and must reach the same answer, so these functions are
 * part of the cluster protocol: changing any constant here moves slots on a mixed-version cluster.
 * Only 32-bit integer arithmetic (Math.imul, shifts) is used, which JavaScript defines exactly on
 * every platform; no BigInt, no floating point.
 */

/** Two independent seeds, so a string gets a 64-bit fingerprint from two 32-bit hashes. */
export const SEED_A = 0x9747b28c
export const SEED_B = 0x5bd1e995

const C1 = 0xcc9e2d51
const C2 = 0x1b873593

/** MurmurHash3 finalizer: full avalanche of a 32-bit word. */
export function fmix32(h: number): number {
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/** One MurmurHash3 x86_32 body step: mixes the 32-bit block `k` into the running hash `h`. */
function mixBlock(h: number, k: number): number {
  k = Math.imul(k, C1)
  k = (k << 15) | (k >>> 17)
  k = Math.imul(k, C2)
  h ^= k
  h = (h << 13) | (h >>> 19)
  return (Math.imul(h, 5) + 0xe6546b64) | 0
}

/**
 * MurmurHash3 x86_32 of the UTF-16LE encoding of `s` (JavaScript strings are UTF-16, so this reads
 * two code units per 32-bit block with no encoding step). Equal to the reference murmur3_32 run over
 * `Buffer.from(s, 'utf16le')` with the same seed.
 */
export function murmur3Utf16(s: string, seed: number): number {
  let h = seed | 0
  const len = s.length
  const pairs = len >>> 1
  let i = 0
  for (let p = 0; p < pairs; p++, i += 2) {
    h = mixBlock(h, s.charCodeAt(i) | (s.charCodeAt(i + 1) << 16))
  }
  if (len & 1) {
    let k = s.charCodeAt(i)
    k = Math.imul(k, C1)
    k = (k << 15) | (k >>> 17)
    k = Math.imul(k, C2)
    h ^= k
  }
  h ^= len * 2 // length in bytes
  return fmix32(h)
}

/** 64-bit fingerprint of a string as two 32-bit halves. */
export interface Hash2 {
  a: number
  b: number
}

export function hash2(s: string): Hash2 {
  return { a: murmur3Utf16(s, SEED_A), b: murmur3Utf16(s, SEED_B) }
}

/**
 * Rendezvous (highest-random-weight) score of one (slot, node) pair, in [0, 2^32).
 *
 * The two fingerprints are XOR-combined per half and fed as two blocks through the MurmurHash3 body
 * and finalizer, so the score is a well-mixed function of both keys while each string is hashed only
 * once per call site (a slot is scored against N nodes without rehashing the node ids). Equal scores
 * are possible (about N²/2^33 per slot); callers break ties by node id.
 */
export function pairScore(slot: Hash2, node: Hash2): number {
  let h = mixBlock(0, slot.a ^ node.a)
  h = mixBlock(h, slot.b ^ node.b)
  h ^= 8
  return fmix32(h)
}

/** Rendezvous score of `nodeId` for `key`, for one-off use (hashes both strings). */
export function score(key: string, nodeId: string): number {
  return pairScore(hash2(key), hash2(nodeId))
}
