import { describe, expect, it } from 'vitest';
import { copyKernel, measureCopyBandwidth } from '../../src/kernels/copy.ts';
import { encodeDispatches, runDispatches } from '../../src/kernels/dispatch.ts';
import { timePasses } from '../../src/gpu/profiler.ts';
import { gpuContext, randomF32, readF32, rng, upload } from './harness.ts';

// The bandwidth yardstick of `molm bench`: it must copy every word (bit for bit), whatever the
// buffer's size against its workgroups' stride.

describe('copy kernel', () => {
  it('copies every word of a buffer that is not a multiple of its stride, and nothing past it', async () => {
    const ctx = await gpuContext();
    const n = (3 << 20) / 4 + 12; // 3 MiB and 48 bytes of f32
    const data = new Float32Array(randomF32(n, rng(7)));
    const src = upload(ctx, data);
    const dst = upload(ctx, new Float32Array(n + 8).fill(-1));
    runDispatches(ctx, [await copyKernel(ctx, src, dst)], 1);
    const got = await readF32(ctx, dst);
    expect(Array.from(got.subarray(0, n))).toEqual(Array.from(data));
    expect(Array.from(got.subarray(n))).toEqual(new Array(8).fill(-1));
  });

  it('measures a bandwidth: bytes read and written per second, finite and positive', async () => {
    const ctx = await gpuContext();
    const bw = await measureCopyBandwidth(ctx, 4 << 20, 2);
    expect(Number.isFinite(bw) && bw > 0).toBe(true);
  });

  it('the profiler times each pass it is given (timestamps where the device has them), and the passes run', async () => {
    const ctx = await gpuContext();
    const data = new Float32Array(randomF32(1 << 16, rng(3)));
    const src = upload(ctx, data);
    const dst = upload(ctx, new Float32Array(data.length));
    const d = await copyKernel(ctx, src, dst);
    const times = await timePasses(ctx, [(pass) => encodeDispatches(pass, [d], 1), () => {}]);
    const source = ctx.device.features.has('timestamp-query') ? 'timestamp' : 'wall';
    expect(times).toEqual([
      { ms: expect.any(Number), source },
      { ms: expect.any(Number), source },
    ]);
    expect(times.every((t) => Number.isFinite(t.ms) && t.ms >= 0)).toBe(true);
    expect(Array.from(await readF32(ctx, dst))).toEqual(Array.from(data));
  });
});
