/**
 * The libp2p host: TCP, a private network (pnet) keyed by the cluster's network keys (a keyring,
 * network-keyring.ts, so the key can be rotated), Noise, Yamux, identify and gossipsub.
 *
 * `@libp2p/gossipsub` is the ChainSafe gossipsub implementation as maintained inside js-libp2p
 * for libp2p 3 (`@chainsafe/libp2p-gossipsub@14` only works with libp2p 2).
 */
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { gossipsub, type GossipSub } from '@libp2p/gossipsub'
import { createTopicScoreParams } from '@libp2p/gossipsub/score'
import { identify } from '@libp2p/identify'
import type { Libp2p, PrivateKey } from '@libp2p/interface'
import { tcp } from '@libp2p/tcp'
import { createLibp2p } from 'libp2p'
import { MAX_GOSSIP_BYTES } from '../protocol/codec.ts'
import { NetworkKeyring } from './network-keyring.ts'
import { UserError } from './errors.ts'

export type Host = Libp2p<{ pubsub: GossipSub, identify: ReturnType<ReturnType<typeof identify>> }>

/**
 * Gossipsub mesh degree for small clusters: the defaults (D=6, Dlo=4) cannot be reached with
 * 3–5 nodes, which leaves the mesh permanently "under-subscribed". With flood publishing on,
 * our own messages reach every connected subscriber anyway; the mesh only relays.
 */
const MESH_D = 4
const MESH_DLO = 2
const MESH_DHI = 8
/**
 * The pnet nonce exchange must finish within this. A peer with another network key is not caught
 * by the exchange itself: its traffic decrypts to garbage, so the next handshake (Noise) fails or
 * times out, and the dial fails.
 */
const PNET_HANDSHAKE_TIMEOUT_MS = 2000
/**
 * Peer scoring of the cluster topic: only invalid messages count against a peer (a record that
 * fails validation is a hard reject in gossip.ts; one this node cannot judge yet is ignored, not
 * penalised). The penalty is weight × count²: 2 invalid messages put a peer below the gossip
 * threshold (-10), 4 below the graylist threshold (-80), where its RPCs are dropped. The count
 * decays by 10% a second, so a peer that stops is heard again within ~10 s. Message-delivery
 * rates are not scored: a quiet cluster sends almost nothing, which must not look like a fault.
 */
const INVALID_MESSAGE_WEIGHT = -5
const INVALID_MESSAGE_DECAY = 0.9
export const SCORE_THRESHOLDS = { gossipThreshold: -10, publishThreshold: -50, graylistThreshold: -80 }

/** Connection limits sized for a full mesh of a few hundred nodes. */
const MAX_CONNECTIONS = 400
/**
 * libp2p pings every connection on a fresh stream every 10 s by default, to drop dead ones. SWIM
 * (membership.ts) already probes every member over one long-lived stream, so the monitor is
 * only a backstop for half-open connections: once a minute is enough, and it was the largest
 * single cost of an idle agent (a stream open, ping, reset per connection every 10 s).
 */
const CONNECTION_PING_INTERVAL_MS = 60_000

export interface HostOptions {
  privateKey: PrivateKey
  /** the network key, or a keyring of several (rotation) */
  networkKey: Uint8Array | NetworkKeyring
  listen: string[]
  /** peers refused after the handshake (a removed node, one sent away for want of an admission) */
  denyPeer?: (peer: string) => boolean
  /** the cluster's gossip topic, scored (see INVALID_MESSAGE_WEIGHT) */
  topic?: string
}

export async function createHost (opts: HostOptions): Promise<Host> {
  return await createLibp2p({
    // started by createNode, which turns a busy listen address into a user error
    start: false,
    privateKey: opts.privateKey,
    addresses: { listen: opts.listen },
    transports: [tcp()],
    connectionProtector: (opts.networkKey instanceof NetworkKeyring ? opts.networkKey : new NetworkKeyring(opts.networkKey)).protector(PNET_HANDSHAKE_TIMEOUT_MS) as never,
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionManager: { maxConnections: MAX_CONNECTIONS },
    connectionGater: {
      denyInboundEncryptedConnection: (peer) => opts.denyPeer?.(peer.toString()) ?? false,
      denyOutboundEncryptedConnection: (peer) => opts.denyPeer?.(peer.toString()) ?? false
    },
    connectionMonitor: { pingInterval: CONNECTION_PING_INTERVAL_MS },
    services: {
      identify: identify(),
      pubsub: gossipsub({
        D: MESH_D,
        Dlo: MESH_DLO,
        Dhi: MESH_DHI,
        floodPublish: true,
        allowPublishToZeroTopicPeers: true,
        ignoreDuplicatePublishError: true,
        emitSelf: false,
        maxInboundDataLength: MAX_GOSSIP_BYTES + 4096,
        // Gossipsub's IP-colocation penalty assumes strangers: past ~10 peers behind one IP it
        // stops forwarding to them. Our peers are members that passed the private-network key and
        // sign every record, and many share an IP (NAT, several agents per host, 127.0.0.1 here).
        scoreParams: {
          IPColocationFactorWeight: 0,
          ...(opts.topic !== undefined
            ? {
                topics: {
                  [opts.topic]: createTopicScoreParams({
                    topicWeight: 1,
                    timeInMeshWeight: 0,
                    firstMessageDeliveriesWeight: 0,
                    meshMessageDeliveriesWeight: 0,
                    meshFailurePenaltyWeight: 0,
                    invalidMessageDeliveriesWeight: INVALID_MESSAGE_WEIGHT,
                    invalidMessageDeliveriesDecay: INVALID_MESSAGE_DECAY
                  })
                }
              }
            : {})
        },
        scoreThresholds: SCORE_THRESHOLDS
      })
    }
  }) as unknown as Host
}

/** Start the host; a listen address that is busy or unusable is the user's to fix, so say so in one line. */
export async function startHost (host: Host, listen: string[]): Promise<void> {
  try {
    await host.start()
  } catch (err) {
    if ((err as Error).name !== 'UnsupportedListenAddressesError') throw err
    const message = (err as Error).message
    const inUse = /(\S+): Error: listen EADDRINUSE/.exec(message)
    throw new UserError(inUse !== null
      ? `cannot listen on ${inUse[1]}: the address is already in use (another agent?); choose another --listen`
      : `cannot listen on ${listen.join(', ')}: ${message.split('\n').find((l) => l.includes('Error:'))?.trim() ?? 'unsupported address'}`)
  }
}
