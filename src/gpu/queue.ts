import { DeviceLostError } from '../errors.ts';
import { align4, createReadback, MapMode } from './buffers.ts';
import type { GpuContext } from './context.ts';

/**
 * The one way work reaches the GPU and results come back. WebGPU drops a submission to a lost
 * device without a word and fails a map with a bare AbortError or OperationError; going through
 * here, both become a DeviceLostError that tells the caller what to do, whichever module asked.
 */

/** Submits recorded work: an encoder (finished here) or finished command buffers. */
export function submit(ctx: GpuContext, work: GPUCommandEncoder | readonly GPUCommandBuffer[]): void {
  // A submission to a lost device would vanish, and the caller would wait on its results.
  ctx.assertAlive();
  ctx.device.queue.submit('finish' in work ? [work.finish()] : work);
}

/** Resolves once the GPU has finished everything submitted so far (it also resolves on a lost device, hence the check). */
export async function workDone(ctx: GpuContext): Promise<void> {
  await ctx.device.queue.onSubmittedWorkDone();
  ctx.assertAlive();
}

/**
 * Maps the first `bytes` of a MAP_READ staging buffer (its copy already submitted), hands the
 * mapped range to `use` and unmaps, so a staging buffer planned at load time serves every step.
 * `use` must not keep the range: it is detached on unmap.
 */
export async function withMappedRange<T>(ctx: GpuContext, staging: GPUBuffer, bytes: number, use: (range: ArrayBuffer) => T): Promise<T> {
  try {
    // The size is explicit so the map covers only what is read (tests count the bytes mapped).
    await staging.mapAsync(MapMode.READ, 0, bytes);
  } catch (e) {
    throw mapFailure(ctx, e);
  }
  try {
    return use(staging.getMappedRange(0, bytes));
  } finally {
    staging.unmap();
  }
}

/** A copy of the first `bytes` of a staging buffer (see withMappedRange). */
export function mapRead(ctx: GpuContext, staging: GPUBuffer, bytes: number): Promise<ArrayBuffer> {
  return withMappedRange(ctx, staging, bytes, (range) => range.slice(0));
}

/**
 * Copies a buffer range to the CPU through a staging buffer of its own. It allocates, so it is
 * for tests and load-time checks, never inside a token: steps read through staging buffers
 * planned with the model (mapRead).
 */
export async function readBuffer(ctx: GpuContext, src: GPUBuffer, offset = 0, bytes = src.size - offset): Promise<ArrayBuffer> {
  const staging = createReadback(ctx.device, bytes, 'readback');
  try {
    const enc = ctx.device.createCommandEncoder();
    enc.copyBufferToBuffer(src, offset, staging, 0, align4(bytes));
    submit(ctx, enc);
    return (await mapRead(ctx, staging, align4(bytes))).slice(0, bytes);
  } finally {
    staging.destroy();
  }
}

/**
 * The error a failed map becomes. The lost device's own reason when the context has heard of
 * it (it has by the time a map fails in Dawn and Chromium); otherwise the map's error, still as
 * DeviceLostError, since the engine cannot go on without its results either way.
 */
function mapFailure(ctx: GpuContext, cause: unknown): DeviceLostError {
  const lost = ctx.lostError({ cause });
  if (lost) return lost;
  const e = cause as Error;
  const what = e?.message ? `${e.name}: ${e.message}` : (e?.name ?? String(cause));
  return new DeviceLostError(`Reading results from the GPU failed (${what}). Create a new engine to continue; cached weights are kept.`, { cause });
}
