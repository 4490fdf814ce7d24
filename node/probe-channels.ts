/**
 * Long-lived probe streams for the failure detector: one outbound stream per peer, kept open
 * and reused for every ping and ping-req, with replies matched by sequence number.
 *
 * Opening a fresh libp2p stream per probe (yamux open, protocol negotiation, close) costs more
 * than the probe itself; an idle 10-node cluster spent about half its CPU on that. A stream that
 * fails is dropped and the next probe opens a new one, so a failure still shows up as a
 * failed probe.
 */
import type { Connection, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { pack, unpack } from '../protocol/codec.ts'
import type { Host } from './host.ts'
import { framed, type Framed } from './wire.ts'

export const SWIM_PROTOCOL = '/p2p-orch/swim/1.0.0'
/** Probe frames are tiny; anything bigger is garbage. */
export const MAX_SWIM_FRAME_BYTES = 1024
/** Each peer keeps one stream to us; a few more allow for reconnects overlapping old streams. */
const MAX_INBOUND_SWIM_STREAMS = 4
/** Writing a frame to a live peer takes microseconds; this only catches a stuck stream. */
const WRITE_TIMEOUT_MS = 2000

export type ProbeMessage = Record<string, unknown> & { t: string }

interface Channel {
  f: Framed
  pending: Map<number, (reply: ProbeMessage | null) => void>
  nextSeq: number
  /** aborted when the channel closes: ends its read loop */
  life: AbortController
}

export class ProbeChannels {
  private readonly host: Host
  private readonly channels = new Map<string, Promise<Channel>>()
  private readonly inbound = new Set<Framed>()

  constructor (host: Host) {
    this.host = host
  }

  /** Serve inbound probe streams: `answer` is called for each frame and its result sent back. */
  async serve (answer: (msg: ProbeMessage, conn: Connection) => Promise<ProbeMessage | null>, onMalformed: (conn: Connection) => void): Promise<void> {
    await this.host.handle(SWIM_PROTOCOL, (stream: Stream, conn: Connection) => {
      const f = framed(stream, MAX_SWIM_FRAME_BYTES)
      this.inbound.add(f)
      const life = new AbortController()
      void (async () => {
        try {
          while (true) {
            const msg = unpack(await f.read(life.signal)) as ProbeMessage
            if (msg === null || typeof msg !== 'object' || typeof msg.t !== 'string' || !Number.isSafeInteger(msg.n)) {
              onMalformed(conn)
              return
            }
            // answer concurrently: a ping-req waits for a probe, the next ping must not wait for it
            void answer(msg, conn).then(async (reply) => {
              if (reply !== null) await f.write(pack({ ...reply, n: msg.n }), AbortSignal.timeout(WRITE_TIMEOUT_MS))
            }).catch(() => { life.abort() })
          }
        } catch {
          // stream closed or undecodable: the peer opens a new one for its next probe
        } finally {
          this.inbound.delete(f)
          await f.close()
        }
      })()
    }, { maxInboundStreams: MAX_INBOUND_SWIM_STREAMS })
  }

  private async open (peer: string, signal: AbortSignal): Promise<Channel> {
    const stream = await this.host.dialProtocol(peerIdFromString(peer), SWIM_PROTOCOL, { signal })
    const ch: Channel = { f: framed(stream, MAX_SWIM_FRAME_BYTES), pending: new Map(), nextSeq: 1, life: new AbortController() }
    void (async () => {
      try {
        while (true) {
          const reply = unpack(await ch.f.read(ch.life.signal)) as ProbeMessage & { n?: unknown }
          const resolve = typeof reply?.n === 'number' ? ch.pending.get(reply.n) : undefined
          if (resolve === undefined) continue
          ch.pending.delete(reply.n as number)
          resolve(reply)
        }
      } catch {
        // closed: fall through to cleanup
      } finally {
        this.drop(peer, ch)
      }
    })()
    return ch
  }

  private drop (peer: string, ch: Channel): void {
    ch.life.abort()
    for (const resolve of ch.pending.values()) resolve(null)
    ch.pending.clear()
    void this.channels.get(peer)?.then((current) => { if (current === ch) this.channels.delete(peer) }, () => {})
    void ch.f.close()
  }

  /** Send `msg` to `peer` and wait for its reply; null if none arrives within `timeoutMs`. */
  async request (peer: string, msg: ProbeMessage, timeoutMs: number): Promise<ProbeMessage | null> {
    const signal = AbortSignal.timeout(timeoutMs)
    let pending = this.channels.get(peer)
    if (pending === undefined) {
      pending = this.open(peer, signal)
      this.channels.set(peer, pending)
      pending.catch(() => { if (this.channels.get(peer) === pending) this.channels.delete(peer) })
    }
    let ch: Channel
    try {
      ch = await pending
    } catch {
      return null
    }
    const n = ch.nextSeq++
    const reply = new Promise<ProbeMessage | null>((resolve) => {
      ch.pending.set(n, resolve)
      signal.addEventListener('abort', () => { ch.pending.delete(n); resolve(null) }, { once: true })
    })
    try {
      await ch.f.write(pack({ ...msg, n }), signal)
    } catch {
      this.drop(peer, ch)
      return null
    }
    return await reply
  }

  async stop (): Promise<void> {
    for (const [peer, pending] of this.channels) void pending.then((ch) => { this.drop(peer, ch) }, () => {})
    this.channels.clear()
    await Promise.all([...this.inbound].map(async (f) => { await f.close() }))
    await this.host.unhandle(SWIM_PROTOCOL)
  }
}
