/**
 * Gossip: the fast path for state changes. Local writes are published on the cluster's topic;
 * incoming messages are decoded and every record validated inside gossipsub's topic validator,
 * so a bad message is rejected (and its sender's score penalised) before gossipsub forwards it.
 */
import { TopicValidatorResult } from '@libp2p/gossipsub'
import type { PeerId } from '@libp2p/interface'
import type { Message } from '@libp2p/gossipsub'
import { decodeGossip, encodeGossip, MAX_RECORDS_PER_MESSAGE } from '../protocol/codec.ts'
import type { StateRecord } from '../protocol/record.ts'
import type { Host } from './host.ts'
import type { Logger } from './logger.ts'
import type { Counters } from './metrics.ts'
import type { StateManager } from './state-manager.ts'

export function topicFor (clusterId: string): string {
  return `/p2p-orch/${clusterId}/state/1`
}

export class Gossip {
  private readonly topic: string
  private readonly host: Host
  private readonly states: StateManager
  private readonly logger: Logger
  private readonly counters: Counters

  constructor (host: Host, states: StateManager, logger: Logger, counters: Counters) {
    this.host = host
    this.states = states
    this.logger = logger
    this.counters = counters
    this.topic = topicFor(states.clusterId)
  }

  start (): void {
    const pubsub = this.host.services.pubsub
    pubsub.topicValidators.set(this.topic, (peer: PeerId, msg: Message) => this.validate(peer, msg))
    pubsub.subscribe(this.topic)
    this.states.publish = (recs) => { void this.publish(recs) }
  }

  stop (): void {
    this.states.publish = () => {}
    try {
      this.host.services.pubsub.unsubscribe(this.topic)
    } catch {}
  }

  private validate (peer: PeerId, msg: Message): TopicValidatorResult {
    let recs: StateRecord[]
    try {
      recs = decodeGossip(msg.data)
        .recs
    } catch (err) {
      this.counters.inc('gossip_messages_rejected_total')
      this.logger.warn({ peer: peer.toString(), error: (err as Error).message }, 'rejected malformed gossip message')
      return TopicValidatorResult.Reject
    }
    const res = this.states.ingest(recs, `gossip:${peer.toString()}`)
    if (res.rejected > 0) {
      this.counters.inc('gossip_messages_rejected_total')
      return TopicValidatorResult.Reject
    }
    // Refused only by our key records (a key we do not know yet, or one revoked here): not the
    // sender's fault, so no penalty, but nothing worth forwarding either.
    if (res.deferred > 0 && res.applied.length === 0) {
      this.counters.inc('gossip_messages_ignored_total')
      return TopicValidatorResult.Ignore
    }
    this.counters.inc('gossip_messages_accepted_total')
    return TopicValidatorResult.Accept
  }

  async publish (recs: StateRecord[]): Promise<void> {
    for (let i = 0; i < recs.length; i += MAX_RECORDS_PER_MESSAGE) {
      try {
        await this.host.services.pubsub.publish(this.topic, encodeGossip(recs.slice(i, i + MAX_RECORDS_PER_MESSAGE)))
        this.counters.inc('gossip_messages_published_total')
      } catch (err) {
        // Not fatal: anti-entropy delivers what gossip could not.
        this.logger.debug({ error: (err as Error).message }, 'gossip publish failed')
      }
    }
  }
}
