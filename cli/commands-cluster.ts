/**
 * Cluster commands: agent, join-token, api-token, nodes, node rm / update.
 */
import { resolve } from 'node:path'
import type { Command } from 'commander'
import type { ApiTokenResponse, InfoResponse, JoinTokenResponse, MintJoinKeyRequest, MintJoinKeyResponse, NodeView } from '../node/api/types.ts'
import { clientFor, dataDirOf, isRemote, type GlobalOptions } from './context.ts'
import { CliUserError } from './errors.ts'
import { age, labels, shortId, table } from './format.ts'

const collect = (v: string, prev: string[]): string[] => [...prev, v]

export function parseLabels (list: string[]): Record<string, string> {
  const out: Record<string, string> = {}
  for (const l of list) {
    const eq = l.indexOf('=')
    if (eq <= 0) throw new CliUserError(`label "${l}" must be KEY=VALUE`)
    out[l.slice(0, eq)] = l.slice(eq + 1)
  }
  return out
}

export function registerClusterCommands (program: Command, g: () => GlobalOptions): void {
  program.command('agent')
    .description('run the node agent (creates a new cluster unless --join is given)')
    .option('--listen <multiaddr>', 'address to listen on (repeatable)', collect, [])
    .option('--join <token>', 'join an existing cluster with a token from `p2p-orch join-token`')
    .option('--seed <multiaddr>', 'extra seed address, with /p2p/<id> (repeatable)', collect, [])
    .option('--name <name>', 'node name (default: hostname)')
    .option('--label <k=v>', 'node label for placement constraints (repeatable)', collect, [])
    .option('--profile <lan|local>', 'timing profile: lan (default) or local (short timers, for tests)', 'lan')
    .option('--no-runtime', 'do not run containers (a pure control-plane node)')
    .option('--api-listen <host:port>', 'also serve the control API on TCP, over HTTPS (self-signed certificate; token in <data>/api.token) for `--api https://host:port`')
    .option('--ingress-host <addr>', 'where the routing mesh opens published ports on this node (default: all interfaces)')
    .option('--no-discovery', 'do not give containers the node network and service-name resolver')
    .option('--allow-host-path <path>', 'let services bind-mount host paths under this absolute path (repeatable; default: none)', collect, [])
    .option('--allow-privileged', 'let services deployed by admin keys run privileged, with cap_add, devices or pid: host here')
    .option('--secrets-dir <dir>', 'tmpfs directory for replicas\' secret and config files (default /dev/shm/p2p-orch/<node id>)')
    .action(async (o) => {
      const dir = dataDirOf(g())
      if (dir === undefined) throw new CliUserError('agent needs --data DIR (or P2P_ORCH_DATA): where the node keeps its identity and state')
      const { runAgentFromCli } = await import('../node/agent-cli.ts')
      await runAgentFromCli({
        dataDir: resolve(dir),
        listen: o.listen.length > 0 ? o.listen : ['/ip4/0.0.0.0/tcp/7946'],
        join: o.join,
        seeds: o.seed,
        name: o.name,
        labels: parseLabels(o.label),
        profile: o.profile,
        runtime: o.runtime as boolean,
        apiListen: o.apiListen,
        ingressHost: o.ingressHost,
        discovery: o.discovery as boolean,
        allowHostPaths: o.allowHostPath,
        allowPrivileged: o.allowPrivileged === true,
        ...(o.secretsDir !== undefined ? { secretsDir: resolve(o.secretsDir) } : {})
      })
    })

  program.command('join-token')
    .description('make a token that admits new nodes (needs an admin key; it can admit nodes, nothing else)')
    .option('--rotate', 'first revoke the join keys of every earlier token: they no longer admit nodes')
    .option('--ttl <duration>', 'the token admits nodes for this long (e.g. 1h, 7d); default: until rotated')
    .option('--worker', 'accepted for compatibility: every token is a worker token')
    .option('--with-admin-key', 'also put YOUR credential in the token, so the new node\'s user can change the cluster (single-owner setups only)')
    .action(async (o) => {
      const [{ randomBytes }, { decodeToken, encodeToken }, { credentialSigner, encodeCredential, generateCredential }, { requireCredential, signRecords, submitRecords }, { parseDuration }] = await Promise.all([
        import('node:crypto'), import('../protocol/token.ts'), import('../protocol/credential.ts'), import('./credentials.ts'), import('./commands-keys.ts')
      ])
      const client = clientFor(g())
      const info = await client.call<InfoResponse>('GET', '/info')
      const { credential, source } = requireCredential(g(), info.clusterId)
      const joinKey = generateCredential(info.clusterId, `join-${randomBytes(4).toString('hex')}`)
      const req: MintJoinKeyRequest = {
        name: joinKey.name,
        publicKey: credentialSigner(joinKey).publicKeyHex,
        ...(o.ttl !== undefined ? { ttlMs: parseDuration(o.ttl) } : {}),
        ...(o.rotate === true ? { rotate: true } : {})
      }
      const minted = await client.call<MintJoinKeyResponse>('POST', '/join-token', req)
      const signed = minted.sign === undefined ? [] : signRecords(g(), minted.sign)
      await submitRecords(client, signed)
      const keyRecord = signed.find((r) => r.k === `key/${joinKey.name}`)
      if (keyRecord === undefined) throw new Error('the node prepared no key record for the join key')
      const token = encodeToken({
        ...decodeToken(minted.token),
        admission: { credential: encodeCredential(joinKey), keyRecord },
        ...(o.withAdminKey === true ? { credential: encodeCredential(credential) } : {})
      })
      if (o.withAdminKey === true) {
        process.stderr.write(`warning: this token carries your credential (key "${credential.name}", from ${source}): anyone who holds it can do what that key can. Prefer \`p2p-orch key create\` for each person.\n`)
      }
      if (minted.revoked.length > 0) process.stderr.write(`revoked ${minted.revoked.length} earlier join key(s): tokens made before no longer admit nodes\n`)
      const r: JoinTokenResponse = { token, command: `p2p-orch agent --data DIR --join ${token}` }
      console.log(g().json === true ? JSON.stringify({ ...r, key: joinKey.name, revoked: minted.revoked }) : r.token)
    })

  program.command('api-token')
    .description('print the token remote CLIs need for `--api https://…` (P2P_ORCH_API_TOKEN); on the node\'s machine only')
    .option('--rotate', 'replace it: the current token is refused from now on')
    .action(async (o) => {
      // the token guards the TCP API: only who can reach the node's data directory may read or replace it
      if (isRemote(g())) throw new CliUserError('api-token works only on the node\'s own machine, over its control socket: run it there with --data DIR')
      const r = await clientFor(g()).call<ApiTokenResponse>(o.rotate === true ? 'POST' : 'GET', o.rotate === true ? '/api-token/rotate' : '/api-token')
      if (g().json === true) { console.log(JSON.stringify(r)); return }
      console.log(r.token)
      if (r.rotated) process.stderr.write('rotated: the previous token is refused from now on\n')
      const url = r.url.replace(/^https:\/\/(0\.0\.0\.0|\[::\]|::)(?=:\d+$)/, 'https://<this host>')
      process.stderr.write(`connect with: P2P_ORCH_API_TOKEN=<the token above> p2p-orch --api ${url} nodes\n`)
    })

  program.command('nodes')
    .description('list the cluster\'s nodes')
    .action(async () => {
      const nodes = await clientFor(g()).call<NodeView[]>('GET', '/nodes')
      if (g().json === true) { console.log(JSON.stringify(nodes, null, 2)); return }
      console.log(table(['NAME', 'ID', 'ADDRESS', 'STATUS', 'AVAILABILITY', 'LABELS', 'AGE'], nodes.map((n) => [
        n.name + (n.self ? ' *' : ''),
        shortId(n.id),
        n.addrs[0]?.replace(/\/p2p\/.*$/, '') ?? '-',
        n.status,
        n.availability,
        labels(n.labels),
        age(n.joinedAt)
      ])))
      for (const n of nodes) for (const e of n.portErrors ?? []) console.log(`warning: ${n.name}: ${e}`)
    })

  const node = program.command('node').description('manage one node')
  node.command('rm <node>')
    .description('forget a dead or departed node')
    .option('--force', 'remove even if it still looks alive')
    .action(async (ref: string, o) => {
      const { write } = await import('./credentials.ts')
      await write(clientFor(g()), g(), 'DELETE', `/nodes/${encodeURIComponent(ref)}${o.force === true ? '?force=1' : ''}`)
      console.log(`removed ${ref}`)
      process.stderr.write('its admission is revoked; if it may still hold a join token, also run `p2p-orch join-token --rotate`\n')
    })
  node.command('update <node>')
    .description('change a node\'s availability or labels')
    .option('--availability <active|drain|pause>', 'drain moves its replicas away; pause stops new ones')
    .option('--label-add <k=v>', 'add a label (repeatable)', collect, [])
    .option('--label-rm <k>', 'remove a label (repeatable)', collect, [])
    .action(async (ref: string, o) => {
      const { write } = await import('./credentials.ts')
      const r = await write(clientFor(g()), g(), 'PATCH', `/nodes/${encodeURIComponent(ref)}`, { availability: o.availability, labelAdd: parseLabels(o.labelAdd), labelRm: o.labelRm })
      console.log(g().json === true ? JSON.stringify(r) : `updated ${ref}`)
    })
}
