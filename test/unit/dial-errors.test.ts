import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { classifyDialFailure, explainSeedFailures } from '../../node/dial-errors.ts'

// messages as js-libp2p 3 reports them on this machine
const REFUSED = 'connection error 127.0.0.61:7946: connect ECONNREFUSED 127.0.0.61:7946'
const RESET = 'read ECONNRESET'
const TIMEOUT = 'The operation was aborted due to timeout'
const A = '/ip4/127.0.0.60/tcp/7946/p2p/12D3KooWQVu5uTGxsG5i2WFc2BLN5HuqLuzW74AUKLxFnUBS8kpP'
const B = '/ip4/127.0.0.61/tcp/7946/p2p/12D3KooWNewtzDkyGMR1xaSx6M434uCQSzCMU6LpyjSqGbtskcyk'

describe('seed dial failures', () => {
  it('tells a refused or timed-out connection from a handshake the peer dropped', () => {
    assert.equal(classifyDialFailure(REFUSED), 'unreachable')
    assert.equal(classifyDialFailure(TIMEOUT), 'unreachable')
    assert.equal(classifyDialFailure(RESET), 'wrong-network-key')
    assert.equal(classifyDialFailure('something new'), 'other')
  })

  it('names the network key when any seed dropped the handshake', () => {
    const line = explainSeedFailures([{ seed: B, error: REFUSED }, { seed: A, error: RESET }])
    assert.match(line, /127\.0\.0\.60.*answered but dropped the private-network handshake/)
    assert.match(line, /network key .* is not that cluster's/)
    assert.match(line, /p2p-orch join-token/)
  })

  it('says no seed answered when none did, without peer ids', () => {
    const line = explainSeedFailures([{ seed: B, error: REFUSED }])
    assert.equal(line, 'no seed answered (/ip4/127.0.0.61/tcp/7946): check that they are up and reachable from here; this node keeps trying')
  })

  it('passes unknown errors through, one line', () => {
    const line = explainSeedFailures([{ seed: B, error: 'something new' }])
    assert.match(line, /something new/)
    assert.doesNotMatch(line, /\n/)
  })
})
