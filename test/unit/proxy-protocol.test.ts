/**
 * PROXY protocol v2 headers (node/mesh/proxy-protocol.ts) against byte vectors written out by
 * hand from the spec (haproxy proxy-protocol.txt, section 2.2), and the parser against the builder.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { parseProxyV2Header, proxyV2Header, type ProxyAddresses } from '../../node/mesh/proxy-protocol.ts'
import { parseIpLiteral } from '../../protocol/mesh.ts'

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'))
/** \r\n\r\n\0\r\nQUIT\n */
const SIG = '0d0a0d0a 000d0a51 5549540a'

const VECTORS: Array<{ name: string, input: ProxyAddresses, bytes: string }> = [
  {
    name: 'TCP over IPv4',
    input: { proto: 'tcp', source: { addr: '192.168.0.1', port: 56324 }, dest: { addr: '10.0.0.2', port: 443 } },
    // PROXY, TCP4, 12 bytes: src, dst, src port 0xdc04, dst port 0x01bb
    bytes: `${SIG} 21 11 000c c0a80001 0a000002 dc04 01bb`
  },
  {
    name: 'UDP over IPv4',
    input: { proto: 'udp', source: { addr: '127.0.0.1', port: 5353 }, dest: { addr: '127.0.0.1', port: 53 } },
    bytes: `${SIG} 21 12 000c 7f000001 7f000001 14e9 0035`
  },
  {
    name: 'TCP over IPv6',
    input: { proto: 'tcp', source: { addr: '2001:db8::1', port: 40000 }, dest: { addr: '2001:db8::2', port: 8080 } },
    // PROXY, TCP6, 36 bytes
    bytes: `${SIG} 21 21 0024 20010db8000000000000000000000001 20010db8000000000000000000000002 9c40 1f90`
  },
  {
    name: 'UDP over IPv6',
    input: { proto: 'udp', source: { addr: '::1', port: 1234 }, dest: { addr: '::1', port: 5678 } },
    bytes: `${SIG} 21 22 0024 00000000000000000000000000000001 00000000000000000000000000000001 04d2 162e`
  },
  {
    name: 'IPv4-mapped IPv6 is sent as IPv4',
    input: { proto: 'tcp', source: { addr: '::ffff:127.0.0.1', port: 50000 }, dest: { addr: '::ffff:127.0.0.2', port: 80 } },
    bytes: `${SIG} 21 11 000c 7f000001 7f000002 c350 0050`
  },
  {
    name: 'an IPv4 source with an IPv4-mapped destination is IPv4',
    input: { proto: 'tcp', source: { addr: '10.0.0.1', port: 1 }, dest: { addr: '::ffff:10.0.0.2', port: 2 } },
    bytes: `${SIG} 21 11 000c 0a000001 0a000002 0001 0002`
  },
  {
    name: 'an IPv6 source maps an IPv4 destination to IPv6',
    input: { proto: 'tcp', source: { addr: '2001:db8::1', port: 1 }, dest: { addr: '10.0.0.1', port: 2 } },
    bytes: `${SIG} 21 21 0024 20010db8000000000000000000000001 00000000000000000000ffff0a000001 0001 0002`
  },
  {
    name: 'an IPv4 source with a genuine IPv6 destination is sent as IPv6',
    input: { proto: 'udp', source: { addr: '10.0.0.1', port: 1 }, dest: { addr: 'fd00::5', port: 2 } },
    bytes: `${SIG} 21 22 0024 00000000000000000000ffff0a000001 fd000000000000000000000000000005 0001 0002`
  }
]

describe('PROXY protocol v2', () => {
  for (const v of VECTORS) {
    it(`builds: ${v.name}`, () => {
      assert.equal(Buffer.from(proxyV2Header(v.input)).toString('hex'), Buffer.from(hex(v.bytes)).toString('hex'))
    })
  }

  it('parses what it builds, with the payload starting after the header', () => {
    const header = proxyV2Header(VECTORS[0].input)
    const withPayload = new Uint8Array([...header, ...Buffer.from('GET / HTTP/1.1\r\n')])
    const parsed = parseProxyV2Header(withPayload)
    assert.deepEqual(parsed, { command: 'proxy', addresses: VECTORS[0].input, tlvs: new Uint8Array(0), length: 28 })
    assert.equal(Buffer.from(withPayload.subarray(parsed.length)).toString(), 'GET / HTTP/1.1\r\n')
    assert.deepEqual(parseProxyV2Header(hex(VECTORS[2].bytes))?.addresses, VECTORS[2].input)
    assert.deepEqual(parseProxyV2Header(hex(VECTORS[7].bytes))?.addresses?.source, { addr: '::ffff:10.0.0.1', port: 1 })
  })

  it('round-trips arbitrary addresses (as normalised on the wire)', () => {
    const endpoint = fc.record({ addr: fc.oneof(fc.ipV4(), fc.ipV6()), port: fc.integer({ min: 0, max: 65535 }) })
    fc.assert(fc.property(fc.constantFrom('tcp' as const, 'udp' as const), endpoint, endpoint, (proto, source, dest) => {
      const parsed = parseProxyV2Header(proxyV2Header({ proto, source, dest }))
      assert.ok(parsed?.addresses)
      assert.equal(parsed.addresses.proto, proto)
      for (const [sent, got] of [[source, parsed.addresses.source], [dest, parsed.addresses.dest]] as const) {
        assert.equal(got.port, sent.port)
        const a = parseIpLiteral(sent.addr)
        const b = parseIpLiteral(got.addr)
        assert.ok(a !== null && b !== null)
        // the same address, whichever family it travelled as
        const tail = (x: Uint8Array): string => Buffer.from(x.length === 16 && x.subarray(0, 12).every((n, i) => n === (i < 10 ? 0 : 0xff)) ? x.subarray(12) : x).toString('hex')
        assert.equal(tail(b), tail(a))
      }
    }), { numRuns: 500 })
  })

  it('prints IPv6 addresses in RFC 5952 form', () => {
    const at = (addr: string): string | undefined => parseProxyV2Header(proxyV2Header({ proto: 'tcp', source: { addr, port: 1 }, dest: { addr: '::1', port: 2 } }))?.addresses?.source.addr
    assert.equal(at('2001:0DB8:0000:0000:0001:0000:0000:0001'), '2001:db8::1:0:0:1')
    assert.equal(at('2001:db8:0:1:1:1:1:1'), '2001:db8:0:1:1:1:1:1')
    assert.equal(at('0:0:0:0:0:0:0:0'), '::')
    assert.equal(at('fe80:0:0:0:0:0:0:0'), 'fe80::')
  })

  it('needs more bytes for any proper prefix of a header', () => {
    const header = hex(VECTORS[2].bytes)
    for (let n = 0; n < header.length; n++) assert.equal(parseProxyV2Header(header.subarray(0, n)), null, `${n} bytes`)
  })

  it('reads LOCAL headers, unknown families and TLVs', () => {
    // LOCAL (health checks from the proxy itself): no addresses
    assert.deepEqual(parseProxyV2Header(hex(`${SIG} 20 00 0000`)), { command: 'local', addresses: null, tlvs: new Uint8Array(0), length: 16 })
    // PROXY over UNSPEC: the receiver uses the connection's own addresses
    assert.equal(parseProxyV2Header(hex(`${SIG} 21 00 0000`))?.addresses, null)
    // a TLV (PP2_TYPE_NOOP 0x04, length 2) after the IPv4 addresses
    const withTlv = parseProxyV2Header(hex(`${SIG} 21 11 0011 7f000001 7f000001 0001 0002 04 0002 abcd`))
    assert.equal(withTlv?.length, 16 + 17)
    assert.deepEqual(withTlv?.tlvs, hex('04 0002 abcd'))
    assert.deepEqual(withTlv?.addresses?.dest, { addr: '127.0.0.1', port: 2 })
  })

  it('refuses what is not a v2 header', () => {
    const refused = { name: 'ProxyHeaderError' }
    assert.throws(() => parseProxyV2Header(Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n')), refused) // v1, text
    assert.throws(() => parseProxyV2Header(Buffer.from('GET / HTTP/1.1\r\n')), refused)
    assert.throws(() => parseProxyV2Header(hex(`${SIG} 11 11 000c`)), refused) // version 1 nibble
    assert.throws(() => parseProxyV2Header(hex(`${SIG} 22 11 000c`)), refused) // command 2
    assert.throws(() => parseProxyV2Header(hex(`${SIG} 21 41 0000`)), refused) // family 4
    assert.throws(() => parseProxyV2Header(hex(`${SIG} 21 11 0004 7f000001`)), refused) // address block too short
    assert.throws(() => proxyV2Header({ proto: 'tcp', source: { addr: 'localhost', port: 1 }, dest: { addr: '::1', port: 1 } }), refused)
    assert.throws(() => proxyV2Header({ proto: 'tcp', source: { addr: '::1', port: 70000 }, dest: { addr: '::1', port: 1 } }), refused)
  })
})
