/**
 * The routing mesh's byte path over real libp2p: a client connects to an ingress listener on
 * host A, which opens a mesh stream to host B; B connects to a backend TCP server and splices.
 * The same scenarios run through a local splice (client socket to backend socket), which is
 * what a node does for a replica it runs itself.
 *
 *   client ──TCP── ingress(A) ══mesh stream══ handler(B) ──TCP── backend
 *   client ──TCP── ingress ──TCP── backend                              (local)
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Stream } from '@libp2p/interface'
import { lpStream } from '@libp2p/utils'
import { pack } from '../../protocol/codec.ts'
import { MESH_PROTOCOL, type MeshOpen } from '../../protocol/mesh.ts'
import { createHost, startHost, type Host } from '../../node/host.ts'
import { acceptMeshStream, openMeshStream } from '../../node/mesh/handshake.ts'
import { spliceSockets, spliceSocketStream, type SpliceResult } from '../../node/mesh/pipe.ts'
import { sleep, waitFor } from '../helpers/cluster.ts'

const LISTEN = ['/ip4/127.0.0.1/tcp/0']
/** How long a reset may take to cross both splices: "promptly". */
const RESET_WITHIN_MS = 2000
const BACKPRESSURE_BYTES = 64 * 1024 * 1024
const noop = (): void => {}
/** Each test takes well under a second or two; this only turns a hang into a failure. */
const T = { timeout: 20_000 }

interface Splice {
  socket: Socket
  stream?: Stream
  result?: SpliceResult
  done: Promise<SpliceResult>
}

/** Promise.withResolvers, which the ES2023 lib we compile against does not declare. */
function deferred<T> (): { promise: Promise<T>, resolve: (v: T) => void } {
  let resolve!: (v: T) => void
  const promise = new Promise<T>((r) => { resolve = r })
  return { promise, resolve }
}

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

interface Received {
  data: Buffer
  /** a clean end (FIN) arrived */
  ended: boolean
  error?: NodeJS.ErrnoException
}

/** Everything `socket` receives until it closes. */
async function collect (socket: Socket): Promise<Received> {
  const chunks: Buffer[] = []
  let ended = false
  let error: NodeJS.ErrnoException | undefined
  socket.on('data', (c: Buffer) => { chunks.push(c) })
  socket.on('end', () => { ended = true })
  socket.on('error', (err) => { error = err })
  // not events.once: it rejects on 'error', and an error is what some tests wait for
  await new Promise((resolve) => { socket.once('close', resolve) })
  return { data: Buffer.concat(chunks), ended, ...(error !== undefined ? { error } : {}) }
}

/** Writes `data` in 64 KiB chunks, waiting for 'drain' whenever the socket asks; `progress` counts bytes handed over. */
async function writeAll (socket: Socket, data: Uint8Array, progress?: { offered: number, waiting: boolean }): Promise<void> {
  const CHUNK = 64 * 1024
  for (let i = 0; i < data.length; i += CHUNK) {
    const part = data.subarray(i, i + CHUNK)
    const more = socket.write(part)
    if (progress !== undefined) progress.offered += part.length
    if (!more) {
      if (progress !== undefined) progress.waiting = true
      await once(socket, 'drain')
      if (progress !== undefined) progress.waiting = false
    }
  }
}

async function listen (server: Server): Promise<number> {
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return (server.address() as AddressInfo).port
}

async function dial (port: number): Promise<Socket> {
  const s = connect({ host: '127.0.0.1', port, allowHalfOpen: true })
  await once(s, 'connect')
  return s
}

describe('mesh streams: splicing TCP over libp2p', { timeout: 120_000 }, () => {
  let a: Host
  let b: Host
  const servers: Server[] = []
  const sockets = new Set<Socket>()
  const splices: Splice[] = []
  /** errors acceptMeshStream threw on B */
  const inboundErrors: Error[] = []

  const track = (socket: Socket, done: Promise<SpliceResult>, stream?: Stream): void => {
    const s: Splice = { socket, done, ...(stream !== undefined ? { stream } : {}) }
    void done.then((r) => { s.result = r })
    splices.push(s)
  }
  const own = (s: Socket): Socket => {
    sockets.add(s)
    s.on('error', noop) // tests look at errors through collect(); none may crash the run
    return s
  }
  const server = async (onConnection: (s: Socket) => void, opts: { pauseOnConnect?: boolean } = {}): Promise<number> => {
    const srv = createServer({ allowHalfOpen: true, ...opts }, (s) => { onConnection(own(s)) })
    servers.push(srv)
    return await listen(srv)
  }

  /** An ingress listener on A whose connections go over the mesh to B, which connects to `target`. */
  const meshIngress = async (target: number, service = 'web'): Promise<number> => await server((client) => {
    const open: MeshOpen = {
      v: 1, service, target, proto: 'tcp', proxyProtocol: false,
      client: { addr: client.remoteAddress ?? '0.0.0.0', port: client.remotePort ?? 1 }
    }
    openMeshStream(a, b.peerId, open, AbortSignal.timeout(5000)).then(
      (stream) => { track(client, spliceSocketStream(client, stream), stream) },
      () => { client.resetAndDestroy() }
    )
    // as the real ingress does: nothing is read from the client before the splice takes over
  }, { pauseOnConnect: true })

  /** An ingress listener splicing straight to `target`, as for a local replica. */
  const localIngress = async (target: number): Promise<number> => await server((client) => {
    const backend = own(connect({ host: '127.0.0.1', port: target, allowHalfOpen: true }))
    backend.once('connect', () => { track(client, spliceSockets(client, backend)) })
  }, { pauseOnConnect: true })

  /** In-process bytes the splices hold: stream buffers and socket buffers. */
  const bufferedBytes = (): number => {
    let n = 0
    for (const s of splices) n += (s.stream?.readBufferLength ?? 0) + (s.stream?.writeBufferLength ?? 0)
    for (const s of sockets) n += s.writableLength + s.readableLength
    return n
  }

  before(async () => {
    const networkKey = randomBytes(32)
    const make = async (): Promise<Host> => {
      const h = await createHost({ privateKey: await generateKeyPair('Ed25519'), networkKey, listen: LISTEN })
      await startHost(h, LISTEN)
      return h
    }
    ;[a, b] = await Promise.all([make(), make()])
    await b.handle(MESH_PROTOCOL, async (stream: Stream) => {
      let req: Awaited<ReturnType<typeof acceptMeshStream>>
      try {
        req = await acceptMeshStream(stream, AbortSignal.timeout(5000))
      } catch (err) {
        inboundErrors.push(err as Error)
        stream.abort(err as Error)
        return
      }
      if (req.open.service === 'refused') {
        await req.refuse('no replica')
        return
      }
      const backend = own(connect({ host: '127.0.0.1', port: req.open.target, allowHalfOpen: true }))
      try {
        await once(backend, 'connect')
      } catch {
        await req.refuse('connection refused')
        return
      }
      const raw = await req.accept()
      track(backend, spliceSocketStream(backend, raw), raw)
    })
    await a.dial(b.getMultiaddrs()[0])
  })

  after(async () => {
    for (const s of sockets) s.destroy()
    for (const srv of servers) srv.close()
    await Promise.all([a?.stop(), b?.stop()])
  })

  /** Splices started since `from`, once all have finished. */
  const settled = async (from: number, count: number): Promise<SpliceResult[]> => {
    await waitFor(() => splices.length >= from + count, 5000, `${count} splices to start`)
    return await Promise.all(splices.slice(from, from + count).map(async (s) => await s.done))
  }

  for (const route of ['mesh', 'local'] as const) {
    const ingress = route === 'mesh' ? meshIngress : localIngress
    /** a mesh connection is spliced twice (A and B), a local one once */
    const hops = route === 'mesh' ? 2 : 1

    describe(`${route} route`, () => {
      it('carries a few MB both ways intact', T, async () => {
        const from = splices.length
        const port = await ingress(await server((s) => { s.pipe(s) }))
        const payload = randomBytes(4 * 1024 * 1024)
        const client = own(await dial(port))
        const received = collect(client)
        await writeAll(client, payload)
        client.end()
        const got = await received
        assert.equal(got.ended, true)
        assert.equal(got.error, undefined)
        assert.equal(got.data.length, payload.length)
        assert.equal(sha256(got.data), sha256(payload))
        for (const r of await settled(from, hops)) {
          assert.equal(r.error, undefined)
          assert.equal(r.bytesToStream, payload.length)
          assert.equal(r.bytesToSocket, payload.length)
        }
      })

      it('delivers a greeting the backend sends before the client says anything', T, async () => {
        const port = await ingress(await server((s) => { s.write('HELLO\n'); s.pipe(s) }))
        const client = own(await dial(port))
        const [greeting] = await once(client, 'data') as [Buffer]
        assert.equal(greeting.toString(), 'HELLO\n')
        const received = collect(client)
        client.end('ping')
        const got = await received
        assert.equal(got.data.toString(), 'ping')
        assert.equal(got.ended, true)
      })

      it('delivers a greeting sent together with the backend\'s FIN, and still carries the client\'s bytes', T, async () => {
        let backendGot = ''
        const backendDone = deferred<void>()
        const port = await ingress(await server((s) => {
          s.end('HELLO AND GOODBYE\n')
          s.on('data', (c: Buffer) => { backendGot += c.toString() })
          s.on('end', () => { backendDone.resolve() })
        }))
        const from = splices.length
        const client = own(await dial(port))
        const received = collect(client)
        await once(client, 'end')
        client.end('still here')
        const got = await received
        await backendDone.promise
        assert.equal(got.data.toString(), 'HELLO AND GOODBYE\n')
        assert.equal(got.ended, true)
        assert.equal(backendGot, 'still here')
        for (const r of await settled(from, hops)) assert.equal(r.error, undefined)
      })

      it('half-close: the client ends first and still receives the whole reply', T, async () => {
        const reply = randomBytes(2 * 1024 * 1024)
        const port = await ingress(await server((s) => {
          const hash = createHash('sha256')
          s.on('data', (c: Buffer) => { hash.update(c) })
          // reply only after the client's FIN: the backend's direction outlives the client's
          s.on('end', () => { s.write(hash.digest('hex')); s.end(reply) })
        }))
        const request = randomBytes(1024 * 1024)
        const client = own(await dial(port))
        const received = collect(client)
        await writeAll(client, request)
        client.end()
        const got = await received
        assert.equal(got.ended, true)
        assert.equal(got.data.subarray(0, 64).toString(), sha256(request))
        assert.equal(sha256(got.data.subarray(64)), sha256(reply))
      })

      it('half-close: the backend ends first and still receives everything the client sends after', T, async () => {
        const backendHash = deferred<string>()
        const port = await ingress(await server((s) => {
          const hash = createHash('sha256')
          s.end('bye\n')
          s.on('data', (c: Buffer) => { hash.update(c) })
          s.on('end', () => { backendHash.resolve(hash.digest('hex')) })
        }))
        const client = own(await dial(port))
        const received = collect(client)
        await once(client, 'end')
        const late = randomBytes(2 * 1024 * 1024)
        await writeAll(client, late)
        client.end()
        assert.equal(await backendHash.promise, sha256(late))
        const got = await received
        assert.equal(got.data.toString(), 'bye\n')
        assert.equal(got.error, undefined)
      })

      it('backpressure: a backend that stops reading stalls the client, memory stays bounded, and everything arrives after', T, async (t) => {
        const backendSocket = deferred<Socket>()
        const port = await ingress(await server((s) => { s.pause(); backendSocket.resolve(s) }))
        const payload = randomBytes(BACKPRESSURE_BYTES)
        const client = own(await dial(port))
        const progress = { offered: 0, waiting: false }
        const writing = writeAll(client, payload, progress)
        const backend = await backendSocket.promise

        // wait until the client's writes stop making progress
        let last = -1
        let stillSince = Date.now()
        await waitFor(() => {
          if (progress.offered !== last) { last = progress.offered; stillSince = Date.now() }
          return progress.waiting && Date.now() - stillSince > 400
        }, 20_000, () => `the client to stall (offered ${progress.offered} bytes)`)
        const buffered = bufferedBytes()
        t.diagnostic(`stalled after ${(progress.offered / 2 ** 20).toFixed(1)} MiB of ${BACKPRESSURE_BYTES / 2 ** 20}; ` +
          `${(buffered / 2 ** 20).toFixed(1)} MiB held in stream and socket buffers; rss ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB`)
        assert.ok(progress.offered < BACKPRESSURE_BYTES * 0.75, `the client should stall well before ${BACKPRESSURE_BYTES} bytes, got ${progress.offered}`)
        // one yamux window (16 MiB at most) plus socket high-water marks
        assert.ok(buffered < 20 * 1024 * 1024, `buffered ${buffered} bytes`)
        assert.ok(client.writableLength <= 128 * 1024, `client write buffer ${client.writableLength}`)

        // the backend reads again: everything arrives, in order
        const hash = createHash('sha256')
        let got = 0
        const all = deferred<void>()
        backend.on('data', (c: Buffer) => { hash.update(c); got += c.length; if (got === BACKPRESSURE_BYTES) all.resolve() })
        backend.resume()
        await writing
        await all.promise
        assert.equal(hash.digest('hex'), sha256(payload))
        client.end()
        await once(backend, 'end')
        backend.end()
      })

      it('backpressure the other way: a client that stops reading stalls the backend', T, async (t) => {
        const payload = randomBytes(BACKPRESSURE_BYTES / 2)
        const progress = { offered: 0, waiting: false }
        // wrapped: resolving with the promise itself would wait for it
        const backendWriting = deferred<{ done: Promise<void> }>()
        const port = await ingress(await server((s) => { backendWriting.resolve({ done: writeAll(s, payload, progress) }) }))
        const client = own(await dial(port))
        client.pause()
        const writing = (await backendWriting.promise).done
        let last = -1
        let stillSince = Date.now()
        await waitFor(() => {
          if (progress.offered !== last) { last = progress.offered; stillSince = Date.now() }
          return progress.waiting && Date.now() - stillSince > 400
        }, 20_000, () => `the backend to stall (offered ${progress.offered} bytes)`)
        const buffered = bufferedBytes()
        t.diagnostic(`stalled after ${(progress.offered / 2 ** 20).toFixed(1)} MiB; ${(buffered / 2 ** 20).toFixed(1)} MiB held in buffers`)
        assert.ok(progress.offered < payload.length, `the backend should stall before ${payload.length} bytes`)
        assert.ok(buffered < 20 * 1024 * 1024, `buffered ${buffered} bytes`)

        const hash = createHash('sha256')
        let got = 0
        const all = deferred<void>()
        client.on('data', (c: Buffer) => { hash.update(c); got += c.length; if (got === payload.length) all.resolve() })
        client.resume()
        await writing
        await all.promise
        assert.equal(hash.digest('hex'), sha256(payload))
        client.end()
      })

      it('backpressure with a slow reader: a backend that reads in fits and starts keeps memory bounded', T, async (t) => {
        const payload = randomBytes(16 * 1024 * 1024)
        const hash = createHash('sha256')
        let got = 0
        const all = deferred<void>()
        const port = await ingress(await server((s) => {
          // one read (at most a high-water mark, 64 KiB) every 2 ms: far slower than the client
          // writes, so the splices pause and resume the flow over and over
          const timer = setInterval(() => {
            const c = s.read() as Buffer | null
            if (c === null) return
            hash.update(c)
            got += c.length
            if (got === payload.length) all.resolve()
          }, 2)
          s.on('close', () => { clearInterval(timer) })
          s.on('end', () => { clearInterval(timer); s.end() })
        }))
        const client = own(await dial(port))
        const received = collect(client)
        let peak = 0
        const sampler = setInterval(() => { peak = Math.max(peak, bufferedBytes()) }, 5)
        try {
          await writeAll(client, payload)
          await all.promise
        } finally {
          clearInterval(sampler)
        }
        t.diagnostic(`peak ${(peak / 2 ** 20).toFixed(1)} MiB held in buffers while ${payload.length / 2 ** 20} MiB went through`)
        assert.equal(hash.digest('hex'), sha256(payload))
        assert.ok(peak < 20 * 1024 * 1024, `peak buffered ${peak} bytes`)
        client.end()
        const end = await received
        assert.equal(end.error, undefined)
      })

      it('a backend reset reaches the client as a reset, promptly', T, async () => {
        const from = splices.length
        const port = await ingress(await server((s) => { s.once('data', () => { s.resetAndDestroy() }) }))
        const client = own(await dial(port))
        const received = collect(client)
        const start = Date.now()
        client.write('x')
        const got = await received
        assert.ok(Date.now() - start < RESET_WITHIN_MS, `took ${Date.now() - start} ms`)
        assert.equal(got.ended, false, 'a reset must not look like a clean end')
        assert.equal(got.error?.code, 'ECONNRESET')
        for (const r of await settled(from, hops)) assert.ok(r.error !== undefined)
      })

      it('a client reset reaches the backend, promptly', T, async () => {
        const backendSide = deferred<{ received: Promise<Received> }>()
        const port = await ingress(await server((s) => { backendSide.resolve({ received: collect(s) }) }))
        const client = own(await dial(port))
        client.write('x')
        const atBackend = (await backendSide.promise).received
        // let the byte arrive, so both splices are in place
        await sleep(50)
        const start = Date.now()
        client.resetAndDestroy()
        const got = await atBackend
        assert.ok(Date.now() - start < RESET_WITHIN_MS, `took ${Date.now() - start} ms`)
        assert.equal(got.ended, false, 'a reset must not look like a clean end')
        assert.equal(got.error?.code, 'ECONNRESET')
      })
    })
  }

  describe('the open handshake', () => {
    const open = (service: string, target: number): MeshOpen => ({
      v: 1, service, target, proto: 'tcp', client: { addr: '127.0.0.1', port: 40000 }, proxyProtocol: false
    })

    it('a refused open throws MeshRefusedError with the reason', T, async () => {
      await assert.rejects(openMeshStream(a, b.peerId, open('refused', 80), AbortSignal.timeout(5000)),
        (err: Error & { reason?: string }) => err.name === 'MeshRefusedError' && err.reason === 'no replica')
    })

    it('a backend that cannot be reached is a refusal too', T, async () => {
      // a port that was free a moment ago: nothing listens there
      const srv = createServer()
      const closed = await listen(srv)
      await new Promise<void>((resolve) => { srv.close(() => { resolve() }) })
      await assert.rejects(openMeshStream(a, b.peerId, open('web', closed), AbortSignal.timeout(5000)),
        (err: Error & { reason?: string }) => err.name === 'MeshRefusedError' && err.reason === 'connection refused')
    })

    it('malformed open frames are WireErrors on the responder, and the stream is reset', T, async () => {
      const frames: Array<{ what: string, bytes: Uint8Array }> = [
        { what: 'bad service name', bytes: pack({ ...open('web', 80), service: 'no spaces please' }) },
        { what: 'unknown version', bytes: pack({ ...open('web', 80), v: 9 }) },
        { what: 'not msgpack', bytes: Uint8Array.of(0xc1, 0xc1, 0xc1) },
        { what: 'oversized frame', bytes: new Uint8Array(4096) }
      ]
      for (const f of frames) {
        const before = inboundErrors.length
        const stream = await a.dialProtocol(b.peerId, MESH_PROTOCOL, { signal: AbortSignal.timeout(5000) })
        await lpStream(stream).write(f.bytes, { signal: AbortSignal.timeout(5000) })
        await waitFor(() => inboundErrors.length > before, 5000, `the responder to reject: ${f.what}`)
        assert.equal(inboundErrors[before].name, 'WireError', f.what)
        await waitFor(() => stream.status === 'reset', 5000, `the stream to be reset after: ${f.what}`)
      }
    })
  })
})
