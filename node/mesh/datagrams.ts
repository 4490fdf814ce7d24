/**
 * UDP through the mesh: a libp2p stream is a byte stream, so each datagram travels as a 2-byte
 * big-endian length followed by its payload, and the far side cuts the bytes back into the same
 * datagrams whatever chunks they arrive in.
 */
import type { StreamMessageEvent } from '@libp2p/interface'
import { WireError } from '../../protocol/codec.ts'

/**
 * Largest datagram carried: the largest UDP payload over IPv4 (65 535 minus the 20-byte IP and
 * 8-byte UDP headers). It also fits the 2-byte length prefix.
 */
export const MAX_DATAGRAM_BYTES = 65_507
/** Bytes of the length prefix in front of each datagram. */
export const DATAGRAM_HEADER_BYTES = 2

/** What a stream's 'message' event carries: a Uint8Array or a Uint8ArrayList. */
export type Chunk = StreamMessageEvent['data']

/** Frames one datagram. Throws RangeError for a payload above MAX_DATAGRAM_BYTES (IPv6 allows a few more bytes; drop those). */
export function encodeDatagram (payload: Uint8Array): Uint8Array {
  if (payload.byteLength > MAX_DATAGRAM_BYTES) throw new RangeError(`datagram of ${payload.byteLength} bytes exceeds ${MAX_DATAGRAM_BYTES}`)
  const out = new Uint8Array(DATAGRAM_HEADER_BYTES + payload.byteLength)
  out[0] = payload.byteLength >> 8
  out[1] = payload.byteLength & 0xff
  out.set(payload, DATAGRAM_HEADER_BYTES)
  return out
}

/**
 * Cuts a byte stream back into datagrams. Feed it chunks in order; each call returns the datagrams
 * completed so far. It holds at most one incomplete datagram, so memory stays below
 * MAX_DATAGRAM_BYTES plus one chunk. A length above MAX_DATAGRAM_BYTES is a WireError, after which
 * the reader refuses all input: the stream is out of step and must be reset.
 */
export class DatagramReader {
  /** unread chunks; the first is read from `offset` on */
  private readonly chunks: Uint8Array[] = []
  private offset = 0
  private buffered = 0
  private failed: WireError | null = null

  /** Bytes held: the start of a datagram still incomplete. */
  get bufferedBytes (): number {
    return this.buffered
  }

  feed (chunk: Chunk): Uint8Array[] {
    if (this.failed !== null) throw this.failed
    for (const buf of chunk instanceof Uint8Array ? [chunk] : chunk) {
      if (buf.byteLength === 0) continue
      this.chunks.push(buf)
      this.buffered += buf.byteLength
    }
    const out: Uint8Array[] = []
    while (this.buffered >= DATAGRAM_HEADER_BYTES) {
      const header = this.peek(DATAGRAM_HEADER_BYTES)
      const length = (header[0] << 8) | header[1]
      if (length > MAX_DATAGRAM_BYTES) {
        this.failed = new WireError(`datagram length ${length} exceeds ${MAX_DATAGRAM_BYTES}`)
        throw this.failed
      }
      if (this.buffered < DATAGRAM_HEADER_BYTES + length) break
      this.take(DATAGRAM_HEADER_BYTES)
      out.push(this.take(length))
    }
    return out
  }

  /** The next `n` buffered bytes without consuming them (n ≤ buffered). */
  private peek (n: number): Uint8Array {
    const first = this.chunks[0]
    if (first.byteLength - this.offset >= n) return first.subarray(this.offset, this.offset + n)
    return this.copy(n, false)
  }

  /** Consumes the next `n` buffered bytes (n ≤ buffered): a view when they lie in one chunk, else a copy. */
  private take (n: number): Uint8Array {
    const first = this.chunks[0]
    if (first !== undefined && first.byteLength - this.offset >= n) {
      const out = first.subarray(this.offset, this.offset + n)
      this.offset += n
      this.buffered -= n
      if (this.offset === first.byteLength) {
        this.chunks.shift()
        this.offset = 0
      }
      return out
    }
    return this.copy(n, true)
  }

  private copy (n: number, consume: boolean): Uint8Array {
    const out = new Uint8Array(n)
    let filled = 0
    let i = 0
    let offset = this.offset
    while (filled < n) {
      const c = this.chunks[i]
      const part = Math.min(c.byteLength - offset, n - filled)
      out.set(c.subarray(offset, offset + part), filled)
      filled += part
      offset += part
      if (offset === c.byteLength) {
        i++
        offset = 0
      }
    }
    if (consume) {
      this.chunks.splice(0, i)
      this.offset = offset
      this.buffered -= n
    }
    return out
  }
}
