/**
 * Byte splicing for the routing mesh: a client's TCP connection joined to a mesh stream (remote
 * replica) or to a TCP connection to the container (local replica), with the semantics of TCP
 * carried across:
 *
 * - backpressure both ways: a side that cannot take more pauses the other, so a slow reader
 *   holds at most a window of data in memory instead of everything the writer sends;
 * - half-close both ways: a FIN from one side ends only that direction (socket 'end' → stream
 *   close of our writable end; stream 'remoteCloseWrite' → socket.end()); the other keeps flowing;
 * - resets both ways: an error or an unfinished close on one side resets the other (socket
 *   error → stream.abort, sending a yamux RST; a reset stream → socket.resetAndDestroy, a TCP RST),
 *   so a client sees a broken backend as a broken connection, never as a clean end of data.
 *
 * Callers must create every socket given here with `allowHalfOpen: true` (net.createServer,
 * net.connect): without it Node answers the first FIN by ending the other direction too. They
 * must not have read from it either (no 'data' listener): a socket holds its bytes until the
 * splice takes over, which resumes it (so `pauseOnConnect: true` is fine, and recommended).
 *
 * A graceful libp2p shutdown closes the writable end of every open stream, which the far side
 * cannot tell from the client's own FIN; abort mesh streams (or destroy their sockets) before
 * stopping the host so the far side resets its backend connection instead.
 */
import type { Socket } from 'node:net'
import type { Stream, StreamCloseEvent, StreamMessageEvent } from '@libp2p/interface'

export interface SpliceResult {
  /** bytes read from the socket and sent on the stream (for spliceSockets: from `a` to `b`) */
  bytesToStream: number
  /** bytes received on the stream and written to the socket (for spliceSockets: from `b` to `a`) */
  bytesToSocket: number
  /** set when the connection ended abruptly: the first error or reset seen */
  error?: Error
}

/**
 * Idle time after which a proxied stream may be dropped. libp2p's default (120 s) suits protocol
 * exchanges; a proxied connection may idle far longer (a database pool's connection, a
 * long-poll), and dropping it breaks the client. A day outlives any idle a live client has, and
 * stays a finite value: a timer of Infinity or above 2^31-1 ms fires at once in Node. (In
 * @libp2p/utils 7 nothing enforces this field yet; the libp2p connection is kept alive by
 * yamux's own keepalive pings, so what bounds an idle proxied connection today is its TCP
 * keepalive below.)
 */
export const MESH_STREAM_INACTIVITY_TIMEOUT_MS = 24 * 60 * 60 * 1000
/**
 * Read buffer a paused mesh stream may hold. Pausing stops yamux window updates, but the remote
 * may still send what is left of the current window, which yamux grows up to its maximum stream
 * window (16 MiB). libp2p's default limit (4 MiB) would then reset a stream whose reader is
 * merely slow; one full window plus a frame is what an honest peer can send.
 */
export const MESH_STREAM_READ_BUFFER_BYTES = 16 * 1024 * 1024 + 256 * 1024
/**
 * TCP keepalive delay on spliced sockets. A client that vanishes without a FIN or RST (power
 * loss, a NAT that dropped its mapping) would otherwise pin its stream and backend connection
 * for good; the kernel then probes it and resets the connection after its probe count
 * (net.ipv4.tcp_keepalive_probes/intvl: 9 × 75 s on Linux).
 */
export const TCP_KEEPALIVE_DELAY_MS = 60_000

/** A splice ended because one side closed without finishing its direction(s). */
export class SpliceError extends Error {
  name = 'SpliceError'
}

function requireHalfOpen (socket: Socket): void {
  if (!socket.allowHalfOpen) throw new TypeError('spliced sockets must be created with allowHalfOpen: true')
}

function asError (err: unknown, fallback: string): Error {
  return err instanceof Error ? err : new SpliceError(fallback)
}

/** Destroy `socket` with a TCP RST, so its peer sees a reset rather than a clean end. */
function resetSocket (socket: Socket): void {
  if (socket.destroyed) return
  // after end() the socket is shutting down (uv_shutdown), which libuv cannot mix with a
  // close-reset; destroy() then still resets if unread data remains
  if (socket.writableEnded) {
    socket.destroy()
    return
  }
  try {
    socket.resetAndDestroy()
  } catch {
    // not a TCP handle (a pipe): there is no RST, a plain close is all there is
    socket.destroy()
  }
}

function prepare (socket: Socket): void {
  requireHalfOpen(socket)
  socket.setKeepAlive(true, TCP_KEEPALIVE_DELAY_MS)
}

/**
 * Splices `socket` and `stream` until both directions are finished. Resolves once the socket and
 * the stream are both closed; `error` says whether that was abrupt. Rejects only with a TypeError,
 * for a socket made without `allowHalfOpen`.
 */
export async function spliceSocketStream (socket: Socket, stream: Stream): Promise<SpliceResult> {
  prepare(socket)
  stream.inactivityTimeout = MESH_STREAM_INACTIVITY_TIMEOUT_MS
  if (stream.maxReadBufferLength < MESH_STREAM_READ_BUFFER_BYTES) stream.maxReadBufferLength = MESH_STREAM_READ_BUFFER_BYTES

  return await new Promise<SpliceResult>((resolve) => {
    const result: SpliceResult = { bytesToStream: 0, bytesToSocket: 0 }
    let socketClosed = socket.closed
    let streamClosed = false
    /** the socket's peer sent its FIN */
    let socketEnded = false
    /** we closed the stream's writable end (following the socket's FIN) */
    let streamWriteClosing = false
    /** the stream's peer closed its writable end; it may have done so before we took the stream over */
    let remoteEnded = stream.remoteWriteStatus === 'closed'
    /** we ended the socket's writable side (following the stream's end of data) */
    let socketEndCalled = false
    let waitingStreamDrain = false
    let waitingSocketDrain = false
    /** inside stream.resume(), which delivers buffered data before it tells the remote to send again */
    let resuming = false
    let failed = false

    const fail = (err: Error): void => {
      result.error ??= err
      if (failed) return
      failed = true
      stream.abort(err)
      resetSocket(socket)
    }

    const pauseStream = (): void => {
      if (stream.readStatus === 'readable') stream.pause()
    }

    const endSocketIfDone = (): void => {
      if (socketEndCalled || !remoteEnded || stream.readBufferLength > 0 || socket.destroyed) return
      socketEndCalled = true
      socket.end()
    }

    // ---- socket → stream
    const onSocketData = (chunk: Buffer): void => {
      let more: boolean
      try {
        more = stream.send(chunk)
      } catch (err) {
        fail(asError(err, 'stream send failed'))
        return
      }
      result.bytesToStream += chunk.byteLength
      if (!more) {
        // not stream.onDrain(): in @libp2p/utils 7 its promise stays resolved after the first drain
        waitingStreamDrain = true
        socket.pause()
      }
    }
    const onStreamDrain = (): void => {
      if (!waitingStreamDrain) return
      waitingStreamDrain = false
      if (!socket.destroyed) socket.resume()
    }
    const onSocketEnd = (): void => {
      socketEnded = true
      streamWriteClosing = true
      stream.close().catch((err: unknown) => { fail(asError(err, 'stream close failed')) })
    }

    // ---- stream → socket
    const onStreamMessage = (evt: StreamMessageEvent): void => {
      const data = evt.data
      if (socketEndCalled || socket.destroyed) return
      result.bytesToSocket += data.byteLength
      let more = true
      if (data instanceof Uint8Array) {
        more = socket.write(data)
      } else {
        socket.cork()
        for (const buf of data) more = socket.write(buf)
        socket.uncork()
      }
      if (!more) {
        waitingSocketDrain = true
        // resume() sends its window update after delivering, which would undo a pause made
        // here; onSocketDrain pauses again once resume() has returned
        if (!resuming) pauseStream()
      }
      endSocketIfDone()
    }
    const onSocketDrain = (): void => {
      if (!waitingSocketDrain) return
      waitingSocketDrain = false
      if (stream.readStatus !== 'paused') return
      resuming = true
      try {
        stream.resume()
      } finally {
        resuming = false
      }
      if (waitingSocketDrain) pauseStream()
    }
    const onRemoteCloseWrite = (): void => {
      remoteEnded = true
      // a frame may carry data and FIN together: yamux reports the FIN first, then the data
      queueMicrotask(endSocketIfDone)
    }

    // ---- ends
    const finish = (): void => {
      if (!socketClosed || !streamClosed) return
      socket.off('data', onSocketData)
      socket.off('end', onSocketEnd)
      socket.off('drain', onSocketDrain)
      socket.off('error', onSocketError)
      socket.off('close', onSocketClose)
      stream.removeEventListener('message', onStreamMessage)
      stream.removeEventListener('drain', onStreamDrain)
      stream.removeEventListener('remoteCloseWrite', onRemoteCloseWrite)
      stream.removeEventListener('close', onStreamClose)
      resolve(result)
    }
    const onStreamClose = (evt: StreamCloseEvent): void => {
      streamClosed = true
      if (evt.error != null) {
        fail(evt.error)
      } else if (!remoteEnded || !streamWriteClosing) {
        // closed without both FINs: the connection under it went away
        fail(new SpliceError('the mesh stream closed before both directions ended'))
      }
      finish()
    }
    const onSocketError = (err: Error): void => {
      fail(err)
    }
    const onSocketClose = (): void => {
      socketClosed = true
      if (!(socketEnded && socketEndCalled && socket.writableFinished)) fail(new SpliceError('the socket closed before both directions ended'))
      finish()
    }

    socket.on('error', onSocketError)
    socket.on('close', onSocketClose)
    socket.on('end', onSocketEnd)
    socket.on('drain', onSocketDrain)
    stream.addEventListener('close', onStreamClose)
    stream.addEventListener('remoteCloseWrite', onRemoteCloseWrite)
    stream.addEventListener('drain', onStreamDrain)

    if (stream.status !== 'open') {
      // closed or reset before we took it over: no 'close' event will come
      streamClosed = true
      fail(new SpliceError(`the mesh stream was already ${stream.status}`))
    }
    if (socket.destroyed) fail(new SpliceError('the socket was already destroyed'))
    if (!failed) {
      // data the handshake read ahead was handed back to the stream; this listener receives it first
      stream.addEventListener('message', onStreamMessage)
      socket.on('data', onSocketData)
      // a 'data' listener alone does not start a socket paused explicitly (pauseOnConnect)
      socket.resume()
      endSocketIfDone()
    }
    finish()
  })
}

/**
 * Splices two sockets (a client and a local replica's container) with the same semantics as
 * spliceSocketStream. In the result, `a` plays the socket and `b` the stream.
 */
export async function spliceSockets (a: Socket, b: Socket): Promise<SpliceResult> {
  prepare(a)
  prepare(b)
  return await new Promise<SpliceResult>((resolve) => {
    const result: SpliceResult = { bytesToStream: 0, bytesToSocket: 0 }
    let closed = 0
    let failed = false
    const fail = (err: Error): void => {
      result.error ??= err
      if (failed) return
      failed = true
      resetSocket(a)
      resetSocket(b)
    }
    const forward = (from: Socket, to: Socket, count: (n: number) => void): void => {
      from.on('data', (chunk: Buffer) => {
        if (to.destroyed || to.writableEnded) return
        count(chunk.byteLength)
        if (!to.write(chunk)) {
          from.pause()
          to.once('drain', () => { if (!from.destroyed) from.resume() })
        }
      })
      from.on('end', () => { if (!to.destroyed) to.end() })
      from.on('error', fail)
      from.on('close', () => {
        if (!(from.readableEnded && from.writableFinished)) fail(new SpliceError('a socket closed before both directions ended'))
        if (++closed === 2) resolve(result)
      })
    }
    forward(a, b, (n) => { result.bytesToStream += n })
    forward(b, a, (n) => { result.bytesToSocket += n })
    // a 'data' listener alone does not start a socket paused explicitly (pauseOnConnect)
    a.resume()
    b.resume()
    for (const s of [a, b]) {
      if (s.closed) closed++
      if (s.destroyed) fail(new SpliceError('a socket was already destroyed'))
    }
    if (closed === 2) resolve(result)
  })
}
