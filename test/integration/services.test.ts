/**
 * Services on an in-process cluster: p2p-orch nodes over real libp2p TCP on 127.0.0.1, each with a
 * MemoryRuntime on one shared MemoryEngine (several agents on one Docker engine). Desired state is
 * written as the control API writes it; results are checked on the engine (containers and their
 * p2p-orch.* labels) and through taskViews() of every node's copy of the state.
 *
 * The tests share one cluster and run in order: n0..n2 from the start, n3 joins in the global
 * service test, n4 in the rebalance test and dies abruptly afterwards, n1 restarts last.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import type { TaskView } from '../../node/api/types.ts'
import { placement } from '../../node/desired.ts'
import { serviceViews, taskViews } from '../../node/tasks-view.ts'
import { LABEL_GENERATION, LABEL_NODE, LABEL_SERVICE, LABEL_SLOT, type ContainerInfo } from '../../node/runtime/types.ts'
import { loadCap } from '../../placement/placement.ts'
import { key, type ScaleRecord } from '../../protocol/keys.ts'
import { compareRecords } from '../../protocol/record.ts'
import { converged, describeCluster, holdsFor, waitFor } from '../helpers/cluster.ts'
import {
  deploy, p2pLabels, removeService, scale, ServiceCluster, svcSpec, watchRunning
} from '../helpers/services.ts'

const CONVERGE_MS = 10_000
const SETTLE_MS = 10_000
const DETECT_MS = 8_000

describe('services on a 3-5 node cluster sharing one in-memory engine', { timeout: 60_000 }, () => {
  const cluster = new ServiceCluster('p2p-orch services integration')
  const ids = (): string[] => cluster.nodes().map((n) => n.id)
  const first = () => cluster.get('n0').node

  const waitSettled = async (service: string, replicas: number, what = `${service} settled at ${replicas}`): Promise<number> =>
    await waitFor(() => cluster.replicatedSettled(service, replicas), SETTLE_MS, () => `${what}:\n    ${cluster.describe(service)}`)

  const waitGone = async (service: string): Promise<void> => {
    await waitFor(() => cluster.containers(service).length === 0 && cluster.nodes().every((n) => taskViews(n.states.state, service).length === 0),
      SETTLE_MS, () => `${service} removed everywhere:\n    ${cluster.describe(service)}`)
  }

  /** job-n1's task before n1 restarted (set by the agent restart test) */
  let jobBefore: TaskView | undefined

  const perNode = (service: string): Map<string, number> => {
    const m = new Map<string, number>()
    for (const c of cluster.running(service)) m.set(c.node, (m.get(c.node) ?? 0) + 1)
    return m
  }

  before(async () => {
    await cluster.start('n0', { labels: { zone: 'a' } })
    await Promise.all([
      cluster.start('n1', { labels: { zone: 'b' }, join: true }),
      cluster.start('n2', { labels: { zone: 'a' }, join: true })
    ])
    await waitFor(() => converged(cluster.nodes(), ids()), CONVERGE_MS, () => `3 nodes converged:\n  ${describeCluster(cluster.nodes())}`)
  })

  after(async () => {
    await cluster.cleanup()
  })

  it('deploy web (replicas 5): 5 labelled containers over the 3 nodes, one per slot; every node\'s taskViews agree', async (t) => {
    const rec = deploy(first(), svcSpec('web', { replicas: 5 }))
    assert.equal(rec.generation, 1)
    const ms = await waitSettled('web', 5)
    t.diagnostic(`5 replicas running and reported everywhere ${ms} ms after the deploy`)

    const cs = cluster.containers('web')
    assert.equal(cs.length, 5)
    const slots = new Set<string>()
    for (const c of cs) {
      const l = p2pLabels(c)
      assert.equal(l.service, 'web')
      assert.match(l.slot, /^[0-4]$/)
      assert.ok(ids().includes(l.node), `container on unknown node ${l.node}`)
      assert.equal(l.generation, '1')
      assert.equal(c.state, 'running')
      assert.ok(!slots.has(l.slot), `slot ${l.slot} runs twice`)
      slots.add(l.slot)
    }
    // bounded loads: at most 2 per node, so all 3 nodes take part
    const load = perNode('web')
    assert.equal(load.size, 3, `web runs on ${load.size} nodes`)
    for (const [id, n] of load) assert.ok(n <= loadCap(5, 3), `${cluster.nameOf(id)} runs ${n} replicas`)

    const views = cluster.agreedTasks('web')
    assert.ok(views !== null, 'the nodes\' taskViews differ')
    assert.deepEqual(views.map((v) => v.slot), [0, 1, 2, 3, 4])
    for (const v of views) {
      const c = cs.find((x) => x.slot === v.slot)!
      assert.equal(v.container, c.id)
      assert.equal(v.node, c.node)
      assert.equal(v.nodeName, cluster.nameOf(c.node))
      assert.equal(v.state, 'running')
      assert.equal(v.desired, 'running')
      assert.equal(v.generation, 1)
    }
    for (const n of cluster.nodes()) {
      const sv = serviceViews(n.states.state).find((s) => s.name === 'web')
      assert.deepEqual({ replicas: sv?.replicas, running: sv?.running }, { replicas: 5, running: 5 }, `services on ${n.name}`)
    }
  })

  it('scale web to 12 then to 2: the container count follows and the extra containers are removed', async (t) => {
    scale(cluster.get('n1').node, 'web', 12)
    const up = await waitSettled('web', 12)
    for (const [id, n] of perNode('web')) assert.ok(n <= loadCap(12, 3), `${cluster.nameOf(id)} runs ${n} of 12`)
    const at12 = new Map(cluster.containers('web').map((c) => [c.slot, c]))

    // with 2 replicas on 3 nodes each slot gets a node of its own, so one may move: make-before-break
    const watch = watchRunning(cluster, 'web', 20)
    let seen = { samples: 0, sampledMin: 0, eventMin: 0, events: 0 }
    scale(cluster.get('n2').node, 'web', 2)
    const down = await waitSettled('web', 2).finally(() => { seen = watch.stop() })
    t.diagnostic(`5→12 settled in ${up} ms, 12→2 in ${down} ms (min running ${seen.sampledMin} sampled, ${seen.eventMin} at engine events)`)
    assert.ok(seen.eventMin >= 2, `running replicas dropped to ${seen.eventMin} while scaling down`)
    // removed, not merely stopped; a slot that stayed on its node kept its container
    assert.equal(cluster.containers('web').length, 2)
    for (const c of cluster.containers('web')) {
      const before = at12.get(c.slot)!
      if (before.node === c.node) assert.equal(c.id, before.id, `slot ${c.slot} was recreated on the same node`)
    }
    for (const n of cluster.nodes()) assert.equal(n.states.state.value<ScaleRecord>(key.scale('web'))?.replicas, 2)
  })

  it('concurrent scale from two nodes: every node keeps the later write and the containers follow it', async (t) => {
    const [a, b] = [cluster.get('n1').node, cluster.get('n2').node]
    const before = b.states.state.get(key.scale('web'))
    const ra = scale(a, 'web', 7)
    // a few ms later, in the same turn of the event loop: b cannot have seen a's write
    const until = Date.now() + 3
    while (Date.now() < until) { /* spin */ }
    const rb = scale(b, 'web', 3)
    assert.equal(b.states.state.get(key.scale('web')), rb)
    assert.ok(before === undefined || compareRecords(before, ra) < 0)
    const winner = compareRecords(ra, rb) > 0 ? ra : rb
    const want = winner === ra ? 7 : 3
    t.diagnostic(`writes at HLC ${ra.t.join('.')} (7, n1) and ${rb.t.join('.')} (3, n2): ${want} wins`)
    assert.ok(ra.t[0] < rb.t[0] || (ra.t[0] === rb.t[0] && ra.t[1] < rb.t[1]), 'the second write should carry the later HLC')
    assert.equal(want, 3)

    await waitFor(() => cluster.nodes().every((n) => Buffer.compare(n.states.state.get(key.scale('web'))!.s, winner.s) === 0),
      CONVERGE_MS, () => cluster.nodes().map((n) => `${n.name}:${n.states.state.value<ScaleRecord>(key.scale('web'))?.replicas}`).join(' '))
    await waitSettled('web', want)
    for (const n of cluster.nodes()) assert.equal(n.states.state.value<ScaleRecord>(key.scale('web'))?.replicas, want)
  })

  /** Crash the container of `service` slot `slot` (on whichever node runs it); returns it as it was. */
  const crashSlot = (service: string, slot: number, exitCode: number): ContainerInfo => {
    const [c] = cluster.containers(service).filter((x) => x.slot === slot)
    assert.ok(c !== undefined && c.state === 'running', `${service}/${slot} is not running:\n    ${cluster.describe(service)}`)
    cluster.get(cluster.nameOf(c.node)).runtime.crash(c.id, exitCode)
    return c
  }
  /** The same container running again, started after `c` was. */
  const restarted = (c: ContainerInfo) => (): boolean => {
    const now = cluster.engine.find(c.id)
    return now !== undefined && now.state === 'running' && now.startedAt > c.startedAt
  }

  it('a crashed replica is restarted after the restart policy delay, and taskViews show the exit in its history', async (t) => {
    deploy(first(), svcSpec('crashy', { replicas: 1, restartPolicy: { condition: 'any', delayMs: 200, maxAttempts: 0, windowMs: 0 } }))
    await waitSettled('crashy', 1)
    const c = crashSlot('crashy', 0, 3)
    const crashedAt = Date.now()
    await waitFor(() => {
      const tasks = cluster.agreedTasks('crashy')
      return restarted(c)() && cluster.containers('crashy').length === 1 &&
        tasks !== null && tasks[0].state === 'running' && tasks[0].history.length === 1
    }, SETTLE_MS, () => `crashy restarted:\n    ${cluster.describe('crashy')}`)
    const [again] = cluster.containers('crashy')
    t.diagnostic(`restarted ${again.startedAt - crashedAt} ms after the crash (delay 200 ms)`)
    assert.equal(again.id, c.id)
    assert.ok(again.startedAt - crashedAt >= 190, `restarted after ${again.startedAt - crashedAt} ms, before the 200 ms delay`)
    for (const n of cluster.nodes()) {
      const [task] = taskViews(n.states.state, 'crashy')
      assert.equal(task.container, c.id)
      assert.equal(task.history[0].exitCode, 3)
      assert.match(task.history[0].reason, /exited with code 3/)
    }
    removeService(first(), 'crashy')
    await waitGone('crashy')
  })

  it('restart_policy condition none: a crashed replica is not restarted; state failed (exit 1) or complete (exit 0)', async () => {
    deploy(first(), svcSpec('oneshot', { replicas: 2, restartPolicy: { condition: 'none', delayMs: 200, maxAttempts: 0, windowMs: 0 } }))
    await waitSettled('oneshot', 2)
    const s0 = crashSlot('oneshot', 0, 1)
    const s1 = crashSlot('oneshot', 1, 0)
    const ended = (): boolean => {
      const tasks = cluster.agreedTasks('oneshot')
      return tasks !== null && tasks.length === 2 && tasks[0].state === 'failed' && tasks[1].state === 'complete'
    }
    await waitFor(ended, SETTLE_MS, () => `oneshot failed/complete:\n    ${cluster.describe('oneshot')}`)
    const tasks = cluster.agreedTasks('oneshot')!
    assert.match(tasks[0].error, /exited with code 1/)
    assert.equal(tasks[0].history[0].exitCode, 1)
    assert.equal(tasks[1].error, '')
    assert.equal(tasks[1].history[0].exitCode, 0)
    // well past the restart delay: still the same two exited containers, nothing restarted
    const notRestarted = (): boolean => {
      const cs = cluster.containers('oneshot')
      return cs.length === 2 && cs.every((x) => x.state === 'exited') && cs.map((x) => x.id).sort().join() === [s0.id, s1.id].sort().join() && ended()
    }
    await holdsFor(notRestarted, 800, () => `oneshot stays down:\n    ${cluster.describe('oneshot')}`)
    removeService(first(), 'oneshot')
    await waitGone('oneshot')
  })

  it('every exit of a restarted container counts: each is in the history and max_attempts stops the restarts', async () => {
    deploy(first(), svcSpec('limited', { replicas: 1, restartPolicy: { condition: 'any', delayMs: 50, maxAttempts: 2, windowMs: 0 } }))
    await waitSettled('limited', 1)
    try {
      let c = crashSlot('limited', 0, 3)
      await waitFor(restarted(c), SETTLE_MS, () => `first restart:\n    ${cluster.describe('limited')}`)
      c = crashSlot('limited', 0, 4)
      await waitFor(restarted(c), SETTLE_MS, () => `second restart:\n    ${cluster.describe('limited')}`)
      c = crashSlot('limited', 0, 5)
      // two restarts made: the third exit is final
      const limitReached = (): boolean => {
        const tasks = cluster.agreedTasks('limited')
        return tasks !== null && tasks[0].state === 'failed' && /restart limit of 2 reached/.test(tasks[0].error)
      }
      await waitFor(limitReached, 3_000, () => `limited failed for good:\n    ${cluster.describe('limited')}`)
      assert.deepEqual(cluster.agreedTasks('limited')![0].history.map((h) => h.exitCode), [5, 4, 3])
      await holdsFor(() => cluster.engine.find(c.id)?.state === 'exited' && limitReached(), 500, () => `limited stays down:\n    ${cluster.describe('limited')}`)
    } finally {
      removeService(first(), 'limited')
      await waitGone('limited')
    }
  })

  it('max_attempts above the 5 exits kept in the task history is still enforced', async () => {
    const maxAttempts = 5
    deploy(first(), svcSpec('limited5', { replicas: 1, restartPolicy: { condition: 'any', delayMs: 20, maxAttempts, windowMs: 0 } }))
    await waitSettled('limited5', 1)
    try {
      let c = crashSlot('limited5', 0, 1)
      for (let i = 0; i < maxAttempts; i++) {
        await waitFor(restarted(c), SETTLE_MS, () => `restart ${i + 1}:\n    ${cluster.describe('limited5')}`)
        c = crashSlot('limited5', 0, 1)
      }
      // 6 exits, 5 restarts made: no sixth restart (its backoff would be 20 ms · 2^5 = 640 ms)
      await holdsFor(() => cluster.engine.find(c.id)?.state === 'exited', 1_200, () => `limited5 stays down after ${maxAttempts} restarts:\n    ${cluster.describe('limited5')}`)
      const [task] = cluster.agreedTasks('limited5')!
      assert.equal(task.state, 'failed')
      assert.match(task.error, /restart limit of 5 reached/)
    } finally {
      removeService(first(), 'limited5')
      await waitGone('limited5')
    }
  })

  it('an unhealthy replica is replaced by a new container', async () => {
    deploy(first(), svcSpec('flaky', { replicas: 2 }))
    await waitSettled('flaky', 2)
    const [c] = cluster.containers('flaky').filter((x) => x.slot === 1)
    cluster.get(cluster.nameOf(c.node)).runtime.setHealth(c.id, 'unhealthy')
    await waitFor(() => cluster.replicatedSettled('flaky', 2) && cluster.engine.find(c.id) === undefined,
      SETTLE_MS, () => `flaky slot 1 replaced:\n    ${cluster.describe('flaky')}`)
    const [fresh] = cluster.containers('flaky').filter((x) => x.slot === 1)
    assert.notEqual(fresh.id, c.id)
    assert.equal(fresh.node, c.node)
    assert.equal(fresh.health, 'none')
    for (const n of cluster.nodes()) {
      const task = taskViews(n.states.state, 'flaky').find((x) => x.slot === 1)!
      assert.equal(task.container, fresh.id)
      assert.match(task.history[0]?.reason ?? '', /unhealthy/)
    }
    removeService(first(), 'flaky')
    await waitGone('flaky')
  })

  it('a container removed behind the node\'s back is recreated', async () => {
    deploy(first(), svcSpec('fragile', { replicas: 2 }))
    await waitSettled('fragile', 2)
    const [c] = cluster.containers('fragile').filter((x) => x.slot === 0)
    cluster.get(cluster.nameOf(c.node)).runtime.removeBehindBack(c.id)
    await waitFor(() => cluster.replicatedSettled('fragile', 2) && cluster.containers('fragile').every((x) => x.id !== c.id),
      SETTLE_MS, () => `fragile slot 0 recreated:\n    ${cluster.describe('fragile')}`)
    const [fresh] = cluster.containers('fragile').filter((x) => x.slot === 0)
    assert.equal(fresh.node, c.node)
    assert.deepEqual({ ...p2pLabels(fresh) }, { service: 'fragile', slot: '0', node: c.node, generation: '1' })
    removeService(first(), 'fragile')
    await waitGone('fragile')
  })

  it('a missing image rejects the task with the reason; reservations larger than any node leave slots unplaced with a reason', async () => {
    deploy(first(), svcSpec('ghost', { image: 'p2p-orch/not-loaded:1', replicas: 1 }))
    deploy(first(), svcSpec('huge', { replicas: 2, reservations: { cpus: 64 } }))
    await waitFor(() => {
      const g = cluster.agreedTasks('ghost')
      const h = cluster.agreedTasks('huge')
      return g !== null && g.length === 1 && g[0].state === 'rejected' && h !== null && h.length === 2
    }, SETTLE_MS, () => `ghost rejected, huge listed:\n    ${cluster.describe('ghost')}\n    ${cluster.describe('huge')}`)
    const [g] = cluster.agreedTasks('ghost')!
    assert.ok(ids().includes(g.node))
    assert.match(g.error, /image not found: p2p-orch\/not-loaded:1/)
    assert.equal(g.container, '')
    assert.equal(cluster.containers('ghost').length, 0)

    for (const h of cluster.agreedTasks('huge')!) {
      assert.equal(h.node, '')
      assert.equal(h.state, 'pending')
      assert.match(h.error, /no node has 64 CPUs free to reserve \(3 nodes checked\)/)
    }
    assert.equal(cluster.containers('huge').length, 0)
    removeService(first(), 'ghost')
    removeService(first(), 'huge')
    await waitGone('ghost')
    await waitGone('huge')
  })

  it('global service: one container per eligible node, also on a node that joins later; a label constraint restricts it', async (t) => {
    deploy(first(), svcSpec('agent', { mode: 'global', replicas: 0 }))
    deploy(first(), svcSpec('agent-a', { mode: 'global', replicas: 0, constraints: [{ attribute: 'labels.zone', op: '==', value: 'a' }] }))
    const onNodes = (service: string): string[] => cluster.running(service).map((c) => cluster.nameOf(c.node)).sort()
    const globalSettled = (service: string, names: string[]): boolean => {
      const cs = cluster.containers(service)
      const tasks = cluster.agreedTasks(service)
      return cs.length === names.length && onNodes(service).join() === names.join() &&
        tasks !== null && tasks.length === names.length && tasks.every((x) => x.state === 'running' && x.desired === 'running' && cs.some((c) => c.id === x.container && c.node === x.node))
    }
    await waitFor(() => globalSettled('agent', ['n0', 'n1', 'n2']) && globalSettled('agent-a', ['n0', 'n2']), SETTLE_MS,
      () => `globals on 3 nodes:\n    ${cluster.describe('agent')}\n    ${cluster.describe('agent-a')}`)
    for (const c of cluster.containers('agent')) assert.equal(c.labels[LABEL_SLOT], '0')

    const t0 = Date.now()
    await cluster.start('n3', { labels: { zone: 'b' }, join: true })
    await waitFor(() => globalSettled('agent', ['n0', 'n1', 'n2', 'n3']) && globalSettled('agent-a', ['n0', 'n2']), SETTLE_MS,
      () => `agent on n3 too:\n    ${cluster.describe('agent')}\n    ${cluster.describe('agent-a')}`)
    t.diagnostic(`the late node runs the global service ${Date.now() - t0} ms after it started`)
    for (const n of cluster.nodes()) {
      const sv = serviceViews(n.states.state)
      assert.equal(sv.find((s) => s.name === 'agent')?.running, 4)
      assert.equal(sv.find((s) => s.name === 'agent-a')?.running, 2)
    }
    removeService(first(), 'agent')
    removeService(first(), 'agent-a')
    await waitGone('agent')
    await waitGone('agent-a')
  })

  it('a joining node takes over about 1/N of the slots, make-before-break: the running count never drops below desired', async (t) => {
    const replicas = 20
    scale(first(), 'web', replicas)
    await waitFor(() => converged(cluster.nodes(), ids()), CONVERGE_MS, () => describeCluster(cluster.nodes()))
    await waitSettled('web', replicas, 'web at 20 on 4 nodes')
    const beforeMap = cluster.agreedPlacement('web')!

    const watch = watchRunning(cluster, 'web', 20)
    const t0 = Date.now()
    let n4Id = ''
    let result: ReturnType<typeof watch.stop>
    try {
      const n4 = await cluster.start('n4', { labels: { zone: 'a' }, join: true })
      n4Id = n4.node.id
      await waitFor(() => [...(cluster.agreedPlacement('web')?.values() ?? [])].includes(n4Id) && cluster.replicatedSettled('web', replicas),
        SETTLE_MS, () => `web rebalanced onto n4:\n    ${cluster.describe('web')}`)
    } finally {
      result = watch.stop()
    }
    const afterMap = cluster.agreedPlacement('web')!
    const moved = [...afterMap].filter(([k, nodeId]) => beforeMap.get(k) !== nodeId)
    const onNew = moved.filter(([, nodeId]) => nodeId === n4Id).length
    t.diagnostic(`rebalanced in ${Date.now() - t0} ms; ${moved.length} of ${replicas} slots moved, ${onNew} to the new node; ` +
      `${result.samples} samples (min running ${result.sampledMin}), ${result.events} engine events (min running ${result.eventMin})`)
    assert.ok(result.samples >= 10, `only ${result.samples} samples`)
    assert.ok(result.sampledMin >= replicas, `running replicas dropped to ${result.sampledMin} at a sample`)
    assert.ok(result.eventMin >= replicas, `running replicas dropped to ${result.eventMin} at an engine event`)
    const load = perNode('web')
    assert.ok((load.get(n4Id) ?? 0) >= 1, 'the new node runs no slot')
    assert.ok((load.get(n4Id) ?? 0) <= loadCap(replicas, 5))
    // about 1/N: the new node's share, plus the few slots the lower load cap pushes between old nodes
    assert.ok(moved.length <= Math.ceil(replicas / 5) * 2, `${moved.length} slots moved`)
    assert.equal(cluster.running('web').length, replicas)
    assert.equal(cluster.containers('web').length, replicas)
  })

  it('a node that dies without leaving: once declared dead, the survivors run all replicas', async (t) => {
    const victim = cluster.get('n4')
    const victimId = victim.node.id
    const lost = cluster.running('web').filter((c) => c.node === victimId).length
    assert.ok(lost > 0)
    const t0 = Date.now()
    await cluster.crash('n4')
    const survivors = cluster.nodes()
    const deadAfter = await waitFor(() => survivors.every((n) => n.membership.status(victimId) === 'dead'), DETECT_MS,
      () => `n4 dead everywhere:\n  ${describeCluster(survivors)}`, 10)
    await waitSettled('web', 20, 'survivors run all 20')
    t.diagnostic(`declared dead ${deadAfter} ms after the crash; all 20 running on survivors ${Date.now() - t0} ms after it (${lost} replicas lost)`)
    assert.ok(cluster.running('web').every((c) => c.node !== victimId))
    for (const n of survivors) assert.ok(placement(n.states.state).slots.size >= 20)
  })

  it('agent restart: a node stopped gracefully adopts its containers (same ids, none created) when started again on its data dir', async (t) => {
    const old = cluster.get('n1')
    const mine = cluster.containers('web').filter((c) => c.node === old.node.id)
    assert.ok(mine.length > 0, 'n1 runs no web replica')
    const mineIds = mine.map((c) => c.id).sort()
    const slots = mine.map((c) => c.slot)
    // a one-shot job that ran to completion on n1: its exit is in n1's task history
    deploy(first(), svcSpec('job-n1', { mode: 'global', replicas: 0, command: ['sh', '-c', 'exit 0'], constraints: [{ attribute: 'name', op: '==', value: 'n1' }], restartPolicy: { condition: 'none', delayMs: 200, maxAttempts: 0, windowMs: 0 } }))
    await waitFor(() => { const j = cluster.agreedTasks('job-n1'); return j !== null && j.length === 1 && j[0].state === 'complete' && j[0].history.length === 1 },
      SETTLE_MS, () => `job-n1 complete:\n    ${cluster.describe('job-n1')}`)
    jobBefore = cluster.agreedTasks('job-n1')![0]

    await cluster.stop('n1')
    // the containers outlive the agent
    assert.deepEqual(cluster.containers('web').filter((c) => c.node === old.node.id && c.state === 'running').map((c) => c.id).sort(), mineIds)
    // the others see it leave and start its slots elsewhere
    await waitFor(() => cluster.nodes().every((n) => n.membership.status(old.node.id) === 'left') &&
      slots.every((s) => cluster.running('web').some((c) => c.slot === s && c.node !== old.node.id)),
    SETTLE_MS, () => `n1's slots covered by others:\n    ${cluster.describe('web')}`)

    const t0 = Date.now()
    const back = await cluster.start('n1', { dataDir: old.dataDir, labels: old.labels })
    assert.equal(back.node.id, old.node.id)
    assert.notEqual(back.runtime, old.runtime)
    await waitFor(() => converged(cluster.nodes(), ids()), CONVERGE_MS, () => describeCluster(cluster.nodes()))
    await waitSettled('web', 20, 'web back on n1')
    t.diagnostic(`n1 restarted and web settled in ${Date.now() - t0} ms; ${mine.length} containers adopted`)
    const now = cluster.containers('web').filter((c) => c.node === back.node.id)
    assert.deepEqual(now.map((c) => c.id).sort(), mineIds)
    assert.equal(back.node.counters.get('tasks_created_total'), 0)
    for (const c of now) {
      assert.equal(c.labels[LABEL_SERVICE], 'web')
      assert.equal(c.labels[LABEL_NODE], back.node.id)
      assert.equal(c.labels[LABEL_GENERATION], '1')
    }
  })

  // continues the agent restart above: the completed job was adopted along with n1's replicas
  it('after an agent restart, an exit already in the task history is not recorded again', async () => {
    assert.ok(jobBefore !== undefined)
    await waitFor(() => { const j = cluster.agreedTasks('job-n1'); return j !== null && j.length === 1 && j[0].state === 'complete' && j[0].node === cluster.get('n1').node.id },
      SETTLE_MS, () => `job-n1 adopted:\n    ${cluster.describe('job-n1')}`)
    const [job] = cluster.agreedTasks('job-n1')!
    assert.equal(job.container, jobBefore.container)
    assert.deepEqual(job.history, jobBefore.history)
  })
})
