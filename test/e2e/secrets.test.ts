/**
 * End-to-end: a secret and a config on a real Docker engine with five real agents
 * (127.0.0.92–96), deployed from a Compose file by the CLI. Checked independently, with `docker
 * exec`, `docker inspect` and by scanning every node's files:
 *  - both replicas read the secret at /run/secrets/… from a read-only tmpfs file, and the config;
 *  - the 3 nodes that run no replica hold zero bytes of the plain value (data directory, logs,
 *    secrets directory); the 2 that do hold it only in their tmpfs secrets directory;
 *  - `secret ls` names the secret and its users, never its value;
 *  - scaled to 0, the tmpfs files are gone within 5 s of the containers stopping.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { FileView } from '../../node/api/types.ts'
import { docker, dockerReplicas, removeNodeArtifacts } from '../helpers/docker.ts'
import { cli, removeTempDirs, startCluster, stopAll, tempDir, waitFor, waitForMembers, type Agent } from '../helpers/agents.ts'

const SIZE = 5
const FIRST_OCTET = 92

/** Every file under `dir` (recursively) that contains `needle`; files that vanish meanwhile are skipped. */
async function filesContaining (dir: string, needle: Buffer): Promise<string[]> {
  if (!existsSync(dir)) return []
  const out: string[] = []
  const entries = await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => [])
  for (const e of entries) {
    if (!e.isFile()) continue
    const path = join(e.parentPath, e.name)
    const data = await readFile(path).catch(() => undefined)
    if (data !== undefined && data.indexOf(needle) >= 0) out.push(path)
  }
  return out
}

describe('secrets and configs on real Docker (5 agents, a secret used by 2 replicas)', () => {
  let root: string
  let shm: string
  let agents: Agent[] = []
  let ids: string[] = []
  const plain = Buffer.from(`s3cr3t-${randomBytes(24).toString('hex')}`)
  const secretsDir = (i: number): string => join(shm, `n${i + 1}`)

  before(async () => {
    root = await tempDir('e2e-secrets-')
    shm = await mkdtemp('/dev/shm/p2p-orch-e2e-secrets-')
    await writeFile(join(root, 'db_password.txt'), plain)
    const started = await startCluster({ root, size: SIZE, firstOctet: FIRST_OCTET, runtime: true, concurrency: 2, extraArgs: (i) => ['--secrets-dir', secretsDir(i)] })
    agents = started.agents
    ids = agents.map((a) => a.id)
    await waitForMembers(agents, 30_000)
  })

  after(async () => {
    await stopAll()
    await removeNodeArtifacts(ids)
    await removeTempDirs()
    await rm(shm, { recursive: true, force: true })
  })

  it('deploy creates the secret and config, and both replicas read them from read-only tmpfs files', async () => {
    await writeFile(join(root, 'stack.yaml'), [
      'name: vault',
      'services:',
      '  app:',
      '    image: p2p-orch/busybox:latest',
      '    command: ["sleep", "600"]',
      '    stop_grace_period: 1s',
      '    secrets: [{ source: db_password, target: db, mode: 0400 }]',
      '    configs: [{ source: app_conf, target: /etc/app.conf }]',
      '    deploy: { replicas: 2, placement: { max_replicas_per_node: 1 } }',
      'secrets:',
      '  db_password: { file: ./db_password.txt }',
      'configs:',
      '  app_conf: { content: "mode=prod" }',
      ''
    ].join('\n'))
    const r = await cli(['--data', agents[0].dir, 'deploy', '-f', join(root, 'stack.yaml'), '-y'], {}, 60_000)
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /secret vault_db_password: created/)
    assert.match(r.stdout, /config vault_app_conf: created/)
    const reps = await waitFor(async () => { const x = await dockerReplicas('app', ids); return x.length === 2 ? x : undefined }, 30_000, 'two app replicas')
    assert.equal(new Set(reps.map((x) => x.node)).size, 2)
    for (const rep of reps) {
      assert.equal(await docker('exec', rep.id, 'cat', '/run/secrets/db'), plain.toString())
      assert.equal(await docker('exec', rep.id, 'cat', '/etc/app.conf'), 'mode=prod')
      assert.equal(await docker('exec', rep.id, 'stat', '-c', '%a', '/run/secrets/db'), '400')
      // what the container sees at the path: a tmpfs, mounted read-only
      const mount = (await docker('exec', rep.id, 'grep', ' /run/secrets/db ', '/proc/mounts')).split(' ')
      assert.equal(mount[2], 'tmpfs', mount.join(' '))
      assert.match(mount[3], /^ro[,$]/)
    }
  })

  it('no node that runs no replica holds a byte of the plain value; the 2 that do, only on tmpfs', async () => {
    const reps = await dockerReplicas('app', ids)
    const runners = new Set(reps.map((x) => x.node))
    for (const [i, a] of agents.entries()) {
      assert.deepEqual(await filesContaining(a.dir, plain), [], `${a.name}: plain secret in its data directory or logs`)
      assert.equal(a.stdout().includes(plain.toString()) || a.stderr().includes(plain.toString()), false, `${a.name}: plain secret in its output`)
      const onTmpfs = await filesContaining(secretsDir(i), plain)
      assert.equal(onTmpfs.length, runners.has(a.id) ? 1 : 0, `${a.name} (${runners.has(a.id) ? 'runs it' : 'does not'}): ${onTmpfs.join(', ')}`)
    }
    const ls = await cli(['--data', agents[3].dir, 'secret', 'ls', '--json'])
    assert.equal(ls.code, 0, ls.stderr)
    const list = JSON.parse(ls.stdout) as FileView[]
    assert.deepEqual(list.map((s) => [s.name, s.services, s.size]), [['vault_db_password', ['app'], plain.length]])
    assert.equal(ls.stdout.includes(plain.toString()), false)
    const inspect = await cli(['--data', agents[2].dir, 'inspect', 'app'])
    assert.equal(inspect.stdout.includes(plain.toString()), false)
  })

  it('an unknown secret name and a secret in use are refused with one line', async () => {
    const rm1 = await cli(['--data', agents[1].dir, 'secret', 'rm', 'vault_db_password'])
    assert.notEqual(rm1.code, 0)
    assert.match(rm1.stderr, /in use by app; remove it from those services first/)
    const dup = await cli(['--data', agents[1].dir, 'secret', 'create', 'vault_db_password', join(root, 'db_password.txt')])
    assert.notEqual(dup.code, 0)
    assert.match(dup.stderr, /already exists; secrets cannot be changed/)
  })

  it('scaled to 0, every secret file is gone within 5 s of the containers stopping', async () => {
    const r = await cli(['--data', agents[0].dir, 'scale', 'app=0', '--detach'])
    assert.equal(r.code, 0, r.stderr)
    await waitFor(async () => (await dockerReplicas('app', ids)).length === 0 ? true : undefined, 30_000, 'app replicas to stop')
    const stoppedAt = Date.now()
    await waitFor(async () => {
      for (let i = 0; i < SIZE; i++) if ((await filesContaining(secretsDir(i), plain)).length > 0) return undefined
      return true
    }, 5_000, 'the secret files to go')
    assert.ok(Date.now() - stoppedAt <= 5_000)
  })
})
