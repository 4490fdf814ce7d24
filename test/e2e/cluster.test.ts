/**
 * End to end: real agent processes started through the CLI exactly as a user would, on
 * 127.0.0.2–4 (profile local for speed), plus a lan-profile trio on 127.0.0.5–7 for the
 * failure-detection goal, and short-lived failing agents on 127.0.0.9+.
 */
import assert from 'node:assert/strict'
import { readFile, stat, writeFile, mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { after, afterEach, before, describe, test } from 'node:test'
import type { InfoResponse, KeyView, NodeView } from '../../node/api/types.ts'
import { decodeCredential } from '../../protocol/credential.ts'
import { decodeToken } from '../../protocol/token.ts'
import {
  type Agent, apiJson, cli, freePort, kill, metrics, nodesApi, nodesJson, sleep, removeTempDirs, restartAgent, spawnAgent, startAgent,
  startCluster, stopAll, tail, tempDir, testConfigHome, waitFor, waitForMembers
} from '../helpers/agents.ts'

/** One line, no stack trace: what a user should see when something they can fix goes wrong. */
function assertOneLineReason (stderr: string, mustMatch: RegExp): void {
  const lines = stderr.trim().split('\n').filter((l) => l.trim() !== '')
  assert.equal(lines.length, 1, `expected one line on stderr, got:\n${stderr}`)
  assert.doesNotMatch(stderr, /^\s+at /m, 'stderr must not hold a stack trace')
  assert.match(lines[0], mustMatch)
}

/** Poll every observer until it reports `id` with `status`; returns ms from `since` until all do. */
async function timeUntilStatus (observers: Agent[], id: string, status: NodeView['status'], since: number, timeoutMs: number): Promise<number> {
  const seen = new Map<string, number>()
  await waitFor(async () => {
    await Promise.all(observers.filter((o) => !seen.has(o.name)).map(async (o) => {
      const n = (await nodesApi(o.dir)).find((x) => x.id === id)
      if (n?.status === status) seen.set(o.name, Date.now() - since)
    }))
    return seen.size === observers.length
  }, timeoutMs, `${observers.map((o) => o.name).join(', ')} to report ${id.slice(-8)} as ${status} (so far: ${JSON.stringify([...seen])})`, 20)
  return Math.max(...seen.values())
}

describe('cluster of real agent processes', { timeout: 90_000 }, () => {
  let root: string
  let n1: Agent
  let n2: Agent
  let n3: Agent
  let token: string
  /** 7946 unless another agent on this machine already uses it on these addresses */
  let port: number
  const all = (): Agent[] => [n1, n2, n3]

  before(async () => {
    root = await tempDir('p2p-orch-e2e-')
    port = await freePort(['127.0.0.2', '127.0.0.3', '127.0.0.4'])
  })

  after(async () => {
    await stopAll()
    await removeTempDirs()
  })

  afterEach((t) => {
    // TestContext.passed (Node ≥ 21.7) is not in every @types/node release yet
    if ((t as { passed?: boolean }).passed !== false) return
    for (const a of [n1, n2, n3]) {
      if (a === undefined) continue
      process.stderr.write(`--- ${a.name} (pid ${a.pid}, exit ${JSON.stringify(a.exit)}) log tail:\n${tail(a.stdout(), 15)}\nstderr: ${a.stderr()}\n`)
    }
  })

  test('first agent creates a cluster and prints how to join', async () => {
    n1 = await startAgent({ dir: join(root, 'n1'), ip: '127.0.0.2', port, name: 'n1', labels: { tier: 'front' } })
    // printed right after the control socket opens
    const out = await waitFor(() => /Created a new cluster\./.test(n1.stdout()) ? n1.stdout() : undefined, 2000, 'the new-cluster message')
    assert.match(out, /p2p-orch agent --data DIR --join p2porch1\./)
  })

  test('join-token prints exactly one line', async () => {
    const r = await cli(['--data', n1.dir, 'join-token'])
    assert.equal(r.code, 0, r.stderr)
    const lines = r.stdout.split('\n').filter((l) => l !== '')
    assert.equal(lines.length, 1, `join-token printed:\n${r.stdout}`)
    assert.match(lines[0], /^p2porch1\.[A-Za-z0-9_-]+\.[0-9a-f]+$/)
    token = lines[0]
  })

  test('two more agents join with the token', async () => {
    ;[n2, n3] = await Promise.all([
      startAgent({ dir: join(root, 'n2'), ip: '127.0.0.3', port, name: 'n2', join: token, labels: { role: 'db', zone: 'us' } }),
      startAgent({ dir: join(root, 'n3'), ip: '127.0.0.4', port, name: 'n3', join: token })
    ])
    assert.doesNotMatch(n2.stdout(), /Created a new cluster/)
    await waitForMembers(all(), 15_000)
  })

  test('`nodes --json` on every node shows 3 alive nodes with the required fields', async () => {
    for (const a of all()) {
      const nodes = await nodesJson(a.dir)
      assert.equal(nodes.length, 3, `${a.name} lists ${nodes.length} nodes`)
      assert.deepEqual(nodes.map((n) => n.name).sort(), ['n1', 'n2', 'n3'])
      for (const n of nodes) {
        assert.equal(n.status, 'alive', `${a.name} sees ${n.name} as ${n.status}`)
        assert.equal(typeof n.id, 'string')
        assert.match(n.id, /^12D3KooW/)
        assert.ok(Array.isArray(n.addrs) && n.addrs.length > 0, `${n.name} has no addrs`)
        for (const addr of n.addrs) assert.ok(addr.endsWith(`/p2p/${n.id}`), `${addr} does not end with /p2p/${n.id}`)
        assert.equal(typeof n.labels, 'object')
      }
      const self = nodes.filter((n) => n.self)
      assert.equal(self.length, 1)
      assert.equal(self[0].id, a.id)
      assert.equal(self[0].name, a.name)
      const byName = new Map(nodes.map((n) => [n.name, n]))
      assert.deepEqual(byName.get('n1')?.labels, { tier: 'front' })
      assert.deepEqual(byName.get('n2')?.labels, { role: 'db', zone: 'us' })
      assert.deepEqual(byName.get('n3')?.labels, {})
      assert.ok(byName.get('n1')!.addrs.some((x) => x.startsWith(`/ip4/127.0.0.2/tcp/${port}/`)))
    }
  })

  test('`nodes` (table) exits 0 and lists all three names', async () => {
    const r = await cli(['nodes'], { P2P_ORCH_DATA: n2.dir })
    assert.equal(r.code, 0, r.stderr)
    const lines = r.stdout.trim().split('\n')
    assert.match(lines[0], /^NAME\s+ID\s+ADDRESS\s+STATUS/)
    assert.equal(lines.length, 4, r.stdout)
    for (const name of ['n1', 'n2', 'n3']) assert.ok(lines.some((l) => new RegExp(`^${name}\\b.*\\balive\\b`).test(l)), `${name} missing in:\n${r.stdout}`)
    assert.ok(lines.some((l) => l.startsWith('n2 *')), 'the local node is marked with *')
  })

  describe('credentials and keys with roles', () => {
    const credentialsPath = (): string => join(testConfigHome(), 'p2p-orch', 'credentials.json')
    const keys: Record<string, string> = {}

    test('the creating agent put the admin credential in the user\'s credentials file (0600) and printed no private key', async () => {
      const info = await apiJson<InfoResponse>(n1.dir, '/info')
      assert.equal((await stat(credentialsPath())).mode & 0o777, 0o600)
      const file = JSON.parse(await readFile(credentialsPath(), 'utf8')) as { clusters: Record<string, { name: string, credential: string }> }
      const entry = file.clusters[info.clusterId]
      assert.ok(entry !== undefined, `no entry for ${info.clusterId} in ${JSON.stringify(Object.keys(file.clusters))}`)
      assert.equal(entry.name, 'founder')
      const seed = entry.credential.split('.')[3]
      assert.equal(decodeCredential(entry.credential).clusterId, info.clusterId)
      assert.ok(n1.stdout().includes(`is in ${credentialsPath()}`), `n1 did not say where the credential is:\n${n1.stdout()}`)
      for (const a of all()) {
        for (const text of [a.stdout(), a.stderr()]) {
          assert.ok(!text.includes(seed) && !text.includes('p2porchkey1') && !text.includes('PRIVATE KEY'), `${a.name}'s output holds a private key`)
        }
      }
      const t = decodeToken(token)
      assert.equal(t.credential, undefined, 'the default join token carries no credential')
      assert.equal(t.operatorKey, undefined, 'the default join token carries no operator key')
    })

    test('key create prints one credential line; key ls lists roles', async () => {
      for (const [name, role] of [['ops', 'deployer'], ['watcher', 'viewer'], ['second', 'admin']]) {
        const r = await cli(['--data', n2.dir, 'key', 'create', name, '--role', role, ...(name === 'watcher' ? ['--ttl', '30d'] : [])])
        assert.equal(r.code, 0, r.stderr)
        const lines = r.stdout.split('\n').filter((l) => l !== '')
        assert.equal(lines.length, 1, r.stdout)
        assert.match(lines[0], /^p2porchkey1\./)
        keys[name] = lines[0]
      }
      const ls = await waitFor(async () => {
        const r = await cli(['--data', n3.dir, 'key', 'ls', '--json'])
        const list = JSON.parse(r.stdout) as KeyView[]
        // (join-token's admitter keys are listed too)
        return list.filter((k) => k.role !== 'admitter').length === 4 ? list : undefined
      }, 5000, 'n3 to list the founder and 3 keys')
      const byName = new Map(ls.map((k) => [k.name, k]))
      assert.equal(byName.get('founder')?.role, 'admin')
      assert.equal(byName.get('ops')?.role, 'deployer')
      assert.equal(byName.get('watcher')?.role, 'viewer')
      assert.ok((byName.get('watcher')?.expiresAt ?? 0) > Date.now() + 29 * 86_400_000)
      const table = await cli(['--data', n1.dir, 'key', 'ls'])
      assert.match(table.stdout, /^NAME\s+ROLE/)
    })

    test('a viewer and a deployer may not change a node; a second admin may (P2P_ORCH_KEY, --key FILE)', async () => {
      const viewer = await cli(['--data', n1.dir, 'node', 'update', 'n3', '--label-add', 'who=viewer'], { P2P_ORCH_KEY: keys.watcher })
      assert.equal(viewer.code, 1)
      assertOneLineReason(viewer.stderr, /watcher \(viewer\) may not write nodecfg/)
      const file = join(root, 'ops.credential')
      await writeFile(file, keys.ops + '\n', { mode: 0o600 })
      const deployer = await cli(['--key', file, '--data', n3.dir, 'node', 'update', 'n3', '--label-add', 'who=deployer'])
      assert.equal(deployer.code, 1)
      assertOneLineReason(deployer.stderr, /ops \(deployer\) may not write nodecfg/)
      const second = await cli(['--data', n2.dir, 'node', 'update', 'n1', '--label-add', 'who=second'], { P2P_ORCH_KEY: keys.second })
      assert.equal(second.code, 0, second.stderr)
      await waitFor(async () => (await nodesApi(n3.dir)).find((n) => n.name === 'n1')?.labels.who === 'second', 5000, 'the second admin\'s label everywhere')
      for (const a of all()) assert.equal((await nodesApi(a.dir)).find((n) => n.name === 'n3')?.labels.who, undefined)
    })

    test('a revoked key is refused; no credential at all is a one-line reason', async () => {
      const r = await cli(['--data', n1.dir, 'key', 'revoke', 'second'])
      assert.equal(r.code, 0, r.stderr)
      await waitFor(async () => (await apiJson<KeyView[]>(n2.dir, '/keys')).find((k) => k.name === 'second')?.revoked === true, 5000, 'n2 to see the revocation')
      const after = await cli(['--data', n2.dir, 'node', 'update', 'n1', '--label-add', 'who=revoked'], { P2P_ORCH_KEY: keys.second })
      assert.equal(after.code, 1)
      assertOneLineReason(after.stderr, /second was revoked/)
      const none = await cli(['--data', n2.dir, 'node', 'update', 'n1', '--label-add', 'who=nobody'], { XDG_CONFIG_HOME: join(root, 'empty-config') })
      assert.equal(none.code, 1)
      assertOneLineReason(none.stderr, /no credential for cluster/)
    })

    test('join-token --with-admin-key carries the caller\'s credential, with a warning', async () => {
      const r = await cli(['--data', n1.dir, 'join-token', '--with-admin-key'])
      assert.equal(r.code, 0, r.stderr)
      assert.match(r.stderr, /warning: this token carries your credential/)
      const t = decodeToken(r.stdout.trim())
      assert.equal(decodeCredential(t.credential!).name, 'founder')
    })
  })

  describe('admitted nodes', () => {
    test('a token without a join key, or one made before `join-token --rotate`, makes no member; the new token does', async () => {
      const bare = (await apiJson<{ token: string }>(n1.dir, '/join-token')).token
      assert.equal(decodeToken(bare).admission, undefined, 'the control API hands out no join key')
      const rotated = await cli(['--data', n2.dir, 'join-token', '--rotate', '--ttl', '1h'])
      assert.equal(rotated.code, 0, rotated.stderr)
      assert.match(rotated.stderr, /revoked \d+ earlier join key\(s\)/)
      const [intruder, stale, fresh] = await Promise.all([
        startAgent({ dir: join(root, 'intruder'), ip: '127.0.0.82', port, name: 'intruder', join: bare }),
        startAgent({ dir: join(root, 'stale'), ip: '127.0.0.83', port, name: 'stale', join: token }),
        startAgent({ dir: join(root, 'fresh'), ip: '127.0.0.84', port, name: 'fresh', join: rotated.stdout.trim() })
      ])
      try {
        await waitFor(async () => (await nodesApi(n3.dir)).some((n) => n.name === 'fresh' && n.status === 'alive'), 10_000, 'fresh to be a member')
        // past the local profile's admission grace (3 s)
        await sleep(4_500)
        for (const a of all()) {
          const names = (await nodesApi(a.dir)).map((n) => n.name)
          assert.ok(!names.includes('intruder') && !names.includes('stale'), `${a.name} lists ${names.join(', ')}`)
        }
        assert.match(intruder.stdout(), /not admitted/)
        const refused = (await Promise.all(all().map(async (a) => (await metrics(a.dir)).peers_refused_total ?? 0))).reduce((x, y) => x + y, 0)
        assert.ok(refused >= 2, `members disconnected ${refused} peers that are not admitted`)
        // `node rm` revokes an admission: the node is refused when it comes back
        await kill(fresh, 'SIGTERM', { wait: true })
        const rm = await cli(['--data', n1.dir, 'node', 'rm', 'fresh'])
        assert.equal(rm.code, 0, rm.stderr)
        assert.match(rm.stderr, /join-token --rotate/)
        await waitFor(async () => !(await nodesApi(n3.dir)).some((n) => n.name === 'fresh'), 5_000, 'fresh to be gone from n3')
        const back = await startAgent({ dir: join(root, 'fresh'), ip: '127.0.0.84', port, name: 'fresh' })
        await sleep(4_500)
        for (const a of all()) assert.ok(!(await nodesApi(a.dir)).some((n) => n.name === 'fresh'), `${a.name} lists the removed node again`)
        await kill(back, 'SIGKILL', { wait: true })
      } finally {
        for (const a of [intruder, stale, fresh]) await kill(a, 'SIGKILL', { wait: true })
      }
    })
  })

  describe('errors a user can make', () => {
    test('a tampered join token: the agent exits non-zero with a one-line reason', async () => {
      const body = token.split('.')[1]
      const i = Math.floor(body.length / 2)
      const tampered = `p2porch1.${body.slice(0, i)}${body[i] === 'A' ? 'B' : 'A'}${body.slice(i + 1)}.${token.split('.')[2]}`
      assert.notEqual(tampered, token)
      const dir = join(root, 'tampered')
      const a = await spawnAgent({ dir, ip: '127.0.0.9', name: 'bad', join: tampered })
      const exit = await a.exited
      assert.notEqual(exit.code, 0)
      assert.equal(exit.signal, null)
      assertOneLineReason(a.stderr(), /token/i)
      await assert.rejects(readFile(join(dir, 'node.key')), 'no identity is created from a bad token')
    })

    test('another cluster\'s token: the agent cannot connect, says the network key is wrong, and the cluster is undisturbed', async () => {
      const other = await startAgent({ dir: join(root, 'other'), ip: '127.0.0.10', port, name: 'other' })
      const otherToken = (await cli(['--data', other.dir, 'join-token'])).stdout.trim()
      await kill(other, 'SIGTERM', { wait: true })
      // its token's seed is gone; give it one of ours: reachable, but with another network key
      const seed = `/ip4/127.0.0.2/tcp/${port}/p2p/${n1.id}`
      const stray = await spawnAgent({ dir: join(root, 'stray'), ip: '127.0.0.11', port, name: 'stray', join: otherToken, extraArgs: ['--seed', seed] })
      try {
        await waitFor(() => /answered but dropped the private-network handshake: this node's network key/.test(stray.stdout()), 30_000, 'the stray agent to name the network key')
          .catch((err: Error) => { throw new Error(`${err.message}; its warnings:\n${stray.stdout().split('\n').filter((l) => l.includes('"level":40')).join('\n')}`) })
        assert.match(stray.stdout(), /127\.0\.0\.2/)
        const nodes = await nodesJson(n1.dir)
        assert.deepEqual(nodes.map((n) => n.name).sort(), ['n1', 'n2', 'n3'])
        assert.ok(nodes.every((n) => n.status === 'alive'))
      } finally {
        await kill(stray, 'SIGKILL', { wait: true })
      }
    })

    test('`nodes` against a data dir with no agent: non-zero, one-line reason', async () => {
      const dir = join(root, 'empty')
      await mkdir(dir)
      const r = await cli(['--data', dir, 'nodes'])
      assert.notEqual(r.code, 0)
      assert.equal(r.stdout, '')
      assertOneLineReason(r.stderr, /agent/i)
    })

    test('a second agent on the same data dir: non-zero, one line saying it is in use', async () => {
      const a = await spawnAgent({ dir: n1.dir, ip: '127.0.0.10', name: 'n1-again' })
      const exit = await a.exited
      assert.notEqual(exit.code, 0)
      assertOneLineReason(a.stderr(), /in use/)
      // the running agent is unharmed
      assert.equal(n1.exit, null)
      assert.equal((await nodesApi(n1.dir)).length, 3)
    })

    test('a listen address already in use: non-zero, one-line reason', async () => {
      const a = await spawnAgent({ dir: join(root, 'busy'), ip: '127.0.0.2', port, name: 'busy', join: token })
      const exit = await a.exited
      assert.notEqual(exit.code, 0)
      assertOneLineReason(a.stderr(), /in use/)
    })

    test('a corrupt node.key: non-zero, one-line reason, no new identity', async () => {
      const dir = join(root, 'corrupt')
      await mkdir(dir)
      const garbage = Buffer.from('this is not a protobuf private key\n')
      await writeFile(join(dir, 'node.key'), garbage, { mode: 0o600 })
      const a = await spawnAgent({ dir, ip: '127.0.0.11', name: 'corrupt', join: token })
      const exit = await a.exited
      assert.notEqual(exit.code, 0)
      assertOneLineReason(a.stderr(), /node\.key is corrupt/)
      assert.deepEqual(await readFile(join(dir, 'node.key')), garbage, 'node.key must be left as it was')
    })

    test('`node rm` of an alive node is refused with a one-line reason', async () => {
      const r = await cli(['--data', n1.dir, 'node', 'rm', 'n2'])
      assert.notEqual(r.code, 0)
      assertOneLineReason(r.stderr, /alive/)
    })
  })

  test('SIGKILL: the others mark the node dead, and it stays listed as dead', async () => {
    const since = Date.now()
    await kill(n3, 'SIGKILL')
    const ms = await timeUntilStatus([n1, n2], n3.id, 'dead', since, 10_000)
    process.stdout.write(`# local profile: killed node seen dead by all after ${ms} ms\n`)
    assert.ok(ms <= 3000, `detection took ${ms} ms`)
    await new Promise((resolve) => setTimeout(resolve, 1500))
    for (const a of [n1, n2]) {
      const n = (await nodesApi(a.dir)).find((x) => x.id === n3.id)
      assert.equal(n?.status, 'dead', `${a.name} sees n3 as ${n?.status}`)
    }
  })

  test('a write made while a node is down reaches it after restart (same id, alive again)', async () => {
    const r = await cli(['--data', n2.dir, 'node', 'update', 'n3', '--label-add', 'zone=eu'])
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout.trim(), 'updated n3')
    await waitFor(async () => (await nodesApi(n1.dir)).find((n) => n.name === 'n3')?.labels.zone === 'eu', 5000, 'n1 to see zone=eu on n3')

    const oldId = n3.id
    n3 = await restartAgent(n3)
    assert.equal(n3.id, oldId, 'restarted from the same data dir: same id')
    await waitForMembers(all(), 10_000)
    const self = await waitFor(async () => (await nodesApi(n3.dir)).find((n) => n.self && n.labels.zone === 'eu'), 10_000, 'n3 to catch up on zone=eu')
    assert.equal(self.id, oldId)
    const viaCli = (await nodesJson(n3.dir)).find((n) => n.name === 'n3')
    assert.equal(viaCli?.status, 'alive')
    assert.equal(viaCli?.labels.zone, 'eu')
  })

  test('SIGTERM: the others see \'left\' promptly; `node rm` then removes it', async () => {
    const since = Date.now()
    await kill(n2, 'SIGTERM', { wait: false })
    const ms = await timeUntilStatus([n1, n3], n2.id, 'left', since, 5000)
    const exit = await n2.exited
    assert.equal(exit.code, 0, 'a stopped agent exits 0')
    process.stdout.write(`# SIGTERM: left seen by all ${ms} ms after the signal\n`)
    assert.ok(ms <= 2000, `'left' took ${ms} ms`)

    const r = await cli(['--data', n1.dir, 'node', 'rm', 'n2'])
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout.trim(), 'removed n2')
    for (const a of [n1, n3]) {
      await waitFor(async () => !(await nodesApi(a.dir)).some((n) => n.name === 'n2'), 5000, `n2 to disappear from ${a.name}'s list`)
    }
    const listed = await nodesJson(n3.dir)
    assert.deepEqual(listed.map((n) => n.name), ['n1', 'n3'])
  })
})

describe('failure detection with the lan profile', { timeout: 60_000 }, () => {
  let agents: Agent[] = []

  after(async () => {
    await stopAll()
    await removeTempDirs()
  })

  test('a SIGKILLed node is declared dead by the others within ~3 s', async () => {
    const root = await tempDir('p2p-orch-e2e-lan-')
    ;({ agents } = await startCluster({ root, size: 3, firstOctet: 5, profile: 'lan', namePrefix: 'lan' }))
    await waitForMembers(agents, 15_000)
    // let the cluster settle past start-up (first probes, anti-entropy) before the crash
    await new Promise((resolve) => setTimeout(resolve, 1500))
    const [a, b, victim] = agents
    const since = Date.now()
    await kill(victim, 'SIGKILL')
    const ms = await timeUntilStatus([a, b], victim.id, 'dead', since, 10_000)
    process.stdout.write(`# lan profile: killed node seen dead by all after ${ms} ms\n`)
    assert.ok(ms <= 3300, `detection took ${ms} ms (goal ≤ 3 s)`)
  })

  test('a paused node (SIGSTOP) is declared dead, and refutes it when it resumes', async () => {
    const root = await tempDir('p2p-orch-e2e-pause-')
    const { agents: paused } = await startCluster({ root, size: 3, firstOctet: 8, profile: 'lan', namePrefix: 'pz' })
    await waitForMembers(paused, 15_000)
    const [a, b, victim] = paused
    const since = Date.now()
    // a paused process keeps its TCP connections open: only probes can tell
    process.kill(victim.pid, 'SIGSTOP')
    try {
      const ms = await timeUntilStatus([a, b], victim.id, 'dead', since, 15_000)
      process.stdout.write(`# lan profile: paused node seen dead by all after ${ms} ms\n`)
    } finally {
      process.kill(victim.pid, 'SIGCONT')
    }
    await waitForMembers(paused, 15_000)
    const views = await Promise.all(paused.map(async (x) => await nodesApi(x.dir)))
    for (const v of views) assert.ok((v.find((n) => n.id === victim.id)?.incarnation ?? 0) > 1, 'it came back with a higher incarnation')
  })
})
