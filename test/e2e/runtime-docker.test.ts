/**
 * DockerRuntime against the real engine (DOCKER_HOST or /var/run/docker.sock) with the locally
 * built p2p-orch/busybox:latest image. Without an engine these tests fail: run
 * scripts/ensure-docker.sh first.
 */
import { after, before, describe, it, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Docker from 'dockerode'
import {
  DockerRuntime,
  createOptions,
  demultiplexLogs,
  dockerTime,
  exitCodeFromStatus,
  healthFromStatus,
  runtimeEventFromDocker
} from '../../node/runtime/docker.ts'
import type { TestHooks } from '../../node/runtime/memory.ts'
import { LABEL_NODE, type CreateRequest, type RuntimeEvent } from '../../node/runtime/types.ts'
import {
  CONTRACT_IMAGE,
  CONTRACT_RUN_ID,
  CONTRACT_RUN_LABEL,
  baseSpec,
  runtimeContract,
  waitFor
} from '../contract/runtime.contract.ts'

const NO_ENGINE = 'no Docker engine: run scripts/ensure-docker.sh'

/** A second client, playing the operator who runs docker commands behind the agent's back. */
const outsider = new Docker()

async function requireEngine(runtime: DockerRuntime): Promise<void> {
  try {
    await runtime.ping()
  } catch (err) {
    throw new Error(`${NO_ENGINE} (${(err as Error).message})`)
  }
  if (!(await runtime.hasImage(CONTRACT_IMAGE))) {
    throw new Error(`image ${CONTRACT_IMAGE} is missing: run scripts/ensure-docker.sh`)
  }
}

/** Removes every container this test process made (they all carry the run label). */
async function sweep(): Promise<void> {
  let rows: Docker.ContainerInfo[]
  try {
    rows = await outsider.listContainers({ all: true, filters: { label: [`${CONTRACT_RUN_LABEL}=${CONTRACT_RUN_ID}`] } })
  } catch {
    return // no engine: nothing was made
  }
  await Promise.all(rows.map(r => outsider.getContainer(r.Id).remove({ force: true, v: true }).catch(() => {})))
}

after(sweep)

it('a Docker engine answers with the test image present', async () => {
  await requireEngine(new DockerRuntime())
})

runtimeContract('DockerRuntime', async () => {
  const runtime = new DockerRuntime()
  await requireEngine(runtime)
  const hooks: Pick<TestHooks, 'removeBehindBack'> = {
    removeBehindBack: async (id: string) => {
      await outsider.getContainer(id).remove({ force: true, v: true })
    }
  }
  return { runtime: Object.assign(runtime, hooks), cleanup: sweep }
})

describe('DockerRuntime on the real engine', () => {
  const runtime = new DockerRuntime()
  let seq = 0
  const node = (tag: string) => `e2e-${CONTRACT_RUN_ID}-${tag}-${++seq}`
  const request = (n: string, overrides: Parameters<typeof baseSpec>[0] = {}, req: Partial<CreateRequest> = {}): CreateRequest => ({
    spec: baseSpec(overrides),
    slot: 1,
    node: n,
    generation: 1,
    name: `e2e-${CONTRACT_RUN_ID}-${++seq}`,
    ...req
  })

  before(() => requireEngine(runtime))

  it('translates the spec into the container config', async (t: TestContext) => {
    const dir = await mkdtemp(join(tmpdir(), 'p2p-orch-e2e-'))
    t.after(() => rm(dir, { recursive: true, force: true }))
    await chmod(dir, 0o755) // readable by the container's user 65534
    await writeFile(join(dir, 'hello.txt'), 'from the host\n', { mode: 0o644 })
    const volume = `p2p-orch-e2e-${CONTRACT_RUN_ID}`
    let id = ''
    t.after(async () => {
      // the container first: a volume in use cannot be removed
      if (id) await outsider.getContainer(id).remove({ force: true, v: true }).catch(() => {})
      await outsider.getVolume(volume).remove().catch(() => {})
    })
    const n = node('spec')
    id = await runtime.run(
      request(n, {
        entrypoint: ['sh', '-c'],
        command: ['echo $FOO; pwd; id -u; cat /host/hello.txt; sleep 3600'],
        env: ['FOO=bar'],
        user: '65534',
        workingDir: '/tmp',
        stopSignal: 'SIGINT',
        stopGracePeriodMs: 2_500,
        healthcheck: { test: ['CMD-SHELL', 'true'], intervalMs: 1_500, timeoutMs: 1_000, retries: 2, startPeriodMs: 500 },
        mounts: [
          { type: 'volume', source: volume, target: '/named', readOnly: false },
          { type: 'volume', source: '', target: '/anonymous', readOnly: false },
          { type: 'bind', source: dir, target: '/host', readOnly: true },
          { type: 'tmpfs', source: '', target: '/scratch', readOnly: false }
        ],
        limits: { cpus: 0.5, memoryBytes: 64 * 1024 * 1024 },
        reservations: { cpus: 0.25, memoryBytes: 32 * 1024 * 1024 },
        ports: [
          { target: 80, published: 20_000 + Math.floor(Math.random() * 20_000), protocol: 'tcp', mode: 'host' },
          { target: 53, protocol: 'udp', mode: 'ingress' }
        ]
      }, { hostIp: '127.0.0.1' })
    )
    const raw = await outsider.getContainer(id).inspect()
    assert.deepEqual(raw.Config.Entrypoint, ['sh', '-c'])
    assert.ok(raw.Config.Env.includes('FOO=bar'))
    assert.equal(raw.Config.User, '65534')
    assert.equal(raw.Config.WorkingDir, '/tmp')
    const config = raw.Config as typeof raw.Config & { StopSignal?: string; StopTimeout?: number }
    assert.equal(config.StopSignal, 'SIGINT')
    assert.equal(config.StopTimeout, 3)
    assert.deepEqual(raw.Config.Healthcheck, {
      Test: ['CMD-SHELL', 'true'],
      Interval: 1_500_000_000,
      Timeout: 1_000_000_000,
      StartPeriod: 500_000_000,
      Retries: 2
    })
    assert.equal(raw.HostConfig.NanoCpus, 500_000_000)
    assert.equal(raw.HostConfig.Memory, 64 * 1024 * 1024)
    assert.equal(raw.HostConfig.MemoryReservation, 32 * 1024 * 1024)
    assert.equal(raw.HostConfig.RestartPolicy?.Name, 'no')
    const bindings = raw.HostConfig.PortBindings as Record<string, { HostIp: string; HostPort: string }[]>
    assert.equal(bindings['80/tcp'][0].HostIp, '127.0.0.1')
    assert.equal(bindings['53/udp'][0].HostPort, '', 'a port without a published number gets an ephemeral host port, as in Compose')
    assert.ok('53/udp' in raw.Config.ExposedPorts)
    const mounts = Object.fromEntries(raw.Mounts.map(m => [m.Destination, m]))
    assert.equal(mounts['/named'].Name, volume)
    assert.equal(mounts['/host'].RW, false)
    const anonymous = mounts['/anonymous'].Name!
    assert.ok(anonymous)

    const logs = await waitFor('output', () => runtime.logs(id, 10), l => l.includes('from the host'))
    assert.equal(logs, 'bar\n/tmp\n65534\nfrom the host\n')

    await runtime.remove(id)
    await assert.rejects(outsider.getVolume(anonymous).inspect(), { statusCode: 404 }, 'anonymous volume removed with the container')
    await outsider.getVolume(volume).inspect() // a named volume outlives the container
  })

  it('serves HTTP from busybox httpd on a published port bound to the node\'s host IP', async () => {
    const n = node('httpd')
    const port = 20_000 + Math.floor(Math.random() * 20_000)
    const hostIp = '127.0.0.2'
    const id = await runtime.run(
      request(n, { command: ['httpd', '-f', '-p', '80', '-h', '/www'], ports: [{ target: 80, published: port, protocol: 'tcp', mode: 'host' }] }, { hostIp })
    )
    const body = await waitFor(
      'httpd to answer',
      () => httpGet(`http://${hostIp}:${port}/index.html`).catch(() => ''),
      b => b.includes('p2p-orch test page')
    )
    assert.match(body, /p2p-orch test page/)
    await runtime.remove(id)
  })

  it('list agrees with inspect for state, health and exit codes, and notices changes made behind its back', async () => {
    const n = node('list')
    const healthy = await runtime.run(
      request(n, { healthcheck: { test: ['CMD-SHELL', 'exit 0'], intervalMs: 200, timeoutMs: 5_000, retries: 1, startPeriodMs: 0 } })
    )
    const three = await runtime.run(request(n, { command: ['sh', '-c', 'exit 3'] }))
    const killed = await runtime.run(request(n))
    await waitFor('healthy', () => runtime.inspect(healthy), c => c?.health === 'healthy')
    await waitFor('exit 3', () => runtime.inspect(three), c => c?.state === 'exited')
    await runtime.list(n) // fills the cache
    await outsider.getContainer(killed).kill()
    await waitFor('killed exited', () => runtime.list(n), l => l.find(c => c.id === killed)?.state === 'exited')
    const listed = await runtime.list(n)
    for (const c of listed) assert.deepEqual(c, await runtime.inspect(c.id), `list and inspect agree for ${c.id.slice(0, 12)}`)
    assert.equal(listed.find(c => c.id === killed)?.exitCode, 137)
    assert.equal(listed.find(c => c.id === three)?.exitCode, 3)
    assert.equal(listed.find(c => c.id === healthy)?.health, 'healthy')
  })

  it('create+start timings for 1 and 10 containers', async (t: TestContext) => {
    const n = node('timing')
    const timeRun = async (count: number, concurrent: boolean): Promise<number> => {
      const reqs = Array.from({ length: count }, () => request(n))
      const t0 = performance.now()
      if (concurrent) await Promise.all(reqs.map(r => runtime.run(r)))
      else for (const r of reqs) await runtime.run(r)
      const ms = performance.now() - t0
      await Promise.all((await runtime.list(n)).map(c => runtime.remove(c.id)))
      return ms
    }
    const one = await timeRun(1, false)
    const tenSequential = await timeRun(10, false)
    const tenConcurrent = await timeRun(10, true)
    t.diagnostic(`create+start: 1 container ${one.toFixed(0)} ms; 10 sequential ${tenSequential.toFixed(0)} ms; 10 concurrent ${tenConcurrent.toFixed(0)} ms`)
    assert.deepEqual(await runtime.list(n), [])
  })
})

describe('DockerRuntime without an engine', () => {
  it('ping fails with a one-line RuntimeUnavailableError', async () => {
    const runtime = new DockerRuntime({ docker: { socketPath: '/nonexistent/docker.sock' } })
    await assert.rejects(runtime.ping(), (err: Error) => {
      assert.equal(err.name, 'RuntimeUnavailableError')
      assert.match(err.message, /^no Docker engine answers at \/nonexistent\/docker\.sock \(is dockerd running\?\)/)
      assert.ok(!err.message.includes('\n'))
      return true
    })
    await assert.rejects(runtime.list('x'), { name: 'RuntimeUnavailableError' })
  })
})

describe('DockerRuntime events stream', () => {
  it('parses split and garbled lines, reconnects after the stream ends, and drops replayed duplicates', async (t: TestContext) => {
    const dir = await mkdtemp(join(tmpdir(), 'p2p-orch-events-'))
    const socketPath = join(dir, 'docker.sock')
    let now = 0 // the second of the first `since`: the fake engine's clock
    const event = (id: string, action: string, time = now) =>
      JSON.stringify({
        Type: 'container',
        Action: action,
        Actor: { ID: id, Attributes: { image: 'x', name: 'n', [LABEL_NODE]: 'a', exitCode: '0' } },
        time,
        timeNano: time * 1e9 + id.length
      }) + '\n'
    const queries: string[] = []
    let connections = 0
    const server = http.createServer((req, res) => {
      queries.push(req.url ?? '')
      connections++
      if (connections === 1) now = Math.floor(Number(new URL(req.url ?? '', 'http://x').searchParams.get('since')))
      res.writeHead(200, { 'Content-Type': 'application/json' })
      if (connections === 1) {
        const first = event('c1', 'start')
        res.write(first.slice(0, 10))
        res.write(first.slice(10) + 'not json\n' + event('c1', 'exec_create: sh') + event('c1', 'health_status: healthy'))
        res.end(event('c1', 'die')) // the stream ends: the runtime must reconnect
      } else {
        // a reconnect replays from the last second seen: the first die is a duplicate
        res.write(event('c1', 'die'))
        res.write(event('c1', 'destroy', now + 1))
      }
    })
    await new Promise<void>(resolve => server.listen(socketPath, resolve))
    t.after(async () => {
      server.closeAllConnections()
      await new Promise(r => server.close(r))
      await rm(dir, { recursive: true, force: true })
    })
    const runtime = new DockerRuntime({ docker: { socketPath } })
    const events: RuntimeEvent[] = []
    const stop = runtime.events(e => events.push(e))
    t.after(stop)
    await waitFor('destroy after reconnect', async () => events.map(e => e.type), types => types.includes('destroy'), 10_000)
    assert.deepEqual(events.map(e => e.type), ['start', 'health', 'die', 'destroy'])
    assert.deepEqual(events[0].labels, { [LABEL_NODE]: 'a' })
    assert.equal(connections, 2)
    const filters = JSON.parse(new URL(queries[0], 'http://x').searchParams.get('filters') ?? '{}')
    assert.deepEqual(filters, { type: ['container'], label: [LABEL_NODE] })
    assert.equal(Math.floor(Number(new URL(queries[1], 'http://x').searchParams.get('since'))), now, 'resumes within the last second seen')
  })
})

describe('DockerRuntime helpers', () => {
  it('demultiplexes stdout/stderr frames and passes raw TTY output through', () => {
    const frame = (stream: number, text: string) => {
      const body = Buffer.from(text)
      const header = Buffer.alloc(8)
      header[0] = stream
      header.writeUInt32BE(body.length, 4)
      return Buffer.concat([header, body])
    }
    assert.equal(demultiplexLogs(Buffer.concat([frame(1, 'out\n'), frame(2, 'err\n'), frame(1, 'é\n')])), 'out\nerr\né\n')
    assert.equal(demultiplexLogs(Buffer.from('plain tty text\n')), 'plain tty text\n')
    assert.equal(demultiplexLogs(Buffer.alloc(0)), '')
  })

  it('reads health and exit codes from list Status strings', () => {
    assert.equal(healthFromStatus('Up 5 seconds (healthy)'), 'healthy')
    assert.equal(healthFromStatus('Up 5 seconds (unhealthy)'), 'unhealthy')
    assert.equal(healthFromStatus('Up 1 second (health: starting)'), 'starting')
    assert.equal(healthFromStatus('Up 2 hours'), 'none')
    assert.equal(exitCodeFromStatus('Exited (137) 2 seconds ago'), 137)
    assert.equal(exitCodeFromStatus('Up 2 hours'), null)
  })

  it('maps Docker times, with the zero time as 0', () => {
    assert.equal(dockerTime('0001-01-01T00:00:00Z'), 0)
    assert.equal(dockerTime(''), 0)
    assert.equal(dockerTime('2025-01-02T03:04:05.123456789Z'), Date.UTC(2025, 0, 2, 3, 4, 5, 123))
  })

  it('maps Docker events and ignores the rest', () => {
    const ev = (Action: string, Type = 'container') => ({ Type, Action, Actor: { ID: 'abc', Attributes: { name: 'x', a: 'b' } } })
    assert.deepEqual(runtimeEventFromDocker(ev('start')), { type: 'start', containerId: 'abc', labels: { a: 'b' } })
    assert.equal(runtimeEventFromDocker(ev('health_status: unhealthy'))?.type, 'health')
    assert.equal(runtimeEventFromDocker(ev('kill')), null)
    assert.equal(runtimeEventFromDocker(ev('connect', 'network')), null)
  })

  it('builds the create body: the p2p-orch labels win, healthcheck NONE stays NONE, bind sources are absolute', () => {
    const body = createOptions({
      spec: baseSpec({ labels: { 'p2p-orch.node': 'spoofed' }, healthcheck: { test: ['NONE'], intervalMs: 0, timeoutMs: 0, retries: 0, startPeriodMs: 0 } }),
      slot: 3,
      node: 'real',
      generation: 9,
      name: 'n'
    })
    assert.equal(body.Labels?.['p2p-orch.node'], 'real')
    assert.equal(body.Labels?.['p2p-orch.slot'], '3')
    assert.deepEqual(body.Healthcheck, { Test: ['NONE'] })
    assert.deepEqual(body.HostConfig?.RestartPolicy, { Name: 'no' })
    assert.throws(
      () => createOptions({ spec: baseSpec({ mounts: [{ type: 'bind', source: './x', target: '/x', readOnly: false }] }), slot: 1, node: 'n', generation: 1, name: 'n' }),
      /absolute/
    )
    const plain = createOptions({ spec: baseSpec(), slot: 1, node: 'n', generation: 1, name: 'n' }).HostConfig
    for (const k of ['Privileged', 'CapAdd', 'CapDrop', 'Devices', 'PidMode', 'ReadonlyRootfs'] as const) assert.equal(plain?.[k], undefined, k)
    const host = createOptions({
      spec: baseSpec({ readOnly: true, privileged: true, capAdd: ['NET_ADMIN'], capDrop: ['ALL'], devices: [{ source: '/dev/a', target: '/dev/b', permissions: 'r' }], pid: 'host' }),
      slot: 1, node: 'n', generation: 1, name: 'n'
    }).HostConfig
    assert.deepEqual([host?.ReadonlyRootfs, host?.Privileged, host?.CapAdd, host?.CapDrop, host?.Devices, host?.PidMode],
      [true, true, ['NET_ADMIN'], ['ALL'], [{ PathOnHost: '/dev/a', PathInContainer: '/dev/b', CgroupPermissions: 'r' }], 'host'])
  })
})

function httpGet(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, res => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', c => (body += c))
      res.on('end', () => resolve(body))
    })
    req.on('error', reject)
    req.setTimeout(2_000, () => req.destroy(new Error('timeout')))
  })
}
