/**
 * Datagram framing for UDP through the mesh (node/mesh/datagrams.ts): whatever chunks the
 * stream delivers, the reader gives back exactly the datagrams that were sent.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { DatagramReader, encodeDatagram, MAX_DATAGRAM_BYTES, type Chunk } from '../../node/mesh/datagrams.ts'

function concat (parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) { out.set(p, at); at += p.length }
  return out
}

/** `bytes` cut at the given points (fractions of its length), in order. */
function cut (bytes: Uint8Array, points: number[]): Uint8Array[] {
  const at = [...new Set(points.map((p) => Math.floor(p * bytes.length)))].sort((a, b) => a - b)
  const out: Uint8Array[] = []
  let from = 0
  for (const p of [...at, bytes.length]) {
    out.push(bytes.subarray(from, p))
    from = p
  }
  return out
}

/** A stand-in for the Uint8ArrayList a stream may deliver: an iterable of buffers with a byteLength. */
function list (bufs: Uint8Array[]): Chunk {
  return { byteLength: bufs.reduce((n, b) => n + b.length, 0), * [Symbol.iterator] () { yield * bufs } } as unknown as Chunk
}

const datagram = fc.oneof(
  { weight: 8, arbitrary: fc.uint8Array({ maxLength: 300 }) },
  { weight: 1, arbitrary: fc.uint8Array({ minLength: 60_000, maxLength: MAX_DATAGRAM_BYTES }) }
)

describe('datagram framing', () => {
  it('arbitrary chunk boundaries give back the same datagrams', () => {
    fc.assert(fc.property(
      fc.array(datagram, { maxLength: 12 }),
      fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 40 }),
      fc.boolean(),
      (datagrams, points, asLists) => {
        const chunks = cut(concat(datagrams.map(encodeDatagram)), points)
        const reader = new DatagramReader()
        const got: Uint8Array[] = []
        for (let i = 0; i < chunks.length; i++) {
          // group neighbouring chunks into list chunks, as a stream's read buffer does
          if (asLists && i + 1 < chunks.length) {
            got.push(...reader.feed(list([chunks[i], chunks[i + 1]])))
            i++
          } else {
            got.push(...reader.feed(chunks[i]))
          }
        }
        assert.equal(got.length, datagrams.length)
        got.forEach((d, i) => { assert.deepEqual(d, datagrams[i]) })
        assert.equal(reader.bufferedBytes, 0)
      }
    ), { numRuns: 300 })
  })

  it('one byte at a time', () => {
    const datagrams = [Uint8Array.of(1, 2, 3), new Uint8Array(0), new Uint8Array(1000).fill(7)]
    const bytes = concat(datagrams.map(encodeDatagram))
    const reader = new DatagramReader()
    const got: Uint8Array[] = []
    for (let i = 0; i < bytes.length; i++) got.push(...reader.feed(bytes.subarray(i, i + 1)))
    assert.deepEqual(got, datagrams)
  })

  it('frames with a 2-byte big-endian length', () => {
    assert.deepEqual(encodeDatagram(Uint8Array.of(0xaa, 0xbb)), Uint8Array.of(0x00, 0x02, 0xaa, 0xbb))
    assert.deepEqual(encodeDatagram(new Uint8Array(0)), Uint8Array.of(0, 0))
    assert.deepEqual(encodeDatagram(new Uint8Array(MAX_DATAGRAM_BYTES)).subarray(0, 2), Uint8Array.of(0xff, 0xe3))
    assert.throws(() => encodeDatagram(new Uint8Array(MAX_DATAGRAM_BYTES + 1)), { name: 'RangeError' })
  })

  it('rejects a length above the largest UDP payload, and everything after it', () => {
    const reader = new DatagramReader()
    assert.deepEqual(reader.feed(Uint8Array.of(0x00, 0x01, 0x41)), [Uint8Array.of(0x41)])
    assert.throws(() => reader.feed(Uint8Array.of(0xff, 0xe4)), { name: 'WireError' })
    assert.throws(() => reader.feed(Uint8Array.of(0x00, 0x00)), { name: 'WireError' })
  })

  it('holds at most one incomplete datagram', () => {
    const reader = new DatagramReader()
    const frame = encodeDatagram(new Uint8Array(MAX_DATAGRAM_BYTES).fill(1))
    assert.deepEqual(reader.feed(frame.subarray(0, 1000)), [])
    assert.equal(reader.bufferedBytes, 1000)
    assert.equal(reader.feed(frame.subarray(1000)).length, 1)
    assert.equal(reader.bufferedBytes, 0)
  })
})
