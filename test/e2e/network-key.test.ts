/**
 * End to end: rotating the cluster's network key (the libp2p pnet pre-shared key) without
 * downtime — `network-key install`, `use`, `rm` — on four control-plane-only agents
 * (127.0.0.102–105, no Docker needed: --no-runtime), all through the CLI as a user runs it.
 *
 * While the key rotates, a steady write load (`key create load-<i>` against the agents in turn,
 * one after another) keeps running and a monitor polls every agent's node list every ~200 ms:
 * no acknowledged write may be lost and no agent may ever see another as anything but alive.
 * Afterwards a node holding a join token from before the rotation (127.0.0.106) cannot join,
 * and one with a fresh token (127.0.0.107) can. Bad input gets a one-line reason.
 */
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, afterEach, before, describe, test } from 'node:test'
import type { KeyView, NetworkKeyView } from '../../node/api/types.ts'
import { networkKeyId } from '../../node/network-keyring.ts'
import { decodeToken } from '../../protocol/token.ts'
import {
  type Agent, cli, freePort, kill, nodesApi, removeTempDirs, sleep, spawnAgent, startAgent, startCluster, stopAll, tail, tempDir,
  waitFor, waitForMembers
} from '../helpers/agents.ts'

const FIRST_OCTET = 102
const SIZE = 4
const STALE_IP = '127.0.0.106'
const FRESH_IP = '127.0.0.107'
/** Pause between the steps of the rotation, so writes flow during every phase. */
const PHASE_PAUSE_MS = 1500
/** How long the CLI's waiting commands (install, use) may take. */
const ROTATION_CLI_TIMEOUT_MS = 30_000

/** One row of `network-key ls --json`. */
type NetworkKeyRow = NetworkKeyView

/** One line, no stack trace: what a user should see when something they can fix goes wrong. */
function assertOneLineReason (stderr: string, mustMatch: RegExp): void {
  const lines = stderr.trim().split('\n').filter((l) => l.trim() !== '')
  assert.equal(lines.length, 1, `expected one line on stderr, got:\n${stderr}`)
  assert.doesNotMatch(stderr, /^\s+at /m, 'stderr must not hold a stack trace')
  assert.match(lines[0], mustMatch)
}

/** `network-key ls --json` on agent `a`, parsed; throws with the CLI's stderr if it fails. */
async function networkKeys (a: Agent): Promise<NetworkKeyRow[]> {
  const r = await cli(['--data', a.dir, 'network-key', 'ls', '--json'])
  if (r.code !== 0) throw new Error(`network-key ls --json on ${a.name} exited ${r.code}: ${r.stderr.trim()}`)
  return JSON.parse(r.stdout) as NetworkKeyRow[]
}

/** `key ls --json` on agent `a`: the key names it knows. */
async function keyNames (a: Agent): Promise<Set<string>> {
  const r = await cli(['--data', a.dir, 'key', 'ls', '--json'])
  if (r.code !== 0) throw new Error(`key ls --json on ${a.name} exited ${r.code}: ${r.stderr.trim()}`)
  return new Set((JSON.parse(r.stdout) as KeyView[]).map((k) => k.name))
}

const sorted = (xs: string[]): string[] => [...xs].sort()

/**
 * A steady write load: `key create load-<i> --role viewer` through the CLI against `agents`
 * round-robin, one command after another, until stopped. `acked` holds every name whose command
 * exited 0; `failed` the others, with what the CLI said.
 */
function startWriteLoad (agents: Agent[]): { acked: string[], failed: string[], stop: () => Promise<void> } {
  const acked: string[] = []
  const failed: string[] = []
  let stopping = false
  const loop = (async () => {
    for (let i = 0; !stopping; i++) {
      const a = agents[i % agents.length]
      const name = `load-${i}`
      const r = await cli(['--data', a.dir, 'key', 'create', name, '--role', 'viewer'], {}, 20_000)
      if (r.code === 0) acked.push(name)
      else failed.push(`${name} on ${a.name}: exit ${r.code}: ${r.stderr.trim()}`)
    }
  })()
  return { acked, failed, stop: async () => { stopping = true; await loop } }
}

/**
 * Poll every agent's node list every ~intervalMs until stopped; `incidents` records every time an
 * agent saw another of `agents` as not alive (or not at all), `errors` control-API failures.
 */
function startLivenessMonitor (agents: Agent[], intervalMs = 200): { incidents: string[], errors: string[], polls: () => number, stop: () => Promise<void> } {
  const incidents: string[] = []
  const errors: string[] = []
  const start = Date.now()
  let polls = 0
  let stopping = false
  const loop = (async () => {
    while (!stopping) {
      const t0 = Date.now()
      await Promise.all(agents.map(async (a) => {
        try {
          const view = await nodesApi(a.dir)
          for (const b of agents) {
            if (b === a) continue
            const n = view.find((x) => x.id === b.id)
            if (n?.status !== 'alive') incidents.push(`+${Date.now() - start} ms: ${a.name} sees ${b.name} as ${n?.status ?? 'missing'}`)
          }
        } catch (err) {
          errors.push(`+${Date.now() - start} ms: ${a.name}: ${(err as Error).message}`)
        }
      }))
      polls++
      await sleep(Math.max(0, intervalMs - (Date.now() - t0)))
    }
  })()
  return { incidents, errors, polls: () => polls, stop: async () => { stopping = true; await loop } }
}

describe('network key rotation without downtime', { timeout: 90_000 }, () => {
  let root: string
  let agents: Agent[] = []
  let names: string[] = []
  /** a join token made before the rotation (carries the old network key) */
  let oldToken: string
  let oldId = ''
  let newId = ''
  const extra: Agent[] = []

  before(async () => {
    root = await tempDir('p2p-orch-e2e-netkey-')
    ;({ agents } = await startCluster({ root, size: SIZE, firstOctet: FIRST_OCTET }))
    names = agents.map((a) => a.name)
    await waitForMembers(agents, 20_000)
    const t = await cli(['--data', agents[0].dir, 'join-token'])
    assert.equal(t.code, 0, t.stderr)
    oldToken = t.stdout.trim()
  })

  after(async () => {
    await stopAll()
    await removeTempDirs()
  })

  afterEach((t) => {
    // TestContext.passed (Node ≥ 21.7) is not in every @types/node release yet
    if ((t as { passed?: boolean }).passed !== false) return
    for (const a of [...agents, ...extra]) {
      process.stderr.write(`--- ${a.name} (pid ${a.pid}, exit ${JSON.stringify(a.exit)}) log tail:\n${tail(a.stdout(), 15)}\nstderr: ${a.stderr()}\n`)
    }
  })

  test('rotate the network key under a steady write load: no write lost, no node cut off', { timeout: 60_000 }, async (t) => {
    const initial = await networkKeys(agents[0])
    const inUse = initial.filter((k) => k.state === 'in use')
    assert.equal(inUse.length, 1, `exactly one key in use before the rotation: ${JSON.stringify(initial)}`)
    oldId = inUse[0].id
    assert.match(oldId, /^[0-9a-f]{16}$/)
    assert.deepEqual(sorted(inUse[0].dialling), sorted(names), 'every node dials with the initial key')
    assert.equal(networkKeyId(decodeToken(oldToken).networkKey), oldId, 'the join token made before the rotation carries the key in use')

    const took: string[] = []
    const timed = async (what: string, args: string[]): Promise<Awaited<ReturnType<typeof cli>>> => {
      const t0 = Date.now()
      const r = await cli(args, {}, ROTATION_CLI_TIMEOUT_MS)
      took.push(`${what} ${Date.now() - t0} ms`)
      return r
    }
    const monitor = startLivenessMonitor(agents)
    const load = startWriteLoad(agents)
    let stopped = false
    const stopBackground = async (): Promise<void> => {
      if (stopped) return
      stopped = true
      await Promise.all([load.stop(), monitor.stop()])
    }
    try {
      await sleep(PHASE_PAUSE_MS)

      // install: a new key, accepted everywhere, dialled with nowhere yet
      const install = await timed('install', ['--data', agents[1].dir, 'network-key', 'install'])
      assert.equal(install.code, 0, `network-key install exited ${install.code}: ${install.stderr}`)
      const out = install.stdout.split('\n').filter((l) => l !== '')
      assert.equal(out.length, 1, `install printed more than the id:\n${install.stdout}`)
      assert.match(out[0], /^[0-9a-f]{16}$/)
      newId = out[0]
      assert.notEqual(newId, oldId)
      const installed = (await networkKeys(agents[1])).find((k) => k.id === newId)
      assert.ok(installed !== undefined, `network-key ls on ${agents[1].name} does not list ${newId}`)
      assert.equal(installed.state, 'installed')
      assert.deepEqual(sorted(installed.installedOn), sorted(names), 'install returned before every node had the key')
      assert.equal(installed.alive, SIZE)
      assert.deepEqual(installed.dialling, [], 'nobody dials with a key only installed')
      for (const a of agents) {
        await waitFor(async () => {
          const k = (await networkKeys(a)).find((x) => x.id === newId)
          return k !== undefined && k.state === 'installed' && sorted(k.installedOn).join() === sorted(names).join() ? k : undefined
        }, 5000, `${a.name} to list ${newId} as installed on all ${SIZE}`, 200)
      }
      await sleep(PHASE_PAUSE_MS)

      // use: every node dials with the new key
      const use = await timed('use', ['--data', agents[2].dir, 'network-key', 'use', newId])
      assert.equal(use.code, 0, `network-key use exited ${use.code}: ${use.stderr}`)
      const afterUse = await networkKeys(agents[2])
      const used = afterUse.find((k) => k.id === newId)
      assert.ok(used !== undefined, `network-key ls on ${agents[2].name} does not list ${newId}`)
      assert.equal(used.state, 'in use', JSON.stringify(afterUse))
      assert.deepEqual(sorted(used.dialling), sorted(names), 'use returned before every node dialled with the key')
      assert.equal(afterUse.find((k) => k.id === oldId)?.state, 'installed', `the old key is still accepted until rm: ${JSON.stringify(afterUse)}`)
      await sleep(PHASE_PAUSE_MS)

      // rm: nobody accepts the old key any more
      const rm = await timed('rm', ['--data', agents[3].dir, 'network-key', 'rm', oldId])
      assert.equal(rm.code, 0, `network-key rm exited ${rm.code}: ${rm.stderr}`)
      await sleep(PHASE_PAUSE_MS)
    } finally {
      await stopBackground()
    }

    t.diagnostic(`${load.acked.length} writes acknowledged, ${load.failed.length} refused; ${monitor.polls()} monitor rounds; ${took.join(', ')}`)
    for (const f of load.failed) t.diagnostic(`write not acknowledged: ${f}`)
    for (const e of monitor.errors) t.diagnostic(`monitor: ${e}`)

    assert.deepEqual(monitor.incidents, [], 'an agent saw another as not alive during the rotation')
    assert.ok(monitor.polls() >= 10, `the monitor polled only ${monitor.polls()} times`)
    for (const a of agents) assert.equal(a.exit, null, `${a.name} exited: ${JSON.stringify(a.exit)}; stderr: ${a.stderr()}`)
    assert.ok(load.acked.length >= 10, `only ${load.acked.length} writes were acknowledged (refused: ${load.failed.join('; ')})`)

    // no acknowledged write lost: every node holds every one
    for (const a of agents) {
      await waitFor(async () => {
        const have = await keyNames(a)
        const missing = load.acked.filter((n) => !have.has(n))
        if (missing.length > 0) throw new Error(`${a.name} misses ${missing.length}: ${missing.slice(0, 10).join(', ')}`)
        return true
      }, 10_000, `${a.name} to hold all ${load.acked.length} acknowledged keys`, 500)
    }

    // the old key is gone everywhere and no connection uses it; the new one is what everyone dials with
    for (const a of agents) {
      const rows = await waitFor(async () => {
        const ks = await networkKeys(a)
        const o = ks.find((k) => k.id === oldId)
        const n = ks.find((k) => k.id === newId)
        return o?.state === 'removed' && o.connections === 0 && n?.state === 'in use' && sorted(n.dialling).join() === sorted(names).join() ? ks : undefined
      }, 10_000, `${a.name} to list ${oldId} removed with 0 connections and ${newId} in use by all`, 250)
      const o = rows.find((k) => k.id === oldId)!
      const n = rows.find((k) => k.id === newId)!
      assert.equal(o.state, 'removed')
      assert.equal(o.connections, 0)
      assert.equal(n.state, 'in use')
      assert.deepEqual(sorted(n.dialling), sorted(names))
      assert.deepEqual(sorted(n.installedOn), sorted(names))
      assert.equal(n.alive, SIZE)
      assert.ok(n.connections > 0, `${a.name} has no connection made with the new key`)
    }
  })

  test('a node with the old token cannot join; one with a new token can', { timeout: 45_000 }, async () => {
    assert.ok(newId !== '' && oldId !== '', 'the rotation test must have run')
    const port = agents[0].port
    const extraPort = await freePort([STALE_IP, FRESH_IP], port)

    // the old token: its network key is no longer accepted anywhere
    const stale = await spawnAgent({ dir: join(root, 'stale'), ip: STALE_IP, port: extraPort, name: 'stale', join: oldToken })
    extra.push(stale)
    try {
      const deadline = Date.now() + 8000
      while (Date.now() < deadline) {
        for (const a of agents) {
          const n = (await nodesApi(a.dir)).find((x) => x.name === 'stale')
          assert.ok(n?.status !== 'alive', `${a.name} lists the node with the old token as alive`)
        }
        await sleep(200)
      }
      // refused for the right reason (not, say, a seed that is down), and it says so
      assert.match(stale.stdout() + stale.stderr(), /network key/, `the stale agent never named the network key; log tail:\n${tail(stale.stdout(), 5)}\nstderr: ${stale.stderr()}`)
      // it may keep retrying or give up with an error: both are fine, a crash by signal is not
      assert.equal(stale.exit?.signal ?? null, null, `the stale agent died by a signal: ${JSON.stringify(stale.exit)}; stderr: ${stale.stderr()}`)
    } finally {
      await kill(stale, 'SIGKILL')
    }

    // a token made after `use` carries the new key, and works
    const t = await cli(['--data', agents[1].dir, 'join-token'])
    assert.equal(t.code, 0, t.stderr)
    const freshToken = t.stdout.trim()
    assert.equal(networkKeyId(decodeToken(freshToken).networkKey), newId, 'a join token made after `use` carries the new key')
    const fresh = await startAgent({ dir: join(root, 'fresh'), ip: FRESH_IP, port: extraPort, name: 'fresh', join: freshToken })
    extra.push(fresh)
    await waitForMembers([...agents, fresh], 20_000)
  })

  test('bad input gets one line', async () => {
    const unknown = await cli(['--data', agents[0].dir, 'network-key', 'use', '0000000000000000'])
    assert.equal(unknown.code, 1, `use of an unknown key exited ${unknown.code}: ${unknown.stderr}`)
    assertOneLineReason(unknown.stderr, /not installed|unknown|no network key/i)
    const inUse = await cli(['--data', agents[1].dir, 'network-key', 'rm', newId])
    assert.equal(inUse.code, 1, `rm of the key in use exited ${inUse.code}: ${inUse.stderr}`)
    assertOneLineReason(inUse.stderr, /in use/i)
    // nothing changed
    const rows = await networkKeys(agents[2])
    assert.equal(rows.find((k) => k.id === newId)?.state, 'in use', JSON.stringify(rows))
  })
})
