/**
 * SWIM membership rules (Das et al.; memberlist's refinements), as pure functions.
 *
 * A member's record is versioned by [incarnation, status rank] and merges like any record:
 * the higher incarnation wins; at equal incarnation the "worse" news wins (alive < suspect <
 * dead < left). Only the member itself can raise its incarnation, which is how it refutes a
 * suspicion: it re-announces itself alive with incarnation + 1.
 */

export type MemberStatus = 'alive' | 'suspect' | 'dead' | 'left'

export const STATUS_RANK: Record<MemberStatus, number> = { alive: 0, suspect: 1, dead: 2, left: 3 }
const RANK_STATUS: MemberStatus[] = ['alive', 'suspect', 'dead', 'left']

export function statusOfRank (rank: number): MemberStatus | undefined {
  return RANK_STATUS[rank]
}

export interface MemberView {
  status: MemberStatus
  incarnation: number
}

export function memberVersion (m: MemberView): [number, number] {
  return [m.incarnation, STATUS_RANK[m.status]]
}

/** Statuses a member may only declare about itself: nobody can keep another node alive or make it leave. */
export function isSelfOnlyStatus (s: MemberStatus): boolean {
  return s === 'alive' || s === 'left'
}

/**
 * What a member announces when it learns that others hold `seen` about it while it is running:
 * a refutation (alive, incarnation above the rumour), or nothing if the rumour is not news.
 */
export function refutation (self: MemberView, seen: MemberView): MemberView | null {
  if (seen.status === 'alive' && seen.incarnation <= self.incarnation) return null
  return { status: 'alive', incarnation: Math.max(self.incarnation, seen.incarnation) + 1 }
}
