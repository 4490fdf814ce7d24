/**
 * The routing mesh's pure parts: which replicas are in the rotation (endpoints.ts) and which one
 * gets the next connection (balancer.ts).
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { Balancer, FAILED_ENDPOINT_COOLDOWN_MS, REMOTE_CONNECTION_WEIGHT } from '../../node/mesh/balancer.ts'
import { endpointKey, meshPorts, routableEndpoints, type Endpoint } from '../../node/mesh/endpoints.ts'
import { key, type MemberRecord, type ServiceRecord, type TaskReport, type TaskStatus } from '../../protocol/keys.ts'
import { pack } from '../../protocol/codec.ts'
import type { StateRecord } from '../../protocol/record.ts'
import { ClusterState } from '../../protocol/state.ts'
import { newServiceSpec, type ServiceSpec } from '../../protocol/spec.ts'

const SELF = 'node-a'

function ep (node: string, container: string, slot = 0): Endpoint {
  return { service: 'web', slot, node, container, generation: 1 }
}

/** A state with the given records, applied without signatures (the pure read model does not check them). */
function stateOf (values: Record<string, unknown>): ClusterState {
  const s = new ClusterState()
  let t = 1
  for (const [k, v] of Object.entries(values)) {
    s.apply({ k, t: [t++, 0], w: 'test', p: pack(v), s: new Uint8Array(0) } as StateRecord, v)
  }
  return s
}

function task (slot: number, container: string, over: Partial<TaskStatus> = {}): TaskStatus {
  return { service: 'web', slot, container, state: 'running', health: 'none', generation: 1, error: '', startedAt: 1, history: [], ...over }
}

function svc (spec: Partial<ServiceSpec> = {}): ServiceRecord {
  return { spec: newServiceSpec({ name: 'web', stack: 's', image: 'i', ports: [{ target: 80, published: 8080, protocol: 'tcp', mode: 'ingress' }], ...spec }), generation: 1 }
}

describe('routable endpoints', () => {
  it('keeps running replicas of alive and suspect nodes (also those on their way out); drops dead nodes, stopping, failed and unhealthy ones', () => {
    const s = stateOf({
      [key.svc('web')]: svc(),
      [key.member('a')]: { status: 'alive' } satisfies MemberRecord,
      [key.member('b')]: { status: 'suspect' } satisfies MemberRecord,
      [key.member('c')]: { status: 'dead' } satisfies MemberRecord,
      [key.tasks('a')]: { tasks: [task(0, 'a0'), task(1, 'a1', { desired: 'shutdown', state: 'stopping' }), task(2, 'a2', { state: 'failed' }), task(3, 'a3', { health: 'unhealthy' }), task(6, 'a6', { desired: 'shutdown' })] } satisfies TaskReport,
      [key.tasks('b')]: { tasks: [task(4, 'b4')] } satisfies TaskReport,
      [key.tasks('c')]: { tasks: [task(5, 'c5')] } satisfies TaskReport
    })
    assert.deepEqual(routableEndpoints(s).get('web')?.map((e) => e.container), ['a0', 'a6', 'b4'])
  })

  it('with a healthcheck, only healthy replicas are routable', () => {
    const s = stateOf({
      [key.svc('web')]: svc({ healthcheck: { test: ['CMD', 'true'], intervalMs: 1000, timeoutMs: 1000, retries: 1, startPeriodMs: 0 } }),
      [key.member('a')]: { status: 'alive' } satisfies MemberRecord,
      [key.tasks('a')]: { tasks: [task(0, 'x', { health: 'starting' }), task(1, 'y', { health: 'healthy' })] } satisfies TaskReport
    })
    assert.deepEqual(routableEndpoints(s).get('web')?.map((e) => e.container), ['y'])
  })

  it('mesh ports: published ingress ports only; a port claimed twice goes to the first service by name', () => {
    const s = stateOf({
      [key.svc('web')]: svc(),
      [key.svc('api')]: { spec: newServiceSpec({ name: 'api', stack: 's', image: 'i', ports: [{ target: 81, published: 8080, protocol: 'tcp', mode: 'ingress' }, { target: 53, published: 53, protocol: 'udp', mode: 'ingress' }] }), generation: 1 },
      [key.svc('hostonly')]: { spec: newServiceSpec({ name: 'hostonly', stack: 's', image: 'i', ports: [{ target: 80, published: 9000, protocol: 'tcp', mode: 'host' }, { target: 80, protocol: 'tcp', mode: 'ingress' }] }), generation: 1 }
    })
    assert.deepEqual(meshPorts(s).map((p) => `${p.service} ${p.published}/${p.protocol}->${p.target}`), ['api 53/udp->53', 'api 8080/tcp->81'])
  })
})

describe('balancer', () => {
  it('at rest, connections go round-robin over every replica, local and remote alike', () => {
    const b = new Balancer(SELF)
    const eps = [ep(SELF, 'l1'), ep('node-b', 'r1'), ep('node-c', 'r2')]
    const seen = new Map<string, number>()
    for (let i = 0; i < 300; i++) {
      const e = b.pick(eps, new Set(), 0)!
      seen.set(e.container, (seen.get(e.container) ?? 0) + 1)
    }
    assert.deepEqual([...seen.values()], [100, 100, 100])
  })

  it('under load, prefers the replica with the fewest open connections, remote ones weighing more', () => {
    const b = new Balancer(SELF)
    const local = ep(SELF, 'l1')
    const remote = ep('node-b', 'r1')
    // hold every connection open: the counts decide
    const open = new Map<string, number>()
    for (let i = 0; i < 300; i++) {
      const e = b.pick([local, remote], new Set(), 0)!
      b.opened(e)
      open.set(e.container, (open.get(e.container) ?? 0) + 1)
    }
    const l = open.get('l1') ?? 0
    const r = open.get('r1') ?? 0
    assert.ok(Math.abs(l - REMOTE_CONNECTION_WEIGHT * r) <= REMOTE_CONNECTION_WEIGHT, `local ${l}, remote ${r}`)
  })

  it('never picks a replica already tried for this connection, and says when none is left', () => {
    fc.assert(fc.property(fc.array(fc.tuple(fc.constantFrom(SELF, 'b', 'c'), fc.string({ minLength: 1, maxLength: 4 })), { minLength: 1, maxLength: 8 }), fc.nat(20), (raw, opens) => {
      const b = new Balancer(SELF)
      const eps = [...new Map(raw.map(([n, c]) => [`${n}/${c}`, ep(n, c)])).values()]
      for (let i = 0; i < opens; i++) b.opened(eps[i % eps.length])
      const tried = new Set<string>()
      for (let i = 0; i < eps.length; i++) {
        const e = b.pick(eps, tried, 0)
        assert.ok(e !== null && !tried.has(endpointKey(e)))
        tried.add(endpointKey(e))
      }
      assert.equal(b.pick(eps, tried, 0), null)
    }))
  })

  it('a replica whose connect failed sits out the cooldown, unless it is the only one left', () => {
    const b = new Balancer(SELF)
    const bad = ep('node-b', 'bad')
    const good = ep('node-c', 'good')
    b.failed(bad, 1000)
    for (let i = 0; i < 10; i++) assert.equal(b.pick([bad, good], new Set(), 1000 + i)?.container, 'good')
    assert.equal(b.pick([bad], new Set(), 1001)?.container, 'bad', 'a cooldown must not become an outage')
    const after = new Set<string>()
    for (let i = 0; i < 10; i++) after.add(b.pick([bad, good], new Set(), 1000 + FAILED_ENDPOINT_COOLDOWN_MS)!.container)
    assert.deepEqual([...after].sort(), ['bad', 'good'])
  })

  it('closing balances opening, and retain forgets replicas that left', () => {
    const b = new Balancer(SELF)
    const e = ep(SELF, 'x')
    b.opened(e); b.opened(e); b.closed(e)
    assert.equal(b.connections(e), 1)
    b.retain(new Set(), 0)
    assert.equal(b.connections(e), 0)
    b.closed(e)
    assert.equal(b.connections(e), 0, 'never negative')
  })
})
