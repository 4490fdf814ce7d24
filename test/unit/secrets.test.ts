/**
 * Secrets: the envelope encryption (protocol/secrets.ts) as properties, the keeper's decisions
 * (node/secret-keeper.ts plan) on a hand-built state, record validation, and the Compose keys.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import fc from 'fast-check'
import { pack } from '../../protocol/codec.ts'
import { formatIssue, translateCompose } from '../../protocol/compose.ts'
import { key, type NodeInfo, type ServiceRecord } from '../../protocol/keys.ts'
import type { StateRecord } from '../../protocol/record.ts'
import {
  decryptSecret, encryptSecret, openShare, parseShareId, sealPublicKey, sealShare, shareKeyId, type SecretRecord, type ShareRecord
} from '../../protocol/secrets.ts'
import { signRecord, type Signer } from '../../protocol/sign.ts'
import { ClusterState } from '../../protocol/state.ts'
import { newServiceSpec } from '../../protocol/spec.ts'
import { validateRecord } from '../../protocol/validate.ts'
import { MIN_CUSTODIANS, plan, SHARE_STAGGER_MS } from '../../node/secret-keeper.ts'
import { makeNodeSigner, makeOperatorSigner } from '../helpers/cluster.ts'

const CLUSTER = 'secrets-test'
const bytes = (n: number): fc.Arbitrary<Uint8Array> => fc.uint8Array({ minLength: n, maxLength: n })

describe('envelope encryption', () => {
  it('a value opens with its data key only, bound to its cluster, name and version', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 2048 }), bytes(32), bytes(32), bytes(12), (plain, dk, other, nonce) => {
      fc.pre(Buffer.compare(Buffer.from(dk), Buffer.from(other)) !== 0)
      const id = 'ab'.repeat(16)
      const rec = encryptSecret(CLUSTER, 'db', plain, dk, id, nonce)
      assert.equal(rec.size, plain.length)
      assert.deepEqual(decryptSecret(CLUSTER, 'db', rec, dk), plain)
      assert.equal(decryptSecret(CLUSTER, 'db', rec, other), null)
      assert.equal(decryptSecret('another-cluster', 'db', rec, dk), null)
      assert.equal(decryptSecret(CLUSTER, 'db2', rec, dk), null)
      assert.equal(decryptSecret(CLUSTER, 'db', { ...rec, id: 'cd'.repeat(16) }, dk), null)
      if (plain.length > 0) {
        const tampered = new Uint8Array(rec.data)
        tampered[0] ^= 1
        assert.equal(decryptSecret(CLUSTER, 'db', { ...rec, data: tampered }, dk), null)
      }
    }), { numRuns: 200 })
  })

  it('a share opens only for its recipient, with its private key', () => {
    fc.assert(fc.property(bytes(32), bytes(32), bytes(32), bytes(32), bytes(12), (dk, priv, eph, otherPriv, nonce) => {
      fc.pre(Buffer.compare(Buffer.from(priv), Buffer.from(otherPriv)) !== 0)
      const id = 'ab'.repeat(16)
      const share = sealShare(CLUSTER, 'db', id, 'nodeA', sealPublicKey(priv), dk, eph, nonce)
      assert.equal(share.to, Buffer.from(sealPublicKey(priv)).toString('hex'))
      assert.deepEqual(openShare(CLUSTER, 'db', 'nodeA', share, priv), dk)
      assert.equal(openShare(CLUSTER, 'db', 'nodeB', share, priv), null, 'another recipient id')
      assert.equal(openShare(CLUSTER, 'db', 'nodeA', share, otherPriv), null, 'another private key')
      assert.equal(openShare(CLUSTER, 'other', 'nodeA', share, priv), null, 'another secret')
      assert.equal(openShare(CLUSTER, 'db', 'nodeA', { ...share, id: 'cd'.repeat(16) }, priv), null, 'another version')
    }), { numRuns: 100 })
  })

  it('share ids split at the first dot: node ids have none, secret names may', () => {
    assert.deepEqual(parseShareId(shareKeyId('12D3KooWabc', 'tls.key')), { node: '12D3KooWabc', name: 'tls.key' })
    assert.equal(parseShareId('.x'), null)
    assert.equal(parseShareId('node.'), null)
  })
})

describe('records', () => {
  const op = makeOperatorSigner()
  const sign = (s: Signer, k: string, v: unknown): StateRecord => signRecord(CLUSTER, s, k, [1_000, 0], pack(v))
  const trust = { operators: new Set([op.id]) }
  const check = (r: StateRecord): ReturnType<typeof validateRecord> => validateRecord(CLUSTER, r, trust, 2_000)
  const rec = encryptSecret(CLUSTER, 'db', Buffer.from('x'), new Uint8Array(32), 'ab'.repeat(16), new Uint8Array(12))

  it('a secret record holds ciphertext of its stated size; names follow the Docker rule', () => {
    assert.equal(check(sign(op, key.secret('db'), rec)).ok, true)
    assert.equal(check(sign(op, key.secret('db'), { ...rec, size: 5 })).ok, false)
    assert.equal(check(sign(op, key.secret('db'), { ...rec, id: 'xyz' })).ok, false)
    assert.equal(check(sign(op, key.secret('-db'), rec)).ok, false)
    assert.equal(check(sign(op, key.secret('db'), null)).ok, true)
    assert.equal(check(sign(op, key.config('app.conf'), { id: 'ab'.repeat(16), data: Buffer.from('hello') })).ok, true)
  })

  it('a share is written by any node for another node\'s id, never by an operator key, and its shape is exact', async () => {
    const a = await makeNodeSigner()
    const b = await makeNodeSigner()
    const share = sealShare(CLUSTER, 'db', rec.id, b.id, sealPublicKey(new Uint8Array(32).fill(7)), new Uint8Array(32), new Uint8Array(32).fill(1), new Uint8Array(12))
    assert.equal(check(sign(a, key.share(b.id, 'db'), share)).ok, true)
    assert.equal(check(sign(op, key.share(b.id, 'db'), share)).ok, false)
    assert.equal(check(sign(a, `share/notanode.db`, share)).ok, false)
    assert.equal(check(sign(a, key.share(b.id, 'db'), { ...share, box: new Uint8Array(10) })).ok, false)
    assert.equal(check(sign(a, key.share(b.id, 'db'), null)).ok, true)
  })

  it('a service spec\'s secret references are checked: plain names, absolute distinct targets, ids and modes in range', () => {
    const svc = (secrets: unknown): StateRecord => sign(op, key.svc('web'), { spec: { ...newServiceSpec({ name: 'web', stack: 's', image: 'busybox' }), secrets }, generation: 1 })
    const ok = { source: 'db', target: '/run/secrets/db', uid: 0, gid: 0, mode: 0o444 }
    assert.equal(check(svc([ok])).ok, true)
    assert.equal(check(svc([{ ...ok, target: 'relative' }])).ok, false)
    assert.equal(check(svc([ok, ok])).ok, false, 'two at one target')
    assert.equal(check(svc([{ ...ok, source: '../db' }])).ok, false)
    assert.equal(check(svc([{ ...ok, mode: 0o10000 }])).ok, false)
    assert.equal(check(svc([{ ...ok, uid: -1 }])).ok, false)
  })
})

describe('keeper decisions', () => {
  const ids = ['nodeA', 'nodeB', 'nodeC', 'nodeD']
  const rec: SecretRecord = { id: 'ab'.repeat(16), nonce: new Uint8Array(12), data: new Uint8Array(20), size: 4 }
  const sealKeyOf = (n: string): string => Buffer.from(n.padEnd(32, '-')).toString('hex')
  /** A state with 4 alive nodes, secret `db`, shares for `holders`, and service `api` using it at `replicas` replicas. */
  function stateWith (holders: string[], replicas: number | null): ClusterState {
    const s = new ClusterState()
    let t = 1
    const put = (k: string, v: unknown): void => { s.apply({ k, t: [t++, 0], w: 'x', p: pack(v), s: new Uint8Array(64) }) }
    for (const n of ids) put(key.node(n), { name: n, addrs: [], labels: {}, cpus: 4, memoryBytes: 8e9, version: 't', startedAt: 0, joinedAt: 0, sealKey: sealKeyOf(n) } satisfies NodeInfo)
    put(key.secret('db'), rec)
    for (const h of holders) put(key.share(h, 'db'), { id: rec.id, to: sealKeyOf(h), eph: new Uint8Array(32), nonce: new Uint8Array(12), box: new Uint8Array(48) } satisfies ShareRecord)
    if (replicas !== null) {
      const spec = newServiceSpec({ name: 'api', stack: 's', image: 'busybox', replicas, maxReplicasPerNode: 1, secrets: [{ source: 'db', target: '/run/secrets/db', uid: 0, gid: 0, mode: 0o444 }] })
      put(key.svc('api'), { spec, generation: 1 } satisfies ServiceRecord)
    }
    return s
  }
  const holds = (): boolean => true

  it('an unused secret gets one more custodian, from its first holder at once', () => {
    const p = plan(stateWith(['nodeA'], null), 'nodeA', holds, new Map(), 0)
    assert.equal(p.seal.length, MIN_CUSTODIANS - 1)
    assert.deepEqual(p.withdraw, [])
    assert.equal(plan(stateWith(['nodeA', 'nodeB'], null), 'nodeA', holds, new Map(), 0).seal.length, 0)
  })

  it('the nodes running it are sealed the key, the second holder only after its stagger; holders that do not run it withdraw once all do', () => {
    const s = stateWith(['nodeA', 'nodeB'], 4)
    const first = plan(s, 'nodeA', holds, new Map(), 0)
    assert.deepEqual(first.seal.map((x) => x.to).sort(), ['nodeC', 'nodeD'])
    const since = new Map<string, number>()
    assert.equal(plan(s, 'nodeB', holds, since, 0).seal.length, 0)
    assert.equal(plan(s, 'nodeB', holds, since, SHARE_STAGGER_MS).seal.length, 2)
    const all = stateWith(ids, 2)
    const users = ids.filter((n) => plan(all, n, holds, new Map(), 0).withdraw.length === 0)
    assert.equal(users.length, 2, 'the 2 nodes that run it keep it, the others withdraw')
  })

  it('own shares of a removed secret are withdrawn; a node that holds no key seals nothing', () => {
    const s = stateWith(['nodeA'], 2)
    s.apply({ k: key.secret('db'), t: [1_000, 0], w: 'x', p: pack(null), s: new Uint8Array(64) })
    assert.deepEqual(plan(s, 'nodeA', holds, new Map(), 0).withdraw, ['db'])
    assert.deepEqual(plan(stateWith(['nodeA'], 2), 'nodeB', () => false, new Map(), 0), { seal: [], withdraw: [] })
  })
})

describe('Compose secrets and configs', () => {
  const translate = (text: string, variables: Record<string, string> = {}): ReturnType<typeof translateCompose> => translateCompose({ fileName: '/srv/app/stack.yaml', text, variables })
  const errors = (r: ReturnType<typeof translateCompose>): string[] => r.issues.filter((i) => i.severity === 'error').map((i) => formatIssue('stack.yaml', i))

  it('names them <stack>_<key> unless name: or external, with Compose\'s targets and octal modes', () => {
    const r = translate(`
name: shop
services:
  web:
    image: busybox
    secrets: [db, { source: api, target: api.key, mode: 0400, uid: "100", gid: "101" }, ext]
    configs: [nginx, { source: app, target: /etc/app.conf, mode: "0440" }]
secrets:
  db: { file: ./db.txt }
  api: { environment: API_KEY }
  ext: { external: true }
configs:
  nginx: { content: "server {}" }
  app: { file: /etc/shop/app.conf, name: shop-app-v2 }
`, { API_KEY: 'k' })
    assert.deepEqual(errors(r), [])
    assert.deepEqual(r.services[0].secrets, [
      { source: 'shop_db', target: '/run/secrets/db', uid: 0, gid: 0, mode: 0o444 },
      { source: 'shop_api', target: '/run/secrets/api.key', uid: 100, gid: 101, mode: 0o400 },
      { source: 'ext', target: '/run/secrets/ext', uid: 0, gid: 0, mode: 0o444 }
    ])
    assert.deepEqual(r.services[0].configs, [
      { source: 'shop_nginx', target: '/nginx', uid: 0, gid: 0, mode: 0o444 },
      { source: 'shop-app-v2', target: '/etc/app.conf', uid: 0, gid: 0, mode: 0o440 }
    ])
    assert.deepEqual(r.files.map((f) => [f.kind, f.name, f.file ?? f.content ?? '', f.external]), [
      ['secret', 'shop_db', '/srv/app/db.txt', false], ['secret', 'shop_api', 'k', false], ['secret', 'ext', '', true],
      ['config', 'shop_nginx', 'server {}', false], ['config', 'shop-app-v2', '/etc/shop/app.conf', false]
    ])
  })

  it('bad input gets one located line each', () => {
    const r = translate(`
services:
  web:
    image: busybox
    secrets: [missing, { source: db, mode: 0999 }]
secrets:
  db: { file: ./a, environment: X }
  env: { environment: UNSET_VAR }
  drv: { file: ./b, driver: vault }
`)
    const e = errors(r)
    assert.ok(e.some((l) => /stack\.yaml:5:\d+: error: services\.web\.secrets\[0\]: secret "missing" is not declared/.test(l)), e.join('\n'))
    assert.ok(e.some((l) => /services\.web\.secrets\[1\]\.mode: must be octal permission bits/.test(l)), e.join('\n'))
    assert.ok(e.some((l) => /secrets\.db: give one of file, environment, not 2/.test(l)), e.join('\n'))
    assert.ok(e.some((l) => /secrets\.env\.environment: variable UNSET_VAR is not set/.test(l)), e.join('\n'))
    assert.ok(e.some((l) => /secrets\.drv\.driver: not supported yet/.test(l)), e.join('\n'))
  })

  it('random data keys never repeat between two secrets (the CLI makes one per secret)', () => {
    assert.notDeepEqual(randomBytes(32), randomBytes(32))
  })
})
