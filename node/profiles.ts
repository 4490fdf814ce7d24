/**
 * Timing profiles, in the spirit of memberlist's DefaultLANConfig / DefaultLocalConfig: every
 * default carries its reason. `lan` is for real clusters; `local` shortens everything for tests
 * and benchmarks on one machine.
 */

export interface Profile {
  name: 'lan' | 'local'
  /** How often the failure detector probes one random member. */
  probeIntervalMs: number
  /** How long a direct probe may take before we ask others to probe indirectly. */
  probeTimeoutMs: number
  /** How many members are asked to probe a silent member on our behalf (SWIM's k). */
  indirectProbes: number
  /** How long a suspect has to refute before it is declared dead. */
  suspicionTimeoutMs: number
  /** Period of the anti-entropy digest exchange with one random peer. */
  antiEntropyIntervalMs: number
  /** Period of the reconciler's full pass (runtime events can be lost). */
  reconcileIntervalMs: number
  /** Period of re-dialing known members we have no connection to. */
  redialIntervalMs: number
  /** How long a connected peer may stay without an admission before it is disconnected (admission.ts). */
  admissionGraceMs: number
}

export const PROFILES: Record<Profile['name'], Profile> = {
  lan: {
    name: 'lan',
    // One probe per second per node keeps idle traffic tiny (memberlist's LAN default) while a
    // crashed peer is noticed at once anyway: its TCP connection closes and we probe right away.
    probeIntervalMs: 1000,
    // A LAN round trip is well under 10 ms; 500 ms absorbs GC pauses and a busy event loop,
    // which is what causes false suspicion on small machines.
    probeTimeoutMs: 500,
    // Three helpers make a false suspicion need four lost paths, not one (SWIM paper).
    indirectProbes: 3,
    // Detection goal is ≤ 3 s after a crash: probe (≤ 1 s) + suspicion (1.5 s). A live node
    // refutes in one round trip, so 1.5 s is plenty to clear a false suspicion.
    suspicionTimeoutMs: 1500,
    // Gossip carries nearly everything and every (re)connection syncs at once; the periodic round
    // only repairs a lost message, and each round opens a stream (after probes, the largest idle
    // cost). memberlist's LAN push-pull runs every 30 s; 15 s bounds repair at a quarter minute.
    antiEntropyIntervalMs: 15_000,
    // Docker events cover nearly every change; the periodic pass catches missed ones.
    reconcileIntervalMs: 10_000,
    // Re-dial lost members often enough to heal a partition within a few seconds.
    redialIntervalMs: 2000,
    // a joining node's admission arrives within a second; room for a slow link
    admissionGraceMs: 10_000
  },
  local: {
    name: 'local',
    probeIntervalMs: 250,
    probeTimeoutMs: 200,
    indirectProbes: 2,
    suspicionTimeoutMs: 800,
    antiEntropyIntervalMs: 1000,
    reconcileIntervalMs: 2000,
    redialIntervalMs: 500,
    admissionGraceMs: 3000
  }
}

export function profileByName (name: string): Profile {
  const p = PROFILES[name as Profile['name']]
  if (p === undefined) throw new Error(`unknown profile "${name}" (use lan or local)`)
  return p
}
