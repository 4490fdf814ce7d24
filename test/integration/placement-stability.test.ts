/**
 * Placement stability on an in-process cluster (real libp2p, one shared MemoryEngine): scaling up
 * restarts nothing, a lost host moves only its own replicas, a join is rebalanced one replica at a
 * time, and the container count is exact as soon as the replacements run.
 *
 * The tests share one cluster and run in order: n0..n2 from the start, n3 joins for the lost-host
 * test and is lost in it, n4 joins in the rebalance test.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { currentAssignment, placementNodes, services } from '../../node/desired.ts'
import { LABEL_SERVICE, type ContainerInfo } from '../../node/runtime/types.ts'
import { converged, describeCluster, holdsFor, waitFor } from '../helpers/cluster.ts'
import { deploy, removeService, scale, ServiceCluster, svcSpec } from '../helpers/services.ts'

const CONVERGE_MS = 10_000
const SETTLE_MS = 10_000

/** Running and total containers of a service, at every engine event and every `everyMs`. */
function watchCounts (cluster: ServiceCluster, service: string, everyMs = 10): {
  stop: () => { samples: number, minRunning: number, maxRunning: number, maxContainers: number }
  /** ms since the watch started at which `running` first reached `n`, or -1 */
  reached: (n: number) => number
  /** ms since the watch started at which the total container count was last different from `n` */
  lastOff: (n: number) => number
} {
  const t0 = Date.now()
  let samples = 0
  let minRunning = Infinity
  let maxRunning = 0
  let maxContainers = 0
  const history: Array<[number, number, number]> = []
  const sample = (): void => {
    const all = cluster.containers(service)
    const running = all.filter((c) => c.state === 'running').length
    samples++
    minRunning = Math.min(minRunning, running)
    maxRunning = Math.max(maxRunning, running)
    maxContainers = Math.max(maxContainers, all.length)
    history.push([Date.now() - t0, running, all.length])
  }
  sample()
  const timer = setInterval(sample, everyMs)
  const unsubscribe = cluster.engine.subscribe((c) => { if (c.labels[LABEL_SERVICE] === service) sample() })
  return {
    stop: () => {
      clearInterval(timer)
      unsubscribe()
      return { samples, minRunning, maxRunning, maxContainers }
    },
    reached: (n) => history.find(([, running]) => running >= n)?.[0] ?? -1,
    lastOff: (n) => {
      let last = -1
      for (const [at, , total] of history) if (total !== n) last = at
      return last
    }
  }
}

describe('placement stability: scaling and membership changes move only what they must', { timeout: 60_000 }, () => {
  const cluster = new ServiceCluster('p2p-orch placement stability')
  const ids = (): string[] => cluster.nodes().map((n) => n.id)
  const first = () => cluster.get('n0').node
  const bySlot = (service: string): Map<number, ContainerInfo> => new Map(cluster.running(service).map((c) => [c.slot, c]))
  const perNode = (service: string): number[] => {
    const m = new Map<string, number>()
    for (const c of cluster.running(service)) m.set(c.node, (m.get(c.node) ?? 0) + 1)
    return [...m.values()].sort((a, b) => b - a)
  }
  const waitSettled = async (service: string, replicas: number, what: string): Promise<number> =>
    await waitFor(() => cluster.replicatedSettled(service, replicas), SETTLE_MS, () => `${what}:\n    ${cluster.describe(service)}`)

  before(async () => {
    await cluster.start('n0')
    await Promise.all([cluster.start('n1', { join: true }), cluster.start('n2', { join: true })])
    await waitFor(() => converged(cluster.nodes(), ids()), CONVERGE_MS, () => `3 nodes converged:\n  ${describeCluster(cluster.nodes())}`)
  })

  after(async () => {
    await cluster.cleanup()
  })

  it('scale 3 → 12 on 3 nodes keeps the 3 running containers and is at exactly 12 once the new ones run', async (t) => {
    deploy(first(), svcSpec('keep', { replicas: 3 }))
    await waitSettled('keep', 3, 'keep at 3')
    const before = bySlot('keep')
    const watch = watchCounts(cluster, 'keep')
    let result: ReturnType<typeof watch.stop>
    try {
      scale(first(), 'keep', 12)
      await waitSettled('keep', 12, 'keep at 12')
      await holdsFor(() => cluster.replicatedSettled('keep', 12), 500, () => `keep stays at 12:\n    ${cluster.describe('keep')}`)
    } finally {
      result = watch.stop()
    }
    const reached = watch.reached(12)
    const exact = Math.max(watch.lastOff(12), reached)
    t.diagnostic(`12 running ${reached} ms after the scale, exactly 12 containers from ${exact} ms; at most ${result.maxContainers} containers`)
    const after = bySlot('keep')
    for (const [slot, c] of before) {
      assert.equal(after.get(slot)?.id, c.id, `slot ${slot} was restarted`)
      assert.equal(after.get(slot)?.node, c.node, `slot ${slot} moved`)
    }
    assert.equal(result.maxContainers, 12, 'more containers than replicas at some point')
    assert.ok(exact - reached <= 3000, `exactly 12 only ${exact - reached} ms after 12 ran`)
    assert.deepEqual(perNode('keep'), [4, 4, 4])
    removeService(first(), 'keep')
    await waitFor(() => cluster.containers('keep').length === 0, SETTLE_MS, 'keep removed')
  })

  it('a lost host of 4 with 8 replicas: only its 2 replicas are replaced, exactly 8 soon after, never more', async (t) => {
    await cluster.start('n3', { join: true })
    await waitFor(() => converged(cluster.nodes(), ids()), CONVERGE_MS, () => describeCluster(cluster.nodes()))
    deploy(first(), svcSpec('lost', { replicas: 8 }))
    await waitSettled('lost', 8, 'lost at 8 on 4 nodes')
    assert.deepEqual(perNode('lost'), [2, 2, 2, 2])
    const victimId = cluster.get('n3').node.id
    const before = bySlot('lost')
    const survivorsBefore = [...before.values()].filter((c) => c.node !== victimId)

    const watch = watchCounts(cluster, 'lost')
    let result: ReturnType<typeof watch.stop>
    const t0 = Date.now()
    try {
      await cluster.crash('n3')
      await waitSettled('lost', 8, 'survivors run all 8')
      await holdsFor(() => cluster.replicatedSettled('lost', 8), 500, () => `lost stays at 8:\n    ${cluster.describe('lost')}`)
    } finally {
      result = watch.stop()
    }
    const exact = watch.lastOff(8)
    t.diagnostic(`exactly 8 containers ${exact} ms after the fault (watch), settled check at ${Date.now() - t0} ms; ` +
      `running between ${result.minRunning} and ${result.maxRunning}, at most ${result.maxContainers} containers`)
    const after = bySlot('lost')
    for (const c of survivorsBefore) assert.equal(after.get(c.slot)?.id, c.id, `slot ${c.slot} on a survivor was restarted`)
    assert.ok(result.maxRunning <= 9, `${result.maxRunning} running at some point`)
    assert.ok(result.maxContainers <= 9, `${result.maxContainers} containers at some point`)
    assert.ok(exact <= 5000, `exactly 8 only ${exact} ms after the fault`)
    assert.deepEqual(perNode('lost'), [3, 3, 2])
  })

  it('a node that joins gets its share one replica at a time, make-before-break', async (t) => {
    const before = bySlot('lost')
    const watch = watchCounts(cluster, 'lost', 5)
    let result: ReturnType<typeof watch.stop>
    let newId = ''
    const t0 = Date.now()
    try {
      newId = (await cluster.start('n4', { join: true })).node.id
      await waitFor(() => cluster.replicatedSettled('lost', 8) && perNode('lost').join('/') === '2/2/2/2', SETTLE_MS,
        () => `lost rebalanced onto n4:\n    ${cluster.describe('lost')}`)
      await holdsFor(() => cluster.replicatedSettled('lost', 8), 500, () => `lost stays balanced:\n    ${cluster.describe('lost')}`)
    } finally {
      result = watch.stop()
    }
    const after = bySlot('lost')
    const moved = [...after].filter(([slot, c]) => before.get(slot)?.id !== c.id)
    t.diagnostic(`rebalanced in ${Date.now() - t0} ms; ${moved.length} of 8 replicas moved; running between ${result.minRunning} and ` +
      `${result.maxRunning}, at most ${result.maxContainers} containers (${result.samples} samples)`)
    assert.equal(moved.length, 2, 'the new node takes exactly its share')
    assert.ok(moved.every(([, c]) => c.node === newId), 'a replica moved between old nodes')
    assert.ok(result.minRunning >= 8, `running replicas dropped to ${result.minRunning}`)
    assert.ok(result.maxContainers <= 9, `${result.maxContainers} containers at once: more than one move in flight`)
  })

  it('every node builds the same current assignment, without the tasks being handed over', () => {
    const views = cluster.nodes().map((n) => {
      const state = n.states.state
      const current = currentAssignment(state, placementNodes(state), services(state))
      return JSON.stringify([...current].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
    })
    for (const v of views) assert.equal(v, views[0])
    const current = new Map<string, Array<{ node: string, ready?: boolean }>>(JSON.parse(views[0]))
    for (let i = 0; i < 8; i++) {
      const holders = current.get(`lost/${i}`) ?? []
      assert.equal(holders.length, 1, `lost/${i}: ${JSON.stringify(holders)}`)
      assert.equal(holders[0].ready, true)
      assert.equal(holders[0].node, bySlot('lost').get(i)?.node)
    }
  })
})
