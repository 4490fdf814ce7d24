/**
 * A replica's secrets and configs, from its spec's references to the files it starts with:
 * secrets opened by this node's SecretKeeper, configs read from the state, both written by
 * SecretFiles and mounted read-only. The reconciler calls `prepare` before it creates a container,
 * `release` when it has removed one, and `sweep` with the containers that exist.
 */
import { key } from '../protocol/keys.ts'
import type { ConfigRecord } from '../protocol/secrets.ts'
import type { ServiceSpec } from '../protocol/spec.ts'
import type { FileMount } from './runtime/types.ts'
import { FileUnavailableError, type ContainerFile, type SecretFiles } from './secret-files.ts'
import type { SecretKeeper } from './secret-keeper.ts'
import type { StateManager } from './state-manager.ts'

export interface ReplicaFileSource {
  prepare (spec: ServiceSpec, container: string): Promise<FileMount[]>
  release (container: string): Promise<void>
  sweep (live: ReadonlySet<string>): Promise<void>
}

export class ReplicaFiles implements ReplicaFileSource {
  private readonly states: StateManager
  private readonly keeper: SecretKeeper
  private readonly files: SecretFiles

  constructor (states: StateManager, keeper: SecretKeeper, files: SecretFiles) {
    this.states = states
    this.keeper = keeper
    this.files = files
  }

  async prepare (spec: ServiceSpec, container: string): Promise<FileMount[]> {
    const out: ContainerFile[] = []
    for (const f of spec.secrets ?? []) {
      const data = this.keeper.value(f.source)
      if (data === null) {
        const exists = this.states.state.value(key.secret(f.source)) != null
        throw new FileUnavailableError(exists
          ? `waiting for the key to secret ${f.source} (a node that holds it seals it to this one)`
          : `secret ${f.source} does not exist (p2p-orch secret create ${f.source} FILE)`)
      }
      out.push({ target: f.target, data, uid: f.uid, gid: f.gid, mode: f.mode, secret: true })
    }
    for (const f of spec.configs ?? []) {
      const rec = this.states.state.value<ConfigRecord | null>(key.config(f.source))
      if (rec == null) throw new FileUnavailableError(`config ${f.source} does not exist (p2p-orch config create ${f.source} FILE)`)
      out.push({ target: f.target, data: rec.data, uid: f.uid, gid: f.gid, mode: f.mode, secret: false })
    }
    try {
      return await this.files.write(container, out)
    } finally {
      // the plain values were only needed to write the files
      for (const f of out) if (f.secret) f.data.fill(0)
    }
  }

  async release (container: string): Promise<void> { await this.files.release(container) }
  async sweep (live: ReadonlySet<string>): Promise<void> { await this.files.sweep(live) }
}
