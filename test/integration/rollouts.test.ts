/**
 * Rollouts on an in-process cluster: 3 p2p-orch nodes over real libp2p TCP, each with a
 * MemoryRuntime on one shared engine. Each node's reconciler updates its own slots when the plan
 * (placement/rollout.ts) lets it; the results are read off the engine (every container's
 * generation label and start time) and off every node's copy of the state.
 *
 * Proven here: batches in slot order, one monitor period apart; start-first never runs fewer than
 * the desired count, stop-first at most `parallelism` fewer; an update whose replicas exit rolls
 * back by itself after the first batch; a missing image pauses with "image not found"; pause and
 * resume by hand; canary then promote, canary then rollback; blue-green with the mesh serving one
 * set; a node killed mid-rollout does not stop it.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { routableEndpoints } from '../../node/mesh/endpoints.ts'
import { rolloutView } from '../../node/rollout-view.ts'
import { taskViews } from '../../node/tasks-view.ts'
import { key, type RolloutDecision } from '../../protocol/keys.ts'
import type { ServiceSpec, UpdatePolicy } from '../../protocol/spec.ts'
import { converged, describeCluster, holdsFor, waitFor } from '../helpers/cluster.ts'
import { deploy, pause, promote, rollback, serviceState, ServiceCluster, svcSpec, update, watchRunning } from '../helpers/services.ts'

const CONVERGE_MS = 10_000
const SETTLE_MS = 15_000
const MONITOR_MS = 300

const fast = (o: Partial<UpdatePolicy> = {}): UpdatePolicy => ({
  parallelism: 1, delayMs: 0, order: 'start-first', monitorMs: MONITOR_MS, failureAction: 'pause', maxFailureRatio: 0, ...o
})

describe('rollouts on a 3 node cluster sharing one in-memory engine', { timeout: 120_000 }, () => {
  const cluster = new ServiceCluster('p2p-orch rollouts integration')
  const first = () => cluster.get('n0').node

  before(async () => {
    await cluster.start('n0')
    await Promise.all([cluster.start('n1', { join: true }), cluster.start('n2', { join: true })])
    const ids = cluster.nodes().map((n) => n.id)
    await waitFor(() => converged(cluster.nodes(), ids), CONVERGE_MS, () => `3 nodes converged:\n  ${describeCluster(cluster.nodes())}`)
  })

  after(async () => { await cluster.cleanup() })

  /** Every node holds the rollout as `state` (rolloutView). */
  const waitRollout = async (service: string, state: string, timeoutMs = SETTLE_MS): Promise<void> => {
    await waitFor(() => cluster.nodes().every((n) => rolloutView(n.states.state, serviceState(n, service), Date.now()).state === state), timeoutMs,
      () => `${service} rollout ${state} everywhere: ${cluster.nodes().map((n) => `${n.name}: ${JSON.stringify(rolloutView(n.states.state, serviceState(n, service), Date.now()))}`).join('\n  ')}\n    ${cluster.describe(service)}`)
  }

  /** The engine runs exactly `replicas` containers of `service`, all running `generation`. */
  const waitAllOn = async (service: string, replicas: number, generation: number, timeoutMs = SETTLE_MS): Promise<void> => {
    await waitFor(() => {
      const cs = cluster.containers(service)
      return cs.length === replicas && cs.every((c) => c.state === 'running' && c.generation === generation) && new Set(cs.map((c) => c.slot)).size === replicas
    }, timeoutMs, () => `${service}: ${replicas} running on generation ${generation}:\n    ${cluster.describe(service)}`)
  }

  /** When each slot first had a container of `generation` on the engine. */
  const watchFirstStart = (service: string, generation: number): { stop: () => Map<number, number> } => {
    const seen = new Map<number, number>()
    const look = (): void => { for (const c of cluster.containers(service)) if (c.generation === generation && !seen.has(c.slot)) seen.set(c.slot, Date.now()) }
    const unsubscribe = cluster.engine.subscribe(look)
    const timer = setInterval(look, 5)
    return { stop: () => { unsubscribe(); clearInterval(timer); return seen } }
  }

  const start = async (name: string, o: Partial<ServiceSpec>): Promise<number> => {
    const rec = deploy(first(), svcSpec(name, { replicas: 4, ...o }))
    await waitAllOn(name, 4, rec.generation)
    await waitRollout(name, 'completed')
    return rec.generation
  }

  it('start-first, parallelism 1: slots in order, each a monitor period after the last; never fewer than 4 running; recorded as completed', async (t) => {
    const g1 = await start('web', { update: fast() })
    const starts = watchFirstStart('web', g1 + 1)
    const running = watchRunning(cluster, 'web', 5)
    const t0 = Date.now()
    const rec = update(first(), 'web', { env: ['VERSION=2'] })
    assert.equal(rec.generation, g1 + 1)
    await waitAllOn('web', 4, rec.generation)
    await waitRollout('web', 'completed')
    const took = Date.now() - t0
    const at = starts.stop()
    const { eventMin } = running.stop()
    const order = [...at].sort((a, b) => a[1] - b[1])
    t.diagnostic(`rollout of 4 took ${took} ms; slot starts at +${order.map(([s, ms]) => `${s}:${ms - t0}`).join(' +')} ms; fewest running ${eventMin}`)
    assert.deepEqual(order.map(([s]) => s), [0, 1, 2, 3], 'slots update in slot order')
    for (let i = 1; i < order.length; i++) assert.ok(order[i][1] - order[i - 1][1] >= MONITOR_MS, `slot ${order[i][0]} started ${order[i][1] - order[i - 1][1]} ms after slot ${order[i - 1][0]}, less than monitor`)
    assert.ok(eventMin >= 4, `only ${eventMin} replicas running at some moment (start-first keeps 4)`)
    await waitFor(() => cluster.nodes().every((n) => n.states.state.value<RolloutDecision>(key.rollout('web'))?.outcome === 'completed'), SETTLE_MS, 'every node holds the completed decision')
  })

  it('stop-first, parallelism 2: slots two at a time, never fewer than 2 running', async () => {
    const g1 = await start('pair', { update: fast({ parallelism: 2, order: 'stop-first' }) })
    const starts = watchFirstStart('pair', g1 + 1)
    const running = watchRunning(cluster, 'pair', 5)
    update(first(), 'pair', { env: ['VERSION=2'] })
    await waitAllOn('pair', 4, g1 + 1)
    const at = starts.stop()
    const { eventMin } = running.stop()
    assert.ok(eventMin >= 2, `${eventMin} running at some moment (stop-first, parallelism 2 keeps 2)`)
    assert.ok(Math.min(at.get(2)!, at.get(3)!) - Math.max(at.get(0)!, at.get(1)!) >= MONITOR_MS, 'the second batch waits for the first one\'s monitor period')
  })

  it('replicas that exit at start: the rollout stops at the first batch and rolls back by itself; ps and rollout status say why', async (t) => {
    const g1 = await start('crashy', { update: fast({ failureAction: 'rollback' }) })
    const starts = watchFirstStart('crashy', g1 + 1)
    const t0 = Date.now()
    update(first(), 'crashy', { command: ['sh', '-c', 'exit 3'] })
    await waitRollout('crashy', 'rolled back')
    await waitAllOn('crashy', 4, g1)
    t.diagnostic(`rolled back ${Date.now() - t0} ms after the update`)
    assert.deepEqual([...starts.stop().keys()], [0], 'only the first batch (slot 0) ever ran the failing generation')
    const view = rolloutView(first().states.state, serviceState(first(), 'crashy'), Date.now())
    assert.equal(view.kind, 'auto-rollback')
    assert.match(view.reason, /1 of 1 updated replicas failed/)
    assert.match(taskViews(first().states.state, 'crashy').find((x) => x.slot === 0)!.history.map((h) => h.reason).join(' '), /exited with code 3/)
  })

  it('an image no node has: the first batch fails, the rollout pauses, ps says "image not found"; rollback by hand returns', async () => {
    const g1 = await start('missing', { update: fast() })
    update(first(), 'missing', { image: 'p2p-orch/not-loaded:2' })
    await waitRollout('missing', 'paused')
    const slot0 = taskViews(first().states.state, 'missing').find((x) => x.slot === 0 && x.desired === 'running')!
    assert.match(slot0.error, /image not found: p2p-orch\/not-loaded:2/)
    // start-first: slot 0's old replica keeps serving, as do the 3 slots after it
    assert.equal(cluster.containers('missing').filter((c) => c.generation === g1 && c.state === 'running').length, 4, 'every slot keeps its old replica')
    rollback(first(), 'missing')
    await waitAllOn('missing', 4, g1)
    await waitRollout('missing', 'completed')
  })

  it('pause by hand stops further batches; resume finishes', async () => {
    const g1 = await start('paced', { update: fast({ monitorMs: 600 }) })
    update(first(), 'paced', { env: ['VERSION=2'] })
    await waitFor(() => cluster.containers('paced').some((c) => c.generation === g1 + 1 && c.state === 'running'), SETTLE_MS, 'slot 0 updated')
    pause(first(), 'paced', true)
    await waitRollout('paced', 'paused')
    const updated = (): number => new Set(cluster.containers('paced').filter((c) => c.generation === g1 + 1).map((c) => c.slot)).size
    const before = updated()
    await holdsFor(() => updated() === before, 1_500, () => `no slot updated while paused (${before} before)`)
    pause(first(), 'paced', false)
    await waitAllOn('paced', 4, g1 + 1)
    await waitRollout('paced', 'completed')
  })

  it('canary 1 of 4 waits for promote, then finishes; a second canary is discarded by rollback', async () => {
    const g1 = await start('canary', { update: fast(), canary: 1 })
    update(first(), 'canary', { env: ['VERSION=2'] })
    await waitRollout('canary', 'paused')
    await holdsFor(() => cluster.containers('canary').filter((c) => c.generation === g1 + 1).length === 1, 800, 'one canary only')
    assert.match(rolloutView(first().states.state, serviceState(first(), 'canary'), Date.now()).reason, /^canary: 1 of 4/)
    promote(first(), 'canary')
    await waitAllOn('canary', 4, g1 + 1)
    await waitRollout('canary', 'completed')

    update(first(), 'canary', { env: ['VERSION=3'] })
    await waitRollout('canary', 'paused')
    assert.equal(cluster.containers('canary').filter((c) => c.generation === g1 + 2).length, 1)
    const back = rollback(first(), 'canary')
    assert.equal(back.generation, g1 + 1)
    await waitAllOn('canary', 4, g1 + 1)
    await waitRollout('canary', 'completed')
  })

  it('blue-green (canary = replicas): a full new set beside the old one; the mesh serves the old set until promote, then the new one', async () => {
    const g1 = await start('bg', { update: fast(), canary: 4 })
    const serving = (): number[] => [...new Set((routableEndpoints(first().states.state).get('bg') ?? []).map((e) => e.generation))]
    update(first(), 'bg', { env: ['VERSION=2'] })
    await waitRollout('bg', 'paused')
    await waitFor(() => cluster.running('bg').length === 8, SETTLE_MS, () => `8 running:\n    ${cluster.describe('bg')}`)
    assert.deepEqual(serving(), [g1], 'the old set serves until promote')
    promote(first(), 'bg')
    await waitAllOn('bg', 4, g1 + 1)
    await waitFor(() => serving().length === 1 && serving()[0] === g1 + 1, SETTLE_MS, () => `the new set serves: ${serving().join(',')}`)
    await waitRollout('bg', 'completed')
  })

  it('a node killed mid-rollout does not stop it: the others take its slots at the generation reached', async (t) => {
    const g1 = await start('sturdy', { update: fast({ monitorMs: 800 }) })
    update(first(), 'sturdy', { env: ['VERSION=2'] })
    await waitFor(() => cluster.containers('sturdy').some((c) => c.slot === 0 && c.generation === g1 + 1 && c.state === 'running'), SETTLE_MS, 'slot 0 updated')
    // kill the node that holds slot 1, the next to update (never n0: the test writes through it)
    const holder = cluster.containers('sturdy').find((c) => c.slot === 1 && c.generation === g1)?.node
    const victim = cluster.list().find((n) => n.node.id === holder && n.name !== 'n0') ?? cluster.list().find((n) => n.name !== 'n0')!
    const t0 = Date.now()
    await cluster.crash(victim.name)
    for (const c of cluster.containers('sturdy').filter((x) => x.node === victim.node.id)) cluster.engine.remove(cluster.engine.find(c.id)!)
    await waitFor(() => {
      const cs = cluster.containers('sturdy').filter((c) => c.node !== victim.node.id)
      return cs.length === 4 && cs.every((c) => c.state === 'running' && c.generation === g1 + 1)
    }, 30_000, () => `4 on generation ${g1 + 1} without ${victim.name}:\n    ${cluster.describe('sturdy')}`)
    t.diagnostic(`completed ${Date.now() - t0} ms after ${victim.name} was killed`)
  })
})
