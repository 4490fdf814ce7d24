/**
 * End-to-end, real Docker, real agent processes: scaling up restarts no replica, and the container
 * count is exact soon after a scale or a lost host — checked with `docker ps` sampled all along.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { promisify } from 'node:util'
import type { TaskView } from '../../node/api/types.ts'
import { removeNodeArtifacts } from '../helpers/docker.ts'
import { cli, freePort, kill, removeTempDirs, startAgent, stopAll, tempDir, waitFor, waitForMembers, type Agent } from '../helpers/agents.ts'

const exec = promisify(execFile)

async function docker (...args: string[]): Promise<string> {
  const { stdout } = await exec('docker', args)
  return stdout.trim()
}

const stack = (name: string, service: string, replicas: number): string => `
name: ${name}
services:
  ${service}:
    image: p2p-orch/busybox:latest
    command: ["sh", "-c", "exec sleep 3600"]
    stop_grace_period: 1s   # sleep as PID 1 ignores SIGTERM
    deploy:
      replicas: ${replicas}
`

describe('placement stability on real Docker', () => {
  let root: string
  let agents: Agent[] = []
  let fourth: () => Promise<Agent>
  const ids = (): string[] => agents.map((a) => a.id)

  /** Running containers of a service on this test's nodes, as Docker reports them. */
  const replicas = async (service: string): Promise<Array<{ id: string, node: string, slot: string }>> => {
    const out = await docker('ps', '--filter', `label=p2p-orch.service=${service}`, '--format', '{{.ID}}\t{{.Label "p2p-orch.node"}}\t{{.Label "p2p-orch.slot"}}')
    const all = out === '' ? [] : out.split('\n').map((l) => { const [id, node, slot] = l.split('\t'); return { id, node, slot } })
    return all.filter((r) => ids().includes(r.node))
  }

  /** `docker ps` count of a service, sampled back to back until stopped. */
  const sampler = (service: string): { stop: () => Promise<Array<[number, number]>> } => {
    const samples: Array<[number, number]> = []
    const t0 = Date.now()
    let running = true
    const loop = (async () => {
      while (running) samples.push([Date.now() - t0, (await replicas(service)).length])
    })()
    return { stop: async () => { running = false; await loop; return samples } }
  }

  const settled = async (i: number, service: string, n: number): Promise<void> => {
    await waitFor(async () => {
      if ((await replicas(service)).length !== n) return false
      const ps = JSON.parse((await cli(['--data', agents[i].dir, 'ps', service, '--json'])).stdout) as TaskView[]
      return ps.length === n && ps.every((t) => t.desired === 'running' && t.state === 'running')
    }, 20_000, `${service} to settle at ${n} running replicas`)
  }

  const perNode = async (service: string): Promise<number[]> => {
    const reps = await replicas(service)
    return ids().map((id) => reps.filter((r) => r.node === id).length).filter((n) => n > 0).sort((a, b) => b - a)
  }

  before(async () => {
    root = await tempDir('e2e-stability-')
    const ips = ['127.0.0.52', '127.0.0.53', '127.0.0.54', '127.0.0.55']
    const port = await freePort(ips)
    const first = await startAgent({ dir: join(root, 'n1'), ip: ips[0], port, name: 'p1', runtime: true })
    const token = (await cli(['--data', first.dir, 'join-token'])).stdout.trim()
    const rest = await Promise.all([1, 2].map(async (i) => await startAgent({ dir: join(root, `n${i + 1}`), ip: ips[i], port, name: `p${i + 1}`, join: token, runtime: true })))
    agents = [first, ...rest]
    await waitForMembers(agents, 20_000)
    fourth = async () => await startAgent({ dir: join(root, 'n4'), ip: ips[3], port, name: 'p4', join: token, runtime: true })
    await writeFile(join(root, 'keep.yaml'), stack('e2e-keep', 'keep', 3))
    await writeFile(join(root, 'lost.yaml'), stack('e2e-lost', 'lost', 8))
  })

  after(async () => {
    await stopAll()
    await removeNodeArtifacts(ids())
    await removeTempDirs()
  })

  it('3 agents: scale 3 → 12 keeps the 3 original containers and is at exactly 12 within 3 s of reaching it', async (t) => {
    const r = await cli(['--data', agents[0].dir, 'deploy', '-f', join(root, 'keep.yaml'), '-y'])
    assert.equal(r.code, 0, r.stderr)
    await settled(0, 'keep', 3)
    const before = await replicas('keep')
    const watch = sampler('keep')
    let samples: Array<[number, number]>
    try {
      const up = await cli(['--data', agents[1].dir, 'scale', 'keep=12'])
      assert.equal(up.code, 0, up.stderr)
      await settled(1, 'keep', 12)
      await new Promise((resolve) => setTimeout(resolve, 3000))
    } finally {
      samples = await watch.stop()
    }
    const reached = samples.find(([, n]) => n >= 12)?.[0] ?? -1
    let lastOff = reached
    for (const [at, n] of samples) if (at >= reached && n !== 12) lastOff = at
    const max = Math.max(...samples.map(([, n]) => n))
    t.diagnostic(`12 running ${reached} ms after the scale command started; exactly 12 from ${lastOff} ms; at most ${max} (${samples.length} samples)`)
    const after = await replicas('keep')
    for (const b of before) assert.ok(after.some((a) => a.id === b.id && a.slot === b.slot && a.node === b.node), `slot ${b.slot} was restarted or moved`)
    assert.ok(reached >= 0, 'never 12 running')
    assert.ok(lastOff - reached <= 3000, `exactly 12 only ${lastOff - reached} ms after reaching it`)
    assert.ok(max <= 12, `${max} containers running at some point`)
    assert.deepEqual(await perNode('keep'), [4, 4, 4])
    const rm = await cli(['--data', agents[0].dir, 'rm', 'keep'])
    assert.equal(rm.code, 0, rm.stderr)
    await waitFor(async () => (await replicas('keep')).length === 0, 15_000, 'every keep container to be gone')
  })

  it('a lost host of 4 with 8 replicas: exactly 8 within 5 s of the fault, never more than 9', async (t) => {
    agents.push(await fourth())
    await waitForMembers(agents, 20_000)
    const r = await cli(['--data', agents[0].dir, 'deploy', '-f', join(root, 'lost.yaml'), '-y'])
    assert.equal(r.code, 0, r.stderr)
    await settled(0, 'lost', 8)
    assert.deepEqual(await perNode('lost'), [2, 2, 2, 2])
    const victim = agents[3]
    const before = (await replicas('lost')).filter((x) => x.node !== victim.id)
    const watch = sampler('lost')
    const t0 = Date.now()
    let samples: Array<[number, number]>
    try {
      await kill(victim, 'SIGKILL', { wait: true })
      const lost = await docker('ps', '-aq', '--filter', `label=p2p-orch.node=${victim.id}`)
      if (lost !== '') await docker('rm', '-f', ...lost.split('\n'))
      await waitFor(async () => {
        const reps = await replicas('lost')
        return reps.length === 8 && reps.every((x) => x.node !== victim.id)
      }, 20_000, 'survivors to run all 8 replicas')
      await new Promise((resolve) => setTimeout(resolve, 3000))
    } finally {
      samples = await watch.stop()
    }
    // the sampler starts just before the fault
    let lastOff = -1
    for (const [at, n] of samples) if (n !== 8) lastOff = at
    const max = Math.max(...samples.map(([, n]) => n))
    t.diagnostic(`exactly 8 from ${lastOff} ms after the fault (sampler), all 8 on survivors at ${Date.now() - t0 - 3000} ms; at most ${max} (${samples.length} samples)`)
    assert.ok(lastOff <= 5000, `exactly 8 only ${lastOff} ms after the fault`)
    assert.ok(max <= 9, `${max} running at some point`)
    const after = await replicas('lost')
    for (const b of before) assert.ok(after.some((a) => a.id === b.id), `slot ${b.slot} on a survivor was restarted`)
    assert.deepEqual(await perNode('lost'), [3, 3, 2])
  })
})
