/**
 * Chaos: a real network partition. 5 agents, each in its own network namespace (test/helpers/
 * netns.ts: its own address on a bridge, iptables DROP between the sides), the real Docker engine
 * through its socket. The cluster is cut 2 | 3 for 30 s with real packet drops.
 *
 * Invariants:
 *   anytime-writable: both sides answer the CLI and accept writes (`scale` on one, `deploy` on the other)
 *   anytime-serving: each side runs every desired replica on the nodes it can see, checked with docker ps
 *   eventually-identical (15 s after the heal): every node's state root hash is the same, and every
 *     acknowledged write from either side is in it
 *   eventually-exact (20 s): each service runs exactly its desired replica count (docker ps), the
 *     duplicates made during the split stopped make-before-break: once the heal's merge is in, the
 *     number of web's slots running never drops below the desired count
 *
 * A JSON report (fault schedule, times, samples) goes to .chaos/partition.json for a replay.
 */
import assert from 'node:assert/strict'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { InfoResponse } from '../../node/api/types.ts'
import { apiJson, cli, removeTempDirs, ROOT, sleep, startAgent, stopAll, tempDir, waitFor, waitForMembers, type Agent } from '../helpers/agents.ts'
import { docker, removeNodeArtifacts } from '../helpers/docker.ts'
import { NetnsLab } from '../helpers/netns.ts'

const NODES = 5
const SIDES = [[0, 1], [2, 3, 4]]
/** The partition length. */
const SPLIT_MS = 30_000
/** Each side sees the other side dead and runs every replica itself: failure detection plus a placement pass. */
const SIDE_SERVES_MS = 15_000
const IDENTICAL_MS = 15_000
const EXACT_MS = 20_000
const PORT = 7946

const lab = new NetnsLab('p2pch', '10.77.0')
const unavailable = await NetnsLab.available()

describe('partition 2 | 3 for 30 s (network namespaces, real Docker)', { timeout: 300_000, skip: unavailable !== null ? `network namespaces unavailable: ${unavailable}` : false }, () => {
  let root: string
  let agents: Agent[] = []
  let ids: string[] = []
  const data = (i: number): string[] => ['--data', agents[i].dir]
  const report: { schedule: Array<{ at: string, what: string }>, samples: Record<string, unknown> } = { schedule: [], samples: {} }
  const mark = (what: string): void => { report.schedule.push({ at: new Date().toISOString(), what }) }

  /** Running containers of `service` per node index, from docker itself. */
  const runningBy = async (service: string): Promise<Array<{ node: number, slot: number }>> => {
    const out = await docker('ps', '--filter', `label=p2p-orch.service=${service}`, '--format', '{{.Label "p2p-orch.node"}}\t{{.Label "p2p-orch.slot"}}')
    return (out === '' ? [] : out.split('\n')).map((l) => l.split('\t')).map(([n, s]) => ({ node: ids.indexOf(n), slot: Number(s) })).filter((r) => r.node >= 0)
  }
  const sideSlots = async (service: string, side: number[]): Promise<number> => new Set((await runningBy(service)).filter((r) => side.includes(r.node)).map((r) => r.slot)).size

  before(async () => {
    root = await tempDir('chaos-partition-')
    await lab.setup(NODES)
    const start = async (i: number, join?: string): Promise<Agent> => await startAgent({
      dir: join_(root, i), ip: lab.ip(i), port: PORT, name: `c${i + 1}`, runtime: true,
      netns: lab.ns(i), extraArgs: ['--no-discovery'], ...(join !== undefined ? { join } : {})
    })
    const first = await start(0)
    const token = (await cli(['--data', first.dir, 'join-token'])).stdout.trim()
    agents = [first]
    for (let i = 1; i < NODES; i++) agents.push(await start(i, token))
    ids = agents.map((a) => a.id)
    await waitForMembers(agents, 30_000)
    await writeFile(join_(root, 'stack.yaml'), [
      'name: chaos',
      'services:',
      '  web:',
      '    image: p2p-orch/busybox:latest',
      '    command: ["sleep", "3600"]',
      '    stop_grace_period: 1s',
      '    deploy:',
      '      replicas: 6',
      '      restart_policy: { condition: any, delay: 500ms }',
      ''
    ].join('\n'))
    const d = await cli([...data(0), 'deploy', '-f', join_(root, 'stack.yaml'), '-y'], {}, 60_000)
    assert.equal(d.code, 0, d.stderr)
  })

  after(async () => {
    await stopAll()
    await removeNodeArtifacts(ids)
    await lab.teardown()
    await mkdir(join_(ROOT, '.chaos'), { recursive: true })
    await writeFile(join_(ROOT, '.chaos', 'partition.json'), JSON.stringify(report, null, 2))
    await removeTempDirs()
  })

  it('both sides keep working through the split; after the heal, one state and exact counts, make-before-break', async (t) => {
    const [a, b] = SIDES
    mark(`partition ${a.join(',')} | ${b.join(',')}`)
    const t0 = Date.now()
    await lab.partition(SIDES)

    // anytime-serving: each side runs all 6 on its own nodes
    for (const side of SIDES) {
      await waitFor(async () => await sideSlots('web', side) === 6, SIDE_SERVES_MS, `side ${side.join(',')} to run all 6 web replicas itself`)
    }
    const served = Date.now() - t0
    mark('both sides serve every replica')

    // anytime-writable: a scale on one side, a deploy on the other, both acknowledged
    const scale = await cli([...data(a[0]), 'scale', 'web=8'], {}, 60_000)
    assert.equal(scale.code, 0, scale.stderr)
    await writeFile(join_(root, 'api.yaml'), 'name: chaos2\nservices:\n  api:\n    image: p2p-orch/busybox:latest\n    command: ["sleep", "3600"]\n    stop_grace_period: 1s\n    deploy:\n      replicas: 2\n')
    const dep = await cli([...data(b[0]), 'deploy', '-f', join_(root, 'api.yaml'), '-y'], {}, 60_000)
    assert.equal(dep.code, 0, dep.stderr)
    mark('scale web=8 on side A, deploy api on side B: both acknowledged')
    await waitFor(async () => await sideSlots('web', a) === 8, SIDE_SERVES_MS, 'side A runs web=8')
    await waitFor(async () => await sideSlots('api', b) === 2, SIDE_SERVES_MS, 'side B runs api=2')

    await sleep(Math.max(0, SPLIT_MS - (Date.now() - t0)))
    mark('heal')
    const healedAt = Date.now()
    await lab.heal()

    // eventually-identical
    await waitFor(async () => {
      const roots = await Promise.all(agents.map(async (x) => (await apiJson<InfoResponse>(x.dir, '/info')).stateRoot))
      return roots.every((r) => r === roots[0])
    }, IDENTICAL_MS, 'every node to hold the same state root')
    const identical = Date.now() - healedAt
    mark('identical state')
    for (const i of [a[0], b[0]]) {
      const services = JSON.parse((await cli([...data(i), 'services', '--json'])).stdout) as Array<{ name: string, replicas: number }>
      assert.equal(services.find((s) => s.name === 'web')?.replicas, 8, 'side A\'s scale is everywhere')
      assert.equal(services.find((s) => s.name === 'api')?.replicas, 2, 'side B\'s deploy is everywhere')
    }

    // eventually-exact, make-before-break: the slots running never drop below 8 once every node has the merge
    const slots: number[] = []
    let exactAt = 0
    await waitFor(async () => {
      const web = await runningBy('web')
      const api = await runningBy('api')
      slots.push(new Set(web.map((r) => r.slot)).size)
      if (web.length === 8 && new Set(web.map((r) => r.slot)).size === 8 && api.length === 2) exactAt ||= Date.now()
      return exactAt > 0
    }, EXACT_MS, 'exactly 8 web and 2 api containers, one per slot', 100)
    const exact = exactAt - healedAt
    report.samples = { webSlotsAfterHeal: slots, servedMs: served, identicalMs: identical, exactMs: exact }
    t.diagnostic(`both sides served all replicas ${served} ms into the split; after the heal: identical state in ${identical} ms, exact counts in ${exact} ms; web slots running after the merge: ${slots.join(',')}`)
    assert.ok(slots.every((n) => n >= 8), `a slot of web stopped running while duplicates were resolved: ${slots.join(',')}`)
    // stays exact
    await sleep(2_000)
    assert.equal((await runningBy('web')).length, 8)
    assert.equal((await runningBy('api')).length, 2)
  })
})

function join_ (...parts: Array<string | number>): string {
  return join(...parts.map((p) => typeof p === 'number' ? `n${p + 1}` : p))
}
