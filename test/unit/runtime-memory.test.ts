import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryEngine, MemoryRuntime, STOPPED_EXIT_CODE, normalizeImage, splitScript } from '../../node/runtime/memory.ts'
import type { RuntimeEvent } from '../../node/runtime/types.ts'
import { baseSpec, runtimeContract, waitFor } from '../contract/runtime.contract.ts'

runtimeContract('MemoryRuntime', async () => ({ runtime: new MemoryRuntime(), cleanup: async () => {} }))

const tick = () => new Promise(r => setTimeout(r, 0))

describe('MemoryRuntime specifics', () => {
  const req = (node: string, name: string, command = ['sleep', '3600']) => ({
    spec: baseSpec({ command }),
    slot: 1,
    node,
    generation: 1,
    name
  })

  it('crash() ends a running container with the given exit code and a die event', async () => {
    const rt = new MemoryRuntime()
    const events: RuntimeEvent[] = []
    rt.events(e => events.push(e))
    const id = await rt.run(req('n', 'a'))
    rt.crash(id, 42)
    const c = await rt.inspect(id)
    assert.equal(c?.state, 'exited')
    assert.equal(c?.exitCode, 42)
    await tick()
    assert.deepEqual(events.map(e => e.type), ['create', 'start', 'die'])
    assert.throws(() => rt.crash(id, 1), /not running/)
  })

  it('setHealth() pins the health and emits one health event per change', async () => {
    const rt = new MemoryRuntime()
    const events: RuntimeEvent[] = []
    rt.events(e => events.push(e))
    const id = await rt.run(req('n', 'a'))
    rt.setHealth(id, 'unhealthy')
    rt.setHealth(id, 'unhealthy')
    rt.setHealth(id, 'healthy')
    assert.equal((await rt.inspect(id))?.health, 'healthy')
    await tick()
    assert.deepEqual(events.filter(e => e.type === 'health').length, 2)
  })

  it('events arrive after a microtask, in order', async () => {
    const rt = new MemoryRuntime()
    const events: string[] = []
    rt.events(e => events.push(e.type))
    const running = rt.run(req('n', 'a'))
    assert.deepEqual(events, [], 'nothing synchronously')
    const id = await running
    await rt.remove(id)
    assert.deepEqual(events, ['create', 'start', 'die', 'destroy'])
  })

  it('a shared engine models several agents on one machine', async () => {
    const engine = new MemoryEngine()
    const a = new MemoryRuntime({ engine, eventsNode: 'a' })
    const b = new MemoryRuntime({ engine, eventsNode: 'b' })
    const seenA: string[] = []
    const seenB: string[] = []
    a.events(e => seenA.push(e.labels['p2p-orch.node']))
    b.events(e => seenB.push(e.labels['p2p-orch.node']))
    const idA = await a.run(req('a', 'web-1'))
    await assert.rejects(b.run(req('b', 'web-1')), /already in use/)
    const idB = await b.run(req('b', 'web-2'))
    assert.deepEqual((await a.list('a')).map(c => c.id), [idA])
    assert.deepEqual((await a.list('b')).map(c => c.id), [idB], 'one engine: any agent can see any node by label')
    assert.equal((await b.inspect(idA))?.node, 'a')
    await tick()
    assert.ok(seenA.length > 0 && seenA.every(n => n === 'a'))
    assert.ok(seenB.length > 0 && seenB.every(n => n === 'b'))
    assert.equal(engine.all().length, 2)
  })

  it('an engine that is down makes every call throw RuntimeUnavailableError', async () => {
    const rt = new MemoryRuntime()
    rt.engine.setAvailable(false)
    await assert.rejects(rt.ping(), { name: 'RuntimeUnavailableError' })
    await assert.rejects(rt.list('n'), { name: 'RuntimeUnavailableError' })
    await assert.rejects(rt.run(req('n', 'a')), { name: 'RuntimeUnavailableError' })
    rt.engine.setAvailable(true)
    await rt.ping()
  })

  it('knownImages and addImage decide which images exist', async () => {
    const rt = new MemoryRuntime({ knownImages: ['nginx:1.27', 'redis'] })
    assert.equal(await rt.hasImage('p2p-orch/busybox:latest'), false)
    assert.equal(await rt.hasImage('nginx:1.27'), true)
    assert.equal(await rt.hasImage('redis:latest'), true)
    await assert.rejects(rt.run(req('n', 'a')), { name: 'ImageNotFoundError' })
    rt.engine.addImage('p2p-orch/busybox')
    await rt.run(req('n', 'a'))
  })

  it('sleep N exits after N seconds with status 0; unknown programs run until stopped', async () => {
    const rt = new MemoryRuntime()
    const short = await rt.run(req('n', 'short', ['sh', '-c', 'sleep 0.05; echo done']))
    const server = await rt.run(req('n', 'server', ['httpd', '-f', '-p', '80', '-h', '/www']))
    assert.equal((await rt.inspect(short))?.state, 'running')
    const c = await waitFor('short to exit', () => rt.inspect(short), c => c?.state === 'exited', 2_000)
    assert.equal(c?.exitCode, 0)
    assert.equal(await rt.logs(short, 10), 'done\n')
    assert.equal((await rt.inspect(server))?.state, 'running')
    await rt.stop(server, 10_000)
    assert.equal((await rt.inspect(server))?.exitCode, STOPPED_EXIT_CODE)
  })

  it('a stopped container with a healthcheck reports unhealthy, as Docker does', async () => {
    const rt = new MemoryRuntime()
    const spec = baseSpec({ healthcheck: { test: ['CMD-SHELL', 'exit 0'], intervalMs: 10, timeoutMs: 1000, retries: 1, startPeriodMs: 0 } })
    const id = await rt.run({ spec, slot: 1, node: 'n', generation: 1, name: 'h' })
    assert.equal((await rt.inspect(id))?.health, 'starting')
    await waitFor('healthy', () => rt.inspect(id), c => c?.health === 'healthy', 2_000)
    await rt.stop(id, 0)
    assert.equal((await rt.inspect(id))?.health, 'unhealthy')
    await rt.start(id)
    assert.equal((await rt.inspect(id))?.health, 'starting')
  })

  it('inspect finds a container by id, name or unique id prefix', async () => {
    const rt = new MemoryRuntime()
    const id = await rt.run(req('n', 'by-name'))
    assert.equal(id.length, 64)
    assert.equal((await rt.inspect('by-name'))?.id, id)
    assert.equal((await rt.inspect(id.slice(0, 12)))?.id, id)
  })

  it('splitScript and normalizeImage', () => {
    assert.deepEqual(splitScript(`echo "a; b" 'c'; sleep 1 && exit 3\nfalse`), [
      ['echo', 'a; b', 'c'],
      ['sleep', '1'],
      ['exit', '3'],
      ['false']
    ])
    assert.equal(normalizeImage('busybox'), 'busybox:latest')
    assert.equal(normalizeImage('localhost:5000/app'), 'localhost:5000/app:latest')
    assert.equal(normalizeImage('app:1'), 'app:1')
    assert.equal(normalizeImage('app@sha256:abc'), 'app@sha256:abc')
  })
})
