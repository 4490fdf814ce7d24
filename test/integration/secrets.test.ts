/**
 * Secrets across a 5-node cluster (real libp2p over TCP, one in-memory engine, tmpfs files): the
 * data key reaches only the nodes that run the secret's replicas; the plain value is nowhere in any
 * node's data directory; replicas get it as a file on tmpfs that goes with them; a moved replica's
 * new node is sealed the key by a holder; a forged share cannot substitute a value.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { readdir, readFile, stat } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { key, type NodeInfo } from '../../protocol/keys.ts'
import { encryptSecret, sealShare, type ShareRecord } from '../../protocol/secrets.ts'
import { fileSystemOf } from '../../node/secret-files.ts'
import { converged, describeCluster, signerOfNode, waitFor } from '../helpers/cluster.ts'
import { deploy, operatorOf, scale, ServiceCluster, svcSpec } from '../helpers/services.ts'

const SETTLE_MS = 20_000
const NAMES = ['n0', 'n1', 'n2', 'n3', 'n4']

/** Every file under `dir`, recursively, with its bytes. */
async function filesUnder (dir: string): Promise<Array<{ path: string, data: Buffer }>> {
  const out: Array<{ path: string, data: Buffer }> = []
  if (!existsSync(dir)) return out
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true }).catch(async () => await readdir(dir, { withFileTypes: true, recursive: true }))) {
    if (!e.isFile()) continue
    const path = join(e.parentPath, e.name)
    // a replica's directory may go while we read (that is what the tests wait for)
    const data = await readFile(path).catch(() => undefined)
    if (data !== undefined) out.push({ path, data })
  }
  return out
}

describe('secrets in a 5-node cluster', { timeout: 120_000 }, () => {
  const cluster = new ServiceCluster('p2p-orch secrets')
  const plain = Buffer.from(`pw-${randomBytes(24).toString('hex')}`)
  const name = 'db_pw'
  const secretsDirs = new Map<string, string>()
  let id = ''
  /** every gossip message any node received, as sent */
  const gossiped: Uint8Array[] = []

  const holders = (): string[] => {
    const n0 = cluster.get('n0').node
    return cluster.list().filter((sn) => {
      const s = n0.states.state.value<ShareRecord | null>(key.share(sn.node.id, name))
      return s != null && s.id === id
    }).map((sn) => sn.name).sort()
  }
  const runners = (): string[] => [...new Set(cluster.running('api').map((c) => cluster.nameOf(c.node)))].sort()

  before(async () => {
    for (const [i, n] of NAMES.entries()) {
      const dir = await cluster.dirs.make(`p2p-orch-secrets-${n}-`, '/dev/shm')
      secretsDirs.set(n, dir)
      await cluster.start(n, { join: i > 0, secretsDir: dir })
    }
    const ids = cluster.nodes().map((n) => n.id)
    await waitFor(() => converged(cluster.nodes(), ids), 15_000, () => describeCluster(cluster.nodes()))
    for (const n of cluster.nodes()) n.host.services.pubsub.addEventListener('message', (e) => { gossiped.push(e.detail.data) })
  })
  after(async () => { await cluster.cleanup() })

  it('the node secret create went through and one custodian hold a secret nobody uses', async () => {
    const n0 = cluster.get('n0').node
    const dataKey = new Uint8Array(randomBytes(32))
    id = randomBytes(16).toString('hex')
    n0.states.write(key.secret(name), encryptSecret(n0.identity.cluster.clusterId, name, plain, dataKey, id, new Uint8Array(randomBytes(12))), operatorOf(n0))
    n0.secrets.adopt(name, id, dataKey)
    await waitFor(() => holders().length === 2, SETTLE_MS, () => `holders ${holders().join(',')}`)
    assert.ok(holders().includes('n0'))
  })

  it('2 replicas: only their 2 nodes end up holding the key, and each replica reads the value from tmpfs', async () => {
    const n0 = cluster.get('n0').node
    deploy(n0, svcSpec('api', { replicas: 2, maxReplicasPerNode: 1, secrets: [{ source: name, target: '/run/secrets/db', uid: 0, gid: 0, mode: 0o400 }] }))
    await waitFor(() => cluster.running('api').length === 2 && runners().length === 2 && holders().join() === runners().join(), SETTLE_MS,
      () => `running on ${runners().join(',')}, holders ${holders().join(',')}`)
    for (const c of cluster.running('api')) {
      const files = cluster.engine.filesOf(c.id)
      assert.equal(files.length, 1)
      assert.equal(files[0].target, '/run/secrets/db')
      assert.deepEqual(await readFile(files[0].source), plain)
      assert.equal((await stat(files[0].source)).mode & 0o777, 0o400)
      assert.ok(['tmpfs', 'ramfs'].includes((await fileSystemOf(files[0].source)) ?? ''), `${files[0].source} is not on tmpfs`)
    }
  })

  it('the plain value is in no node\'s data directory, state or received gossip, and in no secrets directory but the runners\'', async () => {
    assert.ok(gossiped.length > 0, 'no gossip captured')
    for (const m of gossiped) assert.equal(Buffer.from(m).indexOf(plain), -1, 'plain secret in a gossip message')
    for (const sn of cluster.list()) {
      for (const f of await filesUnder(sn.dataDir)) assert.equal(f.data.indexOf(plain), -1, `${sn.name}: plain secret in ${f.path}`)
      for (const r of sn.node.states.state.records()) assert.equal(Buffer.from(r.p).indexOf(plain), -1, `${sn.name}: plain secret in record ${r.k}`)
      const onTmpfs = (await filesUnder(secretsDirs.get(sn.name)!)).filter((f) => f.data.indexOf(plain) >= 0)
      assert.equal(onTmpfs.length, runners().includes(sn.name) ? 1 : 0, `${sn.name}: ${onTmpfs.length} secret files`)
    }
  })

  it('a replica that moves gets the key on its new node; the files of a stopped replica are gone at once', async () => {
    const before = runners()
    const leaving = before[0]
    const n0 = cluster.get(leaving === 'n0' ? 'n1' : 'n0').node
    const gone = cluster.get(leaving).node.id
    n0.states.write(key.nodecfg(gone), { labels: {}, availability: 'drain' }, operatorOf(n0))
    await waitFor(() => cluster.running('api').length === 2 && !runners().includes(leaving) && holders().join() === runners().join(), SETTLE_MS,
      () => `running on ${runners().join(',')}, holders ${holders().join(',')}`)
    await waitFor(async () => (await filesUnder(secretsDirs.get(leaving)!)).length === 0, 5_000, `${leaving} to delete its replica's secret file`)
  })

  it('scaled to 0: every secret file is gone, the last holders keep the key', async () => {
    scale(cluster.get('n0').node, 'api', 0)
    await waitFor(() => cluster.running('api').length === 0, SETTLE_MS, 'api to stop')
    await waitFor(async () => {
      for (const d of secretsDirs.values()) if ((await filesUnder(d)).length > 0) return false
      return true
    }, 5_000, 'secret files to be deleted within 5 s of the replicas stopping')
    assert.ok(holders().length >= 1, 'nobody holds the key any more')
  })

  it('a forged share (another data key sealed by an admitted node) never yields a value', async () => {
    const [victim, forger] = cluster.list().filter((sn) => holders().includes(sn.name) === false)
    const clusterId = victim.node.identity.cluster.clusterId
    const sealKey = victim.node.states.state.value<NodeInfo>(key.node(victim.node.id))!.sealKey!
    const forged = sealShare(clusterId, name, id, victim.node.id, new Uint8Array(Buffer.from(sealKey, 'hex')), new Uint8Array(randomBytes(32)), new Uint8Array(randomBytes(32)), new Uint8Array(randomBytes(12)))
    forger.node.states.write(key.share(victim.node.id, name), forged, signerOfNode(forger.node))
    await waitFor(() => victim.node.states.state.value<ShareRecord>(key.share(victim.node.id, name))?.eph !== undefined, 5_000, 'the forged share to arrive')
    assert.equal(victim.node.secrets.value(name), null)
    assert.ok(victim.node.counters.get('secret_share_unusable_total') >= 1)
  })
})
