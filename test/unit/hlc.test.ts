import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { compareHlc, isTooFarAhead, MAX_CLOCK_DRIFT_MS, MAX_HLC_LOGICAL, receive, tick, ZERO_HLC, type Hlc } from '../../protocol/hlc.ts'

/**
 * Wall times are drawn from a tiny range half the time, so equal walls (the logical-counter
 * paths) are common, and from a wide range otherwise, so clocks also jump far back and forth.
 */
const wall = fc.oneof(fc.integer({ min: 0, max: 8 }), fc.integer({ min: 0, max: 2 ** 45 }))
const hlc: fc.Arbitrary<Hlc> = fc.record({ wall, logical: fc.integer({ min: 0, max: 6 }) })

type Op = { op: 'tick', now: number } | { op: 'receive', remote: Hlc, now: number }
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constant('tick' as const), now: wall }),
  fc.record({ op: fc.constant('receive' as const), remote: hlc, now: wall })
)

const show = (h: Hlc): string => `${h.wall}.${h.logical}`

describe('HLC', () => {
  it('is strictly monotonic and never behind wall time under any tick/receive sequence', () => {
    fc.assert(fc.property(hlc, fc.array(op, { maxLength: 60 }), (start, ops) => {
      let clock = start
      for (const o of ops) {
        const next = o.op === 'tick' ? tick(clock, o.now) : receive(clock, o.remote, o.now)
        assert.ok(compareHlc(next, clock) > 0, `${o.op} at ${o.now}: ${show(next)} is not after ${show(clock)}`)
        assert.ok(next.wall >= o.now, `${show(next)} is behind wall time ${o.now}`)
        assert.ok(Number.isSafeInteger(next.wall) && Number.isSafeInteger(next.logical) && next.logical >= 0)
        clock = next
      }
    }), { numRuns: 500 })
  })

  it('orders a received timestamp after the remote one and after the local clock', () => {
    fc.assert(fc.property(hlc, hlc, wall, (local, remote, now) => {
      const r = receive(local, remote, now)
      assert.ok(compareHlc(r, remote) > 0, `${show(r)} not after remote ${show(remote)}`)
      assert.ok(compareHlc(r, local) > 0, `${show(r)} not after local ${show(local)}`)
    }), { numRuns: 2000 })
  })

  it('keeps causality across a chain of nodes with skewed clocks', () => {
    // Each hop: the sender ticks and sends; the receiver receives with its own (skewed) wall clock.
    fc.assert(fc.property(fc.array(fc.tuple(wall, wall), { minLength: 1, maxLength: 30 }), (hops) => {
      let msg = ZERO_HLC
      let clock = ZERO_HLC
      for (const [sendAt, recvAt] of hops) {
        const sent = tick(clock, sendAt)
        assert.ok(compareHlc(sent, msg) > 0)
        clock = receive(ZERO_HLC, sent, recvAt)
        assert.ok(compareHlc(clock, sent) > 0)
        msg = sent
      }
    }), { numRuns: 300 })
  })

  it('tick follows wall time when it moves forward and counts when it does not', () => {
    assert.deepEqual(tick({ wall: 10, logical: 5 }, 11), { wall: 11, logical: 0 })
    assert.deepEqual(tick({ wall: 10, logical: 5 }, 10), { wall: 10, logical: 6 })
    assert.deepEqual(tick({ wall: 10, logical: 5 }, 3), { wall: 10, logical: 6 })
    assert.deepEqual(receive({ wall: 10, logical: 5 }, { wall: 10, logical: 9 }, 10), { wall: 10, logical: 10 })
    assert.deepEqual(receive({ wall: 10, logical: 5 }, { wall: 12, logical: 9 }, 11), { wall: 12, logical: 10 })
    assert.deepEqual(receive({ wall: 10, logical: 5 }, { wall: 12, logical: 9 }, 13), { wall: 13, logical: 0 })
  })

  describe('compareHlc is a total order', () => {
    it('is reflexive and antisymmetric, and 0 exactly for equal clocks', () => {
      fc.assert(fc.property(hlc, hlc, (a, b) => {
        assert.equal(compareHlc(a, a), 0)
        const ab = compareHlc(a, b)
        assert.equal(Math.sign(ab) + Math.sign(compareHlc(b, a)), 0)
        assert.equal(ab === 0, a.wall === b.wall && a.logical === b.logical)
      }), { numRuns: 2000 })
    })

    it('is transitive', () => {
      fc.assert(fc.property(hlc, hlc, hlc, (a, b, c) => {
        if (compareHlc(a, b) <= 0 && compareHlc(b, c) <= 0) assert.ok(compareHlc(a, c) <= 0)
        if (compareHlc(a, b) < 0 && compareHlc(b, c) < 0) assert.ok(compareHlc(a, c) < 0)
      }), { numRuns: 2000 })
    })

    it('sorts any list into the same order whatever the input order', () => {
      fc.assert(fc.property(fc.array(hlc, { maxLength: 30 }).chain((xs) => fc.tuple(fc.constant(xs), fc.shuffledSubarray(xs, { minLength: xs.length, maxLength: xs.length }))), ([xs, ys]) => {
        const sorted = [...xs].sort(compareHlc)
        assert.deepEqual(sorted.map(show), [...ys].sort(compareHlc).map(show))
        for (let i = 1; i < sorted.length; i++) assert.ok(compareHlc(sorted[i - 1], sorted[i]) <= 0)
      }), { numRuns: 300 })
    })
  })

  it('refuses remote clocks more than MAX_CLOCK_DRIFT_MS ahead, and only those', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 2 ** 45 }), fc.integer({ min: -(2 ** 40), max: 2 ** 40 }), (now, delta) => {
      const remote = { wall: Math.max(0, now + delta), logical: 0 }
      assert.equal(isTooFarAhead(remote, now), remote.wall > now + MAX_CLOCK_DRIFT_MS)
    }), { numRuns: 1000 })
    assert.equal(isTooFarAhead({ wall: 1000 + MAX_CLOCK_DRIFT_MS, logical: 99 }, 1000), false)
    assert.equal(isTooFarAhead({ wall: 1001 + MAX_CLOCK_DRIFT_MS, logical: 0 }, 1000), true)
  })

  it('refuses a logical counter beyond MAX_HLC_LOGICAL (a record stamped near 2^53 would poison every clock)', () => {
    assert.equal(isTooFarAhead({ wall: 1000 + 59_000, logical: 2 ** 53 - 1 }, 1000), true)
    assert.equal(isTooFarAhead({ wall: 1000, logical: MAX_HLC_LOGICAL + 1 }, 1000), true)
    assert.equal(isTooFarAhead({ wall: 1000, logical: MAX_HLC_LOGICAL }, 1000), false)
    // what an accepted record can do to our clock stays far from unsafe integers
    const c = receive({ wall: 1000, logical: 0 }, { wall: 1000, logical: MAX_HLC_LOGICAL }, 1000)
    assert.ok(Number.isSafeInteger(c.logical + 1_000_000))
  })
})
