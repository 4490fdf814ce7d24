/**
 * Hundreds of replicas per node: the task report is written in shards, each within the record
 * payload limit, so peers accept every one. Two nodes over real libp2p TCP, one in-memory engine.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { MAX_PAYLOAD_BYTES } from '../../protocol/codec.ts'
import type { TaskReport } from '../../protocol/keys.ts'
import { taskReports } from '../../protocol/tasks.ts'
import { taskViews } from '../../node/tasks-view.ts'
import type { P2pNode } from '../../node/node.ts'
import { converged, describeCluster, waitFor } from '../helpers/cluster.ts'
import { deploy, ServiceCluster, svcSpec } from '../helpers/services.ts'

const SETTLE_MS = 60_000

describe('task reports of 400 replicas on 2 nodes', { timeout: 180_000 }, () => {
  const cluster = new ServiceCluster('p2p-orch task shards')
  const ids = (): string[] => cluster.nodes().map((n) => n.id)
  const rejected = (): number => cluster.nodes().reduce((s, n) => s + n.counters.get('records_rejected_total'), 0)
  /** Every node sees `n` running tasks of `service`, `perNode` on each node id given. */
  const everyNodeSees = (service: string, n: number): boolean => cluster.nodes().every((node) =>
    taskViews(node.states.state, service).filter((t) => t.state === 'running' && t.desired === 'running').length === n)
  /** The shard records of `node`'s report, as `observer` holds them, and their payload sizes. */
  const shardsOf = (observer: P2pNode, node: string): Array<{ k: string, bytes: number, value: TaskReport }> =>
    observer.states.state.records().filter((r) => r.k === `tasks/${node}` || r.k.startsWith(`tasks/${node}.`))
      .map((r) => ({ k: r.k, bytes: r.p.length, value: observer.states.state.value<TaskReport>(r.k)! }))

  before(async () => {
    await cluster.start('n0')
    await cluster.start('n1', { join: true })
    await waitFor(() => converged(cluster.nodes(), ids()), 10_000, () => describeCluster(cluster.nodes()))
  })
  after(async () => { await cluster.cleanup() })

  it('400 replicas over 2 nodes: every task reported everywhere, no record refused', async () => {
    const before = rejected()
    deploy(cluster.get('n0').node, svcSpec('many', { replicas: 400, command: ['sleep', '3600'] }))
    await waitFor(() => cluster.running('many').length === 400 && everyNodeSees('many', 400), SETTLE_MS, () => `400 running: ${cluster.running('many').length} on the engine`)
    assert.equal(rejected(), before)
  })

  it('all 400 on one node: its report is split into shards within the limit, and the other node sees them all', async () => {
    const before = rejected()
    deploy(cluster.get('n0').node, svcSpec('many', { replicas: 400, command: ['sleep', '3600'], constraints: [{ attribute: 'name', op: '==', value: 'n0' }] }))
    const n0 = cluster.get('n0').node.id
    await waitFor(() => cluster.running('many').length === 400 && cluster.running('many').every((c) => c.node === n0) && everyNodeSees('many', 400),
      SETTLE_MS, () => `400 running on n0: ${cluster.running('many').filter((c) => c.node === n0).length}`)
    const observer = cluster.get('n1').node
    await waitFor(() => taskReports(observer.states.state).get(n0)?.length === 400, 10_000, 'n1 to hold all of n0\'s 400 tasks')
    const shards = shardsOf(observer, n0)
    const head = shards.find((s) => s.k === `tasks/${n0}`)
    assert.ok((head?.value.shards ?? 1) > 1, `n0's 400 tasks in one record of ${head?.bytes} bytes`)
    for (const s of shards) assert.ok(s.bytes <= MAX_PAYLOAD_BYTES, `${s.k}: ${s.bytes} bytes`)
    assert.equal(rejected(), before, 'records refused by a peer')
  })
})
