/**
 * End-to-end: replicated services on a real Docker engine, three real agent processes talking
 * real libp2p. Results are checked with `docker` itself and plain HTTP, not only with our `ps`.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { promisify } from 'node:util'
import type { ServiceView, TaskView } from '../../node/api/types.ts'
import { removeNodeArtifacts } from '../helpers/docker.ts'
import { cli, freePort, kill, removeTempDirs, restartAgent, startAgent, stopAll, tempDir, waitFor, waitForMembers, type Agent } from '../helpers/agents.ts'

const exec = promisify(execFile)

async function docker (...args: string[]): Promise<string> {
  const { stdout } = await exec('docker', args)
  return stdout.trim()
}

/** Node ids of this test's agents: the engine may hold other clusters' containers too. */
let clusterIds: string[] = []

/** Running containers of a service on this test's nodes, as Docker reports them. */
async function dockerReplicas (service: string): Promise<Array<{ id: string, node: string, ports: string }>> {
  const out = await docker('ps', '--filter', `label=p2p-orch.service=${service}`, '--format', '{{.ID}}\t{{.Label "p2p-orch.node"}}\t{{.Ports}}')
  const all = out === '' ? [] : out.split('\n').map((l) => { const [id, node, ports] = l.split('\t'); return { id, node, ports } })
  return all.filter((r) => clusterIds.includes(r.node))
}

/**
 * Waits until the service is at rest: exactly `n` containers in `docker ps`, and the cluster (as
 * node `i` sees it) reports `n` running replicas and none being shut down.
 */
async function waitForSettled (i: number, service: string, n: number): Promise<void> {
  await waitFor(async () => {
    if ((await dockerReplicas(service)).length !== n) return false
    const ps = JSON.parse((await cli(['--data', agentDirs[i], 'ps', service, '--json'])).stdout) as TaskView[]
    return ps.length === n && ps.every((t) => t.desired === 'running' && t.state === 'running')
  }, 20_000, `${service} to settle at ${n} running replicas`)
}

/** Data directories of this test's agents, for helpers outside the suite. */
let agentDirs: string[] = []

const STACK = `
name: e2e
services:
  web:
    image: p2p-orch/busybox:latest
    command: ["sh", "-c", "mkdir -p /www && echo hello from $$HOSTNAME > /www/index.html && exec httpd -f -p 80 -h /www"]
    ports: ["80"]
    stop_grace_period: 1s   # busybox httpd as PID 1 ignores SIGTERM
    deploy:
      replicas: 2
      restart_policy: { condition: any, delay: 500ms }
`

describe('services on real Docker (3 agents)', () => {
  let root: string
  let agents: Agent[] = []
  let ids: string[] = []
  const data = (i: number): string[] => ['--data', agents[i].dir]

  before(async () => {
    root = await tempDir('e2e-svc-')
    const ips = ['127.0.0.12', '127.0.0.13', '127.0.0.14']
    const port = await freePort(ips)
    const first = await startAgent({ dir: join(root, 'n1'), ip: ips[0], port, name: 's1', runtime: true })
    const token = (await cli(['--data', first.dir, 'join-token'])).stdout.trim()
    agents = [first, ...await Promise.all([1, 2].map(async (i) => await startAgent({ dir: join(root, `n${i + 1}`), ip: ips[i], port, name: `s${i + 1}`, join: token, runtime: true })))]
    ids = agents.map((a) => a.id)
    clusterIds = ids
    agentDirs = agents.map((a) => a.dir)
    await waitForMembers(agents, 20_000)
    await writeFile(join(root, 'stack.yaml'), STACK)
  })

  after(async () => {
    await stopAll()
    await removeNodeArtifacts(ids)
    await removeTempDirs()
  })

  it('deploys a stack and serves HTTP from a replica', async () => {
    const r = await cli([...data(0), 'deploy', '-f', join(root, 'stack.yaml'), '-y'])
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /create\s+web/)
    const reps = await dockerReplicas('web')
    assert.equal(reps.length, 2)
    for (const rep of reps) assert.ok(ids.includes(rep.node), `container labelled with an unknown node ${rep.node}`)
    const hostPort = /(\d+\.\d+\.\d+\.\d+):(\d+)->80/.exec(reps[0].ports)
    assert.ok(hostPort !== null, `no published port in "${reps[0].ports}"`)
    const body = await (await fetch(`http://${hostPort[1]}:${hostPort[2]}/`)).text()
    assert.match(body, /hello from/)
  })

  it('scales 2 → 10 → 3, checked with docker ps', async () => {
    const up = await cli([...data(1), 'scale', 'web=10'])
    assert.equal(up.code, 0, up.stderr)
    // a slot that moved while scaling keeps its old container until the new one runs
    await waitForSettled(1, 'web', 10)
    const ten = await dockerReplicas('web')
    assert.equal(ten.length, 10)
    const perNode = ids.map((id) => ten.filter((r) => r.node === id).length)
    assert.ok(perNode.every((n) => n >= 1 && n <= Math.ceil(1.25 * 10 / 3)), `unbalanced: ${perNode.join(',')}`)

    const down = await cli([...data(2), 'scale', 'web=3'])
    assert.equal(down.code, 0, down.stderr)
    await waitForSettled(2, 'web', 3)
    const three = await dockerReplicas('web')
    assert.equal(new Set(three.map((r) => r.node)).size, 3, 'three replicas on three distinct nodes')

    const ps = JSON.parse((await cli([...data(2), 'ps', 'web', '--json'])).stdout) as TaskView[]
    assert.equal(ps.filter((t) => t.desired === 'running').length, 3)
    for (const t of ps) for (const f of ['service', 'slot', 'node', 'nodeName', 'state', 'health', 'container', 'generation', 'error']) assert.ok(f in t, `ps --json lacks ${f}`)
    const svcs = JSON.parse((await cli([...data(0), 'services', '--json'])).stdout) as ServiceView[]
    const web = svcs.find((s) => s.name === 'web')
    assert.deepEqual({ stack: web?.stack, replicas: web?.replicas, running: web?.running, mode: web?.mode }, { stack: 'e2e', replicas: 3, running: 3, mode: 'replicated' })
  })

  it('restarts a killed container and keeps its exit in the history', async () => {
    const [victim] = await dockerReplicas('web')
    await docker('kill', victim.id)
    await waitFor(async () => {
      const ps = JSON.parse((await cli([...data(0), 'ps', 'web', '--json'])).stdout) as TaskView[]
      return ps.some((t) => t.history.length > 0) && ps.filter((t) => t.state === 'running' && t.desired === 'running').length === 3
    }, 20_000, 'the killed replica to be restarted')
    assert.equal((await dockerReplicas('web')).length, 3)
  })

  it('recreates a container removed behind the agent\'s back', async () => {
    const [victim] = await dockerReplicas('web')
    await docker('rm', '-f', victim.id)
    await waitFor(async () => (await dockerReplicas('web')).length === 3 && !(await dockerReplicas('web')).some((r) => r.id === victim.id), 20_000, 'a new container for the removed one')
  })

  it('adopts its containers after an agent restart instead of recreating them', async () => {
    const before = (await dockerReplicas('web')).filter((r) => r.node === ids[1]).map((r) => r.id).sort()
    assert.ok(before.length > 0)
    await kill(agents[1], 'SIGKILL', { wait: true })
    agents[1] = await restartAgent(agents[1])
    await waitForMembers(agents, 20_000)
    await new Promise((resolve) => setTimeout(resolve, 2000)) // a few reconcile passes
    const after = (await dockerReplicas('web')).filter((r) => r.node === ids[1]).map((r) => r.id).sort()
    assert.deepEqual(after, before)
  })

  it('survivors take over the replicas of a lost host', async () => {
    await waitFor(async () => (await dockerReplicas('web')).some((r) => r.node === ids[2]), 20_000, 's3 to run a replica')
    await kill(agents[2], 'SIGKILL', { wait: true })
    const lost = await docker('ps', '-aq', '--filter', `label=p2p-orch.node=${ids[2]}`)
    if (lost !== '') await docker('rm', '-f', ...lost.split('\n'))
    await waitFor(async () => {
      const reps = await dockerReplicas('web')
      return reps.length === 3 && reps.every((r) => r.node === ids[0] || r.node === ids[1])
    }, 20_000, 'survivors to run all 3 web replicas')
    // The survivors may see the death a moment apart: a slot can briefly run on both while they
    // agree (make-before-break). Wait until nothing is being handed over any more.
    await waitForSettled(0, 'web', 3)
  })

  it('rejects bad input with one line and a non-zero exit', async () => {
    for (const args of [['scale', 'web=abc'], ['scale', 'nosuch=3'], ['scale', 'web=-1'], ['scale', 'web=99999999']]) {
      const r = await cli([...data(0), ...args])
      assert.notEqual(r.code, 0, `${args.join(' ')} should fail`)
      assert.equal(r.stderr.trim().split('\n').length, 1, `one line for ${args.join(' ')}: ${r.stderr}`)
      assert.doesNotMatch(r.stderr, /\bat .*\.ts:\d+/)
    }
    await writeFile(join(root, 'bad.yaml'), 'services:\n  web:\n    image: p2p-orch/busybox:latest\n    deploy:\n      replicas: abc\n')
    const specBefore = (await cli([...data(0), 'inspect', 'web', '--json'])).stdout
    const bad = await cli([...data(0), 'deploy', '-f', join(root, 'bad.yaml'), '-y'])
    assert.notEqual(bad.code, 0)
    assert.match(bad.stderr, /bad\.yaml:5:\d+: error: services\.web\.deploy\.replicas/)
    assert.equal((await cli([...data(0), 'inspect', 'web', '--json'])).stdout, specBefore, 'a file with errors changes nothing')
    await waitForSettled(0, 'web', 3)

    await writeFile(join(root, 'other.yaml'), 'name: other\nservices:\n  web:\n    image: p2p-orch/busybox:latest\n')
    const taken = await cli([...data(0), 'deploy', '-f', join(root, 'other.yaml'), '-y'])
    assert.notEqual(taken.code, 0)
    assert.match(taken.stderr, /"web" is already used by stack "e2e"/)
    assert.match(taken.stderr, /stack "other"/)
  })

  it('reports replicas that cannot run, with the reason', async () => {
    await writeFile(join(root, 'broken.yaml'), [
      'name: broken',
      'services:',
      '  ghost:',
      '    image: no-such-image:1.0',
      '  picky:',
      '    image: p2p-orch/busybox:latest',
      '    command: ["sleep", "600"]',
      '    deploy:',
      '      placement:',
      '        constraints: ["node.labels.zone==mars"]',
      '  greedy:',
      '    image: p2p-orch/busybox:latest',
      '    command: ["sleep", "600"]',
      '    deploy:',
      '      resources:',
      '        reservations: { memory: 100000G }',
      ''
    ].join('\n'))
    const r = await cli([...data(0), 'deploy', '-f', join(root, 'broken.yaml'), '-y'], {}, 60_000)
    assert.notEqual(r.code, 0)
    assert.match(r.stderr, /ghost\.0 on s\d: rejected: .*no-such-image/)
    assert.match(r.stderr, /picky\.0: cannot be placed: .*zone==mars/)
    assert.match(r.stderr, /greedy\.0: cannot be placed: .*/)
    const ps = JSON.parse((await cli([...data(1), 'ps', '--json'])).stdout) as TaskView[]
    assert.match(ps.find((t) => t.service === 'ghost')?.error ?? '', /no-such-image/)
    for (const s of ['ghost', 'picky', 'greedy']) assert.equal((await cli([...data(0), 'rm', s])).code, 0)
  })

  it('rm removes the service and its containers', async () => {
    const r = await cli([...data(1), 'rm', 'web'])
    assert.equal(r.code, 0, r.stderr)
    await waitFor(async () => (await dockerReplicas('web')).length === 0, 15_000, 'every web container to be gone')
    const all = await docker('ps', '-a', '--filter', 'label=p2p-orch.service=web', '--format', '{{.Label "p2p-orch.node"}}')
    assert.ok(!all.split('\n').some((n) => ids.includes(n)), 'removed, not just stopped')
    const svcs = JSON.parse((await cli([...data(0), 'services', '--json'])).stdout) as ServiceView[]
    assert.equal(svcs.some((s) => s.name === 'web'), false)
  })
})
