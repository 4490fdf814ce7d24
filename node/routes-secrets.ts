/**
 * Control API routes for secrets and configs: create (the caller signs the record), hand this node
 * a new secret's data key, list (names and users, never values), remove. Secrets are immutable,
 * as in Swarm: a new value is a new secret, or the old one removed first.
 */
import { randomBytes } from 'node:crypto'
import { key, type ServiceRecord } from '../protocol/keys.ts'
import { compareStrings } from '../protocol/order.ts'
import {
  DATA_KEY_BYTES, MAX_SECRET_BYTES, NONCE_BYTES, SECRET_ID_PATTERN, SECRET_NAME_PATTERN, TAG_BYTES,
  type ConfigRecord, type SecretRecord
} from '../protocol/secrets.ts'
import type { CreateConfigRequest, CreateSecretRequest, FileCreateResponse, FileView, SecretKeyRequest, Signable } from './api/types.ts'
import type { ControlServer } from './control.ts'
import { placementNodes } from './desired.ts'
import { UserError } from './errors.ts'
import type { P2pNode } from './node.ts'
import { holdersOf } from './secret-keeper.ts'
import { prepare } from './writes.ts'

type Kind = 'secret' | 'config'

function bytesOf (v: unknown, what: string, max: number): Uint8Array {
  if (typeof v !== 'string') throw new UserError(`${what} must be base64 text`)
  const b = new Uint8Array(Buffer.from(v, 'base64'))
  if (b.length > max) throw new UserError(`${what} is ${b.length} bytes; at most ${max}`)
  return b
}

function checkName (kind: Kind, name: unknown): string {
  if (typeof name !== 'string' || !SECRET_NAME_PATTERN.test(name)) {
    throw new UserError(`invalid ${kind} name ${JSON.stringify(name)}: use letters, digits, "_", "." or "-", starting with a letter or digit, at most 64`)
  }
  return name
}

/** Services that mount `name`, by kind. */
function usersOf (node: P2pNode, kind: Kind, name: string): string[] {
  const out: string[] = []
  for (const [svc, rec] of node.states.state.family<ServiceRecord | null>('svc')) {
    const refs = kind === 'secret' ? rec?.spec.secrets : rec?.spec.configs
    if (refs?.some((f) => f.source === name) === true) out.push(svc)
  }
  return out.sort(compareStrings)
}

function refuseExisting (node: P2pNode, kind: Kind, name: string): void {
  if (node.states.state.value(key[kind](name)) == null) return
  throw new UserError(`${kind} "${name}" already exists; ${kind}s cannot be changed: create one under a new name and point the services at it, or remove "${name}" first (p2p-orch ${kind} rm ${name})`)
}

function views (node: P2pNode, kind: Kind): FileView[] {
  const state = node.states.state
  const alive = new Set(placementNodes(state).filter((n) => n.alive).map((n) => n.id))
  const out: FileView[] = []
  for (const [name, rec] of state.family<SecretRecord | ConfigRecord | null>(kind)) {
    if (rec === null) continue
    const size = kind === 'secret' ? (rec as SecretRecord).size : rec.data.length
    const v: FileView = { name, size, createdAt: state.get(key[kind](name))?.t[0] ?? 0, services: usersOf(node, kind, name) }
    if (kind === 'secret') v.holders = holdersOf(state, name, rec as SecretRecord, alive).length
    out.push(v)
  }
  return out.sort((a, b) => compareStrings(a.name, b.name))
}

function removal (node: P2pNode, kind: Kind, name: string): { removed: string } & Signable {
  if (node.states.state.value(key[kind](name)) == null) throw new UserError(`no ${kind} named "${name}"`)
  const users = usersOf(node, kind, name)
  if (users.length > 0) throw new UserError(`${kind} "${name}" is in use by ${users.join(', ')}; remove it from those services first`)
  return { removed: name, sign: prepare(node, [{ k: key[kind](name), value: null }]) }
}

export function registerSecretRoutes (control: ControlServer, node: P2pNode): void {
  control.route('POST', '/secrets', ({ body }): FileCreateResponse => {
    const req = (body ?? {}) as CreateSecretRequest
    const name = checkName('secret', req.name)
    if (typeof req.id !== 'string' || !SECRET_ID_PATTERN.test(req.id)) throw new UserError('a secret needs a 32-hex-digit id')
    const nonce = bytesOf(req.nonce, 'nonce', NONCE_BYTES)
    const data = bytesOf(req.data, 'the encrypted value', MAX_SECRET_BYTES + TAG_BYTES)
    if (nonce.length !== NONCE_BYTES || data.length < TAG_BYTES || req.size !== data.length - TAG_BYTES) throw new UserError('malformed encrypted secret')
    refuseExisting(node, 'secret', name)
    const value: SecretRecord = { id: req.id, nonce, data, size: req.size }
    return { name, id: req.id, sign: prepare(node, [{ k: key.secret(name), value }]) }
  })

  control.route('POST', '/secrets/:name/key', ({ params, body }) => {
    const req = (body ?? {}) as SecretKeyRequest
    const name = checkName('secret', params.name)
    if (typeof req.id !== 'string') throw new UserError('the key request needs the secret\'s id')
    const dk = bytesOf(req.key, 'the data key', DATA_KEY_BYTES)
    try {
      node.secrets.adopt(name, req.id, dk)
    } finally {
      dk.fill(0)
    }
    return { held: name }
  })

  control.route('GET', '/secrets', () => views(node, 'secret'))
  control.route('DELETE', '/secrets/:name', ({ params }) => removal(node, 'secret', checkName('secret', params.name)))

  control.route('POST', '/configs', ({ body }): FileCreateResponse => {
    const req = (body ?? {}) as CreateConfigRequest
    const name = checkName('config', req.name)
    const data = bytesOf(req.data, 'the config', MAX_SECRET_BYTES)
    refuseExisting(node, 'config', name)
    const id = randomBytes(16).toString('hex')
    const value: ConfigRecord = { id, data }
    return { name, id, sign: prepare(node, [{ k: key.config(name), value }]) }
  })

  control.route('GET', '/configs', () => views(node, 'config'))
  control.route('DELETE', '/configs/:name', ({ params }) => removal(node, 'config', checkName('config', params.name)))
}
