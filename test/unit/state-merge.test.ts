import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { pack, unpack } from '../../protocol/codec.ts'
import { key } from '../../protocol/keys.ts'
import { STATUS_RANK, type MemberStatus } from '../../protocol/membership.ts'
import { compareRecords, compareVersion, type StateRecord } from '../../protocol/record.ts'
import { signRecord, type Signer } from '../../protocol/sign.ts'
import { ClusterState } from '../../protocol/state.ts'
import { validateRecord } from '../../protocol/validate.ts'
import { hex, makeNodeSigner, makeOperatorSigner } from '../helpers/cluster.ts'

const CLUSTER = 'merge-test-cluster'
const operators = [makeOperatorSigner(), makeOperatorSigner()]
const nodes: Signer[] = await Promise.all([makeNodeSigner(), makeNodeSigner(), makeNodeSigner()])
const trust = { operators: new Set(operators.map((o) => o.id)) }
const SERVICES = ['web', 'db']

// ---- generators ---------------------------------------------------------------------------

/**
 * Small version ranges and few keys, so records collide on keys and tie on versions (including
 * one writer signing two payloads at one version, the case payload/signature bytes decide).
 */
const t0 = fc.integer({ min: 1, max: 4 })
const t1 = fc.integer({ min: 0, max: 2 })
const opIdx = fc.integer({ min: 0, max: operators.length - 1 })
const nodeIdx = fc.integer({ min: 0, max: nodes.length - 1 })
const svc = fc.constantFrom(...SERVICES)

const sign = (signer: Signer, k: string, t: [number, number], value: unknown): StateRecord => signRecord(CLUSTER, signer, k, t, pack(value))

const scaleRec = fc.tuple(opIdx, svc, t0, t1, fc.integer({ min: 0, max: 3 }))
  .map(([o, s, a, b, replicas]) => sign(operators[o], key.scale(s), [a, b], { replicas }))
const svcTombstone = fc.tuple(opIdx, svc, t0, t1).map(([o, s, a, b]) => sign(operators[o], key.svc(s), [a, b], null))
const nodecfgRec = fc.tuple(opIdx, nodeIdx, t0, t1, fc.constantFrom('active', 'drain', 'pause'), fc.constantFrom({}, { zone: 'a' }, { zone: 'b' }))
  .map(([o, n, a, b, availability, labels]) => sign(operators[o], key.nodecfg(nodes[n].id), [a, b], { labels, availability }))
const nodeInfoRec = fc.tuple(nodeIdx, t0, t1, fc.integer({ min: 1, max: 3 }))
  .map(([n, a, b, cpus]) => sign(nodes[n], key.node(nodes[n].id), [a, b], {
    name: `n${n}`, addrs: [], labels: {}, cpus, memoryBytes: 1 << 30, version: '0.1.0', startedAt: 1, joinedAt: 1
  }))
const tasksRec = fc.tuple(nodeIdx, t0, t1, fc.nat(2))
  .map(([n, a, b, c]) => sign(nodes[n], key.tasks(nodes[n].id), [a, b], {
    tasks: Array.from({ length: c }, (_, slot) => ({ service: 'web', slot, container: `c${slot}`, state: 'running', health: 'none', generation: 1, error: '', startedAt: 1, history: [] }))
  }))
const memberRec = fc.tuple(nodeIdx, nodeIdx, fc.integer({ min: 0, max: 3 }), fc.constantFrom<MemberStatus>('alive', 'suspect', 'dead', 'left'))
  .map(([subject, writer, inc, status]) => {
    // alive/left only by the member itself; suspect/dead by anyone
    const w = status === 'alive' || status === 'left' ? subject : writer
    return sign(nodes[w], key.member(nodes[subject].id), [inc, STATUS_RANK[status]], { status })
  })

const recordArb: fc.Arbitrary<StateRecord> = fc.oneof(scaleRec, svcTombstone, nodecfgRec, nodeInfoRec, tasksRec, memberRec)
const recordsArb = fc.array(recordArb, { maxLength: 30 })

/** A delivery schedule: every record at least once, some several times, in any order. */
const deliveryArb = recordsArb.chain((recs) => fc.tuple(
  fc.constant(recs),
  fc.array(fc.nat(Math.max(0, recs.length - 1)), { maxLength: recs.length === 0 ? 0 : 20 })
    .chain((extra) => {
      const all = [...recs, ...extra.map((i) => recs[i])]
      return fc.shuffledSubarray(all, { minLength: all.length, maxLength: all.length })
    })
))

// ---- helpers ------------------------------------------------------------------------------

function stateOf (...lists: StateRecord[][]): ClusterState {
  const s = new ClusterState()
  for (const list of lists) for (const r of list) s.apply(r)
  return s
}

const fingerprint = (r: StateRecord): string => `${r.k}|${r.t[0]}.${r.t[1]}|${r.w}|${hex(r.p)}|${hex(r.s)}`
const contents = (s: ClusterState): string[] => s.records().map(fingerprint).sort()

function assertSame (a: ClusterState, b: ClusterState, what: string): void {
  assert.deepEqual(contents(a), contents(b), `${what}: records differ`)
  assert.equal(hex(a.rootHash()), hex(b.rootHash()), `${what}: root hashes differ`)
}

/** The initiator/responder exchange of node/sync.ts, on two in-memory states. */
function exchange (initiator: ClusterState, responder: ClusterState): void {
  const { push, want } = initiator.diff(responder.digest())
  for (const r of push) responder.apply(r)
  for (const r of want.map((k) => responder.get(k)).filter((r) => r !== undefined)) initiator.apply(r)
}

// ---- properties ---------------------------------------------------------------------------

describe('ClusterState merge', () => {
  it('generated records are valid records (the generators match validate.ts)', () => {
    fc.assert(fc.property(recordArb, (r) => {
      const v = validateRecord(CLUSTER, r, trust, Date.now())
      assert.ok(v.ok, v.ok ? '' : v.reason)
    }), { numRuns: 300 })
  })

  it('keeps, per key, the greatest record by compareRecords, and its decoded value', () => {
    fc.assert(fc.property(recordsArb, (recs) => {
      const s = stateOf(recs)
      const best = new Map<string, StateRecord>()
      for (const r of recs) {
        const cur = best.get(r.k)
        if (cur === undefined || compareRecords(r, cur) > 0) best.set(r.k, r)
      }
      assert.equal(s.size, best.size)
      for (const [k, r] of best) {
        assert.equal(fingerprint(s.get(k) as StateRecord), fingerprint(r))
        assert.deepEqual(s.value(k), unpack(r.p))
      }
    }), { numRuns: 200 })
  })

  it('is commutative: any delivery order, with duplicates, ends in the same records and root hash', () => {
    fc.assert(fc.property(deliveryArb, ([recs, delivery]) => {
      assertSame(stateOf(delivery), stateOf(recs), 'shuffled + duplicated delivery')
      assertSame(stateOf([...recs].reverse()), stateOf(recs), 'reversed delivery')
    }), { numRuns: 200 })
  })

  it('is commutative for two states: merge(A, B) = merge(B, A)', () => {
    fc.assert(fc.property(recordsArb, recordsArb, (a, b) => {
      const A = stateOf(a)
      const B = stateOf(b)
      assertSame(stateOf(A.records(), B.records()), stateOf(B.records(), A.records()), 'A∪B vs B∪A')
    }), { numRuns: 200 })
  })

  it('is associative: merge(merge(A, B), C) = merge(A, merge(B, C))', () => {
    fc.assert(fc.property(recordsArb, recordsArb, recordsArb, (a, b, c) => {
      const A = stateOf(a)
      const B = stateOf(b)
      const C = stateOf(c)
      const left = stateOf(stateOf(A.records(), B.records()).records(), C.records())
      const right = stateOf(A.records(), stateOf(B.records(), C.records()).records())
      assertSame(left, right, '(A∪B)∪C vs A∪(B∪C)')
    }), { numRuns: 150 })
  })

  it('is idempotent: re-applying anything already merged changes nothing', () => {
    fc.assert(fc.property(recordsArb, (recs) => {
      const s = stateOf(recs)
      const before = contents(s)
      const root = hex(s.rootHash())
      for (const r of recs) assert.equal(s.apply(r), false, `re-applying ${r.k} replaced something`)
      for (const r of s.records()) assert.equal(s.apply(r), false)
      assert.deepEqual(contents(s), before)
      assert.equal(hex(s.rootHash()), root)
      assertSame(stateOf(s.records(), s.records()), s, 'A∪A vs A')
    }), { numRuns: 200 })
  })

  it('keeps the incremental root hash equal to one computed from scratch, through replacements and forget()', () => {
    fc.assert(fc.property(recordsArb, fc.array(fc.constantFrom(...SERVICES.map(key.scale), ...nodes.map((n) => key.member(n.id))), { maxLength: 4 }), (recs, drop) => {
      const s = stateOf(recs)
      assert.equal(hex(s.rootHash()), hex(stateOf(s.records()).rootHash()))
      for (const k of drop) s.forget(k)
      assert.equal(hex(s.rootHash()), hex(stateOf(s.records()).rootHash()))
      if (s.size === 0) assert.equal(hex(s.rootHash()), hex(new ClusterState().rootHash()))
    }), { numRuns: 200 })
  })

  it('answers family() like a scan of all records, through replacements and forget()', () => {
    const scan = (s: ClusterState, family: string): Array<[string, unknown]> => s.records()
      .filter((r) => r.k.startsWith(`${family}/`))
      .map((r): [string, unknown] => [r.k.slice(family.length + 1), s.value(r.k)])
      .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    fc.assert(fc.property(recordsArb, recordsArb, fc.array(fc.constantFrom(...SERVICES.map(key.scale), ...nodes.map((n) => key.member(n.id))), { maxLength: 4 }), (recs, more, drop) => {
      const s = stateOf(recs)
      for (const f of ['scale', 'member', 'svc'] as const) assert.deepEqual(s.family(f), scan(s, f))
      for (const r of more) s.apply(r)
      for (const k of drop) s.forget(k)
      for (const f of ['scale', 'member', 'svc'] as const) assert.deepEqual(s.family(f), scan(s, f))
    }), { numRuns: 200 })
  })

  it('gives different root hashes to states with different contents', () => {
    fc.assert(fc.property(recordsArb, recordsArb, (a, b) => {
      const A = stateOf(a)
      const B = stateOf(b)
      const same = contents(A).join('\n') === contents(B).join('\n')
      assert.equal(hex(A.rootHash()) === hex(B.rootHash()), same)
    }), { numRuns: 200 })
  })

  describe('anti-entropy diff', () => {
    it('diff against its own digest is empty', () => {
      fc.assert(fc.property(recordsArb, (recs) => {
        const s = stateOf(recs)
        assert.deepEqual(s.diff(s.digest()), { push: [], want: [] })
        assert.deepEqual(s.diff(stateOf(s.records()).digest()), { push: [], want: [] })
      }), { numRuns: 150 })
    })

    it('one exchange (push + want) makes two states equal to the union of both', () => {
      fc.assert(fc.property(recordsArb, recordsArb, fc.boolean(), (a, b, aStarts) => {
        const A = stateOf(a)
        const B = stateOf(b)
        const union = stateOf(a, b)
        if (aStarts) exchange(A, B)
        else exchange(B, A)
        assertSame(A, B, 'after exchange')
        assertSame(A, union, 'A vs union')
      }), { numRuns: 300 })
    })

    it('pushes only what the peer lacks or holds older, and wants only what it holds newer or lacks', () => {
      fc.assert(fc.property(recordsArb, recordsArb, (a, b) => {
        const A = stateOf(a)
        const B = stateOf(b)
        const { push, want } = A.diff(B.digest())
        for (const r of push) {
          const theirs = B.get(r.k)
          assert.ok(theirs === undefined || fingerprint(theirs) !== fingerprint(r), `pushed ${r.k} the peer already holds`)
          assert.ok(theirs === undefined || compareVersion(r, theirs) >= 0, `pushed ${r.k} older than the peer's`)
        }
        for (const k of want) {
          const mine = A.get(k)
          const theirs = B.get(k) as StateRecord
          assert.ok(theirs !== undefined, `wanted ${k} the peer does not hold`)
          assert.ok(mine === undefined || fingerprint(mine) !== fingerprint(theirs), `wanted ${k} though equal`)
          assert.ok(mine === undefined || compareVersion(theirs, mine) >= 0, `wanted ${k} though ours is newer`)
        }
      }), { numRuns: 200 })
    })
  })
})
