import { BufferUsage } from './buffers.ts';
import type { GpuContext } from './context.ts';
import { mapRead, submit, workDone } from './queue.ts';

export interface PassTime {
  ms: number;
  /** 'timestamp': GPU time from timestamp queries; 'wall': the wall clock around a pass run alone. */
  source: 'timestamp' | 'wall';
}

/** Records one piece of work into the compute pass it is timed in. */
export type TimedPass = (pass: GPUComputePassEncoder) => void;

/**
 * The time of each of `passes`, each recorded into a compute pass of its own. Where the device
 * has timestamp queries, all passes go in one submission and each is timed on the GPU; elsewhere
 * each is submitted alone and waited for, which adds the submission's overhead to every pass but
 * still ranks them. Allocates its query set and buffers per call: for benchmarks, not for steps.
 */
export async function timePasses(ctx: GpuContext, passes: readonly TimedPass[]): Promise<PassTime[]> {
  const device = ctx.device;
  if (device.features.has('timestamp-query')) {
    const count = passes.length * 2;
    const set = device.createQuerySet({ type: 'timestamp', count });
    const resolve = device.createBuffer({ label: 'timestamps', size: count * 8, usage: BufferUsage.QUERY_RESOLVE | BufferUsage.COPY_SRC });
    const read = device.createBuffer({ label: 'timestampsReadback', size: count * 8, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
    try {
      const enc = device.createCommandEncoder();
      passes.forEach((record, i) => {
        const pass = enc.beginComputePass({ timestampWrites: { querySet: set, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 } });
        record(pass);
        pass.end();
      });
      enc.resolveQuerySet(set, 0, count, resolve, 0);
      enc.copyBufferToBuffer(resolve, 0, read, 0, count * 8);
      submit(ctx, enc);
      const ns = new BigUint64Array(await mapRead(ctx, read, count * 8));
      return passes.map((_, i) => ({ ms: Number(ns[2 * i + 1] - ns[2 * i]) / 1e6, source: 'timestamp' as const }));
    } finally {
      set.destroy();
      resolve.destroy();
      read.destroy();
    }
  }
  const out: PassTime[] = [];
  for (const record of passes) {
    const t0 = performance.now();
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    record(pass);
    pass.end();
    submit(ctx, enc);
    await workDone(ctx);
    out.push({ ms: performance.now() - t0, source: 'wall' });
  }
  return out;
}
