/**
 * Small helpers for our request/response stream protocols: one length-prefixed msgpack frame
 * each way, with a size limit and a deadline.
 */
import type { Stream } from '@libp2p/interface'
import { lpStream, type LengthPrefixedStream } from '@libp2p/utils'

export interface Framed {
  read (signal: AbortSignal): Promise<Uint8Array>
  write (bytes: Uint8Array, signal: AbortSignal): Promise<void>
  close (): Promise<void>
}

export function framed (stream: Stream, maxFrameBytes: number): Framed {
  const lp: LengthPrefixedStream<Stream> = lpStream(stream, { maxDataLength: maxFrameBytes })
  return {
    read: async (signal) => (await lp.read({ signal })).subarray(),
    write: async (bytes, signal) => { await lp.write(bytes, { signal }) },
    close: async () => {
      try {
        await stream.close()
      } catch {
        stream.abort(new Error('close failed'))
      }
    }
  }
}
