/**
 * The mesh stream protocol's frames (protocol/mesh.ts): valid opens and replies round-trip, and
 * nothing a peer can send makes the decoders throw anything but WireError.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { isIP } from 'node:net'
import fc from 'fast-check'
import { pack, WireError } from '../../protocol/codec.ts'
import {
  decodeMeshOpen, decodeMeshReply, encodeMeshOpen, encodeMeshReply, MAX_IP_LITERAL_LENGTH, MAX_MESH_FRAME_BYTES,
  MAX_REFUSAL_REASON_LENGTH, MESH_VERSION, parseIpLiteral, type MeshOpen, type MeshReply
} from '../../protocol/mesh.ts'
import { SERVICE_NAME_PATTERN } from '../../protocol/spec.ts'

const port = fc.integer({ min: 1, max: 65535 })
const ipLiteral = fc.oneof(fc.ipV4(), fc.ipV6())
const meshOpen: fc.Arbitrary<MeshOpen> = fc.record({
  v: fc.constant(MESH_VERSION),
  service: fc.stringMatching(SERVICE_NAME_PATTERN),
  target: port,
  proto: fc.constantFrom('tcp' as const, 'udp' as const),
  client: fc.record({ addr: ipLiteral, port }, { noNullPrototype: true }),
  proxyProtocol: fc.boolean()
}, { noNullPrototype: true })
const meshReply: fc.Arbitrary<MeshReply> = fc.oneof(
  fc.constant({ ok: true as const }),
  fc.record({ ok: fc.constant(false as const), reason: fc.string({ maxLength: MAX_REFUSAL_REASON_LENGTH }) }, { noNullPrototype: true })
)

const VALID: MeshOpen = { v: 1, service: 'web', target: 80, proto: 'tcp', client: { addr: '203.0.113.7', port: 51234 }, proxyProtocol: false }

/** Runs `f`; fails the property if it throws anything but a WireError. */
function onlyWireErrors (f: () => unknown): void {
  try {
    f()
  } catch (err) {
    if (!(err instanceof WireError)) throw new Error(`threw ${(err as Error).name}: ${(err as Error).message}`)
  }
}

function rejects (f: () => unknown, pattern: RegExp): void {
  assert.throws(f, (err: Error) => err.name === 'WireError' && pattern.test(err.message))
}

describe('mesh frames', () => {
  it('valid opens round-trip', () => {
    fc.assert(fc.property(meshOpen, (o) => {
      const bytes = encodeMeshOpen(o)
      assert.ok(bytes.length <= MAX_MESH_FRAME_BYTES)
      assert.deepEqual(decodeMeshOpen(bytes), o)
    }), { numRuns: 500 })
  })

  it('replies round-trip', () => {
    fc.assert(fc.property(meshReply, (r) => {
      assert.deepEqual(decodeMeshReply(encodeMeshReply(r)), r)
    }), { numRuns: 300 })
  })

  it('a refusal reason longer than the limit is cut, not refused', () => {
    const r = decodeMeshReply(encodeMeshReply({ ok: false, reason: 'x'.repeat(5000) }))
    assert.deepEqual(r, { ok: false, reason: 'x'.repeat(MAX_REFUSAL_REASON_LENGTH) })
  })

  it('random bytes only ever throw WireError', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 2 * MAX_MESH_FRAME_BYTES }), (bytes) => {
      onlyWireErrors(() => decodeMeshOpen(bytes))
      onlyWireErrors(() => decodeMeshReply(bytes))
    }), { numRuns: 2000 })
  })

  it('random msgpack values only ever throw WireError', () => {
    fc.assert(fc.property(fc.anything({ withBigInt: false, withMap: false, withSet: false, withDate: false, withTypedArray: true, withNullPrototype: true }), (value) => {
      let bytes: Uint8Array
      try {
        bytes = pack(value)
      } catch {
        return // not encodable, so never on the wire
      }
      onlyWireErrors(() => decodeMeshOpen(bytes))
      onlyWireErrors(() => decodeMeshReply(bytes))
    }), { numRuns: 1000 })
  })

  it('opens with one field replaced by anything only ever throw WireError', () => {
    const field = fc.constantFrom('v', 'service', 'target', 'proto', 'client', 'proxyProtocol', 'addr', 'port')
    fc.assert(fc.property(meshOpen, field, fc.anything({ withBigInt: false, withMap: false, withSet: false, withDate: false }), (o, f, value) => {
      const mutated: Record<string, unknown> = { ...o, client: { ...o.client } }
      if (f === 'addr' || f === 'port') (mutated.client as Record<string, unknown>)[f] = value
      else mutated[f] = value
      onlyWireErrors(() => decodeMeshOpen(pack(mutated)))
    }), { numRuns: 1000 })
  })

  it('rejects each kind of malformed open', () => {
    const open = (patch: Record<string, unknown>): Uint8Array => pack({ ...VALID, ...patch })
    rejects(() => decodeMeshOpen(Uint8Array.of(0xc1)), /not a map/)
    rejects(() => decodeMeshOpen(Uint8Array.of(0x92, 0x01)), /undecodable/)
    rejects(() => decodeMeshOpen(pack([1, 'web'])), /not a map/)
    rejects(() => decodeMeshOpen(Uint8Array.of(...open({}), 0x00)), /undecodable/) // trailing bytes
    rejects(() => decodeMeshOpen(open({ v: 2 })), /version 2/)
    rejects(() => decodeMeshOpen(open({ v: '1' })), /version string/)
    rejects(() => decodeMeshOpen(open({ service: '-web' })), /service/)
    rejects(() => decodeMeshOpen(open({ service: 'a'.repeat(64) })), /service/)
    rejects(() => decodeMeshOpen(open({ target: 0 })), /target/)
    rejects(() => decodeMeshOpen(open({ target: 65536 })), /target/)
    rejects(() => decodeMeshOpen(open({ target: 80.5 })), /target/)
    rejects(() => decodeMeshOpen(open({ target: '80' })), /target/)
    rejects(() => decodeMeshOpen(open({ proto: 'sctp' })), /transport/)
    rejects(() => decodeMeshOpen(open({ proxyProtocol: 1 })), /proxyProtocol/)
    rejects(() => decodeMeshOpen(open({ client: '203.0.113.7:51234' })), /client/)
    rejects(() => decodeMeshOpen(open({ client: { addr: 'example.com', port: 1 } })), /client address/)
    rejects(() => decodeMeshOpen(open({ client: { addr: 'fe80::1%eth0', port: 1 } })), /client address/)
    rejects(() => decodeMeshOpen(open({ client: { addr: '1'.repeat(100), port: 1 } })), /client address/)
    rejects(() => decodeMeshOpen(open({ client: { addr: '1.2.3.4', port: 0 } })), /client port/)
    rejects(() => decodeMeshOpen(open({ padding: 'x'.repeat(MAX_MESH_FRAME_BYTES) })), /exceeds/)
  })

  it('ignores unknown extra fields of version 1', () => {
    assert.deepEqual(decodeMeshOpen(pack({ ...VALID, later: 'field' })), VALID)
  })

  it('encode refuses what decode would refuse', () => {
    rejects(() => encodeMeshOpen({ ...VALID, service: 'no spaces' }), /service/)
    rejects(() => encodeMeshOpen({ ...VALID, client: { addr: 'localhost', port: 1 } }), /client address/)
  })

  it('rejects each kind of malformed reply', () => {
    rejects(() => decodeMeshReply(pack({ v: 1 })), /ok flag/)
    rejects(() => decodeMeshReply(pack({ v: 1, ok: 'yes' })), /ok flag/)
    rejects(() => decodeMeshReply(pack({ v: 1, ok: false })), /reason/)
    rejects(() => decodeMeshReply(pack({ v: 1, ok: false, reason: 'x'.repeat(MAX_REFUSAL_REASON_LENGTH + 1) })), /reason/)
    rejects(() => decodeMeshReply(pack({ v: 2, ok: true })), /version/)
  })
})

describe('IP literals', () => {
  it('agrees with node:net on addresses and near-addresses (zones aside)', () => {
    const nearAddress = fc.string({ unit: fc.constantFrom(...'0123456789abcdefABCDEF:.'.split('')), maxLength: 50 })
    fc.assert(fc.property(fc.oneof(fc.ipV4(), fc.ipV6(), fc.ipV4Extended(), nearAddress), (s) => {
      const ours = parseIpLiteral(s)
      const theirs = isIP(s)
      // leading zeros in an IPv4 part are ambiguous (octal to some parsers), so refused
      const leadingZero = /(^|[.:])0[0-9]+(\.|$)/.test(s) && s.includes('.')
      if (leadingZero && theirs === 0) return
      assert.equal(ours === null ? 0 : ours.length === 4 ? 4 : 6, theirs, s)
    }), { numRuns: 3000 })
  })

  it('reads the bytes of the usual forms', () => {
    assert.deepEqual(parseIpLiteral('10.1.2.3'), Uint8Array.of(10, 1, 2, 3))
    assert.deepEqual(parseIpLiteral('::'), new Uint8Array(16))
    assert.deepEqual(parseIpLiteral('::1'), Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1))
    assert.deepEqual(parseIpLiteral('::ffff:127.0.0.1'), Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1))
    assert.deepEqual(parseIpLiteral('2001:DB8:0:0:0:0:0:a'), Uint8Array.of(0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a))
    for (const bad of ['', '1.2.3', '1.2.3.4.5', '256.1.1.1', '01.2.3.4', '1::2::3', ':1::', '1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7::8', '1.2.3.4::', '::1.2.3.4:1', 'fe80::1%lo']) {
      assert.equal(parseIpLiteral(bad), null, bad)
    }
    assert.equal(parseIpLiteral('ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255')?.length, 16)
    assert.equal('ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255'.length, MAX_IP_LITERAL_LENGTH)
  })
})
