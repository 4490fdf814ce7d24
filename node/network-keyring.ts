/**
 * The private-network keyring: every network key this node accepts, and the primary one it dials
 * with, so the cluster's network key can be rotated without downtime (install → use → remove, as
 * Serf's keyring). libp2p's pnet protector knows one key; this one speaks the same wire format
 * (24-byte nonces, then XSalsa20 both ways) with several:
 *
 *  - a dialled connection uses the primary key;
 *  - an accepted one finds the dialler's key from the first bytes it sends, which are always the
 *    multistream-select header (`\x13/multistream/1.0.0\n`: the listener speaks only after it): the
 *    installed key that decrypts them to that header is the one, and the listener answers with it.
 *    No key matching means another cluster (or a removed key): the connection is closed.
 *
 * Removing a key also closes the connections made with it, so their peers redial with the primary.
 */
import { createHash, randomBytes } from 'node:crypto'
import type { AbortOptions, MessageStream, MultiaddrConnection } from '@libp2p/interface'
import { AbstractMultiaddrConnection, byteStream, type SendResult } from '@libp2p/utils'
// the XSalsa20 implementation @libp2p/pnet itself uses (WebAssembly, no install script)
import xsalsa20 from 'xsalsa20'
import { MAX_NETWORK_KEYS } from '../protocol/validate.ts'

/** pnet's nonce length (XSalsa20's 24 bytes). */
const NONCE_BYTES = 24
/** What every connection's first bytes from the dialler are: the varint length 19, then the multistream-select protocol id. */
const FIRST_BYTES = new Uint8Array(Buffer.from('\x13/multistream/1.0.0\n', 'latin1'))

type Xor = ReturnType<typeof xsalsa20>

/** A key's public name: the first 16 hex digits of its SHA-256 (the key cannot be guessed from it). */
export function networkKeyId (key: Uint8Array): string {
  return createHash('sha256').update(key).digest('hex').slice(0, 16)
}

/** The full SHA-256 of a key (hex), what a `netkey/` record names it by. */
export function networkKeyFingerprint (key: Uint8Array): string {
  return createHash('sha256').update(key).digest('hex')
}

class KeyedBox extends AbstractMultiaddrConnection {
  private readonly maConn: MultiaddrConnection
  private readonly inbound: Xor
  private readonly outbound: Xor
  readonly keyId: string

  constructor (maConn: MultiaddrConnection, keyId: string, key: Uint8Array, localNonce: Uint8Array, remoteNonce: Uint8Array, inbound: Xor | undefined, firstPlain: Uint8Array | undefined) {
    super({ remoteAddr: maConn.remoteAddr, direction: maConn.direction, log: maConn.log.newScope('pnet') })
    this.maConn = maConn
    this.keyId = keyId
    this.inbound = inbound ?? xsalsa20(remoteNonce, key)
    this.outbound = xsalsa20(localNonce, key)
    if (firstPlain !== undefined) queueMicrotask(() => { this.onData(firstPlain) })
    maConn.addEventListener('message', (evt) => {
      const data = evt.data
      if (data instanceof Uint8Array) this.onData(this.inbound.update(data))
      else for (const buf of data) this.onData(this.inbound.update(buf))
    })
    maConn.addEventListener('drain', () => { this.onMuxerDrain() })
    maConn.addEventListener('close', (evt) => {
      if (evt.error != null) {
        if (evt.local) this.abort(evt.error)
        else this.onRemoteReset()
      } else this.onTransportClosed()
    })
  }

  async sendClose (options?: AbortOptions): Promise<void> { await this.maConn.close(options) }
  sendData (data: Parameters<AbstractMultiaddrConnection['sendData']>[0]): SendResult {
    return { sentBytes: data.byteLength, canSendMore: this.maConn.send(this.outbound.update(data.subarray())) }
  }

  sendReset (err: Error): void { this.maConn.abort(err) }
  sendPause (): void { this.maConn.pause() }
  sendResume (): void { this.maConn.resume() }
}

export class NetworkKeyring {
  private readonly keys = new Map<string, Uint8Array>()
  private primaryId: string
  private readonly open = new Set<KeyedBox>()

  constructor (primary: Uint8Array, others: Uint8Array[] = []) {
    this.primaryId = networkKeyId(primary)
    this.keys.set(this.primaryId, primary)
    for (const k of others) this.keys.set(networkKeyId(k), k)
  }

  get primary (): Uint8Array { return this.keys.get(this.primaryId) as Uint8Array }
  get primaryKeyId (): string { return this.primaryId }
  /** Installed key ids, primary first. */
  ids (): string[] { return [this.primaryId, ...[...this.keys.keys()].filter((k) => k !== this.primaryId).sort()] }
  has (id: string): boolean { return this.keys.has(id) }
  /** Every installed key, primary first. */
  all (): Uint8Array[] { return this.ids().map((id) => this.keys.get(id) as Uint8Array) }

  /** Accept connections made with `key` too. Returns false when it was installed already. */
  install (key: Uint8Array): boolean {
    const id = networkKeyId(key)
    if (this.keys.has(id)) return false
    if (this.keys.size >= MAX_NETWORK_KEYS) throw new Error(`at most ${MAX_NETWORK_KEYS} network keys may be installed; remove one first`)
    this.keys.set(id, new Uint8Array(key))
    return true
  }

  /** Dial with key `id` from now on (it must be installed). */
  use (id: string): boolean {
    if (!this.keys.has(id)) throw new Error(`network key ${id} is not installed here`)
    if (this.primaryId === id) return false
    this.primaryId = id
    return true
  }

  /** Stop accepting key `id` (never the primary), and close the connections made with it. */
  remove (id: string): boolean {
    if (id === this.primaryId) throw new Error(`network key ${id} is the one in use; use another first`)
    const key = this.keys.get(id)
    if (key === undefined) return false
    this.keys.delete(id)
    key.fill(0)
    for (const box of [...this.open]) if (box.keyId === id) box.abort(new Error(`network key ${id} was removed`))
    return true
  }

  /** The key of the open connection from or to `remoteAddr` (each TCP connection has its own), if it is one of ours. */
  keyOfConnection (remoteAddr: string): string | undefined {
    for (const b of this.open) if (b.remoteAddr.toString() === remoteAddr) return b.keyId
    return undefined
  }

  /** How many open connections use each key (for `network-key ls` and tests). */
  connectionsByKey (): Map<string, number> {
    const out = new Map<string, number>()
    for (const b of this.open) out.set(b.keyId, (out.get(b.keyId) ?? 0) + 1)
    return out
  }

  private track (box: KeyedBox): KeyedBox {
    this.open.add(box)
    box.addEventListener('close', () => { this.open.delete(box) })
    return box
  }

  /** libp2p's `connectionProtector` option. */
  protector (timeoutMs: number): () => { protect: (connection: MessageStream, options?: AbortOptions) => Promise<MessageStream> } {
    return () => ({
      [Symbol.toStringTag]: '@libp2p/pnet',
      protect: async (connection: MessageStream, options?: AbortOptions): Promise<MessageStream> => {
        const opts = options ?? { signal: AbortSignal.timeout(timeoutMs) }
        const bytes = byteStream(connection)
        const localNonce = new Uint8Array(randomBytes(NONCE_BYTES))
        const [remote] = await Promise.all([bytes.read({ bytes: NONCE_BYTES, ...opts }), bytes.write(localNonce, opts)])
        const remoteNonce = remote.subarray()
        const dialled = (connection as unknown as { direction?: string }).direction === 'outbound'
        if (dialled) return this.track(new KeyedBox(bytes.unwrap() as unknown as MultiaddrConnection, this.primaryId, this.primary, localNonce, remoteNonce, undefined, undefined))
        const first = (await bytes.read({ bytes: FIRST_BYTES.length, ...opts })).subarray()
        for (const id of this.ids()) {
          const key = this.keys.get(id) as Uint8Array
          const inbound = xsalsa20(remoteNonce, key)
          const plain = inbound.update(first)
          if (Buffer.from(plain).equals(FIRST_BYTES)) return this.track(new KeyedBox(bytes.unwrap() as unknown as MultiaddrConnection, id, key, localNonce, remoteNonce, inbound, plain))
        }
        const maConn = bytes.unwrap()
        const err = new Error('the peer\'s network key is not one this node accepts (another cluster, or a removed key)')
        maConn.abort(err)
        throw err
      }
    })
  }
}
