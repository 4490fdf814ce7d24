/**
 * The Runtime contract: the behaviour the reconciler relies on, checked with the same assertions
 * against every implementation (MemoryRuntime in test/unit, DockerRuntime on a real engine in
 * test/e2e). Containers run the p2p-orch/busybox:latest image with commands both implementations
 * understand: `sleep 3600` (runs until stopped) and `sh -c "..."` with echo/exit.
 */
import { after, before, describe, it, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { newServiceSpec, type ServiceSpec } from '../../protocol/spec.ts'
import {
  LABEL_GENERATION,
  LABEL_NODE,
  LABEL_SERVICE,
  LABEL_SLOT,
  type ContainerInfo,
  type CreateRequest,
  type Runtime,
  type RuntimeEvent
} from '../../node/runtime/types.ts'
import type { TestHooks } from '../../node/runtime/memory.ts'
import { freePort } from '../helpers/agents.ts'

export const CONTRACT_IMAGE = 'p2p-orch/busybox:latest'

/** Every container the contract makes carries this label, so a harness can sweep them up. */
export const CONTRACT_RUN_LABEL = 'p2p-orch.test.run'
/** Unique per test process: containers of concurrent or earlier runs never match. */
export const CONTRACT_RUN_ID = `${process.pid}-${randomBytes(4).toString('hex')}`

/** Longest wait for a state the engine reaches asynchronously; a loaded CI engine can take seconds. */
export const WAIT_TIMEOUT_MS = 15_000
/** Polling step while waiting: short enough to keep fast runtimes fast. */
const POLL_INTERVAL_MS = 25
/** How long "no event arrives" is watched: events otherwise arrive within ms on a local engine. */
const QUIET_PERIOD_MS = 500
/** Healthcheck interval used by the contract: fast enough for tests, far above Docker's 1 ms floor. */
const HEALTH_INTERVAL_MS = 200
/** Tolerance between the test's clock and the engine's for startedAt/finishedAt. */
const CLOCK_SKEW_MS = 5_000

type ContractRuntime = Runtime & Partial<TestHooks>

export interface ContractSetup {
  runtime: ContractRuntime
  cleanup: () => Promise<void>
}

export function baseSpec(overrides: Partial<ServiceSpec> = {}): ServiceSpec {
  return newServiceSpec({
    name: 'svc',
    stack: 'contract',
    image: CONTRACT_IMAGE,
    command: ['sleep', '3600'],
    labels: { [CONTRACT_RUN_LABEL]: CONTRACT_RUN_ID },
    restartPolicy: { condition: 'any', delayMs: 5_000, maxAttempts: 0, windowMs: 0 },
    ...overrides
  })
}

export async function waitFor<T>(what: string, probe: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = WAIT_TIMEOUT_MS): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: T = await probe()
  while (!ok(last)) {
    if (Date.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}; last value: ${JSON.stringify(last)}`)
    await new Promise(r => setTimeout(r, POLL_INTERVAL_MS))
    last = await probe()
  }
  return last
}

const sleep = (ms: number) => new Promise(r => setTimeout(r, ms))

export function runtimeContract(name: string, make: () => Promise<ContractSetup>): void {
  describe(`Runtime contract: ${name}`, () => {
    let runtime: ContractRuntime
    let cleanup: (() => Promise<void>) | undefined
    const made = new Set<string>()
    let seq = 0

    before(async () => {
      const setup = await make()
      runtime = setup.runtime
      cleanup = setup.cleanup
    })

    after(async () => {
      if (runtime) for (const id of made) await runtime.remove(id).catch(() => {})
      if (cleanup) await cleanup()
    })

    const newNode = (tag: string) => `contract-${CONTRACT_RUN_ID}-${tag}-${++seq}`

    async function run(node: string, overrides: Partial<ServiceSpec> = {}, req: Partial<CreateRequest> = {}): Promise<string> {
      const id = await runtime.run({
        spec: baseSpec(overrides),
        slot: 1,
        node,
        generation: 1,
        name: `c-${CONTRACT_RUN_ID}-${++seq}`,
        ...req
      })
      made.add(id)
      return id
    }

    const listOne = async (node: string, id: string): Promise<ContainerInfo | undefined> =>
      (await runtime.list(node)).find(c => c.id === id)

    const waitState = (node: string, id: string, state: ContainerInfo['state']) =>
      waitFor(`container ${id.slice(0, 12)} to be ${state}`, () => listOne(node, id), c => c?.state === state)

    function collectEvents(): { events: RuntimeEvent[]; stop: () => void; of: (id: string) => RuntimeEvent['type'][] } {
      const events: RuntimeEvent[] = []
      const stop = runtime.events(e => events.push(e))
      return { events, stop, of: id => events.filter(e => e.containerId === id).map(e => e.type) }
    }

    it('ping answers and resources are positive', async () => {
      await runtime.ping()
      const r = await runtime.resources()
      assert.ok(r.cpus > 0, `cpus ${r.cpus}`)
      assert.ok(r.memoryBytes > 0, `memoryBytes ${r.memoryBytes}`)
    })

    it('hasImage knows the test image (with or without :latest) and not a missing one', async () => {
      assert.equal(await runtime.hasImage(CONTRACT_IMAGE), true)
      assert.equal(await runtime.hasImage('p2p-orch/busybox'), true)
      assert.equal(await runtime.hasImage('p2p-orch/does-not-exist:latest'), false)
    })

    it('run starts a container that list shows running with the four labels', async () => {
      const node = newNode('run')
      const t0 = Date.now()
      const id = await run(node, { name: 'web', labels: { [CONTRACT_RUN_LABEL]: CONTRACT_RUN_ID, 'com.example.team': 'blue' } }, { slot: 2, generation: 7 })
      const t1 = Date.now()
      const listed = await runtime.list(node)
      assert.equal(listed.length, 1)
      const c = listed[0]
      assert.equal(c.id, id)
      assert.match(c.name, /^c-/)
      assert.equal(c.service, 'web')
      assert.equal(c.slot, 2)
      assert.equal(c.node, node)
      assert.equal(c.generation, 7)
      assert.equal(c.image, CONTRACT_IMAGE)
      assert.equal(c.state, 'running')
      assert.equal(c.health, 'none')
      assert.equal(c.exitCode, null)
      assert.ok(c.startedAt >= t0 - CLOCK_SKEW_MS && c.startedAt <= t1 + CLOCK_SKEW_MS, `startedAt ${c.startedAt} not near ${t0}`)
      assert.equal(c.finishedAt, 0)
      assert.equal(c.labels[LABEL_SERVICE], 'web')
      assert.equal(c.labels[LABEL_SLOT], '2')
      assert.equal(c.labels[LABEL_NODE], node)
      assert.equal(c.labels[LABEL_GENERATION], '7')
      assert.equal(c.labels['com.example.team'], 'blue')
      assert.deepEqual(await runtime.inspect(id), c, 'inspect and list agree')
    })

    it('the p2p-orch labels cannot be overridden by the spec labels', async () => {
      const node = newNode('spoof')
      const id = await run(node, { labels: { [CONTRACT_RUN_LABEL]: CONTRACT_RUN_ID, [LABEL_NODE]: 'someone-else', [LABEL_SLOT]: '99' } })
      const c = await runtime.inspect(id)
      assert.equal(c?.node, node)
      assert.equal(c?.slot, 1)
    })

    it('inspect of an unknown id is null', async () => {
      assert.equal(await runtime.inspect('0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef'), null)
    })

    it('labels isolate nodes: list(A) never returns B\'s containers', async () => {
      const a = newNode('a')
      const b = newNode('b')
      const a1 = await run(a)
      const a2 = await run(a, { command: ['sh', '-c', 'exit 0'] })
      const b1 = await run(b)
      assert.deepEqual((await runtime.list(a)).map(c => c.id).sort(), [a1, a2].sort())
      assert.deepEqual((await runtime.list(b)).map(c => c.id), [b1])
      assert.deepEqual(await runtime.list(newNode('nobody')), [])
      for (const c of await runtime.list(a)) assert.equal(c.node, a)
    })

    it('stop leaves the container exited; stopping again is not an error', async () => {
      const node = newNode('stop')
      const id = await run(node)
      await runtime.stop(id, 0)
      const c = await waitState(node, id, 'exited')
      assert.equal(typeof c?.exitCode, 'number')
      assert.ok(c!.finishedAt >= c!.startedAt && c!.startedAt > 0, `startedAt ${c!.startedAt} finishedAt ${c!.finishedAt}`)
      await runtime.stop(id, 0)
      await runtime.stop(id, 1_000)
      assert.equal((await runtime.inspect(id))?.state, 'exited')
    })

    it('start runs a stopped container again', async () => {
      const node = newNode('restart')
      const id = await run(node)
      const first = (await runtime.inspect(id))!.startedAt
      await runtime.stop(id, 0)
      await waitState(node, id, 'exited')
      await sleep(20)
      await runtime.start(id)
      const c = await waitState(node, id, 'running')
      assert.equal(c?.exitCode, null)
      assert.ok(c!.startedAt >= first, 'startedAt moves forward')
      await runtime.start(id) // already running: not an error
    })

    it('remove deletes a stopped or running container; removing a missing one is fine', async () => {
      const node = newNode('rm')
      const running = await run(node)
      const stopped = await run(node, { command: ['sh', '-c', 'exit 0'] })
      await waitState(node, stopped, 'exited')
      await runtime.remove(stopped)
      await runtime.remove(running)
      assert.deepEqual(await runtime.list(node), [])
      assert.equal(await runtime.inspect(running), null)
      await runtime.remove(running)
      await runtime.remove('0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef')
    })

    it('a command that exits reports its exit code (sh -c "exit 3")', async () => {
      const node = newNode('exit')
      const id = await run(node, { command: ['sh', '-c', 'exit 3'] })
      const c = await waitState(node, id, 'exited')
      assert.equal(c?.exitCode, 3)
      assert.ok(c!.finishedAt > 0)
      const inspected = await runtime.inspect(id)
      assert.equal(inspected?.exitCode, 3)
      assert.equal(inspected?.state, 'exited')
    })

    it('an unknown image is an ImageNotFoundError and leaves no container', async () => {
      const node = newNode('noimage')
      await assert.rejects(run(node, { image: 'p2p-orch/does-not-exist:latest' }), (err: Error) => {
        assert.equal(err.name, 'ImageNotFoundError')
        assert.match(err.message, /p2p-orch\/does-not-exist:latest/)
        return true
      })
      assert.deepEqual(await runtime.list(node), [])
    })

    it('container names are unique per engine', async () => {
      const node = newNode('names')
      const name = `c-${CONTRACT_RUN_ID}-dup-${++seq}`
      await run(node, {}, { name })
      await assert.rejects(run(node, {}, { name }), /already in use/)
      assert.equal((await runtime.list(node)).length, 1)
    })

    it('a bind mount with a relative source is rejected and leaves no container', async () => {
      const node = newNode('bind')
      await assert.rejects(
        run(node, { mounts: [{ type: 'bind', source: 'relative/dir', target: '/data', readOnly: false }] }),
        /absolute/
      )
      assert.deepEqual(await runtime.list(node), [])
    })

    it('a published port already taken on the host IP fails the run and leaves no container', async () => {
      const node = newNode('ports')
      // below Linux's ephemeral range (32768+), where another test's outgoing socket may hold the
      // port, and checked free on the host IP: the second run must fail on our first container only
      const port = await freePort(['127.0.0.1'], 20_000 + Math.floor(Math.random() * 12_000))
      const ports: ServiceSpec['ports'] = [{ target: 80, published: port, protocol: 'tcp', mode: 'host' }]
      const first = await run(node, { ports }, { hostIp: '127.0.0.1' })
      await assert.rejects(run(node, { ports }, { hostIp: '127.0.0.1' }), /already allocated|in use/)
      assert.deepEqual((await runtime.list(node)).map(c => c.id), [first])
    })

    it('events report create, start, die and destroy with the container labels', async () => {
      const node = newNode('events')
      const sub = collectEvents()
      try {
        const id = await run(node, { command: ['sh', '-c', 'exit 3'] })
        await waitFor('create, start and die events', async () => sub.of(id), t => t.includes('die'))
        await runtime.remove(id)
        const types = await waitFor('destroy event', async () => sub.of(id), t => t.includes('destroy'))
        assert.deepEqual(types.filter(t => t !== 'stop' && t !== 'health'), ['create', 'start', 'die', 'destroy'])
        for (const e of sub.events.filter(e => e.containerId === id)) {
          assert.equal(e.labels[LABEL_NODE], node)
          assert.equal(e.labels[LABEL_SERVICE], 'svc')
        }
      } finally {
        sub.stop()
      }
    })

    it('stop reports die then stop; remove of a running container reports die then destroy', async () => {
      const node = newNode('stopevents')
      const sub = collectEvents()
      try {
        const a = await run(node)
        const b = await run(node)
        await waitFor('start events', async () => [sub.of(a), sub.of(b)], ([x, y]) => x.includes('start') && y.includes('start'))
        await runtime.stop(a, 0)
        await runtime.remove(b)
        const ta = await waitFor('stop event', async () => sub.of(a), t => t.includes('stop'))
        const tb = await waitFor('destroy event', async () => sub.of(b), t => t.includes('destroy'))
        assert.deepEqual(ta, ['create', 'start', 'die', 'stop'])
        assert.deepEqual(tb, ['create', 'start', 'die', 'destroy'])
      } finally {
        sub.stop()
      }
    })

    it('unsubscribing stops event delivery', async () => {
      const node = newNode('unsub')
      const sub = collectEvents()
      const first = await run(node, { command: ['sh', '-c', 'exit 0'] })
      await waitFor('events of the first container', async () => sub.of(first), t => t.includes('die'))
      sub.stop()
      const second = await run(node, { command: ['sh', '-c', 'exit 0'] })
      await waitState(node, second, 'exited')
      await runtime.remove(second)
      await sleep(QUIET_PERIOD_MS)
      assert.deepEqual(sub.of(second), [])
    })

    it('logs return stdout and stderr; tail limits the lines', async () => {
      const node = newNode('logs')
      const id = await run(node, { command: ['sh', '-c', 'echo one; echo "two words"; echo three >&2; exit 0'] })
      await waitState(node, id, 'exited')
      const all = await runtime.logs(id, 100)
      assert.deepEqual(all.split('\n').filter(Boolean).sort(), ['one', 'three', 'two words'])
      const last = (await runtime.logs(id, 1)).split('\n').filter(Boolean)
      assert.equal(last.length, 1)
      assert.ok(['one', 'two words', 'three'].includes(last[0]))
    })

    it('a passing healthcheck makes the container healthy, with a health event', async () => {
      const node = newNode('healthy')
      const sub = collectEvents()
      try {
        const id = await run(node, {
          healthcheck: { test: ['CMD-SHELL', 'exit 0'], intervalMs: HEALTH_INTERVAL_MS, timeoutMs: 5_000, retries: 1, startPeriodMs: 0 }
        })
        const c = await waitFor('healthy', () => listOne(node, id), c => c?.health === 'healthy')
        assert.equal(c?.state, 'running')
        assert.equal((await runtime.inspect(id))?.health, 'healthy')
        await waitFor('health event', async () => sub.of(id), t => t.includes('health'))
      } finally {
        sub.stop()
      }
    })

    it('a failing healthcheck makes the container unhealthy', async () => {
      const node = newNode('unhealthy')
      const id = await run(node, {
        healthcheck: { test: ['CMD', 'false'], intervalMs: HEALTH_INTERVAL_MS, timeoutMs: 5_000, retries: 1, startPeriodMs: 0 }
      })
      const c = await waitFor('unhealthy', () => listOne(node, id), c => c?.health === 'unhealthy')
      assert.equal(c?.state, 'running')
    })

    it('file mounts (secrets, configs): an existing host file is mounted and the container runs; a missing one is refused', async () => {
      const dir = await mkdtemp(join(tmpdir(), 'contract-files-'))
      try {
        const file = join(dir, 'secret')
        await writeFile(file, 'value', { mode: 0o400 })
        const node = newNode('files')
        const id = await run(node, {}, { files: [{ source: file, target: '/run/secrets/db' }] })
        await waitState(node, id, 'running')
        await assert.rejects(run(node, {}, { files: [{ source: join(dir, 'missing'), target: '/run/secrets/db' }] }), /does not exist|no such file/i)
      } finally {
        await rm(dir, { recursive: true, force: true })
      }
    })

    it('a container removed behind the runtime\'s back disappears and reports destroy', async (t: TestContext) => {
      if (!runtime.removeBehindBack) {
        t.skip('this runtime offers no removeBehindBack hook')
        return
      }
      const node = newNode('behind')
      const sub = collectEvents()
      try {
        const id = await run(node)
        await runtime.removeBehindBack(id)
        await waitFor('list without the container', () => runtime.list(node), l => l.length === 0)
        assert.equal(await runtime.inspect(id), null)
        await waitFor('destroy event', async () => sub.of(id), t => t.includes('destroy'))
      } finally {
        sub.stop()
      }
    })
  })
}
