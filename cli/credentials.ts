/**
 * The CLI's credential: found in this order, the first one wins —
 *   --key FILE        a file holding the credential's one line
 *   P2P_ORCH_KEY      the credential's text
 *   the user's credentials file (node/api/credentials.ts), the entry for the node's cluster id
 * and used to sign the records a write route prepared (api/types.ts, "signed writes").
 * Loaded only by commands that write: signing pulls in crypto modules the read commands never need.
 */
import { readFileSync, statSync } from 'node:fs'
import type { ApiClient } from '../node/api/client.ts'
import { credentialFor, userCredentialsPath } from '../node/api/credentials.ts'
import type { Signable, SignedRecord, SignRequest, SubmitResponse } from '../node/api/types.ts'
import { credentialSigner, decodeCredential, type Credential } from '../protocol/credential.ts'
import type { StateRecord } from '../protocol/record.ts'
import { signRecord } from '../protocol/sign.ts'
import type { GlobalOptions } from './context.ts'
import { CliUserError } from './errors.ts'

export interface FoundCredential {
  credential: Credential
  /** where it came from, for messages */
  source: string
}

function decode (text: string, source: string): Credential {
  try {
    return decodeCredential(text)
  } catch (err) {
    throw new CliUserError(`${source}: ${(err as Error).message}`)
  }
}

/** The first credential found (see above); null when there is none for `clusterId`. */
export function findCredential (g: GlobalOptions, clusterId: string): FoundCredential | null {
  let found: FoundCredential | null = null
  if (g.key !== undefined) {
    let text: string
    try {
      text = readFileSync(g.key, 'utf8')
    } catch (err) {
      throw new CliUserError(`--key ${g.key}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`)
    }
    if ((statSync(g.key).mode & 0o077) !== 0) process.stderr.write(`warning: ${g.key} is readable by other users; a credential file should be 0600\n`)
    found = { credential: decode(text, `--key ${g.key}`), source: `--key ${g.key}` }
  } else if (process.env.P2P_ORCH_KEY !== undefined && process.env.P2P_ORCH_KEY !== '') {
    found = { credential: decode(process.env.P2P_ORCH_KEY, 'P2P_ORCH_KEY'), source: 'P2P_ORCH_KEY' }
  } else {
    const path = userCredentialsPath()
    let c: Credential | undefined
    try {
      c = credentialFor(path, clusterId)
    } catch (err) {
      throw new CliUserError(`${path}: ${(err as Error).message}`)
    }
    if (c !== undefined) found = { credential: c, source: path }
  }
  if (found !== null && found.credential.clusterId !== clusterId) {
    throw new CliUserError(`the credential from ${found.source} is for cluster ${found.credential.clusterId}, but this node belongs to cluster ${clusterId}`)
  }
  return found
}

export function requireCredential (g: GlobalOptions, clusterId: string): FoundCredential {
  const found = findCredential(g, clusterId)
  if (found === null) {
    throw new CliUserError(`no credential for cluster ${clusterId}: pass --key FILE or set P2P_ORCH_KEY (an admin makes one with \`p2p-orch key create NAME --role deployer\`); the agent that created the cluster put the founding one in ${userCredentialsPath()} for the user who ran it`)
  }
  return found
}

/** Sign what a write route prepared with the user's credential. */
export function signRecords (g: GlobalOptions, req: SignRequest): StateRecord[] {
  const { credential } = requireCredential(g, req.clusterId)
  const signer = credentialSigner(credential)
  return req.records.map((u) => signRecord(req.clusterId, signer, u.k, u.t, new Uint8Array(Buffer.from(u.p, 'base64'))))
}

/** Submit signed records; the node validates them like any record from the network. */
export async function submitRecords (client: ApiClient, signed: StateRecord[]): Promise<SubmitResponse> {
  const records: SignedRecord[] = signed.map((r) => ({ k: r.k, t: r.t, p: Buffer.from(r.p).toString('base64'), w: r.w, s: Buffer.from(r.s).toString('base64') }))
  return await client.call<SubmitResponse>('POST', '/records', { records })
}

/** Sign what a write route prepared and submit it. */
export async function signAndSubmit (client: ApiClient, g: GlobalOptions, req: SignRequest): Promise<SubmitResponse> {
  return await submitRecords(client, signRecords(g, req))
}

/** Call a write route, then sign and submit the records it prepared. Returns the route's answer without them. */
export async function write<T extends Signable> (client: ApiClient, g: GlobalOptions, method: string, path: string, body?: unknown): Promise<Omit<T, 'sign'>> {
  const r = await client.call<T>(method, path, body)
  const { sign, ...rest } = r
  if (sign !== undefined && sign.records.length > 0) await signAndSubmit(client, g, sign)
  return rest
}
