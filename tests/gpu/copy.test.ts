import { describe, expect, it } from 'vitest';
import { copyKernel, measureCopyBandwidth } from '../../src/kernels/copy.ts';
import { runDispatches } from '../../src/kernels/dispatch.ts';
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
    runDispatches(ctx.device, [await copyKernel(ctx, src, dst)], 1);
    const got = await readF32(ctx, dst);
    expect(Array.from(got.subarray(0, n))).toEqual(Array.from(data));
    expect(Array.from(got.subarray(n))).toEqual(new Array(8).fill(-1));
  });

  it('measures a bandwidth: bytes read and written per second, finite and positive', async () => {
    const ctx = await gpuContext();
    const bw = await measureCopyBandwidth(ctx, 4 << 20, 2);
    expect(Number.isFinite(bw) && bw > 0).toBe(true);
  });
});
