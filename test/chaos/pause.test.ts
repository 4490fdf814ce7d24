/**
 * Chaos: a paused agent. SIGSTOP an agent that runs replicas for 20 s (its containers keep
 * running; only the agent is frozen, as in a long GC pause or a stalled VM), then SIGCONT.
 *
 * Invariants:
 *   anytime: the survivors take over its slots while it is stopped (every slot runs on a live node)
 *   eventually (5 s after SIGCONT): it has learned that it lost its slots and stopped its stale
 *     containers — every slot runs exactly one container (docker ps), none ran zero in between
 *
 * Three real agents on loopback addresses (127.0.0.122–124, no packet faults needed), real Docker.
 */
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { cli, kill, removeTempDirs, sleep, startAgent, stopAll, tempDir, waitFor, waitForMembers, freePort, type Agent } from '../helpers/agents.ts'
import { docker, removeNodeArtifacts } from '../helpers/docker.ts'

const IPS = ['127.0.0.122', '127.0.0.123', '127.0.0.124']
const REPLICAS = 6
/** The issue's pause. */
const PAUSE_MS = 20_000
/** The issue's bound for stopping stale containers after the agent resumes. */
const STALE_STOPPED_MS = 5_000
/** Survivors declare it dead (`local` profile: ~1 s) and start its slots. */
const TAKEOVER_MS = 10_000

describe('an agent paused (SIGSTOP) for 20 s while it runs replicas', { timeout: 180_000 }, () => {
  let root: string
  let agents: Agent[] = []
  let ids: string[] = []
  const data = (i: number): string[] => ['--data', agents[i].dir]

  const running = async (): Promise<Array<{ node: string, slot: number }>> => {
    const out = await docker('ps', '--filter', 'label=p2p-orch.service=paused-web', '--format', '{{.Label "p2p-orch.node"}}\t{{.Label "p2p-orch.slot"}}')
    return (out === '' ? [] : out.split('\n')).map((l) => l.split('\t')).map(([node, s]) => ({ node, slot: Number(s) })).filter((r) => ids.includes(r.node))
  }

  before(async () => {
    root = await tempDir('chaos-pause-')
    const port = await freePort(IPS)
    const first = await startAgent({ dir: join(root, 'n1'), ip: IPS[0], port, name: 'p1', runtime: true, extraArgs: ['--no-discovery'] })
    const token = (await cli(['--data', first.dir, 'join-token'])).stdout.trim()
    agents = [first, ...await Promise.all([1, 2].map(async (i) => await startAgent({ dir: join(root, `n${i + 1}`), ip: IPS[i], port, name: `p${i + 1}`, join: token, runtime: true, extraArgs: ['--no-discovery'] })))]
    ids = agents.map((a) => a.id)
    await waitForMembers(agents, 20_000)
    await writeFile(join(root, 'stack.yaml'), `name: paused\nservices:\n  paused-web:\n    image: p2p-orch/busybox:latest\n    command: ["sleep", "3600"]\n    stop_grace_period: 1s\n    deploy:\n      replicas: ${REPLICAS}\n`)
    const d = await cli([...data(0), 'deploy', '-f', join(root, 'stack.yaml'), '-y'], {}, 60_000)
    assert.equal(d.code, 0, d.stderr)
  })

  after(async () => {
    for (const a of agents) if (a.exit === null) { try { process.kill(a.pid, 'SIGCONT') } catch {} }
    await stopAll()
    await removeNodeArtifacts(ids)
    await removeTempDirs()
  })

  it('its slots are taken over meanwhile; after SIGCONT its stale containers stop within 5 s; no slot ends with two or none', async (t) => {
    const victim = 2
    const before = await running()
    const stale = before.filter((r) => r.node === ids[victim]).map((r) => r.slot)
    assert.ok(stale.length > 0, 'the paused agent runs replicas')
    await kill(agents[victim], 'SIGSTOP', { wait: false })
    const t0 = Date.now()
    // the survivors run every slot themselves
    await waitFor(async () => new Set((await running()).filter((r) => r.node !== ids[victim]).map((r) => r.slot)).size === REPLICAS, TAKEOVER_MS, 'the survivors to run every slot')
    const takenOver = Date.now() - t0
    await sleep(Math.max(0, PAUSE_MS - (Date.now() - t0)))
    await kill(agents[victim], 'SIGCONT', { wait: false })
    const resumedAt = Date.now()
    const slotsSeen: number[] = []
    await waitFor(async () => {
      const r = await running()
      slotsSeen.push(new Set(r.map((x) => x.slot)).size)
      return r.length === REPLICAS && new Set(r.map((x) => x.slot)).size === REPLICAS
    }, STALE_STOPPED_MS, 'one container per slot after the resume', 100).catch(async (err: Error) => {
      const r = await running()
      const ps = (await cli([...data(0), 'ps', 'paused-web'])).stdout + (await cli([...data(0), 'nodes'])).stdout
      throw new Error(`${err.message}; docker runs ${r.map((x) => `${x.slot}@p${ids.indexOf(x.node) + 1}`).join(' ')}\n${ps}`)
    })
    const settled = Date.now() - resumedAt
    t.diagnostic(`survivors ran all ${REPLICAS} slots ${takenOver} ms after SIGSTOP; after SIGCONT one per slot in ${settled} ms (slots running meanwhile: ${slotsSeen.join(',')})`)
    assert.ok(slotsSeen.every((n) => n === REPLICAS), `a slot ran no container at some moment: ${slotsSeen.join(',')}`)
    await sleep(2_000)
    const end = await running()
    assert.equal(end.length, REPLICAS)
    assert.equal(new Set(end.map((x) => x.slot)).size, REPLICAS)
  })
})
