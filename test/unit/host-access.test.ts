/**
 * Host-safe specs: path rules, the per-node decision, and placement keeping specs away from nodes
 * whose operator does not allow them (with a reason that names the agent option).
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { hostAccessDenial, isUnder, normaliseHostPath, privilegedSettings, type HostAccess } from '../../protocol/host-access.ts'
import { newServiceSpec, type MountSpec, type ServiceSpec } from '../../protocol/spec.ts'
import { placeAll } from '../../placement/placement.ts'
import type { PlacementNode } from '../../placement/types.ts'

const segment = fc.stringMatching(/^[a-z0-9._-]{1,8}$/).filter((s) => s !== '.' && s !== '..')
const plainPath = fc.array(segment, { minLength: 1, maxLength: 5 }).map((xs) => '/' + xs.join('/'))
const bind = (source: string): MountSpec => ({ type: 'bind', source, target: '/data', readOnly: false })
const spec = (over: Partial<ServiceSpec> = {}): ServiceSpec => newServiceSpec({ name: 'web', stack: 't', image: 'busybox', ...over })
const access = (paths: string[], privileged = false): HostAccess => ({ paths, privileged })

describe('host paths', () => {
  it('normalise: plain absolute paths stay as they are, a trailing slash goes, anything with . or .. or empty segments is refused', () => {
    fc.assert(fc.property(plainPath, (p) => {
      assert.equal(normaliseHostPath(p), p)
      assert.equal(normaliseHostPath(p + '/'), p)
      assert.equal(normaliseHostPath(p + '/../etc'), null)
      assert.equal(normaliseHostPath(p + '/./x'), null)
      assert.equal(normaliseHostPath(p.replace('/', '//')), null)
    }))
    for (const bad of ['', 'srv', './srv', '/srv/\0x', '/srv/data/..']) assert.equal(normaliseHostPath(bad), null, JSON.stringify(bad))
    assert.equal(normaliseHostPath('/'), '/')
  })

  it('a prefix matches whole segments only: /srv/data allows /srv/data/x, not /srv/database', () => {
    assert.equal(isUnder('/srv/data/x', '/srv/data'), true)
    assert.equal(isUnder('/srv/data', '/srv/data'), true)
    assert.equal(isUnder('/srv/database', '/srv/data'), false)
    assert.equal(isUnder('/etc', '/'), true)
    fc.assert(fc.property(plainPath, plainPath, (a, b) => {
      assert.equal(isUnder(a + b, a), true)
      assert.equal(isUnder(a, a + b), false)
    }))
  })

  it('no bind mount runs on a node that allows no host path; one escaping its prefix with .. never passes', () => {
    fc.assert(fc.property(plainPath, plainPath, (allowed, rest) => {
      assert.match(hostAccessDenial(spec({ mounts: [bind(allowed)] }), access([])) ?? '', /--allow-host-path/)
      assert.equal(hostAccessDenial(spec({ mounts: [bind(allowed + rest)] }), access([allowed])), null)
      assert.notEqual(hostAccessDenial(spec({ mounts: [bind(`${allowed}/../..${rest}`)] }), access([allowed])), null)
    }))
    // named volumes and tmpfs are the engine's, never the host's
    const engineOnly = spec({ mounts: [{ type: 'volume', source: 'db', target: '/db', readOnly: false }, { type: 'tmpfs', source: '', target: '/tmp', readOnly: false }] })
    assert.equal(hostAccessDenial(engineOnly, access([])), null)
  })

  it('privileged settings need --allow-privileged; cap_drop and read_only need nothing', () => {
    const all = spec({ privileged: true, capAdd: ['NET_ADMIN'], devices: [{ source: '/dev/fuse', target: '/dev/fuse', permissions: 'rwm' }], pid: 'host' })
    assert.deepEqual(privilegedSettings(all), ['privileged', 'cap_add', 'devices', 'pid: host'])
    assert.equal(hostAccessDenial(all, access([])), 'privileged, cap_add, devices, pid: host not allowed (agent --allow-privileged)')
    assert.equal(hostAccessDenial(all, access([], true)), null)
    assert.deepEqual(privilegedSettings(spec({ capDrop: ['ALL'], readOnly: true, capAdd: [] })), [])
  })
})

describe('placement and host access', () => {
  const node = (id: string, hostAccess?: HostAccess): PlacementNode => ({
    id, name: id, labels: {}, alive: true, availability: 'active', cpus: 4, memoryBytes: 8 * 1024 ** 3, ...(hostAccess !== undefined ? { hostAccess } : {})
  })

  it('slots of a spec a node does not allow never land on it, whatever the cluster; with no node allowing it, the reason names the option', () => {
    fc.assert(fc.property(
      fc.array(fc.boolean(), { minLength: 1, maxLength: 12 }), fc.integer({ min: 1, max: 30 }), fc.boolean(),
      (allows, replicas, privileged) => {
        const ns = allows.map((a, i) => node(`n${i}`, a ? access(['/srv'], true) : undefined))
        const s = privileged ? spec({ replicas, privileged: true }) : spec({ replicas, mounts: [bind('/srv/app')] })
        const r = placeAll(ns, [{ spec: s, replicas }], new Map())
        const allowed = new Set(ns.filter((_, i) => allows[i]).map((n) => n.id))
        for (const a of r.slots.values()) {
          if (allowed.size === 0) {
            assert.equal(a.node, null)
            assert.match(a.reason ?? '', privileged ? /no node allows it: privileged not allowed \(agent --allow-privileged\)/ : /no node allows it: host path \/srv\/app is not allowed \(agent --allow-host-path\)/)
          } else {
            assert.ok(a.node !== null && allowed.has(a.node), `slot on ${a.node}`)
          }
        }
      }
    ), { numRuns: 300 })
  })

  it('a replica running on a node that stops allowing it moves to one that does', () => {
    const s = spec({ replicas: 1, mounts: [bind('/srv/app')] })
    const before = [node('a', access(['/srv'])), node('b', access(['/srv']))]
    const first = placeAll(before, [{ spec: s, replicas: 1 }], new Map())
    const on = first.slots.get('web/0')?.node
    assert.ok(on !== null && on !== undefined)
    const after = before.map((n) => (n.id === on ? node(n.id) : n))
    const next = placeAll(after, [{ spec: s, replicas: 1 }], new Map([['web/0', [{ node: on }]]]))
    assert.equal(next.slots.get('web/0')?.node, on === 'a' ? 'b' : 'a')
  })
})
