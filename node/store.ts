/**
 * Persistence of the cluster state and a few node facts in level, under <data>/state.
 * Writes are batched per event-loop turn: a gossip burst becomes one level batch.
 */
import { Level } from 'level'
import { pack, recordFromWire, recordToWire, unpack } from '../protocol/codec.ts'
import type { StateRecord } from '../protocol/record.ts'
import { DataDirError } from './errors.ts'

export interface Store {
  open (): Promise<void>
  close (): Promise<void>
  loadRecords (): Promise<StateRecord[]>
  putRecord (r: StateRecord): void
  deleteRecord (key: string): void
  getMeta<T> (name: string): Promise<T | undefined>
  putMeta (name: string, value: unknown): Promise<void>
  /** resolves when every queued write is on disk */
  flush (): Promise<void>
}

type Op = { type: 'put', key: string, value: Uint8Array } | { type: 'del', key: string }

export class LevelStore implements Store {
  private readonly db: Level<string, Uint8Array>
  private queue: Op[] = []
  private pending: Promise<void> = Promise.resolve()
  private scheduled = false
  private readonly path: string

  constructor (path: string) {
    this.path = path
    this.db = new Level<string, Uint8Array>(path, { valueEncoding: 'view' })
  }

  async open (): Promise<void> {
    try {
      await this.db.open()
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause
      if (cause?.code === 'LEVEL_LOCKED') throw new DataDirError(`data directory ${this.path} is in use by another p2p-orch agent; stop it first or use another --data`)
      throw new DataDirError(`cannot open the state store at ${this.path}: ${(err as Error).message}${cause !== undefined ? ` (${String((cause as Error).message ?? cause.code)})` : ''}`)
    }
  }

  async close (): Promise<void> {
    await this.flush()
    await this.db.close()
  }

  async loadRecords (): Promise<StateRecord[]> {
    const out: StateRecord[] = []
    for await (const [k, v] of this.db.iterator({ gt: 'r/', lt: 'r0' })) {
      try {
        out.push(recordFromWire(unpack(v)))
      } catch (err) {
        throw new DataDirError(`state store ${this.path} holds a corrupt record at ${k}: ${(err as Error).message}`)
      }
    }
    return out
  }

  private enqueue (op: Op): void {
    this.queue.push(op)
    if (this.scheduled) return
    this.scheduled = true
    setImmediate(() => {
      this.scheduled = false
      const ops = this.queue
      this.queue = []
      this.pending = this.pending.then(async () => await this.db.batch(ops))
    })
  }

  putRecord (r: StateRecord): void {
    this.enqueue({ type: 'put', key: `r/${r.k}`, value: pack(recordToWire(r)) })
  }

  deleteRecord (key: string): void {
    this.enqueue({ type: 'del', key: `r/${key}` })
  }

  async getMeta<T> (name: string): Promise<T | undefined> {
    const v = await this.db.get(`m/${name}`)
    return v === undefined ? undefined : unpack(v) as T
  }

  async putMeta (name: string, value: unknown): Promise<void> {
    await this.db.put(`m/${name}`, pack(value))
  }

  async flush (): Promise<void> {
    while (this.scheduled || this.queue.length > 0) await new Promise((resolve) => setImmediate(resolve))
    await this.pending
  }
}

/** In-memory store for fast tests; same contract as LevelStore. */
export class MemoryStore implements Store {
  readonly records = new Map<string, StateRecord>()
  readonly meta = new Map<string, unknown>()
  async open (): Promise<void> {}
  async close (): Promise<void> {}
  async loadRecords (): Promise<StateRecord[]> { return [...this.records.values()] }
  putRecord (r: StateRecord): void { this.records.set(r.k, r) }
  deleteRecord (key: string): void { this.records.delete(key) }
  async getMeta<T> (name: string): Promise<T | undefined> { return this.meta.get(name) as T | undefined }
  async putMeta (name: string, value: unknown): Promise<void> { this.meta.set(name, value) }
  async flush (): Promise<void> {}
}
