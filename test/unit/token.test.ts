import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import fc from 'fast-check'
import { pack } from '../../protocol/codec.ts'
import { decodeToken, encodeToken, NETWORK_KEY_BYTES, pnetKeyFile, TOKEN_PREFIX, type JoinToken } from '../../protocol/token.ts'
import { makeOperatorSigner } from '../helpers/cluster.ts'

const operator = makeOperatorSigner()
const FULL: JoinToken = {
  clusterId: '6f1c2d9e-7a41-4d0b-9c55-0e3c1c5d2b11',
  networkKey: new Uint8Array(randomBytes(NETWORK_KEY_BYTES)),
  seeds: ['/ip4/10.0.0.1/tcp/4001/p2p/12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo', '/ip4/10.0.0.2/tcp/4001'],
  operator: operator.id,
  operatorKey: operator.pem
}
const { operatorKey: _omit, ...PUBLIC } = FULL

const isTokenError = (err: unknown): boolean => (err as Error)?.name === 'TokenError'

function expectTokenError (text: string, what: string): void {
  let threw: unknown
  try {
    decodeToken(text)
  } catch (err) {
    threw = err
  }
  assert.ok(threw !== undefined, `${what}: accepted`)
  assert.ok(isTokenError(threw), `${what}: threw ${(threw as Error).name}: ${(threw as Error).message}`)
}

/** A token whose checksum is right but whose body is whatever we like (as a buggy or hostile encoder would make). */
function withBody (fields: unknown): string {
  const body = Buffer.from(pack(fields)).toString('base64url')
  const sum = createHash('sha256').update(`${TOKEN_PREFIX}.${body}`).digest('hex').slice(0, 16)
  return `${TOKEN_PREFIX}.${body}.${sum}`
}

const tokenArb: fc.Arbitrary<JoinToken> = fc.record({
  clusterId: fc.oneof(fc.uuid(), fc.string({ maxLength: 40 })),
  networkKey: fc.uint8Array({ minLength: NETWORK_KEY_BYTES, maxLength: NETWORK_KEY_BYTES }),
  seeds: fc.array(fc.string({ maxLength: 80 }), { maxLength: 4 }),
  operator: fc.string({ maxLength: 70 }),
  operatorKey: fc.option(fc.string({ maxLength: 200 }), { nil: undefined })
}).map((t) => {
  const { operatorKey, ...rest } = t
  return operatorKey === undefined ? rest : { ...rest, operatorKey }
})

describe('join tokens', () => {
  it('round-trips full and public tokens', () => {
    assert.deepEqual(decodeToken(encodeToken(FULL)), FULL)
    assert.deepEqual(decodeToken(encodeToken(PUBLIC)), PUBLIC)
    assert.equal('operatorKey' in decodeToken(encodeToken(PUBLIC)), false)
    assert.ok(encodeToken(FULL).startsWith(`${TOKEN_PREFIX}.`))
  })

  it('round-trips a token made with --with-admin-key (a credential), and a default token carries none', () => {
    const withCredential: JoinToken = { ...PUBLIC, credential: 'p2porchkey1.c.founder.x.00000000' }
    assert.deepEqual(decodeToken(encodeToken(withCredential)), withCredential)
    assert.equal('credential' in decodeToken(encodeToken(PUBLIC)), false)
    expectTokenError(withBody({ c: 'c', k: new Uint8Array(NETWORK_KEY_BYTES), s: [], o: 'op:x', a: 7 }), 'credential not a string')
  })

  it('round-trips any token', () => {
    fc.assert(fc.property(tokenArb, (t) => {
      const text = encodeToken(t)
      assert.deepEqual(decodeToken(text), t)
      assert.match(text, /^p2porch1\.[A-Za-z0-9_-]+\.[0-9a-f]{16}$/)
    }), { numRuns: 300 })
  })

  it('tolerates the surrounding whitespace of a copy-paste', () => {
    assert.deepEqual(decodeToken(`  ${encodeToken(FULL)}\n`), FULL)
  })

  it('rejects every single-character change of a full token with TokenError', () => {
    const text = encodeToken(FULL)
    // every position × every character a token can contain, plus separators, spaces and non-ASCII
    const alphabet = [...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_', '.', ' ', '\n', '+', '/', '=', 'é', '\0']
    let checked = 0
    for (let i = 0; i < text.length; i++) {
      for (const c of alphabet) {
        if (c === text[i]) continue
        expectTokenError(text.slice(0, i) + c + text.slice(i + 1), `'${text[i]}'→'${c}' at ${i}`)
        checked++
      }
    }
    assert.ok(checked > 10_000)
  })

  it('rejects any single-character change of any token with TokenError', () => {
    fc.assert(fc.property(tokenArb, fc.nat(), fc.string({ minLength: 1, maxLength: 1, unit: 'binary' }), (t, pos, c) => {
      const text = encodeToken(t)
      const i = pos % text.length
      fc.pre(text[i] !== c)
      expectTokenError(text.slice(0, i) + c + text.slice(i + 1), `'${text[i]}'→'${c}' at ${i}`)
    }), { numRuns: 1000 })
  })

  it('rejects truncated tokens and deleted characters', () => {
    const text = encodeToken(PUBLIC)
    for (let n = 0; n < text.length; n++) expectTokenError(text.slice(0, n), `first ${n} characters`)
    for (let i = 0; i < text.length; i++) expectTokenError(text.slice(0, i) + text.slice(i + 1), `character ${i} deleted`)
  })

  it('rejects a wrong prefix or shape', () => {
    const [, body, sum] = encodeToken(FULL).split('.')
    for (const prefix of ['p2porch2', 'P2PORCH1', 'p2porch', 'p2porch10', '', 'swarm']) expectTokenError(`${prefix}.${body}.${sum}`, `prefix ${prefix}`)
    expectTokenError(`${body}.${sum}`, 'no prefix')
    expectTokenError(`${TOKEN_PREFIX}.${body}`, 'no checksum')
    expectTokenError(`${TOKEN_PREFIX}.${body}.${sum}.extra`, 'four parts')
    expectTokenError('', 'empty')
    expectTokenError('SWMTKN-1-abc-def', 'a Docker Swarm token')
  })

  it('rejects a correctly checksummed body with missing or wrong fields', () => {
    const good = { c: 'cid', k: new Uint8Array(NETWORK_KEY_BYTES), s: ['/ip4/1.2.3.4/tcp/1'], o: 'op:ab' }
    assert.equal(decodeToken(withBody(good)).clusterId, 'cid')
    const bad: Array<[string, unknown]> = [
      ['no cluster id', { ...good, c: undefined }],
      ['numeric cluster id', { ...good, c: 5 }],
      ['short network key', { ...good, k: new Uint8Array(NETWORK_KEY_BYTES - 1) }],
      ['network key as string', { ...good, k: 'x'.repeat(NETWORK_KEY_BYTES) }],
      ['seeds not a list', { ...good, s: '/ip4/1.2.3.4' }],
      ['numeric seed', { ...good, s: [1] }],
      ['no operator', { ...good, o: undefined }],
      ['operator key not a string', { ...good, x: 5 }],
      ['body is null', null],
      ['body is a number', 7],
      ['body is a list', [1, 2]]
    ]
    for (const [what, fields] of bad) expectTokenError(withBody(fields), what)
    const emptyBody = createHash('sha256').update(`${TOKEN_PREFIX}.`).digest('hex').slice(0, 16)
    expectTokenError(`${TOKEN_PREFIX}..${emptyBody}`, 'empty body')
  })

  it('makes the pnet key file @libp2p/pnet expects', () => {
    const text = new TextDecoder().decode(pnetKeyFile(FULL.networkKey))
    assert.equal(text, `/key/swarm/psk/1.0.0/\n/base16/\n${Buffer.from(FULL.networkKey).toString('hex')}`)
  })
})
