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
import { chmod, mkdir, open, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { dirname, join } from 'node:path'
import { decodeCredential, encodeCredential, type Credential } from '../../protocol/credential.ts'

export const CREDENTIALS_FILE = 'credentials.json'

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
 * user's own choice of key wins). Returns whether it was added. Several processes (agents of a
 * local cluster starting together, CLI calls) may add at once: the read-modify-write happens
 * under a lock file, and the new file replaces the old one atomically.
 */
export async function addCredential (path: string, cred: Credential): Promise<boolean> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 })
  return await withLock(`${path}.lock`, async () => {
    const current = existsSync(path) ? parse(await readFile(path, 'utf8'), path) : { clusters: {} }
    if (current.clusters[cred.clusterId] !== undefined) return false
    current.clusters[cred.clusterId] = { name: cred.name, credential: encodeCredential(cred) }
    const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`
    await writeFile(tmp, JSON.stringify(current, null, 2) + '\n', { mode: 0o600 })
    await chmod(tmp, 0o600)
    await rename(tmp, path)
    return true
  })
}

/** How long to wait for another writer's lock: a write takes milliseconds. */
const LOCK_WAIT_MS = 10_000
/** A lock file older than this was left by a writer that died mid-write, and is taken over. */
const LOCK_STALE_MS = 30_000
/** Pause between attempts to take the lock. */
const LOCK_RETRY_MS = 10

async function withLock<T> (lock: string, fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + LOCK_WAIT_MS
  for (;;) {
    let handle
    try {
      handle = await open(lock, 'wx', 0o600)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      const age = await stat(lock).then((s) => Date.now() - s.mtimeMs, () => 0)
      if (age > LOCK_STALE_MS) await unlink(lock).catch(() => {})
      else if (Date.now() > deadline) throw new Error(`could not add a credential: ${lock} is held by another process (remove it if no p2p-orch command is running)`)
      await new Promise((resolve) => setTimeout(resolve, LOCK_RETRY_MS))
      continue
    }
    try {
      return await fn()
    } finally {
      await handle.close()
      await unlink(lock).catch(() => {})
    }
  }
}
