/**
 * Operator keys: key create / ls / revoke. A key is a `key/<name>` record (public key, role,
 * expiry, revocation) written by an admin; its private half exists only in the credential
 * `key create` prints.
 */
import type { Command } from 'commander'
import type { CreateKeyRequest, KeyView, Signable } from '../node/api/types.ts'
import { clientFor, type GlobalOptions } from './context.ts'
import { CliUserError } from './errors.ts'
import { table } from './format.ts'

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000 }

/** `90s`, `30m`, `12h`, `30d`, `2w`, or combinations like `1d12h`. */
export function parseDuration (text: string): number {
  const m = /^(?:\d+[smhdw])+$/.test(text) ? [...text.matchAll(/(\d+)([smhdw])/g)] : null
  if (m === null) throw new CliUserError(`duration "${text}" must be like 90s, 30m, 12h, 30d or 2w`)
  const ms = m.reduce((sum, [, n, u]) => sum + Number(n) * UNIT_MS[u], 0)
  if (ms <= 0) throw new CliUserError(`duration "${text}" must be more than zero`)
  return ms
}

const when = (ms: number | undefined): string => ms === undefined || ms === 0 ? '-' : new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z')

export function registerKeyCommands (program: Command, g: () => GlobalOptions): void {
  const keys = program.command('key').description('manage operator keys (who may change the cluster)')

  keys.command('create <name>')
    .description('create a key and print its credential (one line: keep it secret; it is shown only once)')
    .requiredOption('--role <admin|deployer|viewer>', 'admin: everything; deployer: deploy, scale, update, rm; viewer: read only')
    .option('--ttl <duration>', 'expire after this long (e.g. 12h, 30d); default: never')
    .action(async (name: string, o) => {
      const [{ encodeCredential, generateCredential, credentialSigner }, { write }] = await Promise.all([import('../protocol/credential.ts'), import('./credentials.ts')])
      const client = clientFor(g())
      const info = await client.call<{ clusterId: string }>('GET', '/info')
      const cred = generateCredential(info.clusterId, name)
      const req: CreateKeyRequest = { name, role: o.role, publicKey: credentialSigner(cred).publicKeyHex, ...(o.ttl !== undefined ? { ttlMs: parseDuration(o.ttl) } : {}) }
      const view = await write<KeyView & Signable>(client, g(), 'POST', '/keys', req)
      if (g().json === true) console.log(JSON.stringify({ ...view, credential: encodeCredential(cred) }))
      else console.log(encodeCredential(cred))
    })

  keys.command('ls')
    .description('list the cluster\'s operator keys')
    .action(async () => {
      const list = await clientFor(g()).call<KeyView[]>('GET', '/keys')
      if (g().json === true) { console.log(JSON.stringify(list, null, 2)); return }
      console.log(table(['NAME', 'ROLE', 'STATUS', 'EXPIRES', 'PUBLIC KEY'], list.map((k) => [
        k.name, k.role, k.revoked ? 'revoked' : k.expired ? 'expired' : k.founder ? 'founder' : 'active', when(k.expiresAt), k.publicKey.slice(0, 16)
      ])))
    })

  keys.command('revoke <name>')
    .description('revoke a key: its writes from now on are refused on every node')
    .action(async (name: string) => {
      const { write } = await import('./credentials.ts')
      await write(clientFor(g()), g(), 'DELETE', `/keys/${encodeURIComponent(name)}`)
      console.log(`revoked ${name}`)
    })
}
