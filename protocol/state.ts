/**
 * The CRDT-merged cluster state: a map of keys to signed records where each key keeps the
 * greatest record (record.ts). Deterministic and free of IO; node/ persists and transports it.
 *
 * It also answers the anti-entropy questions: a compact digest of what it holds, an
 * order-independent root hash for the "are we equal?" shortcut, and the diff against a peer's
 * digest (what to push, what to want).
 */
import { createHash } from 'node:crypto'
import type { DigestEntry } from './codec.ts'
import { unpack } from './codec.ts'
import { parseKey, type Family } from './keys.ts'
import { compareBytes, compareVersion, newer, type StateRecord } from './record.ts'

/** Bytes of a signature used as a content tag in digests: 8 bytes make accidental equality negligible. */
export const DIGEST_TAG_BYTES = 8
/** Root hash width: XOR of per-record SHA-256 prefixes. */
const ROOT_HASH_BYTES = 16

function recordHash (r: StateRecord): Uint8Array {
  const h = createHash('sha256')
  h.update(r.k)
  h.update(`\0${r.t[0]}\0${r.t[1]}\0${r.w}\0`)
  h.update(r.s)
  return new Uint8Array(h.digest().subarray(0, ROOT_HASH_BYTES))
}

function xorInto (acc: Uint8Array, x: Uint8Array): void {
  for (let i = 0; i < acc.length; i++) acc[i] ^= x[i]
}

export interface Entry {
  record: StateRecord
  value: unknown
}

/** The entries of one key family by id, and their id-sorted list once someone asked for it. */
interface FamilyIndex {
  byId: Map<string, Entry>
  sorted: Array<[string, unknown]> | null
}

export class ClusterState {
  private readonly entries = new Map<string, Entry>()
  /** Read models ask for whole families many times a second (every `ps`, every reconcile pass). */
  private readonly families = new Map<Family, FamilyIndex>()
  private readonly root = new Uint8Array(ROOT_HASH_BYTES)

  /**
   * Merge one record (already validated). Returns true if it replaced what we held.
   * `value` is the decoded payload; when omitted it is decoded here.
   */
  apply (record: StateRecord, value?: unknown): boolean {
    const current = this.entries.get(record.k)
    if (!newer(record, current?.record)) return false
    if (current !== undefined) xorInto(this.root, recordHash(current.record))
    xorInto(this.root, recordHash(record))
    const entry = { record, value: value === undefined ? unpack(record.p) : value }
    this.entries.set(record.k, entry)
    this.index(record.k, entry)
    return true
  }

  private index (k: string, entry: Entry | undefined): void {
    const parsed = parseKey(k)
    if (parsed === null) return
    let f = this.families.get(parsed.family)
    if (f === undefined) {
      f = { byId: new Map(), sorted: null }
      this.families.set(parsed.family, f)
    }
    if (entry === undefined) f.byId.delete(parsed.id)
    else f.byId.set(parsed.id, entry)
    f.sorted = null
  }

  /** Drop a key outright (garbage collection of a removed member's records; never by merge). */
  forget (k: string): void {
    const current = this.entries.get(k)
    if (current === undefined) return
    xorInto(this.root, recordHash(current.record))
    this.entries.delete(k)
    this.index(k, undefined)
  }

  get (k: string): StateRecord | undefined {
    return this.entries.get(k)?.record
  }

  value<T> (k: string): T | undefined {
    return this.entries.get(k)?.value as T | undefined
  }

  get size (): number {
    return this.entries.size
  }

  records (): StateRecord[] {
    return [...this.entries.values()].map((e) => e.record)
  }

  /** [id, value] for every key of one family, in key order. */
  family<T> (family: Family): Array<[string, T]> {
    const f = this.families.get(family)
    if (f === undefined) return []
    f.sorted ??= [...f.byId].map(([id, e]): [string, unknown] => [id, e.value]).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    return [...f.sorted] as Array<[string, T]>
  }

  rootHash (): Uint8Array {
    return new Uint8Array(this.root)
  }

  digest (): DigestEntry[] {
    return [...this.entries.values()].map(({ record: r }) => [r.k, r.t[0], r.t[1], r.w, r.s.subarray(0, DIGEST_TAG_BYTES)])
  }

  /** Against a peer's digest: records the peer lacks or holds older, and keys we should fetch. */
  diff (remote: DigestEntry[]): { push: StateRecord[], want: string[] } {
    const push: StateRecord[] = []
    const want: string[] = []
    const seen = new Set<string>()
    for (const [k, t0, t1, w, tag] of remote) {
      seen.add(k)
      const mine = this.entries.get(k)?.record
      if (mine === undefined) { want.push(k); continue }
      const c = compareVersion(mine, { k, t: [t0, t1], w, p: new Uint8Array(0), s: new Uint8Array(0) })
      if (c > 0) push.push(mine)
      else if (c < 0) want.push(k)
      else if (compareBytes(mine.s.subarray(0, DIGEST_TAG_BYTES), tag) !== 0) { push.push(mine); want.push(k) }
    }
    for (const [k, e] of this.entries) if (!seen.has(k)) push.push(e.record)
    return { push, want }
  }
}
