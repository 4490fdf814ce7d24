/**
 * Opening a mesh stream: the ingress node sends one open frame, the replica's node answers with
 * one reply frame, and from then on the stream carries the client's bytes (protocol/mesh.ts).
 *
 * Both sides read their frame through a length-prefixed reader that reads ahead: whatever arrived
 * behind the frame (a server's greeting sent the moment it accepted, say) sits in the reader's
 * buffer. `unwrap()` hands those bytes back to the stream, so the splice that takes over sees
 * them first and nothing is lost.
 */
import type { PeerId, Stream } from '@libp2p/interface'
import { lpStream, type LengthPrefixedStream } from '@libp2p/utils'
import { WireError } from '../../protocol/codec.ts'
import {
  decodeMeshOpen, decodeMeshReply, encodeMeshOpen, encodeMeshReply, MAX_MESH_FRAME_BYTES, MESH_PROTOCOL, type MeshOpen
} from '../../protocol/mesh.ts'
import type { Host } from '../host.ts'

/** The replica's node refused the open; `reason` is its phrase for why ("no replica"). */
export class MeshRefusedError extends Error {
  name = 'MeshRefusedError'
  readonly reason: string

  constructor (reason: string) {
    super(`mesh open refused: ${reason}`)
    this.reason = reason
  }
}

/** The answer to one inbound open. Call exactly one of accept or refuse. */
export interface MeshRequest {
  open: MeshOpen
  /** Sends {ok: true}; returns the stream, positioned at the client's first byte. */
  accept (): Promise<Stream>
  /** Sends {ok: false, reason} and closes our end. */
  refuse (reason: string): Promise<void>
}

/** Errors of the length-prefixed reader that mean the peer sent a malformed frame, not that it went away. */
const MALFORMED_FRAME_ERRORS = new Set(['InvalidDataLengthError', 'InvalidMessageLengthError', 'InvalidDataLengthLengthError'])

/**
 * The error to report for a failed handshake step. Waiting for 'drain' rejects with the stream's
 * 'close' event itself when the stream closes meanwhile; report the error it carries instead.
 */
function asError (err: unknown): Error {
  if (err instanceof Error) return err
  const carried = (err as { error?: unknown } | null)?.error
  return carried instanceof Error ? carried : new Error('the mesh stream closed during the handshake')
}

async function readFrame (lp: LengthPrefixedStream<Stream>, signal: AbortSignal): Promise<Uint8Array> {
  try {
    return (await lp.read({ signal })).subarray()
  } catch (err) {
    const e = asError(err)
    if (MALFORMED_FRAME_ERRORS.has(e.name)) throw new WireError(`malformed mesh frame: ${e.message}`)
    throw e
  }
}

/**
 * Opens a mesh stream to `peer` for `open`. Resolves once the peer accepted, with the stream at
 * the first raw byte; throws MeshRefusedError if it refused, WireError if its reply was malformed,
 * or the dial's or stream's error. On any failure the stream is aborted.
 */
export async function openMeshStream (host: Host, peer: PeerId, open: MeshOpen, signal: AbortSignal): Promise<Stream> {
  const frame = encodeMeshOpen(open)
  const stream = await host.dialProtocol(peer, MESH_PROTOCOL, { signal })
  try {
    const lp = lpStream(stream, { maxDataLength: MAX_MESH_FRAME_BYTES })
    await lp.write(frame, { signal })
    const reply = decodeMeshReply(await readFrame(lp, signal))
    if (!reply.ok) throw new MeshRefusedError(reply.reason)
    return lp.unwrap()
  } catch (err) {
    const e = asError(err)
    stream.abort(e)
    throw e
  }
}

/**
 * Reads the open frame of an inbound mesh stream. Throws WireError when it is malformed (the
 * caller counts it and resets the stream), or the stream's error if it ends first. `signal` also
 * bounds the reply that accept() or refuse() writes; a failed reply aborts the stream.
 */
export async function acceptMeshStream (stream: Stream, signal: AbortSignal): Promise<MeshRequest> {
  const lp = lpStream(stream, { maxDataLength: MAX_MESH_FRAME_BYTES })
  const open = decodeMeshOpen(await readFrame(lp, signal))
  let answered = false
  const answer = (): void => {
    if (answered) throw new Error('mesh open already answered')
    answered = true
  }
  return {
    open,
    accept: async () => {
      answer()
      try {
        await lp.write(encodeMeshReply({ ok: true }), { signal })
      } catch (err) {
        const e = asError(err)
        stream.abort(e)
        throw e
      }
      return lp.unwrap()
    },
    refuse: async (reason) => {
      answer()
      try {
        await lp.write(encodeMeshReply({ ok: false, reason }), { signal })
        await stream.close({ signal })
      } catch (err) {
        const e = asError(err)
        stream.abort(e)
        throw e
      }
    }
  }
}
