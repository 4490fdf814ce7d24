import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import {
  decodeGossip, decodeSync, encodeGossip, encodeSync, MAX_GOSSIP_BYTES, MAX_KEY_LENGTH, MAX_PAYLOAD_BYTES,
  MAX_RECORDS_PER_MESSAGE, MAX_SYNC_FRAME_BYTES, MAX_WRITER_LENGTH, pack, recordToWire, WireError,
  type DigestEntry, type SyncMessage
} from '../../protocol/codec.ts'
import { MAX_CLOCK_DRIFT_MS } from '../../protocol/hlc.ts'
import { key, type Family } from '../../protocol/keys.ts'
import { memberVersion, refutation, STATUS_RANK, type MemberStatus } from '../../protocol/membership.ts'
import { compareRecords, type StateRecord } from '../../protocol/record.ts'
import { signRecord, type Signer } from '../../protocol/sign.ts'
import { DEFAULT_RESTART_POLICY, type ServiceSpec } from '../../protocol/spec.ts'
import { validateRecord } from '../../protocol/validate.ts'
import { hex, makeNodeSigner, makeOperatorSigner } from '../helpers/cluster.ts'

const CLUSTER = 'codec-test-cluster'
const NOW = 1_700_000_000_000
const trustedOp = makeOperatorSigner()
const untrustedOp = makeOperatorSigner()
const [nodeA, nodeB, nodeC] = await Promise.all([makeNodeSigner(), makeNodeSigner(), makeNodeSigner()])
const trust = { operators: new Set([trustedOp.id]) }

const spec = (name: string): ServiceSpec => ({
  name,
  stack: 'demo',
  image: 'nginx:alpine',
  env: ['A=1'],
  labels: { tier: 'front' },
  ports: [{ target: 80, published: 8080, protocol: 'tcp', mode: 'ingress' }],
  mounts: [],
  mode: 'replicated',
  replicas: 2,
  limits: { cpus: 0.5 },
  reservations: {},
  restartPolicy: DEFAULT_RESTART_POLICY,
  constraints: [{ attribute: 'labels.zone', op: '==', value: 'a' }],
  maxReplicasPerNode: 0
})
const nodeInfo = (name: string): unknown => ({ name, addrs: ['/ip4/127.0.0.1/tcp/4001'], labels: {}, cpus: 2, memoryBytes: 2 ** 31, version: '0.1.0', startedAt: NOW - 5000, joinedAt: NOW - 9000 })
const task = { service: 'web', slot: 1, container: 'web.1', state: 'running', health: 'none', generation: 1, error: '', startedAt: NOW - 100, history: [] }

const sign = (signer: Signer, k: string, t: [number, number], value: unknown, cluster = CLUSTER): StateRecord =>
  signRecord(cluster, signer, k, t, pack(value))
const member = (signer: Signer, subject: Signer, inc: number, status: MemberStatus): StateRecord =>
  sign(signer, key.member(subject.id), [inc, STATUS_RANK[status]], { status })

const fingerprint = (r: StateRecord): string => `${r.k}|${r.t[0]}.${r.t[1]}|${r.w}|${hex(r.p)}|${hex(r.s)}`
const validate = (r: StateRecord): ReturnType<typeof validateRecord> => validateRecord(CLUSTER, r, trust, NOW)
const reason = (v: ReturnType<typeof validateRecord>): string => (v.ok ? 'ok' : v.reason)

/** Correctly signed records that validate. */
const VALID: StateRecord[] = [
  sign(trustedOp, key.svc('web'), [NOW - 10, 0], { spec: spec('web'), generation: 3 }),
  sign(trustedOp, key.svc('old'), [NOW - 10, 1], null),
  sign(trustedOp, key.scale('web'), [NOW - 5, 0], { replicas: 4 }),
  sign(trustedOp, key.nodecfg(nodeA.id), [NOW, 0], { labels: { zone: 'a' }, availability: 'drain' }),
  sign(nodeA, key.node(nodeA.id), [NOW - 1, 0], nodeInfo('a')),
  sign(nodeB, key.tasks(nodeB.id), [NOW - 1, 2], { tasks: [task] }),
  sign(nodeB, key.tasks(nodeB.id), [NOW - 1, 3], { tasks: [task], shards: 4 }),
  sign(nodeB, `tasks/${nodeB.id}.3`, [NOW - 1, 2], { tasks: [task] }),
  member(nodeA, nodeA, 3, 'alive'),
  member(nodeB, nodeB, 1, 'left'),
  member(nodeA, nodeC, 2, 'suspect'),
  member(nodeB, nodeC, 2, 'dead'),
  sign(trustedOp, key.scale('db'), [NOW + MAX_CLOCK_DRIFT_MS, 0], { replicas: 1 })
]
/** Correctly signed records whose writer lacks authority, or that are otherwise invalid. */
const INVALID: Array<[string, StateRecord]> = [
  ['node writing svc/*', sign(nodeA, key.svc('web'), [NOW, 0], { spec: spec('web'), generation: 1 })],
  ['node writing scale/*', sign(nodeA, key.scale('web'), [NOW, 0], { replicas: 1 })],
  ['node writing nodecfg of itself', sign(nodeA, key.nodecfg(nodeA.id), [NOW, 0], { labels: {}, availability: 'active' })],
  ['untrusted operator writing svc/*', sign(untrustedOp, key.svc('web'), [NOW, 0], { spec: spec('web'), generation: 1 })],
  ['untrusted operator writing scale/*', sign(untrustedOp, key.scale('web'), [NOW, 0], { replicas: 9 })],
  ['node A writing node/B', sign(nodeA, key.node(nodeB.id), [NOW, 0], nodeInfo('b'))],
  ['node A writing tasks/B', sign(nodeA, key.tasks(nodeB.id), [NOW, 0], { tasks: [] })],
  ['node A writing a shard of tasks/B', sign(nodeA, `tasks/${nodeB.id}.1`, [NOW, 0], { tasks: [] })],
  ['a task shard beyond the last', sign(nodeA, `tasks/${nodeA.id}.32`, [NOW, 0], { tasks: [] })],
  ['a task shard number with a leading zero', sign(nodeA, `tasks/${nodeA.id}.01`, [NOW, 0], { tasks: [] })],
  ['a task shard count out of range', sign(nodeA, key.tasks(nodeA.id), [NOW, 0], { tasks: [], shards: 33 })],
  ['operator writing node/A', sign(trustedOp, key.node(nodeA.id), [NOW, 0], nodeInfo('a'))],
  ['alive declared by another node', member(nodeA, nodeB, 7, 'alive')],
  ['left declared by another node', member(nodeA, nodeB, 7, 'left')],
  ['suspect declared by an operator', sign(trustedOp, key.member(nodeB.id), [1, STATUS_RANK.suspect], { status: 'suspect' })],
  ['member status not matching the version rank', sign(nodeA, key.member(nodeA.id), [1, STATUS_RANK.alive], { status: 'dead' })],
  ['member version rank out of range', sign(nodeA, key.member(nodeA.id), [1, 4], { status: 'alive' })],
  ['timestamp too far ahead', sign(trustedOp, key.scale('web'), [NOW + MAX_CLOCK_DRIFT_MS + 1, 0], { replicas: 1 })],
  ['node timestamp too far ahead', sign(nodeA, key.node(nodeA.id), [NOW + 10 * MAX_CLOCK_DRIFT_MS, 0], nodeInfo('a'))],
  ['signed for another cluster (replay)', sign(trustedOp, key.scale('web'), [NOW, 0], { replicas: 1 }, 'other-cluster')],
  ['unknown key family', sign(trustedOp, 'secret/x', [NOW, 0], { replicas: 1 })],
  ['key with a nested path', sign(trustedOp, 'scale/a/b', [NOW, 0], { replicas: 1 })],
  ['invalid scale value', sign(trustedOp, key.scale('web'), [NOW, 0], { replicas: -1 })],
  ['invalid spec', sign(trustedOp, key.svc('web'), [NOW, 0], { spec: { ...spec('web'), image: '' }, generation: 1 })],
  ['undecodable payload', signRecord(CLUSTER, trustedOp, key.scale('x'), [NOW, 0], new Uint8Array([0xc1]))],
  ['payload with trailing bytes', signRecord(CLUSTER, trustedOp, key.scale('x'), [NOW, 0], new Uint8Array([...pack({ replicas: 1 }), 0xc1]))]
]

const VALID_FP = new Set(VALID.map(fingerprint))
const POOL = [...VALID, ...INVALID.map(([, r]) => r)]

// ---- decoding checks shared by the fuzzers -----------------------------------------------

function assertWireError (err: unknown, what: string): void {
  assert.ok(err instanceof WireError && (err as Error).name === 'WireError',
    `${what} threw ${(err as Error)?.name ?? typeof err} instead of WireError: ${(err as Error)?.message ?? String(err)}`)
}

function checkRecords (recs: StateRecord[]): void {
  for (const r of recs) {
    assert.ok(typeof r.k === 'string' && r.k.length > 0 && r.k.length <= MAX_KEY_LENGTH)
    assert.ok(Number.isSafeInteger(r.t[0]) && r.t[0] >= 0 && Number.isSafeInteger(r.t[1]) && r.t[1] >= 0)
    assert.ok(r.p instanceof Uint8Array && r.p.length <= MAX_PAYLOAD_BYTES && r.s instanceof Uint8Array && r.s.length === 64)
    let v: ReturnType<typeof validateRecord>
    try {
      v = validate(r)
    } catch (err) {
      assert.fail(`validateRecord threw on ${r.k}: ${(err as Error).message}`)
    }
    if (v.ok) assert.ok(VALID_FP.has(fingerprint(r)), `a tampered or unauthorised record validated: ${r.k} by ${r.w}`)
  }
}

/** Feed one frame to both decoders: only WireError may escape, and no forged record validates. */
function feed (frame: Uint8Array): void {
  let g
  try {
    g = decodeGossip(frame)
  } catch (err) {
    assertWireError(err, 'decodeGossip')
  }
  if (g !== undefined) {
    assert.ok(g.recs.length > 0 && g.recs.length <= MAX_RECORDS_PER_MESSAGE)
    checkRecords(g.recs)
  }
  let s: SyncMessage | undefined
  try {
    s = decodeSync(frame)
  } catch (err) {
    assertWireError(err, 'decodeSync')
  }
  if (s !== undefined && (s.type === 'push' || s.type === 'records')) checkRecords(s.recs)
}

// ---- frame generators ---------------------------------------------------------------------

const poolSubset = fc.shuffledSubarray(POOL, { minLength: 1, maxLength: 5 })
const digestOf = (recs: StateRecord[]): DigestEntry[] => recs.map((r) => [r.k, r.t[0], r.t[1], r.w, r.s.subarray(0, 8)])

/** Envelopes as plain values (before msgpack), for the field-level mutator. */
const envelopeArb: fc.Arbitrary<Record<string, unknown>> = fc.oneof(
  poolSubset.map((recs) => ({ v: 1, recs: recs.map(recordToWire) })),
  poolSubset.map((recs) => ({ v: 1, type: 'push', recs: recs.map(recordToWire), want: recs.map((r) => r.k) })),
  poolSubset.map((recs) => ({ v: 1, type: 'records', recs: recs.map(recordToWire) })),
  poolSubset.map((recs) => ({ v: 1, type: 'digest', entries: digestOf(recs) })),
  fc.uint8Array({ maxLength: 16 }).map((root) => ({ v: 1, type: 'hello', root })),
  fc.constant({ v: 1, type: 'equal' })
)

const validFrameArb: fc.Arbitrary<Uint8Array> = fc.oneof(
  poolSubset.map((recs) => encodeGossip(recs)),
  poolSubset.map((recs) => encodeSync({ type: 'push', recs, want: recs.map((r) => r.k) })),
  poolSubset.map((recs) => encodeSync({ type: 'records', recs })),
  poolSubset.map((recs) => encodeSync({ type: 'digest', entries: digestOf(recs) })),
  fc.uint8Array({ maxLength: 16 }).map((root) => encodeSync({ type: 'hello', root })),
  fc.constant(encodeSync({ type: 'equal' }))
)

const truncatedArb = validFrameArb.chain((f) => fc.nat(f.length - 1).map((n) => f.subarray(0, n)))

const mutatedArb = fc.tuple(validFrameArb, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 4 }))
  .map(([f, muts]) => {
    const out = new Uint8Array(f)
    for (const [pos, x] of muts) out[pos % out.length] ^= x
    return out
  })

function safePack (v: unknown): Uint8Array {
  try {
    return pack(v)
  } catch {
    return new Uint8Array([0xc1])
  }
}

/** Every path into a value: [] is the root; containers are descended into. */
function paths (v: unknown, prefix: Array<string | number> = [], out: Array<Array<string | number>> = []): Array<Array<string | number>> {
  out.push(prefix)
  if (Array.isArray(v)) v.forEach((x, i) => paths(x, [...prefix, i], out))
  else if (v !== null && typeof v === 'object' && !(v instanceof Uint8Array)) for (const [k, x] of Object.entries(v)) paths(x, [...prefix, k], out)
  return out
}

function clone (v: unknown): unknown {
  if (Array.isArray(v)) return v.map(clone)
  if (v instanceof Uint8Array) return new Uint8Array(v)
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, clone(x)]))
  return v
}

/** Replace (or delete) one field anywhere in a valid envelope with a value of any type. */
const wrongTypeArb = fc.tuple(envelopeArb, fc.nat(), fc.anything({ withBoxedValues: false }), fc.boolean()).map(([env, pick, value, del]) => {
  const all = paths(env).filter((p) => p.length > 0)
  const path = all[pick % all.length]
  const copy = clone(env) as Record<string | number, unknown>
  let parent = copy
  for (const step of path.slice(0, -1)) parent = parent[step] as Record<string | number, unknown>
  const last = path[path.length - 1]
  if (del && !Array.isArray(parent)) delete parent[last]
  else parent[last] = value
  return safePack(copy)
})

/** Maps with the keys our decoders read plus keys with special meaning to JS objects. */
const trickyKeys = fc.constantFrom('v', 'type', 'recs', 'want', 'entries', 'root', 'toString', 'valueOf', '__proto__', 'constructor', 'hasOwnProperty', 'length')
const trickyValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.constant(1), fc.constantFrom('hello', 'equal', 'digest', 'push', 'records'),
  fc.anything({ maxDepth: 2 }),
  fc.dictionary(trickyKeys, fc.anything({ maxDepth: 1 }), { maxKeys: 4 })
)
const randomValueArb = fc.oneof(
  fc.jsonValue().map(safePack),
  fc.anything().map(safePack),
  fc.dictionary(trickyKeys, trickyValue, { maxKeys: 6 }).map(safePack)
)

// ---- tests --------------------------------------------------------------------------------

const shapeRecord: fc.Arbitrary<StateRecord> = fc.record({
  k: fc.string({ minLength: 1, maxLength: MAX_KEY_LENGTH, unit: 'grapheme' }).filter((k) => k.length <= MAX_KEY_LENGTH),
  t: fc.tuple(fc.maxSafeNat(), fc.maxSafeNat()),
  w: fc.string({ minLength: 1, maxLength: MAX_WRITER_LENGTH, unit: 'grapheme' }).filter((w) => w.length <= MAX_WRITER_LENGTH),
  p: fc.uint8Array({ maxLength: 200 }),
  s: fc.uint8Array({ minLength: 64, maxLength: 64 })
})

/** Buffers (what msgpackr returns for bin) compared as plain Uint8Arrays. */
function plain (v: unknown): unknown {
  if (v instanceof Uint8Array) return new Uint8Array(v)
  if (Array.isArray(v)) return v.map(plain)
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]))
  return v
}

describe('codec round trips', () => {
  it('gossip batches decode to what was encoded', () => {
    fc.assert(fc.property(fc.array(shapeRecord, { minLength: 1, maxLength: 8 }), (recs) => {
      assert.deepEqual(plain(decodeGossip(encodeGossip(recs))), plain({ recs }))
    }), { numRuns: 300 })
    assert.deepEqual(plain(decodeGossip(encodeGossip(VALID))), plain({ recs: VALID }))
  })

  it('sync messages of every type decode to what was encoded', () => {
    const digestEntry: fc.Arbitrary<DigestEntry> = fc.tuple(
      fc.string({ maxLength: 64 }), fc.maxSafeNat(), fc.maxSafeNat(), fc.string({ maxLength: 64 }), fc.uint8Array({ maxLength: 32 }))
    const msg: fc.Arbitrary<SyncMessage> = fc.oneof(
      fc.uint8Array({ maxLength: 64 }).map((root) => ({ type: 'hello' as const, root })),
      fc.constant({ type: 'equal' as const }),
      fc.array(digestEntry, { maxLength: 10 }).map((entries) => ({ type: 'digest' as const, entries })),
      fc.tuple(fc.array(shapeRecord, { maxLength: 5 }), fc.array(fc.string({ maxLength: 40 }), { maxLength: 5 })).map(([recs, want]) => ({ type: 'push' as const, recs, want })),
      fc.array(shapeRecord, { maxLength: 5 }).map((recs) => ({ type: 'records' as const, recs }))
    )
    fc.assert(fc.property(msg, (m) => {
      assert.deepEqual(plain(decodeSync(encodeSync(m))), plain(m))
    }), { numRuns: 400 })
  })

  it('records survive the wire byte for byte and still validate', () => {
    for (const r of VALID) {
      const [back] = decodeGossip(encodeGossip([r])).recs
      assert.equal(fingerprint(back), fingerprint(r))
      assert.ok(validate(back).ok, reason(validate(back)))
    }
  })
})

describe('codec limits', () => {
  const rec = VALID[2]
  const gossipOf = (wire: unknown[]): Uint8Array => pack({ v: 1, recs: [wire] })
  const expectWire = (frame: Uint8Array, decode: (b: Uint8Array) => unknown, what: string): void => {
    assert.throws(() => decode(frame), (err: unknown) => { assertWireError(err, what); return true }, what)
  }

  it('rejects oversized frames before decoding them', () => {
    const big = new Uint8Array(MAX_GOSSIP_BYTES + 1)
    big.set(encodeGossip([rec]))
    expectWire(big, decodeGossip, 'gossip frame over the limit')
    const bigSync = new Uint8Array(MAX_SYNC_FRAME_BYTES + 1)
    bigSync.set(encodeSync({ type: 'equal' }))
    expectWire(bigSync, decodeSync, 'sync frame over the limit')
    // a large but legal batch still decodes
    const fat = Array.from({ length: 15 }, (_, i) => ({ ...rec, k: `scale/s${i}`, p: new Uint8Array(MAX_PAYLOAD_BYTES) }))
    assert.ok(encodeGossip(fat).length < MAX_GOSSIP_BYTES)
    assert.equal(decodeGossip(encodeGossip(fat)).recs.length, 15)
  })

  it('rejects bad envelopes', () => {
    expectWire(pack({ v: 2, recs: [recordToWire(rec)] }), decodeGossip, 'wire version 2')
    expectWire(pack({ recs: [recordToWire(rec)] }), decodeGossip, 'no version')
    expectWire(pack([1, [recordToWire(rec)]]), decodeGossip, 'array envelope')
    expectWire(pack(null), decodeGossip, 'null envelope')
    expectWire(pack({ v: 1, recs: [] }), decodeGossip, 'empty batch')
    expectWire(pack({ v: 1, recs: Array.from({ length: MAX_RECORDS_PER_MESSAGE + 1 }, () => recordToWire(rec)) }), decodeGossip, 'batch too long')
    assert.equal(decodeGossip(pack({ v: 1, recs: Array.from({ length: MAX_RECORDS_PER_MESSAGE }, () => recordToWire(rec)) })).recs.length, MAX_RECORDS_PER_MESSAGE)
    expectWire(pack({ v: 1, type: 'nope' }), decodeSync, 'unknown sync type')
    expectWire(pack({ v: 1 }), decodeSync, 'sync without type')
    expectWire(pack({ v: 1, type: 'hello', root: new Uint8Array(65) }), decodeSync, 'root hash too long')
    expectWire(pack({ v: 1, type: 'hello', root: 'abc' }), decodeSync, 'root hash not bytes')
    expectWire(pack({ v: 1, type: 'digest', entries: [['k', 1, 1, 'w', new Uint8Array(33)]] }), decodeSync, 'digest tag too long')
    expectWire(pack({ v: 1, type: 'digest', entries: {} }), decodeSync, 'digest not a list')
    expectWire(pack({ v: 1, type: 'push', recs: [], want: [1] }), decodeSync, 'want not strings')
    expectWire(pack({ v: 1, type: 'push', recs: [], want: ['x'.repeat(MAX_KEY_LENGTH + 1)] }), decodeSync, 'want key too long')
    expectWire(new Uint8Array([0xc1]), decodeSync, 'reserved msgpack byte')
    expectWire(new Uint8Array(0), decodeGossip, 'empty frame')
  })

  it('rejects records with fields of the wrong type or size', () => {
    const w = recordToWire(rec)
    const bad: Array<[string, unknown[]]> = [
      ['5 fields', w.slice(0, 5)],
      ['7 fields', [...w, 1]],
      ['empty key', ['', ...w.slice(1)]],
      ['key too long', ['k'.repeat(MAX_KEY_LENGTH + 1), ...w.slice(1)]],
      ['numeric key', [7, ...w.slice(1)]],
      ['negative version', [w[0], -1, ...w.slice(2)]],
      ['fractional version', [w[0], 1.5, ...w.slice(2)]],
      ['unsafe version', [w[0], 2 ** 53, ...w.slice(2)]],
      ['string version', [w[0], w[1], '0', ...w.slice(3)]],
      ['empty writer', [...w.slice(0, 3), '', ...w.slice(4)]],
      ['writer too long', [...w.slice(0, 3), 'w'.repeat(MAX_WRITER_LENGTH + 1), ...w.slice(4)]],
      ['payload too big', [...w.slice(0, 4), new Uint8Array(MAX_PAYLOAD_BYTES + 1), w[5]]],
      ['payload as string', [...w.slice(0, 4), 'abc', w[5]]],
      ['short signature', [...w.slice(0, 5), new Uint8Array(63)]],
      ['long signature', [...w.slice(0, 5), new Uint8Array(65)]],
      ['signature as array', [...w.slice(0, 5), Array.from(new Uint8Array(64))]]
    ]
    for (const [what, wire] of bad) {
      expectWire(gossipOf(wire), decodeGossip, `gossip record with ${what}`)
      expectWire(pack({ v: 1, type: 'records', recs: [wire] }), decodeSync, `sync record with ${what}`)
    }
  })

  it('reports envelope fields whose value cannot be turned into a string as WireError', () => {
    // {toString: 1} has no usable toString/valueOf: String() of it throws a TypeError
    expectWire(pack({ v: { toString: 1 } }), decodeGossip, 'gossip envelope with v = {toString: 1}')
    expectWire(pack({ v: { toString: 1 } }), decodeSync, 'sync envelope with v = {toString: 1}')
    expectWire(pack({ v: 1, type: { toString: 1 } }), decodeSync, 'sync envelope with type = {toString: 1}')
  })
})

describe('decoding garbage (fuzz)', () => {
  // Each kind of garbage runs as its own property, so one finding does not hide the others.
  it('random bytes', () => { fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), feed), { numRuns: 1500 }) })
  it('truncated valid frames', () => { fc.assert(fc.property(truncatedArb, feed), { numRuns: 1000 }) })
  it('valid frames with mutated bytes', () => { fc.assert(fc.property(mutatedArb, feed), { numRuns: 2000 }) })
  // the example is what fast-check found here first: `v` replaced by a map with a `toString` key
  it('valid frames with a field of the wrong type or missing', () => {
    fc.assert(fc.property(wrongTypeArb, feed), { numRuns: 1500, examples: [[pack({ v: { toString: '' }, type: 'equal' })]] })
  })
  it('msgpack of random values and maps with special keys', () => {
    fc.assert(fc.property(randomValueArb, feed), { numRuns: 1500, examples: [[pack({ v: 1, type: { valueOf: 0, toString: [] } })]] })
  })
  it('oversized frames', () => {
    const big = new Uint8Array(MAX_SYNC_FRAME_BYTES + 1)
    fc.assert(fc.property(validFrameArb, fc.constantFrom(MAX_GOSSIP_BYTES + 1, MAX_GOSSIP_BYTES + 4096, MAX_SYNC_FRAME_BYTES + 1), (f, size) => {
      big.fill(0)
      big.set(f)
      feed(big.subarray(0, size))
    }), { numRuns: 30 })
  })
  it('valid frames still decode, and exactly their valid records validate', () => {
    fc.assert(fc.property(poolSubset, fc.constantFrom('gossip', 'push', 'records'), (recs, kind) => {
      const frame = kind === 'gossip' ? encodeGossip(recs) : encodeSync(kind === 'push' ? { type: 'push', recs, want: [] } : { type: 'records', recs })
      feed(frame)
      const back = kind === 'gossip' ? decodeGossip(frame).recs : (decodeSync(frame) as { recs: StateRecord[] }).recs
      assert.deepEqual(back.map(fingerprint), recs.map(fingerprint))
      for (const r of back) assert.equal(validate(r).ok, VALID_FP.has(fingerprint(r)), `${r.k} by ${r.w.slice(0, 12)}: ${reason(validate(r))}`)
    }), { numRuns: 300 })
  })
})

describe('validateRecord', () => {
  it('accepts correctly signed records from writers with authority', () => {
    for (const r of VALID) assert.ok(validate(r).ok, `${r.k} by ${r.w.slice(0, 12)}: ${reason(validate(r))}`)
  })

  for (const [what, r] of INVALID) {
    it(`rejects: ${what}`, () => {
      const v = validate(r)
      assert.equal(v.ok, false, `${what} was accepted`)
    })
  }

  it('rejects any tampering with a valid record: signature, payload, key, version, writer', () => {
    const tamper = fc.oneof(
      fc.tuple(fc.constant('s' as const), fc.nat(63), fc.integer({ min: 1, max: 255 })),
      fc.tuple(fc.constant('p' as const), fc.nat(), fc.integer({ min: 1, max: 255 })),
      fc.tuple(fc.constant('t0' as const), fc.integer({ min: 1, max: 1000 }), fc.constant(0)),
      fc.tuple(fc.constant('t1' as const), fc.integer({ min: 1, max: 3 }), fc.constant(0)),
      fc.tuple(fc.constant('k' as const), fc.nat(), fc.constant(0)),
      fc.tuple(fc.constant('w' as const), fc.nat(), fc.constant(0))
    )
    const otherKeys = [key.scale('web'), key.scale('api'), key.svc('web'), key.node(nodeA.id), key.node(nodeB.id), key.member(nodeC.id), key.tasks(nodeB.id)]
    const writers = [trustedOp.id, untrustedOp.id, nodeA.id, nodeB.id, nodeC.id]
    fc.assert(fc.property(fc.constantFrom(...VALID), tamper, (r, [field, a, b]) => {
      let t: StateRecord
      switch (field) {
        case 's': { const s = new Uint8Array(r.s); s[a] ^= b; t = { ...r, s }; break }
        case 'p': {
          if (r.p.length === 0) return
          const p = new Uint8Array(r.p); p[a % p.length] ^= b; t = { ...r, p }; break
        }
        case 't0': t = { ...r, t: [Math.max(0, r.t[0] - a), r.t[1]] }; if (t.t[0] === r.t[0]) return; break
        case 't1': t = { ...r, t: [r.t[0], (r.t[1] + a) % 4] }; break
        case 'k': t = { ...r, k: otherKeys[a % otherKeys.length] }; if (t.k === r.k) return; break
        case 'w': t = { ...r, w: writers[a % writers.length] }; if (t.w === r.w) return; break
      }
      const v = validate(t)
      assert.equal(v.ok, false, `tampered ${field} of ${r.k} was accepted`)
    }), { numRuns: 1500 })
  })

  it('any suspect/dead rumour it accepts can be refuted by a record that survives the wire and validates', () => {
    // Any node key may declare another member suspect/dead at any incarnation. The member answers
    // with alive at incarnation + 1, which has to stay a safe integer to be sent at all.
    fc.assert(fc.property(fc.maxSafeNat(), fc.constantFrom<MemberStatus>('suspect', 'dead'), (inc, status) => {
      const rumour = member(nodeA, nodeB, inc, status)
      fc.pre(validate(rumour).ok)
      const answer = refutation({ status: 'alive', incarnation: 1 }, { status, incarnation: inc })
      assert.ok(answer !== null)
      const refute = sign(nodeB, key.member(nodeB.id), memberVersion(answer), { status: 'alive' })
      let back: StateRecord
      try {
        back = decodeGossip(encodeGossip([refute])).recs[0]
      } catch (err) {
        assert.fail(`a ${status} rumour at incarnation ${inc} was accepted, but its refutation at ${answer.incarnation} cannot cross the wire: ${(err as Error).message}`)
      }
      assert.ok(validate(back).ok, reason(validate(back)))
      assert.ok(compareRecords(back, rumour) > 0)
    }), { numRuns: 500, examples: [[Number.MAX_SAFE_INTEGER, 'dead'], [Number.MAX_SAFE_INTEGER - 1, 'suspect']] })
  })

  it('grants authority exactly as keys.ts describes (model check over signer × key × version)', () => {
    type W = 'trusted' | 'untrusted' | 'A' | 'B' | 'C'
    const signers: Record<W, Signer> = { trusted: trustedOp, untrusted: untrustedOp, A: nodeA, B: nodeB, C: nodeC }
    const subject = fc.constantFrom<W>('A', 'B', 'C')
    const writer = fc.constantFrom<W>('trusted', 'untrusted', 'A', 'B', 'C')
    const wall = fc.constantFrom(0, NOW - 1, NOW, NOW + MAX_CLOCK_DRIFT_MS, NOW + MAX_CLOCK_DRIFT_MS + 1, NOW + 100 * MAX_CLOCK_DRIFT_MS)
    const status = fc.constantFrom<MemberStatus>('alive', 'suspect', 'dead', 'left')
    const family = fc.constantFrom<Family>('svc', 'scale', 'nodecfg', 'key', 'admit', 'secret', 'config', 'netkey', 'member', 'node', 'tasks', 'mesh', 'share', 'rollout')
    fc.assert(fc.property(family, writer, subject, wall, fc.nat(3), status, (fam, w, subj, t0, inc, st) => {
      const signer = signers[w]
      const id = signers[subj].id
      let r: StateRecord
      let expected: boolean
      const isNode = w === 'A' || w === 'B' || w === 'C'
      const inTime = t0 <= NOW + MAX_CLOCK_DRIFT_MS
      switch (fam) {
        case 'svc': r = sign(signer, key.svc('web'), [t0, 0], { spec: spec('web'), generation: 1 }); expected = w === 'trusted' && inTime; break
        case 'scale': r = sign(signer, key.scale('web'), [t0, 1], { replicas: 2 }); expected = w === 'trusted' && inTime; break
        case 'nodecfg': r = sign(signer, key.nodecfg(id), [t0, 0], { labels: {}, availability: 'pause' }); expected = w === 'trusted' && inTime; break
        case 'key': r = sign(signer, key.key('alice'), [t0, 0], { publicKey: 'ab'.repeat(32), role: 'viewer' }); expected = w === 'trusted' && inTime; break
        case 'admit': r = sign(signer, key.admit(id), [t0, 0], {}); expected = w === 'trusted' && inTime; break
        case 'secret': r = sign(signer, key.secret('db'), [t0, 0], { id: 'ab'.repeat(16), nonce: new Uint8Array(12), data: new Uint8Array(20), size: 4 }); expected = w === 'trusted' && inTime; break
        case 'config': r = sign(signer, key.config('app.conf'), [t0, 0], { id: 'ab'.repeat(16), data: new Uint8Array(4) }); expected = w === 'trusted' && inTime; break
        case 'netkey': r = sign(signer, key.netkey('0123456789abcdef'), [t0, 0], { fingerprint: 'ab'.repeat(32), stage: 'install' }); expected = w === 'trusted' && inTime; break
        case 'share':
          r = sign(signer, key.share(id, 'db'), [t0, 0], { id: 'ab'.repeat(16), to: 'cd'.repeat(32), eph: new Uint8Array(32), nonce: new Uint8Array(12), box: new Uint8Array(48) })
          expected = isNode && inTime
          break
        case 'rollout':
          r = sign(signer, key.rollout('web'), [t0, 0], { generation: 2, epoch: 0, outcome: 'rollback', reason: 'failed', at: NOW })
          expected = isNode && inTime
          break
        case 'node': r = sign(signer, key.node(id), [t0, 0], nodeInfo('x')); expected = w === subj && inTime; break
        case 'tasks': r = sign(signer, key.tasks(id), [t0, 0], { tasks: [task] }); expected = w === subj && inTime; break
        case 'mesh': r = sign(signer, key.mesh(id), [t0, 0], { ports: [{ service: 'web', port: 8080, protocol: 'tcp', error: '' }] }); expected = w === subj && inTime; break
        case 'member':
          r = sign(signer, key.member(id), [inc, STATUS_RANK[st]], { status: st })
          expected = st === 'alive' || st === 'left' ? w === subj : isNode
          break
      }
      const v = validate(r)
      assert.equal(v.ok, expected, `${fam} of ${subj} by ${w} at ${t0 - NOW}: ${reason(v)}`)
    }), { numRuns: 1000 })
  })
})
