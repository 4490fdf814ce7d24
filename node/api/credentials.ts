/**
 * The user's credentials file, shared by the CLI (which signs with the credentials in it) and
 * the agent (which puts a new cluster's founding admin credential there):
 *
 *   $XDG_CONFIG_HOME/p2p-orch/credentials.json   (default ~/.config/p2p-orch/credentials.json)
 *
 * mode 0600 in a 0700 directory, one entry per cluster id, so several clusters on one machine
 * never overwrite each other:
 *
 *   { "clusters": { "<cluster id>": { "name": "founder", "credential": "p2porchkey1.…" } } }
 */
import { randomBytes } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { dirname, join } from 'node:path'
import { decodeCredential, encodeCredential, type Credential } from '../../protocol/credential.ts'

export const CREDENTIALS_FILE = 'credentials.json'
/** Attempts to add an entry when another process writes the file at the same moment. */
const WRITE_ATTEMPTS = 5

export interface CredentialsFile {
  clusters: Record<string, { name: string, credential: string }>
}

export function userCredentialsPath (env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_CONFIG_HOME !== undefined && env.XDG_CONFIG_HOME !== '' ? env.XDG_CONFIG_HOME : join(env.HOME ?? homedir(), '.config')
  return join(base, 'p2p-orch', CREDENTIALS_FILE)
}

function parse (text: string, path: string): CredentialsFile {
  let j: unknown
  try {
    j = JSON.parse(text)
  } catch {
    throw new Error(`${path} is not valid JSON`)
  }
  const clusters = (j as CredentialsFile | null)?.clusters
  if (clusters === null || typeof clusters !== 'object' || Array.isArray(clusters)) throw new Error(`${path} has no "clusters" map`)
  return { clusters }
}

/** The file's entries; an absent file has none. */
export function readCredentials (path: string): CredentialsFile {
  if (!existsSync(path)) return { clusters: {} }
  return parse(readFileSync(path, 'utf8'), path)
}

/** The credential for `clusterId` in the file, if any. */
export function credentialFor (path: string, clusterId: string): Credential | undefined {
  const entry = readCredentials(path).clusters[clusterId]
  return entry === undefined ? undefined : decodeCredential(entry.credential)
}

/**
 * Add `cred` under its cluster id unless the file already has an entry for that cluster (the
 * user's own choice of key wins). Returns whether it was added. Safe against another process
 * adding its own cluster at the same moment: the write is atomic and checked afterwards.
 */
export async function addCredential (path: string, cred: Credential): Promise<boolean> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 })
  for (let attempt = 0; attempt < WRITE_ATTEMPTS; attempt++) {
    const current = existsSync(path) ? parse(await readFile(path, 'utf8'), path) : { clusters: {} }
    if (current.clusters[cred.clusterId] !== undefined) return false
    current.clusters[cred.clusterId] = { name: cred.name, credential: encodeCredential(cred) }
    const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`
    await writeFile(tmp, JSON.stringify(current, null, 2) + '\n', { mode: 0o600 })
    await chmod(tmp, 0o600)
    await rename(tmp, path)
    await new Promise((resolve) => setTimeout(resolve, 5 + Math.floor(Math.random() * 20)))
    const after = parse(await readFile(path, 'utf8'), path)
    if (after.clusters[cred.clusterId]?.credential === encodeCredential(cred)) return true
  }
  throw new Error(`could not add a credential to ${path}: another process keeps rewriting it`)
}
