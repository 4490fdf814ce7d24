/**
 * End-to-end: rollouts on a real Docker engine, three real agents over real libp2p, each with its
 * own ingress address (127.0.0.112–114), the routing mesh in front. Replicas are busybox httpd
 * serving "<hostname> <VERSION>"; results are checked with plain HTTP requests through every
 * node's published port and with `docker ps` (each container's generation label), besides the CLI.
 *
 * Proven: a start-first rolling update with a healthcheck fails no request and never has fewer
 * than 4 healthy replicas in rotation; replicas that exit at start roll back by themselves at the
 * first batch; bad input is one line; canary then promote, canary then rollback; a blue-green
 * switch fails no request; SIGKILL of the node whose slot is being updated does not stop it.
 */
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { InspectResponse, RolloutView, TaskView } from '../../node/api/types.ts'
import { cli, freePort, kill, removeTempDirs, sleep, startAgent, stopAll, tempDir, waitFor, waitForMembers, type Agent } from '../helpers/agents.ts'
import { docker, httpGet, removeNodeArtifacts } from '../helpers/docker.ts'

const IPS = ['127.0.0.112', '127.0.0.113', '127.0.0.114']
/** Concurrent requests of the loop that runs through each rollout. */
const LOOP_CONCURRENCY = 3
/** The bound for an automatic rollback, from the update to every replica back. */
const ROLLBACK_WITHIN_MS = 20_000
/** A CLI that follows a rollout: several batches of healthcheck + monitor. */
const FOLLOW_MS = 120_000

interface Sample { start: number, ok: boolean, body: string, error: string }

/** Requests in a loop against the given URLs until stopped; every outcome is kept. */
function requestLoop (urls: string[]): { stop: () => Promise<Sample[]> } {
  const samples: Sample[] = []
  let running = true
  let n = 0
  const worker = async (): Promise<void> => {
    while (running) {
      const url = urls[n++ % urls.length]
      const start = Date.now()
      try {
        const r = await httpGet(url, 5_000)
        samples.push({ start, ok: r.status === 200, body: r.body.trim(), error: r.status === 200 ? '' : `status ${r.status}` })
      } catch (err) {
        samples.push({ start, ok: false, body: '', error: (err as Error).message })
      }
      await sleep(10)
    }
  }
  const workers = Array.from({ length: LOOP_CONCURRENCY }, async () => { await worker() })
  return { stop: async () => { running = false; await Promise.all(workers); return samples } }
}

const failures = (samples: Sample[], t0: number): string => samples.filter((s) => !s.ok).map((s) => `+${s.start - t0} ms: ${s.error}`).join('; ')

/** A Compose stack of one httpd service with a healthcheck, whose page says its VERSION. */
function stack (name: string, port: number, extra: string[] = []): string {
  return [
    `name: ${name}`,
    'services:',
    `  ${name}:`,
    '    image: p2p-orch/busybox:latest',
    // BROKEN=1 makes a version whose containers exit at start
    '    command: ["sh", "-c", "[ \\"$$BROKEN\\" = 1 ] && exit 3; mkdir -p /www && echo \\"$$(hostname) $${VERSION:-1}\\" > /www/index.html && exec httpd -f -p 80 -h /www"]',
    `    ports: ["${port}:80"]`,
    '    stop_grace_period: 1s   # busybox httpd as PID 1 ignores SIGTERM',
    '    healthcheck:',
    '      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1/"]',
    '      interval: 1s',
    '      timeout: 1s',
    '      retries: 2',
    '    deploy:',
    '      replicas: 4',
    '      restart_policy: { condition: any, delay: 500ms }',
    '      update_config: { parallelism: 1, order: start-first, monitor: 1s, failure_action: rollback }',
    '      rollback_config: { parallelism: 0, order: start-first, monitor: 1s }',
    ...extra,
    ''
  ].join('\n')
}

describe('rollouts on real Docker (3 agents, routing mesh)', { timeout: 600_000 }, () => {
  let root: string
  let agents: Agent[] = []
  let ids: string[] = []
  let port = 0
  const data = (i: number): string[] => ['--data', agents[i].dir]
  const urls = (p: number, nodes = [0, 1, 2]): string[] => nodes.map((i) => `http://${IPS[i]}:${p}/`)

  /** Generation label of every running container of `service`, from docker itself. */
  const generations = async (service: string): Promise<number[]> => {
    const out = await docker('ps', '--filter', `label=p2p-orch.service=${service}`, '--format', '{{.Label "p2p-orch.generation"}}\t{{.Label "p2p-orch.node"}}')
    return (out === '' ? [] : out.split('\n')).map((l) => l.split('\t')).filter(([, n]) => ids.includes(n)).map(([g]) => Number(g)).sort()
  }
  const allOn = async (service: string, n: number, generation: number): Promise<boolean> => {
    const gs = await generations(service)
    return gs.length === n && gs.every((g) => g === generation)
  }
  const status = async (service: string, via = 0): Promise<RolloutView> =>
    JSON.parse((await cli([...data(via), 'rollout', 'status', service, '--no-watch', '--json'])).stdout) as RolloutView
  const deployStack = async (name: string, text: string): Promise<void> => {
    await writeFile(join(root, `${name}.yaml`), text)
    const r = await cli([...data(0), 'deploy', '-f', join(root, `${name}.yaml`), '-y'], {}, FOLLOW_MS)
    assert.equal(r.code, 0, r.stderr)
    await waitFor(async () => (await status(name)).state === 'completed', 30_000, `${name}'s first rollout to complete`)
  }

  before(async () => {
    root = await tempDir('e2e-rollouts-')
    port = await freePort(IPS)
    const first = await startAgent({ dir: join(root, 'n1'), ip: IPS[0], port, name: 'r1', runtime: true, extraArgs: ['--ingress-host', IPS[0]] })
    const token = (await cli(['--data', first.dir, 'join-token'])).stdout.trim()
    agents = [first, ...await Promise.all([1, 2].map(async (i) => await startAgent({
      dir: join(root, `n${i + 1}`), ip: IPS[i], port, name: `r${i + 1}`, join: token, runtime: true, extraArgs: ['--ingress-host', IPS[i]]
    })))]
    ids = agents.map((a) => a.id)
    await waitForMembers(agents, 20_000)
  })

  after(async () => {
    await stopAll()
    await removeNodeArtifacts(ids)
    await removeTempDirs()
  })

  let webPort = 0

  it('start-first rolling update with a healthcheck: 0 failed requests through the mesh, never fewer than 4 healthy in rotation', async (t) => {
    webPort = await freePort(IPS, 18_180)
    await deployStack('web', stack('web', webPort))
    const loop = requestLoop(urls(webPort))
    let fewest = Infinity
    let watching = true
    const rotation = (async () => {
      while (watching) {
        const r = JSON.parse((await cli([...data(1), 'inspect', 'web', '--json'])).stdout) as InspectResponse
        fewest = Math.min(fewest, r.routes.length)
      }
    })()
    await sleep(1_000)
    const t0 = Date.now()
    const u = await cli([...data(0), 'update', 'web', '--env', 'VERSION=2'], {}, FOLLOW_MS)
    const took = Date.now() - t0
    await sleep(1_000)
    watching = false
    await rotation
    const samples = await loop.stop()
    t.diagnostic(`rollout of 4 took ${took} ms; ${samples.length} requests, ${samples.filter((s) => !s.ok).length} failed; fewest routes seen ${fewest}`)
    assert.equal(u.code, 0, u.stderr)
    assert.match(u.stderr, /batch \d\/4/, 'the CLI showed the batches as it followed')
    assert.equal(samples.filter((s) => !s.ok).length, 0, failures(samples, t0))
    assert.ok(fewest >= 4, `only ${fewest} replicas in rotation at some moment`)
    assert.ok(await allOn('web', 4, 2), `docker runs ${(await generations('web')).join(',')}`)
    assert.ok(samples.slice(-20).every((s) => s.body.endsWith(' 2')), 'the new version answers at the end')
    const ps = JSON.parse((await cli([...data(2), 'ps', 'web', '--json'])).stdout) as TaskView[]
    assert.ok(ps.filter((x) => x.desired === 'running').every((x) => x.generation === 2), 'ps shows each replica\'s generation')
    assert.equal((await status('web', 2)).state, 'completed')
  })

  it('bad input: one line, non-zero exit, nothing changed', async () => {
    for (const args of [['update', 'nosuch', '--image', 'busybox:1'], ['update', 'web', '--image', 'Not An Image'], ['update', 'web', '--env', 'NOEQUALS'], ['promote', 'web'], ['update', 'web']]) {
      const r = await cli([...data(0), ...args])
      assert.notEqual(r.code, 0, args.join(' '))
      assert.equal(r.stderr.trim().split('\n').length, 1, `one line for ${args.join(' ')}: ${r.stderr}`)
    }
    assert.ok(await allOn('web', 4, 2))
  })

  it('replicas that exit at start: the rollout stops at the first batch and every replica is back within 20 s; ps and rollout status say why', async (t) => {
    const t0 = Date.now()
    const u = await cli([...data(0), 'update', 'web', '--env', 'BROKEN=1'], {}, FOLLOW_MS)
    assert.notEqual(u.code, 0, 'the CLI exits non-zero on a rolled back rollout')
    assert.match(u.stderr, /rolled back|rolling back/)
    await waitFor(async () => (await allOn('web', 4, 2)) && (await status('web')).state === 'rolled back', ROLLBACK_WITHIN_MS, 'every replica back on generation 2')
    t.diagnostic(`back on the previous version ${Date.now() - t0} ms after the update`)
    const s = await status('web', 1)
    assert.equal(s.kind, 'auto-rollback')
    assert.match(s.reason, /1 of 1 updated replicas failed/)
    const ps = await cli([...data(1), 'ps', 'web', '-a'])
    assert.match(ps.stdout, /exited with code 3/, 'ps -a shows the exits that caused it')
    const page = await httpGet(`http://${IPS[2]}:${webPort}/`)
    assert.match(page.body, / 2\n?$/)
  })

  it('canary 1 of 4 then promote; canary 1 of 4 then rollback', async () => {
    const p = await freePort(IPS, webPort + 1)
    await deployStack('can', stack('can', p, ['      x-p2p-orch: { canary: 1 }']))
    const u = await cli([...data(0), 'update', 'can', '--env', 'VERSION=2'], {}, FOLLOW_MS)
    assert.equal(u.code, 0, u.stderr)
    assert.match(u.stderr, /promote/)
    await waitFor(async () => (await generations('can')).join() === '1,1,1,2', 10_000, 'one canary beside 3 old replicas')
    const pr = await cli([...data(1), 'promote', 'can'], {}, FOLLOW_MS)
    assert.equal(pr.code, 0, pr.stderr)
    assert.ok(await allOn('can', 4, 2), `after promote: ${(await generations('can')).join(',')}`)

    const u2 = await cli([...data(0), 'update', 'can', '--env', 'VERSION=3'], {}, FOLLOW_MS)
    assert.equal(u2.code, 0, u2.stderr)
    await waitFor(async () => (await generations('can')).join() === '2,2,2,3', 10_000, 'one canary beside 3 replicas of generation 2')
    const rb = await cli([...data(2), 'rollback', 'can'], {}, FOLLOW_MS)
    assert.equal(rb.code, 0, rb.stderr)
    await waitFor(async () => await allOn('can', 4, 2), 20_000, 'the canary discarded')
  })

  it('blue-green: the new set starts beside the old one, the mesh switches on promote, 0 failed requests', async (t) => {
    const p = await freePort(IPS, webPort + 2)
    await deployStack('bg', stack('bg', p, ['      x-p2p-orch: { canary: 4 }']))
    const loop = requestLoop(urls(p))
    const t0 = Date.now()
    const u = await cli([...data(0), 'update', 'bg', '--env', 'VERSION=2'], {}, FOLLOW_MS)
    assert.equal(u.code, 0, u.stderr)
    assert.deepEqual(await generations('bg'), [1, 1, 1, 1, 2, 2, 2, 2], 'both sets run')
    await sleep(1_500)
    const beforePromote = Date.now()
    const pr = await cli([...data(1), 'promote', 'bg'], {}, FOLLOW_MS)
    assert.equal(pr.code, 0, pr.stderr)
    await waitFor(async () => await allOn('bg', 4, 2), 20_000, 'the old set removed')
    await sleep(1_500)
    const samples = await loop.stop()
    t.diagnostic(`${samples.length} requests, ${samples.filter((s) => !s.ok).length} failed`)
    assert.equal(samples.filter((s) => !s.ok).length, 0, failures(samples, t0))
    const served = (from: number, to: number): Set<string> => new Set(samples.filter((s) => s.start >= from && s.start < to).map((s) => s.body.split(' ')[1]))
    assert.deepEqual([...served(t0, beforePromote)], ['1'], 'only the old set serves before promote')
    assert.deepEqual([...served(Date.now() - 1_000, Infinity)], ['2'], 'only the new set serves after')
  })

  it('SIGKILL of the node whose slot is being updated: the rollout completes anyway', async (t) => {
    const p = await freePort(IPS, webPort + 3)
    await writeFile(join(root, 'sturdy.yaml'), stack('sturdy', p).replace('monitor: 1s, failure_action: rollback', 'monitor: 4s, failure_action: pause'))
    const d = await cli([...data(0), 'deploy', '-f', join(root, 'sturdy.yaml'), '-y'], {}, FOLLOW_MS)
    assert.equal(d.code, 0, d.stderr)
    const u = await cli([...data(0), 'update', 'sturdy', '--env', 'VERSION=2', '--detach'])
    assert.equal(u.code, 0, u.stderr)
    // the slot under way: the one that runs generation 2 while the rollout is not complete; on a node we do not talk through
    const victim = await waitFor(async () => {
      const ps = JSON.parse((await cli([...data(0), 'ps', 'sturdy', '--json'])).stdout) as TaskView[]
      const updating = ps.find((x) => x.desired === 'running' && x.generation === 2 && x.node !== ids[0])
      return updating === undefined ? undefined : agents.findIndex((a) => a.id === updating.node)
    }, 60_000, 'a slot on r2 or r3 being updated')
    const t0 = Date.now()
    await kill(agents[victim], 'SIGKILL', { wait: true })
    const lost = await docker('ps', '-aq', '--filter', `label=p2p-orch.node=${ids[victim]}`)
    if (lost !== '') await docker('rm', '-f', ...lost.split('\n'))
    await waitFor(async () => (await allOn('sturdy', 4, 2)) && (await status('sturdy')).state === 'completed', 90_000, 'the rollout to complete on the survivors')
    t.diagnostic(`completed ${Date.now() - t0} ms after r${victim + 1} was killed`)
  })
})
