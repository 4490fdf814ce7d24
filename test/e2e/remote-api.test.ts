/**
 * End to end: the control API over TCP as a remote user meets it — a real agent with
 * `--api-listen` on 127.0.0.72 (no Docker needed: --no-runtime), and the CLI as a separate
 * process with `--api https://…` and P2P_ORCH_API_TOKEN. The token printed by `api-token` works;
 * a wrong pin, a wrong token, an http:// URL and `api-token` over TCP each fail with one line;
 * `api-token --rotate` makes the old token useless at once; a restart keeps the token; the agent's
 * output never holds the secret.
 */
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import type { NodeView } from '../../node/api/types.ts'
import { type Agent, cli, freePort, kill, removeTempDirs, restartAgent, startAgent, stopAll, tempDir } from '../helpers/agents.ts'

const IP = '127.0.0.72'

/** One line, no stack trace: what a user should see when something they can fix goes wrong. */
function assertOneLineReason (stderr: string, mustMatch: RegExp): void {
  const lines = stderr.trim().split('\n').filter((l) => l.trim() !== '')
  assert.equal(lines.length, 1, `expected one line on stderr, got:\n${stderr}`)
  assert.doesNotMatch(stderr, /^\s+at /m, 'stderr must not hold a stack trace')
  assert.match(lines[0], mustMatch)
}

describe('control API over HTTPS from a remote CLI', { timeout: 60_000 }, () => {
  let agent: Agent
  let url = ''
  let token = ''

  before(async () => {
    const root = await tempDir('p2p-orch-e2e-api-')
    const port = await freePort([IP])
    const apiPort = await freePort([IP], port + 1)
    url = `https://${IP}:${apiPort}`
    agent = await startAgent({ dir: join(root, 'n1'), ip: IP, port, name: 'api1', extraArgs: ['--api-listen', `${IP}:${apiPort}`] })
  })

  after(async () => {
    await stopAll()
    await removeTempDirs()
  })

  const remote = async (args: string[], tok: string): Promise<Awaited<ReturnType<typeof cli>>> => await cli(['--api', url, ...args], { P2P_ORCH_API_TOKEN: tok })

  test('`api-token` prints the content of api.token; with it, --api https:// works', async () => {
    const r = await cli(['--data', agent.dir, 'api-token'])
    assert.equal(r.code, 0, r.stderr)
    token = r.stdout.trim()
    assert.equal(token, (await readFile(join(agent.dir, 'api.token'), 'utf8')).trim())
    assert.match(token, /^p2porchapi1\.[A-Za-z0-9_-]+\.[0-9a-f]{64}$/)
    assert.match(r.stderr, new RegExp(`--api ${url.replace(/\./g, '\\.')}`))
    const nodes = await remote(['nodes', '--json'], token)
    assert.equal(nodes.code, 0, nodes.stderr)
    assert.equal((JSON.parse(nodes.stdout) as NodeView[])[0].name, 'api1')
    // the start line says how to connect, with the pin, but not the secret
    assert.match(agent.stdout(), new RegExp(`control API on ${url.replace(/\./g, '\\.')}.*${token.split('.')[2]}`))
    assert.ok(!agent.stdout().includes(token.split('.')[1]) && !agent.stderr().includes(token.split('.')[1]), 'the secret is not in the agent\'s output')
  })

  test('a wrong pin, a wrong token, a missing or malformed token, http:// — one line each, exit 1', async () => {
    const [prefix, secret, pin] = token.split('.')
    const wrongPin = `${prefix}.${secret}.${pin[0] === '0' ? '1' : '0'}${pin.slice(1)}`
    let r = await remote(['nodes'], wrongPin)
    assert.equal(r.code, 1)
    assertOneLineReason(r.stderr, /^error: the TLS certificate of https:\/\/.* does not match the pin in P2P_ORCH_API_TOKEN/)
    r = await remote(['nodes'], `${prefix}.${'x'.repeat(secret.length)}.${pin}`)
    assert.equal(r.code, 1)
    assertOneLineReason(r.stderr, /^error: missing or wrong API token/)
    r = await remote(['nodes'], '')
    assert.equal(r.code, 1)
    assertOneLineReason(r.stderr, /needs P2P_ORCH_API_TOKEN/)
    r = await remote(['nodes'], secret)
    assert.equal(r.code, 1)
    assertOneLineReason(r.stderr, /is not a p2p-orch API token/)
    r = await cli(['--api', url.replace('https://', 'http://'), 'nodes'], { P2P_ORCH_API_TOKEN: token })
    assert.equal(r.code, 1)
    assertOneLineReason(r.stderr, /HTTPS only; use --api https:\/\//)
  })

  test('`api-token` is refused over TCP', async () => {
    const r = await remote(['api-token', '--rotate'], token)
    assert.equal(r.code, 1)
    assertOneLineReason(r.stderr, /only on the node's own machine/)
  })

  test('`api-token --rotate`: the old token is refused at once, the new one works, and it survives a restart', async () => {
    const r = await cli(['--data', agent.dir, 'api-token', '--rotate'])
    assert.equal(r.code, 0, r.stderr)
    const fresh = r.stdout.trim()
    assert.notEqual(fresh, token)
    assert.equal(fresh.split('.')[2], token.split('.')[2], 'same certificate, same pin')
    const old = await remote(['nodes'], token)
    assert.equal(old.code, 1)
    assertOneLineReason(old.stderr, /wrong API token/)
    assert.equal((await remote(['nodes'], fresh)).code, 0)

    await kill(agent)
    agent = await restartAgent(agent)
    const again = await remote(['nodes', '--json'], fresh)
    assert.equal(again.code, 0, again.stderr)
    assert.equal((await cli(['--data', agent.dir, 'api-token'])).stdout.trim(), fresh)
  })
})
