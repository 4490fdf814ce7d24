/**
 * Operator keys with roles, in a 3-node cluster in one process over real libp2p TCP: every attack
 * a key holder or a node could try is refused on every node with the same decision, and the
 * order in which a key record and the writes it authorises arrive never changes the outcome.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { encodeGossip, pack } from '../../protocol/codec.ts'
import { credentialSigner, generateCredential } from '../../protocol/credential.ts'
import { key, type KeyRecord, type NodeConfig, type Role, type ScaleRecord, type ServiceRecord } from '../../protocol/keys.ts'
import { newServiceSpec, type ServiceSpec } from '../../protocol/spec.ts'
import type { StateRecord } from '../../protocol/record.ts'
import { operatorWriterId, signerFromRaw, signRecord, type Signer } from '../../protocol/sign.ts'
import { topicFor } from '../../node/gossip.ts'
import { placementNodes } from '../../node/desired.ts'
import type { P2pNode } from '../../node/node.ts'
import { adminSigner, converged, describeCluster, holdsFor, startNode, stopAll, TempDirs, waitFor } from '../helpers/cluster.ts'

const CONVERGE_MS = 15_000

describe('operator keys with roles, on every node', { timeout: 90_000 }, () => {
  const dirs = new TempDirs()
  const nodes: P2pNode[] = []
  let admin: Signer
  let clusterId = ''
  const signers = new Map<string, Signer & { publicKeyHex: string }>()

  const ids = (): string[] => nodes.map((n) => n.id)
  const sum = (ns: P2pNode[], counter: string): number => ns.reduce((s, n) => s + n.counters.get(counter), 0)
  const version = (): [number, number] => nodes[0].states.nextVersion()
  const sign = (s: Signer, k: string, value: unknown, t: [number, number] = version()): StateRecord => signRecord(clusterId, s, k, t, pack(value))
  const same = (a: StateRecord | undefined, b: StateRecord | undefined): boolean =>
    a !== undefined && b !== undefined && Buffer.compare(a.s, b.s) === 0
  /** Every node holds exactly `rec` at its key. */
  const everywhere = async (rec: StateRecord, what: string): Promise<void> => {
    await waitFor(() => nodes.every((n) => same(n.states.state.get(rec.k), rec)), CONVERGE_MS,
      () => `${what}: ${nodes.map((n) => `${n.name}:${n.states.state.get(rec.k) === undefined ? 'absent' : same(n.states.state.get(rec.k), rec) ? 'yes' : 'other'}`).join(' ')}`)
  }
  /** No node holds `rec` (by signature), checked for a while: gossip and anti-entropy had their chance. */
  const nowhere = async (rec: StateRecord, what: string, ms = 1_500): Promise<void> => {
    await holdsFor(() => nodes.every((n) => !same(n.states.state.get(rec.k), rec)), ms, () => `${what} applied on ${nodes.filter((n) => same(n.states.state.get(rec.k), rec)).map((n) => n.name).join(', ')}`)
  }
  /** Publish records on the cluster topic from `from` without `from` applying them (what a hostile or confused peer does). */
  const publishRaw = async (from: P2pNode, recs: StateRecord[]): Promise<void> => {
    await from.host.services.pubsub.publish(topicFor(clusterId), encodeGossip(recs))
  }
  /** A named key, created by the founding admin (or by `by`) and spread everywhere. */
  const createKey = async (name: string, role: Role, extra: Partial<KeyRecord> = {}, by: Signer = admin): Promise<Signer & { publicKeyHex: string }> => {
    const s = credentialSigner(generateCredential(clusterId, name))
    signers.set(name, s)
    const rec = sign(by, key.key(name), { publicKey: s.publicKeyHex, role, ...extra } satisfies KeyRecord)
    const res = nodes[0].states.submit([rec])
    assert.equal(res.applied.length, 1, `key/${name}: ${res.firstError}`)
    await everywhere(rec, `key/${name}`)
    return s
  }
  /** Submit a write through one node as the control API does; returns the node's decision. */
  const tryWrite = (via: P2pNode, rec: StateRecord): { applied: boolean, error?: string } => {
    const res = via.states.submit([rec])
    return { applied: res.applied.length === 1, ...(res.firstError !== undefined ? { error: res.firstError } : {}) }
  }
  /** A refused write, tried through the API of one node and gossiped from another: refused by all three. */
  const refusedEverywhere = async (rec: StateRecord, what: string, reason: RegExp): Promise<void> => {
    const receivers = [nodes[0], nodes[2]]
    const before = sum(receivers, 'records_rejected_total') + sum(receivers, 'records_deferred_total')
    const d = tryWrite(nodes[0], rec)
    assert.equal(d.applied, false, `${what} was accepted by the API`)
    assert.match(d.error ?? '', reason)
    await publishRaw(nodes[1], [rec])
    // the API refusal on k0, then the gossiped copy on k0 and k2
    await waitFor(() => sum(receivers, 'records_rejected_total') + sum(receivers, 'records_deferred_total') >= before + 3, 5_000, `${what}: receivers to refuse it`)
    // every node decides the same when handed the record directly
    for (const n of nodes) {
      const res = n.states.ingest([rec], 'test')
      assert.equal(res.applied.length, 0, `${n.name} applied ${what}`)
      assert.match(res.firstError ?? '', reason, `${n.name}'s reason for ${what}`)
    }
    await nowhere(rec, what)
  }

  before(async () => {
    for (let i = 0; i < 3; i++) {
      const dataDir = await dirs.make(`p2p-orch-keys-${i}-`)
      nodes.push(await startNode({ dataDir, name: `k${i}`, ...(i > 0 ? { join: nodes[0].joinToken(true) } : {}) }))
    }
    admin = adminSigner(nodes[0])
    clusterId = nodes[0].identity.cluster.clusterId
    await waitFor(() => converged(nodes, ids()), CONVERGE_MS, () => describeCluster(nodes))
    // the refusal checks below publish on the topic: every node must know the others subscribe
    await waitFor(() => nodes.every((n) => n.host.services.pubsub.getSubscribers(topicFor(clusterId)).length === nodes.length - 1), CONVERGE_MS, 'topic subscriptions everywhere')
  })

  after(async () => {
    await stopAll(nodes)
    await dirs.cleanup()
  })

  it('the founding key is admin; a deployer deploys and scales; the agents hold no operator key', async () => {
    for (const n of nodes) {
      assert.equal(n.identity.admin === null || n === nodes[0], true)
      assert.equal(n.credential, null, 'tests write no credentials file')
    }
    const dep = await createKey('dep', 'deployer')
    const scale = sign(dep, key.scale('web'), { replicas: 3 } satisfies ScaleRecord)
    assert.deepEqual(tryWrite(nodes[1], scale), { applied: true })
    await everywhere(scale, 'the deployer\'s scale/web')
  })

  it('a deployer may not drain a node or create keys', async () => {
    const dep = signers.get('dep')!
    await refusedEverywhere(sign(dep, key.nodecfg(nodes[2].id), { labels: {}, availability: 'drain' } satisfies NodeConfig), 'deployer nodecfg', /dep \(deployer\) may not write nodecfg/)
    const rogue = credentialSigner(generateCredential(clusterId, 'rogue'))
    await refusedEverywhere(sign(dep, key.key('rogue'), { publicKey: rogue.publicKeyHex, role: 'admin' } satisfies KeyRecord), 'deployer key/', /may not write key/)
  })

  it('a viewer key writes nothing', async () => {
    const viewer = await createKey('view', 'viewer')
    await refusedEverywhere(sign(viewer, key.scale('web'), { replicas: 50 } satisfies ScaleRecord), 'viewer scale', /view \(viewer\) may not write scale/)
    await refusedEverywhere(sign(viewer, key.svc('web'), null), 'viewer svc tombstone', /may not write svc/)
  })

  it('a worker node\'s own key may not write desired state', async () => {
    const worker = nodes[2]
    const nodeSigner = signerFromRaw(worker.id, worker.identity.privateKey.raw)
    const before = sum(nodes, 'records_rejected_total')
    await refusedEverywhere(sign(nodeSigner, key.scale('web'), { replicas: 0 } satisfies ScaleRecord), 'node-signed scale', /not an operator key/)
    assert.ok(sum(nodes, 'records_rejected_total') > before, 'a node key writing desired state is a hard rejection (the sender is penalised)')
  })

  it('forged authors: another key\'s name, a bare unknown key, a tampered signature', async () => {
    const dep = signers.get('dep')!
    const viewer = signers.get('view')!
    // the viewer signs, claiming to be the deployer: the public key in the writer id is the deployer's, the signature is not
    const claimed = sign(viewer, key.scale('web'), { replicas: 9 } satisfies ScaleRecord)
    await refusedEverywhere({ ...claimed, w: dep.id }, 'writer id of dep, signed by view', /bad signature/)
    // a correctly signed record under dep's name with the viewer's public key
    const wrongKey: Signer = { id: operatorWriterId('dep', viewer.publicKeyHex), sign: viewer.sign }
    await refusedEverywhere(sign(wrongKey, key.scale('web'), { replicas: 9 } satisfies ScaleRecord), 'dep name, view key', /other than the one key\/dep names/)
    // a bare `op:<hex>` that is not the founding key
    const stranger: Signer = { id: operatorWriterId(null, viewer.publicKeyHex), sign: viewer.sign }
    await refusedEverywhere(sign(stranger, key.scale('web'), { replicas: 9 } satisfies ScaleRecord), 'unknown bare operator', /not a trusted operator key/)
    // the name `founder` is reserved
    const fake: Signer = { id: `op:founder:${viewer.publicKeyHex}`, sign: viewer.sign }
    await refusedEverywhere(sign(fake, key.scale('web'), { replicas: 9 } satisfies ScaleRecord), 'op:founder:…', /founding key has no name/)
    // a key may not rewrite its own record (an admin cannot lift its own expiry or revocation)
    const self = await createKey('selfadmin', 'admin', { expiresAt: Date.now() + 3_600_000 })
    await refusedEverywhere(sign(self, key.key('selfadmin'), { publicKey: self.publicKeyHex, role: 'admin' } satisfies KeyRecord), 'own key record', /may not write its own record/)
  })

  it('an expired key: decided by the record\'s own HLC time, so every node agrees', async () => {
    const expiresAt = Date.now() + 2_000
    const exp = await createKey('exp', 'deployer', { expiresAt })
    const inTime = sign(exp, key.scale('exp-web'), { replicas: 1 } satisfies ScaleRecord, [expiresAt - 1, 0])
    const late = sign(exp, key.scale('exp-web'), { replicas: 2 } satisfies ScaleRecord, [expiresAt, 0])
    assert.equal(tryWrite(nodes[2], inTime).applied, true)
    await everywhere(inTime, 'the write stamped before expiry')
    await refusedEverywhere(late, 'write stamped at expiry', /exp had expired/)
  })

  it('a revoked key: writes stamped after the revocation are refused everywhere; earlier ones stay', async () => {
    const rev = await createKey('rev', 'deployer')
    const before = sign(rev, key.scale('rev-web'), { replicas: 4 } satisfies ScaleRecord)
    assert.equal(tryWrite(nodes[1], before).applied, true)
    await everywhere(before, 'write before revocation')
    const revocation = sign(admin, key.key('rev'), { publicKey: rev.publicKeyHex, role: 'deployer', revoked: true } satisfies KeyRecord)
    assert.equal(tryWrite(nodes[0], revocation).applied, true)
    await everywhere(revocation, 'revocation')
    await refusedEverywhere(sign(rev, key.scale('rev-web'), { replicas: 40 } satisfies ScaleRecord), 'write after revocation', /rev was revoked/)
    for (const n of nodes) assert.ok(same(n.states.state.get(before.k), before), `${n.name} lost the write made before the revocation`)
  })

  it('a write that got ahead of its key\'s revocation is withdrawn where it was applied; the earlier value comes back', async () => {
    const race = await createKey('race', 'deployer')
    const w1 = sign(race, key.scale('race-web'), { replicas: 1 } satisfies ScaleRecord)
    assert.equal(tryWrite(nodes[0], w1).applied, true)
    await everywhere(w1, 'w1')
    const revocation = sign(admin, key.key('race'), { publicKey: race.publicKeyHex, role: 'deployer', revoked: true } satisfies KeyRecord)
    const w2 = sign(race, key.scale('race-web'), { replicas: 99 } satisfies ScaleRecord)
    // k2 sees w2 before anyone has the revocation, and applies it (nothing says otherwise yet)
    assert.equal(nodes[2].states.ingest([w2], 'test').applied.length, 1)
    assert.equal(nodes[0].states.submit([revocation]).applied.length, 1)
    await everywhere(revocation, 'revocation')
    // k2 withdrew w2 when the revocation arrived, and anti-entropy brought w1 back from the others
    await everywhere(w1, 'w1 restored')
    await nowhere(w2, 'w2')
    assert.ok(sum(nodes, 'records_withdrawn_total') >= 1)
  })

  it('a write that arrives before the key record that authorises it is applied once the key arrives, on every node', async () => {
    const late = credentialSigner(generateCredential(clusterId, 'late'))
    const keyRec = sign(admin, key.key('late'), { publicKey: late.publicKeyHex, role: 'deployer' } satisfies KeyRecord)
    const w = sign(late, key.scale('late-web'), { replicas: 6 } satisfies ScaleRecord)
    // the write first: gossiped from k1 (which does not apply it) to k0 and k2, and handed to k1 directly
    const ignoredBefore = sum(nodes, 'gossip_messages_ignored_total')
    await publishRaw(nodes[1], [w])
    const held = nodes[1].states.ingest([w], 'test')
    assert.equal(held.applied.length, 0)
    assert.equal(held.deferred, 1)
    assert.match(held.firstError ?? '', /key late is not known/)
    await waitFor(() => sum(nodes, 'gossip_messages_ignored_total') >= ignoredBefore + 2, 5_000, 'k0 and k2 to hold the write back (not penalise the sender)')
    for (const n of nodes) {
      assert.equal(n.states.state.get(w.k), undefined, `${n.name} applied a write of an unknown key`)
      assert.ok(n.states.pendingCount >= 1, `${n.name} does not hold the write`)
    }
    // then the key record, through one node: every node applies the held write
    const applied = nodes[0].states.submit([keyRec]).applied
    assert.deepEqual(applied.map((r) => r.k).sort(), [keyRec.k, w.k].sort(), 'the key record and the write it released')
    await everywhere(w, 'the held write')
    for (const n of nodes) assert.equal(n.states.pendingCount, 0, `${n.name} still holds records`)
    await waitFor(() => converged(nodes, ids()), CONVERGE_MS, () => describeCluster(nodes))
  })

  it('a replayed old write changes nothing anywhere', async () => {
    const dep = signers.get('dep')!
    const old = sign(dep, key.scale('replay-web'), { replicas: 1 } satisfies ScaleRecord)
    assert.equal(tryWrite(nodes[0], old).applied, true)
    const newer = sign(dep, key.scale('replay-web'), { replicas: 2 } satisfies ScaleRecord)
    assert.equal(tryWrite(nodes[1], newer).applied, true)
    await everywhere(newer, 'the newer write')
    await publishRaw(nodes[2], [old])
    for (const n of nodes) assert.equal(n.states.ingest([old], 'replay').applied.length, 0, `${n.name} took the replayed write`)
    await holdsFor(() => nodes.every((n) => same(n.states.state.get(newer.k), newer)), 1_000, 'the newer write everywhere')
  })

  it('an admin key created by the founder creates keys; once revoked, the keys it signs are refused and what it did before stands', async () => {
    const second = await createKey('second', 'admin')
    const made = await createKey('made-by-second', 'deployer', {}, second)
    const w = sign(made, key.scale('second-web'), { replicas: 2 } satisfies ScaleRecord)
    assert.equal(tryWrite(nodes[0], w).applied, true)
    await everywhere(w, 'write of a key made by the second admin')
    // revoke the second admin; a key record it signs afterwards is refused
    const revocation = sign(admin, key.key('second'), { publicKey: second.publicKeyHex, role: 'admin', revoked: true } satisfies KeyRecord)
    assert.equal(tryWrite(nodes[1], revocation).applied, true)
    await everywhere(revocation, 'revocation of the second admin')
    const after = credentialSigner(generateCredential(clusterId, 'after'))
    await refusedEverywhere(sign(second, key.key('after'), { publicKey: after.publicKeyHex, role: 'admin' } satisfies KeyRecord), 'key made after revocation', /second was revoked/)
    // what it did before the revocation stands
    for (const n of nodes) assert.ok(same(n.states.state.get(w.k), w), `${n.name} lost a write authorised before the revocation`)
    await waitFor(() => converged(nodes, ids()), CONVERGE_MS, () => describeCluster(nodes))
  })

  it('privileged settings are an admin\'s write: a deployer\'s privileged, cap_add, devices or pid: host spec is refused everywhere', async () => {
    const dep = signers.get('dep')!
    const svc = (name: string, extra: Partial<ServiceSpec>): ServiceRecord => ({ spec: newServiceSpec({ name, stack: 'sec', image: 'busybox', ...extra }), generation: 1 })
    const cases: Array<[string, Partial<ServiceSpec>]> = [
      ['privileged', { privileged: true }],
      ['cap_add', { capAdd: ['SYS_ADMIN'] }],
      ['devices', { devices: [{ source: '/dev/mem', target: '/dev/mem', permissions: 'rwm' }] }],
      ['pid: host', { pid: 'host' }]
    ]
    for (const [what, extra] of cases) {
      await refusedEverywhere(sign(dep, key.svc(`priv-${what.replace(/\W/g, '')}`), svc(`priv-${what.replace(/\W/g, '')}`, extra)), `deployer ${what}`, new RegExp(`dep \\(deployer\\) may not deploy ${what}: only admin keys may`))
    }
    // what only takes away, and host bind mounts (decided per node, by its --allow-host-path), stay a deployer's
    const plain = sign(dep, key.svc('unpriv'), svc('unpriv', { capDrop: ['ALL'], readOnly: true, mounts: [{ type: 'bind', source: '/srv/data', target: '/data', readOnly: true }] }))
    assert.deepEqual(tryWrite(nodes[2], plain), { applied: true })
    await everywhere(plain, 'the deployer\'s unprivileged spec')
    // the founding admin may
    const priv = sign(admin, key.svc('priv-admin'), svc('priv-admin', { privileged: true, capAdd: ['NET_ADMIN'] }))
    assert.deepEqual(tryWrite(nodes[1], priv), { applied: true })
    await everywhere(priv, 'the admin\'s privileged spec')
  })

  it('a spec whose mounts are not what they claim is refused as malformed', async () => {
    const bad: Array<[string, unknown]> = [
      ['relative bind', { type: 'bind', source: 'etc', target: '/x', readOnly: false }],
      ['volume naming a path', { type: 'volume', source: '/etc', target: '/x', readOnly: false }],
      ['unknown type', { type: 'npipe', source: '/etc', target: '/x', readOnly: false }],
      ['relative target', { type: 'tmpfs', source: '', target: 'x', readOnly: false }]
    ]
    for (const [what, m] of bad) {
      const rec = sign(admin, key.svc('badmount'), { spec: { ...newServiceSpec({ name: 'badmount', stack: 'sec', image: 'busybox' }), mounts: [m] }, generation: 1 })
      for (const n of nodes) assert.match(n.states.ingest([rec], 'test').firstError ?? '', /spec.mounts is invalid/, `${n.name}: ${what}`)
    }
  })

  it('a peer with the network key but no admission: none of its records applied, a forged node never gets a slot, disconnected after the grace', async () => {
    const dataDir = await dirs.make('p2p-orch-keys-intruder-')
    const intruder = await startNode({ dataDir, name: 'intruder', join: nodes[0].joinToken() })
    try {
      // it connects (it has the network key) and publishes its node record and a task report
      // claiming slot 0 of web, so that web's real owner would stop it
      await waitFor(() => intruder.host.getPeers().length > 0, CONVERGE_MS, 'the intruder to connect')
      const signer = signerFromRaw(intruder.id, intruder.identity.privateKey.raw)
      const forged = sign(signer, key.tasks(intruder.id), { tasks: [{ service: 'web', slot: 0, container: 'x', state: 'running', health: 'none', generation: 1, error: '', startedAt: 1, history: [] }] })
      await publishRaw(intruder, [forged])
      for (const n of nodes) {
        const res = n.states.ingest([forged], 'test')
        assert.equal(res.applied.length, 0)
        assert.match(res.firstError ?? '', /is not admitted/)
      }
      await holdsFor(() => nodes.every((n) => n.states.state.get(key.node(intruder.id)) === undefined && n.states.state.get(key.tasks(intruder.id)) === undefined &&
        n.membership.status(intruder.id) === undefined && !placementNodes(n.states.state).some((p) => p.id === intruder.id)), 1_500, 'the intruder counted as a member')
      // past the local profile's admission grace, every member has hung up on it
      await waitFor(() => intruder.host.getPeers().length === 0 && sum(nodes, 'peers_refused_total') >= 1, 10_000, 'the members to disconnect the intruder')
      // an admin admits it: from then on it is a member like the others
      // (its records held aside so far apply with it)
      const admission = sign(admin, key.admit(intruder.id), {})
      const res = nodes[1].states.submit([admission])
      assert.ok(res.applied.some((r) => r.k === admission.k), res.firstError)
      await waitFor(() => nodes.every((n) => n.membership.status(intruder.id) === 'alive'), 20_000, () => `the admitted node to be alive everywhere: ${describeCluster([...nodes, intruder])}`)
    } finally {
      await stopAll([intruder])
    }
  })
})
