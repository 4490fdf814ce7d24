/**
 * Secrets and configs: `secret create NAME FILE|-`, `secret ls`, `secret rm NAME`, and the same for
 * `config`. The CLI encrypts a secret itself under a fresh data key (protocol/secrets.ts), signs
 * the encrypted record with the user's credential, and hands the data key to the node it talks
 * to, which seals it onward only to the nodes that run the secret's replicas. The plain value goes
 * nowhere else: not in the record, not in any log.
 */
import { randomBytes } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import type { Command } from 'commander'
import type { ApiClient } from '../node/api/client.ts'
import type { CreateConfigRequest, CreateSecretRequest, FileCreateResponse, FileView } from '../node/api/types.ts'
import type { FileSource } from '../protocol/compose.ts'
import { DATA_KEY_BYTES, MAX_SECRET_BYTES, NONCE_BYTES, encryptSecret } from '../protocol/secrets.ts'
import { clientFor, type GlobalOptions } from './context.ts'
import { CliUserError } from './errors.ts'
import { table } from './format.ts'

type Kind = 'secret' | 'config'

async function readValue (kind: Kind, source: string): Promise<Uint8Array> {
  let data: Buffer
  if (source === '-') {
    const chunks: Buffer[] = []
    for await (const c of process.stdin) chunks.push(c as Buffer)
    data = Buffer.concat(chunks)
  } else {
    try {
      data = await readFile(source)
    } catch (err) {
      throw new CliUserError(`${kind} file ${source}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`)
    }
  }
  if (data.length > MAX_SECRET_BYTES) throw new CliUserError(`${kind} value from ${source === '-' ? 'stdin' : source} is ${data.length} bytes; at most ${MAX_SECRET_BYTES}`)
  return new Uint8Array(data)
}

/** Create secret `name` with value `plain`: encrypt, sign, submit, hand over its data key. */
export async function createSecret (client: ApiClient, g: GlobalOptions, name: string, plain: Uint8Array): Promise<void> {
  const { write } = await import('./credentials.ts')
  const info = await client.call<{ clusterId: string }>('GET', '/info')
  const dataKey = new Uint8Array(randomBytes(DATA_KEY_BYTES))
  try {
    const rec = encryptSecret(info.clusterId, name, plain, dataKey, randomBytes(16).toString('hex'), new Uint8Array(randomBytes(NONCE_BYTES)))
    const req: CreateSecretRequest = { name, id: rec.id, nonce: Buffer.from(rec.nonce).toString('base64'), data: Buffer.from(rec.data).toString('base64'), size: rec.size }
    await write<FileCreateResponse>(client, g, 'POST', '/secrets', req)
    await client.call('POST', `/secrets/${encodeURIComponent(name)}/key`, { id: rec.id, key: Buffer.from(dataKey).toString('base64') })
  } finally {
    dataKey.fill(0)
    plain.fill(0)
  }
}

export async function createConfig (client: ApiClient, g: GlobalOptions, name: string, data: Uint8Array): Promise<void> {
  const { write } = await import('./credentials.ts')
  const req: CreateConfigRequest = { name, data: Buffer.from(data).toString('base64') }
  await write<FileCreateResponse>(client, g, 'POST', '/configs', req)
}

/**
 * Before a deploy: create the stack's secrets and configs that do not exist yet, from the files
 * and variables the Compose file names. Existing ones are kept (they cannot change); external ones
 * must exist. Returns one line per action, for the deploy's output.
 */
export async function ensureComposeFiles (client: ApiClient, g: GlobalOptions, files: FileSource[], dryRun: boolean): Promise<string[]> {
  if (files.length === 0) return []
  const existing = {
    secret: new Set((await client.call<FileView[]>('GET', '/secrets')).map((f) => f.name)),
    config: new Set((await client.call<FileView[]>('GET', '/configs')).map((f) => f.name))
  }
  const lines: string[] = []
  for (const f of files) {
    if (existing[f.kind].has(f.name)) continue
    if (f.external) throw new CliUserError(`external ${f.kind} "${f.name}" does not exist: create it with \`p2p-orch ${f.kind} create ${f.name} FILE\``)
    const value = f.file !== undefined ? await readValue(f.kind, f.file) : new Uint8Array(Buffer.from(f.content ?? '', 'utf8'))
    if (value.length > MAX_SECRET_BYTES) throw new CliUserError(`${f.kind} "${f.name}" is ${value.length} bytes; at most ${MAX_SECRET_BYTES}`)
    if (dryRun) { lines.push(`create    ${f.kind} ${f.name}: ${f.file !== undefined ? `from ${f.file}` : f.environment !== undefined ? `from $${f.environment}` : 'inline'}`); continue }
    if (f.kind === 'secret') await createSecret(client, g, f.name, value)
    else await createConfig(client, g, f.name, value)
    lines.push(`${f.kind} ${f.name}: created`)
  }
  return lines
}

const when = (ms: number): string => ms === 0 ? '-' : new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z')

function registerKind (program: Command, g: () => GlobalOptions, kind: Kind): void {
  const cmd = program.command(kind).description(kind === 'secret'
    ? 'manage secrets: encrypted, given only to the nodes that run them, mounted on tmpfs at /run/secrets/NAME'
    : 'manage configs: files mounted read-only into replicas')

  cmd.command('create <name> <file>')
    .description(`create a ${kind} from a file, or from stdin with "-"`)
    .action(async (name: string, file: string) => {
      const client = clientFor(g())
      const value = await readValue(kind, file)
      if (kind === 'secret') await createSecret(client, g(), name, value)
      else await createConfig(client, g(), name, value)
      console.log(name)
    })

  cmd.command('ls')
    .description(`list ${kind}s and the services that use them (never their values)`)
    .action(async () => {
      const list = await clientFor(g()).call<FileView[]>('GET', `/${kind}s`)
      if (g().json === true) { console.log(JSON.stringify(list, null, 2)); return }
      const head = ['NAME', 'SIZE', 'CREATED', 'USED BY', ...(kind === 'secret' ? ['HOLDERS'] : [])]
      console.log(table(head, list.map((f) => [f.name, `${f.size} B`, when(f.createdAt), f.services.join(',') || '-', ...(kind === 'secret' ? [String(f.holders ?? 0)] : [])])))
    })

  cmd.command('rm <name>')
    .description(`remove a ${kind} no service uses`)
    .action(async (name: string) => {
      const { write } = await import('./credentials.ts')
      await write(clientFor(g()), g(), 'DELETE', `/${kind}s/${encodeURIComponent(name)}`)
      console.log(`removed ${name}`)
    })
}

export function registerSecretCommands (program: Command, g: () => GlobalOptions): void {
  registerKind(program, g, 'secret')
  registerKind(program, g, 'config')
}
