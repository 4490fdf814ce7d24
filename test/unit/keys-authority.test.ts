/**
 * Operator keys: the credential format, the role matrix, and the rule that the order in which key
 * records and the writes they authorise arrive never changes what a node ends up with.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { pack } from '../../protocol/codec.ts'
import { credentialSigner, decodeCredential, encodeCredential, generateCredential } from '../../protocol/credential.ts'
import { key, ROLES, type Family, type KeyRecord, type Role } from '../../protocol/keys.ts'
import type { StateRecord } from '../../protocol/record.ts'
import { signRecord, type Signer } from '../../protocol/sign.ts'
import { validateRecord, type KeyEntry, type Trust } from '../../protocol/validate.ts'
import { silentLogger } from '../../node/logger.ts'
import { Counters } from '../../node/metrics.ts'
import { StateManager } from '../../node/state-manager.ts'
import { MemoryStore } from '../../node/store.ts'
import { hex, makeNodeSigner } from '../helpers/cluster.ts'

const CLUSTER = 'keys-test-cluster'
const NOW = 1_700_000_000_000
const founder = credentialSigner(generateCredential(CLUSTER, 'founder'))
const named = (name: string): Signer & { publicKeyHex: string } => credentialSigner(generateCredential(CLUSTER, name))
const sign = (s: Signer, k: string, t: [number, number], value: unknown): StateRecord => signRecord(CLUSTER, s, k, t, pack(value))

describe('credentials', () => {
  it('round-trip, and a truncated or altered credential is refused', () => {
    const c = generateCredential('0b5e3a3e-1c7e-4b4e-9a55-2f3c0b1c2d3e', 'alice')
    const text = encodeCredential(c)
    assert.match(text, /^p2porchkey1\.0b5e3a3e-1c7e-4b4e-9a55-2f3c0b1c2d3e\.alice\.[A-Za-z0-9_-]{43}\.[0-9a-f]{8}$/)
    const back = decodeCredential(`  ${text}\n`)
    assert.equal(back.clusterId, c.clusterId)
    assert.equal(back.name, 'alice')
    assert.deepEqual(back.seed, c.seed)
    assert.equal(credentialSigner(back).id, credentialSigner(c).id)
    assert.match(credentialSigner(c).id, /^op:alice:[0-9a-f]{64}$/)
    assert.match(credentialSigner({ ...c, name: 'founder' }).id, /^op:[0-9a-f]{64}$/)
    for (const bad of [text.slice(0, -1), text.replace('alice', 'alica'), text.replace('p2porchkey1', 'p2porchkey2'), 'p2porch1.x.y', '']) {
      assert.throws(() => decodeCredential(bad), (err: Error) => err.name === 'CredentialError', bad)
    }
  })
})

/** A node id to admit (admit/ ids must be peer ids). */
const admitted = (await makeNodeSigner()).id

describe('roles', () => {
  it('grant exactly: admin everything, deployer svc/, scale/, secret/ and config/, viewer nothing; expiry and revocation by the record\'s own time', () => {
    const families: Family[] = ['svc', 'scale', 'nodecfg', 'key', 'admit', 'secret', 'config']
    const allowed: Record<Role, Family[]> = { admin: families, deployer: ['svc', 'scale', 'secret', 'config'], viewer: [], admitter: ['admit'] }
    const other = named('other')
    const values: Record<string, unknown> = {
      svc: null, scale: { replicas: 1 }, nodecfg: { labels: {}, availability: 'drain' }, key: { publicKey: other.publicKeyHex, role: 'viewer' }, admit: {}, secret: null, config: null
    }
    const ids: Record<string, string> = { svc: 'web', scale: 'web', nodecfg: 'node1', key: 'other', admit: admitted, secret: 'db_pw', config: 'app.conf' }
    fc.assert(fc.property(fc.constantFrom(...ROLES), fc.constantFrom(...families), fc.option(fc.integer({ min: -5, max: 5 })), fc.option(fc.integer({ min: -5, max: 5 })),
      (role, family, expiryOffset, revokeOffset) => {
        const k = named('k')
        const entry: KeyEntry = {
          t: [revokeOffset === null ? NOW - 100 : NOW + revokeOffset, 0],
          value: { publicKey: k.publicKeyHex, role, ...(expiryOffset !== null ? { expiresAt: NOW + expiryOffset } : {}), ...(revokeOffset !== null ? { revoked: true } : {}) }
        }
        const trust: Trust = { operators: new Set([founder.id]), key: (n) => n === 'k' ? entry : undefined }
        const r = sign(k, `${family}/${ids[family]}`, [NOW, 0], values[family])
        const v = validateRecord(CLUSTER, r, trust, NOW)
        const expected = allowed[role].includes(family) && (expiryOffset === null || NOW < NOW + expiryOffset) && (revokeOffset === null || NOW < NOW + revokeOffset)
        assert.equal(v.ok, expected, `${role} ${family} expiry ${expiryOffset} revoked ${revokeOffset}: ${v.ok ? 'ok' : v.reason}`)
        if (!v.ok) assert.equal(v.soft, 'refused', 'a refusal by the key record is soft')
      }), { numRuns: 500 })
  })

  it('an unknown key is pending; a node key, a bare unknown key and a self-written key record are hard rejections', async () => {
    const trust: Trust = { operators: new Set([founder.id]), key: () => undefined }
    const k = named('k')
    const pending = validateRecord(CLUSTER, sign(k, key.scale('web'), [NOW, 0], { replicas: 1 }), trust, NOW)
    assert.ok(!pending.ok && pending.soft === 'pending', JSON.stringify(pending))
    const node = await makeNodeSigner()
    const bare = credentialSigner({ ...generateCredential(CLUSTER, 'founder') })
    const self = { t: [NOW - 10, 0] as [number, number], value: { publicKey: k.publicKeyHex, role: 'admin' as Role } }
    const selfTrust: Trust = { operators: new Set([founder.id]), key: (n) => n === 'k' ? self : undefined }
    for (const [what, r, t] of [
      ['node key', sign(node, key.scale('web'), [NOW, 0], { replicas: 1 }), trust],
      ['unknown bare operator', sign(bare, key.scale('web'), [NOW, 0], { replicas: 1 }), trust],
      ['own key record', sign(k, key.key('k'), [NOW, 0], { publicKey: k.publicKeyHex, role: 'admin' }), selfTrust],
      ['key record named founder', sign(founder, 'key/founder', [NOW, 0], { publicKey: k.publicKeyHex, role: 'admin' }), trust]
    ] as Array<[string, StateRecord, Trust]>) {
      const v = validateRecord(CLUSTER, r, t, NOW)
      assert.ok(!v.ok && v.soft === undefined, `${what}: ${JSON.stringify(v)}`)
    }
  })
})

describe('arrival order', () => {
  // founder → admin "ops" (expires) → deployer "dev"; viewer "view"; deployer "gone", revoked.
  const ops = named('ops')
  const dev = named('dev')
  const view = named('view')
  const gone = named('gone')
  const keyRec = (by: Signer, name: string, s: Signer & { publicKeyHex: string }, role: Role, t: number, extra: Partial<KeyRecord> = {}): StateRecord =>
    sign(by, key.key(name), [t, 0], { publicKey: s.publicKeyHex, role, ...extra } satisfies KeyRecord)
  const records: StateRecord[] = [
    keyRec(founder, 'ops', ops, 'admin', NOW - 1000, { expiresAt: NOW - 500 }),
    keyRec(ops, 'dev', dev, 'deployer', NOW - 900),
    keyRec(ops, 'late', named('late'), 'deployer', NOW - 400), // after ops expired: refused
    keyRec(founder, 'view', view, 'viewer', NOW - 800),
    keyRec(founder, 'gone', gone, 'deployer', NOW - 300, { revoked: true }),
    sign(dev, key.scale('a'), [NOW - 100, 0], { replicas: 1 }),
    sign(dev, key.scale('b'), [NOW - 90, 0], { replicas: 2 }),
    sign(founder, key.scale('b'), [NOW - 80, 0], { replicas: 3 }),
    sign(view, key.scale('c'), [NOW - 70, 0], { replicas: 4 }),
    sign(dev, key.nodecfg('n1'), [NOW - 60, 0], { labels: {}, availability: 'drain' }),
    sign(ops, key.scale('d'), [NOW - 700, 0], { replicas: 5 }), // before expiry: stands
    sign(ops, key.scale('e'), [NOW - 50, 0], { replicas: 6 }), // after expiry: refused
    sign(gone, key.scale('f'), [NOW - 350, 0], { replicas: 7 }), // before its revocation: stands
    sign(gone, key.scale('g'), [NOW - 40, 0], { replicas: 8 }) // after: refused
  ]
  const fresh = (): StateManager => new StateManager({
    clusterId: CLUSTER, trust: { operators: new Set([founder.id]) }, store: new MemoryStore(), logger: silentLogger(), counters: new Counters(), now: () => NOW
  })

  it('ends in the same state whatever the order, one record at a time or in batches', () => {
    const reference = fresh()
    reference.ingest(records, 'all')
    const held = reference.state.records().map((r) => r.k).sort()
    assert.deepEqual(held, ['key/dev', 'key/gone', 'key/ops', 'key/view', 'scale/a', 'scale/b', 'scale/d', 'scale/f'])
    assert.deepEqual(reference.state.value(key.scale('b')), { replicas: 3 })
    fc.assert(fc.property(fc.shuffledSubarray(records, { minLength: records.length, maxLength: records.length }), fc.integer({ min: 1, max: 4 }), (order, batch) => {
      const sm = fresh()
      for (let i = 0; i < order.length; i += batch) sm.ingest(order.slice(i, i + batch), 'shuffled')
      assert.equal(hex(sm.state.rootHash()), hex(reference.state.rootHash()), `order ${order.map((r) => r.k).join(' ')}`)
      assert.equal(sm.pendingCount, 0)
    }), { numRuns: 300 })
  })
})

describe('the user\'s credentials file', () => {
  it('one entry per cluster, 0600 in a 0700 directory; parallel writers do not lose entries; an existing entry is kept', async () => {
    const { mkdtemp, rm, stat } = await import('node:fs/promises')
    const { tmpdir } = await import('node:os')
    const { join } = await import('node:path')
    const { addCredential, credentialFor, readCredentials, userCredentialsPath } = await import('../../node/api/credentials.ts')
    const dir = await mkdtemp(join(tmpdir(), 'p2p-orch-creds-'))
    try {
      const path = userCredentialsPath({ XDG_CONFIG_HOME: dir })
      assert.equal(path, join(dir, 'p2p-orch', 'credentials.json'))
      assert.equal(userCredentialsPath({ HOME: '/home/u' }), '/home/u/.config/p2p-orch/credentials.json')
      const creds = Array.from({ length: 8 }, (_, i) => generateCredential(`cluster-${i}`, 'founder'))
      assert.deepEqual(await Promise.all(creds.map(async (c) => await addCredential(path, c))), creds.map(() => true))
      assert.equal(Object.keys(readCredentials(path).clusters).length, 8)
      assert.equal((await stat(path)).mode & 0o777, 0o600)
      assert.equal((await stat(join(dir, 'p2p-orch'))).mode & 0o777, 0o700)
      assert.equal(await addCredential(path, generateCredential('cluster-3', 'other')), false, 'an existing entry is not replaced')
      assert.deepEqual(credentialFor(path, 'cluster-3')?.seed, creds[3].seed)
      assert.equal(credentialFor(path, 'nope'), undefined)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('durations for --ttl', async () => {
    const { parseDuration } = await import('../../cli/commands-keys.ts')
    assert.equal(parseDuration('90s'), 90_000)
    assert.equal(parseDuration('1d12h'), 36 * 3_600_000)
    assert.equal(parseDuration('2w'), 14 * 86_400_000)
    for (const bad of ['', '10', 'd', '1y', '0s', '-1h']) assert.throws(() => parseDuration(bad), (err: Error) => err.name === 'CliUserError', bad)
  })
})
