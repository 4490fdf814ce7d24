/**
 * Hybrid logical clock (Kulkarni et al.): timestamps that follow wall time but never go
 * backwards and always order a cause before its effect, even with skewed clocks.
 * Pure: the current wall time is an argument, never read here.
 */

export interface Hlc {
  /** wall-clock milliseconds */
  wall: number
  /** counter for events within one millisecond */
  logical: number
}

/**
 * How far a remote timestamp may run ahead of our wall clock before we refuse it. A peer with a
 * clock far in the future could otherwise pin every register forever (a write at year 3000 can
 * never be overwritten). One minute tolerates real NTP skew with a wide margin.
 */
export const MAX_CLOCK_DRIFT_MS = 60_000

/**
 * Largest logical counter accepted from anyone. The counter counts events within one millisecond
 * of one clock: a million is already far beyond any real burst. Without a bound, a record stamped
 * near 2^53 would push every receiver's clock to an unsafe integer, and its next writes would be
 * refused by its peers.
 */
export const MAX_HLC_LOGICAL = 2 ** 31

export const ZERO_HLC: Hlc = { wall: 0, logical: 0 }

export function compareHlc (a: Hlc, b: Hlc): number {
  if (a.wall !== b.wall) return a.wall < b.wall ? -1 : 1
  if (a.logical !== b.logical) return a.logical < b.logical ? -1 : 1
  return 0
}

/** The timestamp for a local event at wall time `now`. */
export function tick (clock: Hlc, now: number): Hlc {
  if (now > clock.wall) return { wall: now, logical: 0 }
  return { wall: clock.wall, logical: clock.logical + 1 }
}

/** Advance on receiving `remote`, so later local events order after it. */
export function receive (clock: Hlc, remote: Hlc, now: number): Hlc {
  const wall = Math.max(clock.wall, remote.wall, now)
  let logical = 0
  if (wall === clock.wall && wall === remote.wall) logical = Math.max(clock.logical, remote.logical) + 1
  else if (wall === clock.wall) logical = clock.logical + 1
  else if (wall === remote.wall) logical = remote.logical + 1
  return { wall, logical }
}

/** True if `remote` is too far in the future to be accepted (see MAX_CLOCK_DRIFT_MS), or its counter is out of range. */
export function isTooFarAhead (remote: Hlc, now: number): boolean {
  return remote.wall > now + MAX_CLOCK_DRIFT_MS || !Number.isSafeInteger(remote.logical) || remote.logical > MAX_HLC_LOGICAL
}
