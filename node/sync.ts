/**
 * Anti-entropy over a libp2p stream protocol: the repair path behind gossip.
 *
 *   initiator                      responder
 *   hello {root hash}        ──►
 *                            ◄──   equal            (same root: done)
 *                            ◄──   digest {entries} (otherwise)
 *   push {recs, want}        ──►   (records the responder lacks, keys we lack)
 *                            ◄──   records {recs}
 *
 * Run with one random peer every antiEntropyIntervalMs and with every newly connected peer, so
 * a message lost by gossip, or everything missed while a node was down, is repaired.
 */
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import { decodeSync, encodeSync, MAX_SYNC_FRAME_BYTES, WireError, type SyncMessage } from '../protocol/codec.ts'
import { compareBytes, type StateRecord } from '../protocol/record.ts'
import type { Host } from './host.ts'
import type { Logger } from './logger.ts'
import type { Counters } from './metrics.ts'
import type { StateManager } from './state-manager.ts'
import { framed, type Framed } from './wire.ts'

export const SYNC_PROTOCOL = '/p2p-orch/sync/1.0.0'
/** A whole exchange must finish within this; a slow or silent peer is dropped and retried later. */
const SYNC_TIMEOUT_MS = 10_000
/** Concurrent inbound syncs per connection; a peer flooding us with syncs gets refused. */
const MAX_INBOUND_SYNC_STREAMS = 4

export class AntiEntropy {
  private readonly host: Host
  private readonly states: StateManager
  private readonly logger: Logger
  private readonly counters: Counters
  private readonly inFlight = new Set<string>()

  constructor (host: Host, states: StateManager, logger: Logger, counters: Counters) {
    this.host = host
    this.states = states
    this.logger = logger
    this.counters = counters
  }

  async start (): Promise<void> {
    await this.host.handle(SYNC_PROTOCOL, (stream: Stream, connection: Connection) => {
      void this.respond(stream, connection.remotePeer)
    }, { maxInboundStreams: MAX_INBOUND_SYNC_STREAMS })
  }

  async stop (): Promise<void> {
    await this.host.unhandle(SYNC_PROTOCOL)
  }

  private async expect<T extends SyncMessage['type']> (f: Framed, type: T, signal: AbortSignal): Promise<Extract<SyncMessage, { type: T }>> {
    const m = decodeSync(await f.read(signal))
    if (m.type !== type) throw new WireError(`expected ${type}, got ${m.type}`)
    return m as Extract<SyncMessage, { type: T }>
  }

  private punish (peer: PeerId, err: unknown): void {
    if (err instanceof WireError) {
      this.counters.inc('sync_frames_rejected_total')
      this.logger.warn({ peer: peer.toString(), error: err.message }, 'rejected malformed sync frame; closing the connection')
      // An honest peer never sends a malformed frame: drop the connection so it has to dial again.
      void this.host.hangUp(peer).catch(() => {})
    } else {
      this.logger.debug({ peer: peer.toString(), error: (err as Error).message }, 'sync failed')
    }
  }

  private ingest (peer: PeerId, m: { recs: StateRecord[] }): void {
    const res = this.states.ingest(m.recs, `sync:${peer.toString()}`)
    if (res.rejected > 0) throw new WireError(`${res.rejected} invalid record(s): ${res.firstError ?? ''}`)
  }

  /** Initiate one exchange with `peer`. Returns the number of records received. */
  async syncWith (peer: PeerId): Promise<number> {
    const id = peer.toString()
    if (this.inFlight.has(id)) return 0
    this.inFlight.add(id)
    const signal = AbortSignal.timeout(SYNC_TIMEOUT_MS)
    let f: Framed | undefined
    try {
      const stream = await this.host.dialProtocol(peer, SYNC_PROTOCOL, { signal })
      f = framed(stream, MAX_SYNC_FRAME_BYTES)
      await f.write(encodeSync({ type: 'hello', root: this.states.state.rootHash() }), signal)
      const reply = decodeSync(await f.read(signal))
      if (reply.type === 'equal') return 0
      if (reply.type !== 'digest') throw new WireError(`expected digest, got ${reply.type}`)
      const { push, want } = this.states.state.diff(reply.entries)
      await f.write(encodeSync({ type: 'push', recs: push, want }), signal)
      const recs = await this.expect(f, 'records', signal)
      this.ingest(peer, recs)
      this.counters.inc('sync_rounds_total')
      return recs.recs.length
    } catch (err) {
      this.punish(peer, err)
      return 0
    } finally {
      this.inFlight.delete(id)
      await f?.close()
    }
  }

  private async respond (stream: Stream, peer: PeerId): Promise<void> {
    const signal = AbortSignal.timeout(SYNC_TIMEOUT_MS)
    const f = framed(stream, MAX_SYNC_FRAME_BYTES)
    try {
      const hello = await this.expect(f, 'hello', signal)
      if (compareBytes(hello.root, this.states.state.rootHash()) === 0) {
        await f.write(encodeSync({ type: 'equal' }), signal)
        return
      }
      await f.write(encodeSync({ type: 'digest', entries: this.states.state.digest() }), signal)
      const push = await this.expect(f, 'push', signal)
      this.ingest(peer, push)
      const recs = push.want.map((k) => this.states.state.get(k)).filter((r) => r !== undefined)
      await f.write(encodeSync({ type: 'records', recs }), signal)
    } catch (err) {
      this.punish(peer, err)
    } finally {
      await f.close()
    }
  }
}
