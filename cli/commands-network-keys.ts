/**
 * Network key rotation: `network-key install` (a new key; waits until every alive node accepts
 * it), `network-key use ID` (every node dials with it; waits), `network-key rm ID` (no node accepts
 * it any more), `network-key ls`. The key is made here and handed to the node the CLI talks to,
 * which seals it to the others (node/network-keys.ts); its id is the first 16 hex digits of its
 * SHA-256.
 */
import { createHash, randomBytes } from 'node:crypto'
import type { Command } from 'commander'
import type { ApiClient } from '../node/api/client.ts'
import type { InstallNetworkKeyRequest, NetworkKeyView, Signable } from '../node/api/types.ts'
import { NETWORK_KEY_BYTES } from '../protocol/token.ts'
import { clientFor, type GlobalOptions } from './context.ts'
import { CliUserError } from './errors.ts'
import { table } from './format.ts'

/** How long install and use wait for every alive node: a node gets the key within seconds (stagger included). */
const ROTATION_WAIT_MS = 60_000
/** Poll period while waiting: each poll is one cheap read. */
const ROTATION_POLL_MS = 200

/** Wait until `done(view)` holds for key `id`, showing "installed on 3/5" as it goes. */
async function waitFor (client: ApiClient, id: string, what: string, count: (v: NetworkKeyView) => string[]): Promise<void> {
  const start = Date.now()
  let last = ''
  for (;;) {
    const v = (await client.call<NetworkKeyView[]>('GET', '/network-keys')).find((x) => x.id === id)
    const n = v === undefined ? [] : count(v)
    const line = `${what} on ${n.length}/${v?.alive ?? '?'} nodes`
    if (line !== last) { process.stderr.write(line + '\n'); last = line }
    if (v !== undefined && n.length >= v.alive) return
    if (Date.now() - start > ROTATION_WAIT_MS) {
      throw new CliUserError(`network key ${id}: ${line} after ${ROTATION_WAIT_MS / 1000} s; see \`p2p-orch network-key ls\` for the nodes missing`)
    }
    await new Promise((resolve) => setTimeout(resolve, ROTATION_POLL_MS))
  }
}

export function registerNetworkKeyCommands (program: Command, g: () => GlobalOptions): void {
  const cmd = program.command('network-key').description('rotate the private-network key without downtime: install, use, rm (admin)')

  cmd.command('install')
    .description('make a new network key and have every node accept it (prints its id)')
    .option('-d, --detach', 'do not wait until every alive node has it')
    .action(async (o) => {
      const { write } = await import('./credentials.ts')
      const client = clientFor(g())
      const k = new Uint8Array(randomBytes(NETWORK_KEY_BYTES))
      const fingerprint = createHash('sha256').update(k).digest('hex')
      const r = await write<{ id: string } & Signable>(client, g(), 'POST', '/network-keys', { fingerprint } satisfies InstallNetworkKeyRequest)
      await client.call('POST', `/network-keys/${r.id}/key`, { key: Buffer.from(k).toString('base64') })
      k.fill(0)
      if (o.detach !== true) await waitFor(client, r.id, 'installed', (v) => v.installedOn)
      console.log(r.id)
    })

  cmd.command('use <id>')
    .description('dial with this key from now on, on every node (it must be installed everywhere)')
    .option('--force', 'even if some alive nodes have not installed it (they are cut off)')
    .action(async (id: string, o) => {
      const { write } = await import('./credentials.ts')
      const client = clientFor(g())
      await write(client, g(), 'POST', `/network-keys/${encodeURIComponent(id)}/use`, { force: o.force === true })
      await waitFor(client, id, 'dialling with it', (v) => v.dialling)
      console.log(`using ${id}`)
    })

  cmd.command('rm <id>')
    .description('stop accepting a key no node dials with any more')
    .action(async (id: string) => {
      const { write } = await import('./credentials.ts')
      await write(clientFor(g()), g(), 'DELETE', `/network-keys/${encodeURIComponent(id)}`)
      console.log(`removed ${id}`)
    })

  cmd.command('ls')
    .description('list network keys: which nodes accept and dial with each')
    .action(async () => {
      const list = await clientFor(g()).call<NetworkKeyView[]>('GET', '/network-keys')
      if (g().json === true) { console.log(JSON.stringify(list, null, 2)); return }
      console.log(table(['ID', 'STATE', 'ACCEPTED BY', 'DIALLED BY', 'CONNECTIONS HERE'], list.map((v) => [
        v.id, v.state, `${v.installedOn.length}/${v.alive}`, `${v.dialling.length}/${v.alive}`, String(v.connections)
      ])))
    })
}
