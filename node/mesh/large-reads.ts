/**
 * Backend connections for the mesh that read in large chunks. A plain socket reads at most 64 KiB
 * per 'data' event, and splicing a large download at that size costs the agent one event, one
 * allocation and one write per 64 KiB: measured on 2 cores, a Node splice then carries ~0.65× of
 * a direct download. Reading up to 1 MiB at a time carries ~0.85× (test/bench/mesh.bench.ts).
 *
 * Node's `onread` option reads into a buffer we supply. One buffer serves every socket: libuv
 * fills it and calls back synchronously, one read at a time on the main thread, and the callback
 * copies the bytes out before it returns, so no read can overwrite another's data. The copy is
 * re-emitted as the socket's 'data' event, so the splice code reads these sockets like any other;
 * pause() and resume() stop and start the underlying reads as usual.
 *
 * Only sockets we dial can read this way (net.Server accepts sockets with the default reads), so
 * this speeds up the direction that matters for downloads: backend → client, for a local replica
 * (the router uses it only for socket-to-socket splices; see dialTcp there).
 */
import { connect, type NetConnectOpts, type Socket } from 'node:net'

/**
 * Largest read: 1 MiB took a loopback download from ~0.65× to ~0.85× of direct; 4 MiB added
 * nothing measurable. Allocated once, on the first mesh connection (an agent without mesh
 * traffic never pays for it).
 */
export const MESH_READ_CHUNK_BYTES = 1024 * 1024

let sharedReadBuffer: Buffer | undefined

/**
 * net.connect with large reads. The socket starts paused: nothing is read (and so nothing is
 * lost, e.g. a server's greeting) until the splice has its listeners on it and resumes it.
 */
export function connectWithLargeReads (opts: NetConnectOpts): Socket {
  sharedReadBuffer ??= Buffer.allocUnsafe(MESH_READ_CHUNK_BYTES)
  const s: Socket = connect({
    ...opts,
    onread: {
      buffer: sharedReadBuffer,
      callback: (bytes: number, buf: Uint8Array): boolean => {
        // Buffer.from copies: the shared buffer is reused by the next read
        s.emit('data', Buffer.from(buf.subarray(0, bytes)))
        return true
      }
    }
  })
  s.pause()
  return s
}
