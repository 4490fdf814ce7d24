/**
 * Turns why a seed could not be dialled into what the user should check. The distinction that
 * matters: nothing answered (the seed is down, or the address is wrong), or something answered
 * and then dropped the connection during the handshake — which, between p2p-orch agents, means
 * the private-network key differs: the join token is from another cluster.
 */

/** Errors that mean the TCP connection never got established. */
const UNREACHABLE = /ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|ETIMEDOUT|EADDRNOTAVAIL|timed? ?out|aborted/i
/** Errors that mean the peer answered, then the pnet/noise handshake failed. */
const HANDSHAKE_FAILED = /ECONNRESET|EPIPE|unexpected end|decrypt|invalid (key|mac|tag)|handshake|encryption/i

export type DialFailureKind = 'unreachable' | 'wrong-network-key' | 'other'

export function classifyDialFailure (message: string): DialFailureKind {
  if (UNREACHABLE.test(message)) return 'unreachable'
  if (HANDSHAKE_FAILED.test(message)) return 'wrong-network-key'
  return 'other'
}

/** One line for the log: what failed for each seed, and what to do about it. */
export function explainSeedFailures (failures: Array<{ seed: string, error: string }>): string {
  const wrongKey = failures.filter((f) => classifyDialFailure(f.error) === 'wrong-network-key')
  if (wrongKey.length > 0) {
    return `seed ${wrongKey[0].seed} answered but dropped the private-network handshake: this node's network key (from its join token) is not that cluster's. Use a token printed by \`p2p-orch join-token\` on a member of the cluster to join (a new --data directory is needed to switch clusters)`
  }
  if (failures.every((f) => classifyDialFailure(f.error) === 'unreachable')) {
    return `no seed answered (${failures.map((f) => f.seed.replace(/\/p2p\/.*$/, '')).join(', ')}): check that they are up and reachable from here; this node keeps trying`
  }
  return `cannot reach any seed: ${failures.map((f) => `${f.seed}: ${f.error}`).join('; ')}; this node keeps trying`
}
