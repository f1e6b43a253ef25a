// Reading a byte stream (a fetch body, Blob.stream()) into memory the caller owns, so that a
// shard-sized buffer is allocated once per load and reused: the JS heap then holds what the
// loader needs, not a trail of per-chunk ArrayBuffers waiting for the garbage collector.

/** The stream sent more bytes than the target holds. */
export class StreamOverflowError extends Error {
  override name = 'StreamOverflowError';
}

const SCRATCH_BYTES = 1 << 20;
/** Scratch buffers of finished reads, reused by the next ones (one per read in flight). */
const idleScratch: ArrayBuffer[] = [];

/**
 * Copies a stream into `target` from `at` on; resolves to the end offset when the stream ends.
 * With a BYOB reader (Chromium, Firefox, Node), each read fills one reused 1 MiB scratch buffer
 * (never `target` itself: a read that fails would take the transferred buffer with it, and the
 * bytes received so far are what a resumed download continues from). Without one, chunks are
 * copied as they come. `onBytes(end)` follows every chunk; a failed read rejects with the
 * stream's error after the bytes before it were copied and reported.
 */
export async function readStreamInto(stream: ReadableStream<Uint8Array>, target: Uint8Array, at: number, onBytes?: (end: number) => void): Promise<number> {
  let end = at;
  let overflow = false;
  const take = (chunk: Uint8Array) => {
    if (chunk.byteLength > target.byteLength - end) {
      overflow = true;
      throw new StreamOverflowError(`the stream holds more than ${target.byteLength} bytes`);
    }
    target.set(chunk, end);
    end += chunk.byteLength;
    onBytes?.(end);
  };
  let byob: ReadableStreamBYOBReader | null = null;
  try {
    byob = stream.getReader({ mode: 'byob' });
  } catch {
    byob = null;
  }
  if (byob) {
    let scratch: ArrayBuffer | null = idleScratch.pop() ?? new ArrayBuffer(SCRATCH_BYTES);
    try {
      for (;;) {
        const view = new Uint8Array(scratch!);
        scratch = null; // transferred to the stream until the read returns it
        const { value, done } = await byob.read(view);
        if (value) scratch = value.buffer as ArrayBuffer;
        if (done) break;
        take(value!);
      }
    } finally {
      if (scratch && scratch.byteLength === SCRATCH_BYTES) idleScratch.push(scratch);
      if (overflow) await byob.cancel().catch(() => {});
      byob.releaseLock();
    }
    return end;
  }
  const reader = stream.getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      take(value);
    }
  } finally {
    if (overflow) await reader.cancel().catch(() => {});
    reader.releaseLock();
  }
  return end;
}
