/**
 * End-to-end: host-safe specs on a real Docker engine with three real agents (127.0.0.62–64).
 * Only s1 is started with --allow-host-path and --allow-privileged. Checked with `docker ps`,
 * `docker inspect` and plain HTTP through the routing mesh:
 *  - a bind mount under s1's allowed path runs only on s1, and every node's ingress serves the
 *    host file through it;
 *  - a bind mount of /etc runs nowhere, and says why;
 *  - a deployer key's privileged spec is refused with one line; the admin's (cap_add, devices, pid: host) runs on s1 only.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { promisify } from 'node:util'
import type { TaskView } from '../../node/api/types.ts'
import { httpGet, removeNodeArtifacts } from '../helpers/docker.ts'
import { cli, freePort, removeTempDirs, startAgent, stopAll, tempDir, waitFor, waitForMembers, type Agent } from '../helpers/agents.ts'

const exec = promisify(execFile)
const IPS = ['127.0.0.62', '127.0.0.63', '127.0.0.64']

async function docker (...args: string[]): Promise<string> {
  const { stdout } = await exec('docker', args)
  return stdout.trim()
}

describe('host-safe specs on real Docker (3 agents, one allowing host paths and privileged)', () => {
  let root: string
  let shared: string
  let agents: Agent[] = []
  let ids: string[] = []
  let webPort = 0
  const data = (i: number): string[] => ['--data', agents[i].dir]

  /** Running containers of a service on this test's nodes: node id per container. */
  const replicas = async (service: string): Promise<Array<{ id: string, node: string }>> => {
    const out = await docker('ps', '--filter', `label=p2p-orch.service=${service}`, '--format', '{{.ID}}\t{{.Label "p2p-orch.node"}}')
    return (out === '' ? [] : out.split('\n')).map((l) => { const [id, node] = l.split('\t'); return { id, node } }).filter((r) => ids.includes(r.node))
  }
  const deploy = async (file: string, text: string, env: Record<string, string> = {}): Promise<{ code: number | null, stdout: string, stderr: string }> => {
    await writeFile(join(root, file), text)
    return await cli([...data(1), 'deploy', '-f', join(root, file), '-y'], env, 60_000)
  }

  before(async () => {
    root = await tempDir('e2e-host-')
    shared = join(root, 'shared')
    await mkdir(join(shared, 'www'), { recursive: true })
    await writeFile(join(shared, 'www', 'index.html'), 'served from the host\n')
    const port = await freePort(IPS)
    webPort = await freePort(IPS, 18_180)
    const first = await startAgent({
      dir: join(root, 'n1'), ip: IPS[0], port, name: 's1', runtime: true,
      extraArgs: ['--ingress-host', IPS[0], '--allow-host-path', shared, '--allow-privileged']
    })
    const token = (await cli(['--data', first.dir, 'join-token'])).stdout.trim()
    agents = [first, ...await Promise.all([1, 2].map(async (i) => await startAgent({
      dir: join(root, `n${i + 1}`), ip: IPS[i], port, name: `s${i + 1}`, join: token, runtime: true, extraArgs: ['--ingress-host', IPS[i]]
    })))]
    ids = agents.map((a) => a.id)
    await waitForMembers(agents, 20_000)
  })

  after(async () => {
    await stopAll()
    await removeNodeArtifacts(ids)
    await removeTempDirs()
  })

  it('a bind mount under the allowed path runs only on the node that allows it, and every ingress serves the host file', async () => {
    const r = await deploy('files.yaml', [
      'name: host',
      'services:',
      '  files:',
      '    image: p2p-orch/busybox:latest',
      '    command: ["httpd", "-f", "-p", "80", "-h", "/www"]',
      `    ports: ["${webPort}:80"]`,
      `    volumes: ["${join(shared, 'www')}:/www:ro"]`,
      '    read_only: true',
      '    cap_drop: [NET_RAW]',
      '    stop_grace_period: 1s',
      '    deploy: { replicas: 2 }',
      ''
    ].join('\n'))
    assert.equal(r.code, 0, r.stderr)
    const reps = await waitFor(async () => { const x = await replicas('files'); return x.length === 2 ? x : undefined }, 20_000, 'two files replicas')
    assert.deepEqual(reps.map((x) => x.node), [ids[0], ids[0]], 'both replicas on s1, the only node allowing the path')
    const inspect = JSON.parse(await docker('inspect', reps[0].id)) as Array<{ HostConfig: { ReadonlyRootfs: boolean, CapDrop: string[] | null, Privileged: boolean }, Mounts: Array<{ Type: string, Source: string, Destination: string, RW: boolean }> }>
    assert.deepEqual(inspect[0].Mounts.map((m) => [m.Type, m.Source, m.Destination, m.RW]), [['bind', join(shared, 'www'), '/www', false]])
    assert.equal(inspect[0].HostConfig.ReadonlyRootfs, true)
    assert.deepEqual(inspect[0].HostConfig.CapDrop, ['NET_RAW'])
    assert.equal(inspect[0].HostConfig.Privileged, false)
    for (const ip of IPS) {
      const res = await waitFor(async () => { const g = await httpGet(`http://${ip}:${webPort}/`).catch(() => undefined); return g?.status === 200 ? g : undefined }, 10_000, `${ip} to serve files`)
      assert.equal(res.body, 'served from the host\n')
    }
  })

  it('a bind mount no node allows runs nowhere, and deploy says why in one line per replica', async () => {
    const r = await deploy('etc.yaml', [
      'name: host',
      'services:',
      '  snoop:',
      '    image: p2p-orch/busybox:latest',
      '    command: ["sleep", "600"]',
      '    volumes: ["/etc:/host-etc:ro"]',
      ''
    ].join('\n'))
    assert.notEqual(r.code, 0)
    assert.match(r.stderr, /snoop\.0: cannot be placed: no node allows it: host path \/etc is not allowed \(agent --allow-host-path\)/)
    assert.deepEqual(await replicas('snoop'), [])
    const ps = JSON.parse((await cli([...data(2), 'ps', 'snoop', '--json'])).stdout) as TaskView[]
    assert.match(ps[0]?.error ?? '', /--allow-host-path/)
    assert.equal((await cli([...data(0), 'rm', 'snoop'])).code, 0)
  })

  it('a deployer key may not deploy a privileged spec; the admin may, and it runs with its privileges on s1 only', async () => {
    const k = await cli([...data(0), 'key', 'create', 'ci', '--role', 'deployer'])
    assert.equal(k.code, 0, k.stderr)
    const credential = k.stdout.trim()
    const stack = [
      'name: host',
      'services:',
      '  tools:',
      '    image: p2p-orch/busybox:latest',
      '    command: ["sleep", "600"]',
      '    privileged: true',
      '    cap_add: [NET_ADMIN]',
      '    stop_grace_period: 1s',
      '    deploy: { mode: global }',
      ''
    ].join('\n')
    const refused = await waitFor(async () => {
      const x = await deploy('tools.yaml', stack, { P2P_ORCH_KEY: credential })
      return /not known/.test(x.stderr) ? undefined : x
    }, 10_000, 'the ci key to reach s2')
    assert.equal(refused.code, 1)
    const lines = refused.stderr.split('\n').filter((l) => l.trim() !== '')
    assert.equal(lines.length, 1, refused.stderr)
    assert.match(lines[0], /ci \(deployer\) may not deploy privileged, cap_add: only admin keys may/)
    assert.deepEqual(await replicas('tools'), [])

    // `privileged: true` itself cannot start on this machine's engine (it runs in a container
    // without every capability: "unable to apply caps"), so the admin's run uses the other settings
    const admins = stack.replace('    privileged: true\n', '    devices: ["/dev/null:/dev/p2p-null:r"]\n    pid: host\n')
    const ok = await deploy('tools.yaml', admins)
    assert.equal(ok.code, 0, ok.stdout + ok.stderr)
    const reps = await waitFor(async () => { const x = await replicas('tools'); return x.length === 1 ? x : undefined }, 20_000, 'the tools replica on s1')
    assert.equal(reps[0].node, ids[0])
    const inspect = JSON.parse(await docker('inspect', reps[0].id)) as Array<{ HostConfig: { CapAdd: string[] | null, PidMode: string, Devices: Array<{ PathOnHost: string, PathInContainer: string, CgroupPermissions: string }> | null } }>
    assert.deepEqual(inspect[0].HostConfig.CapAdd, ['NET_ADMIN'])
    assert.equal(inspect[0].HostConfig.PidMode, 'host')
    assert.deepEqual(inspect[0].HostConfig.Devices, [{ PathOnHost: '/dev/null', PathInContainer: '/dev/p2p-null', CgroupPermissions: 'r' }])
    const services = JSON.parse((await cli([...data(2), 'ps', 'tools', '--json'])).stdout) as TaskView[]
    assert.equal(services.filter((t) => t.state === 'running').length, 1)
  })
})
