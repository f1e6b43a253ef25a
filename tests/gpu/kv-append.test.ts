import { describe, expect, it } from 'vitest';
import { kvAppend } from '../../src/kernels/kv-append.ts';
import { runDispatches } from '../../src/kernels/dispatch.ts';
import { StepUniform } from '../../src/kernels/step.ts';
import { f16ToF32 } from '../../src/checkpoint/dtype.ts';
import { readBuffer } from '../../src/gpu/queue.ts';
import { gpuContext, randomF32, readF32, rng, upload } from './harness.ts';

const SENTINEL = -12345;

describe('kv_append kernel', () => {
  // f32: a copy, compared bit for bit (tolerance 0).
  it('appends at growing positions, leaves earlier rows and the rest of the buffer untouched', async () => {
    const ctx = await gpuContext();
    const width = 96;
    const maxContext = 16;
    const rand = rng(42);
    // The cache is bound as the first maxContext rows of a larger buffer: the 2 rows after it
    // stand for whatever the allocator put next, and must survive an append past the end.
    const buffer = upload(ctx, new Float32Array((maxContext + 2) * width).fill(SENTINEL));
    const src = upload(ctx, new Float32Array(8 * width));
    const step = new StepUniform(ctx.device);
    const d = await kvAppend(ctx, { width }, { step: step.buffer, src, cache: { buffer, offset: 0, size: maxContext * width * 4 } });
    const want = new Float32Array((maxContext + 2) * width).fill(SENTINEL);
    let pos = 0;
    // A prefill chunk, single decode tokens, another chunk, then one that overruns the cache.
    for (const rows of [5, 1, 1, 4, 1, 6]) {
      const rowsData = new Float32Array(randomF32(rows * width, rand));
      ctx.device.queue.writeBuffer(src, 0, rowsData);
      step.write(rows, pos);
      runDispatches(ctx, [d], rows);
      for (let r = 0; r < rows && pos + r < maxContext; r++) {
        want.set(rowsData.subarray(r * width, (r + 1) * width), (pos + r) * width);
      }
      expect(Array.from(await readF32(ctx, buffer)), `after appending ${rows} rows at ${pos}`).toEqual(Array.from(want));
      pos += rows;
    }
  });

  it('rounds into an f16 cache, two values per u32 word', async () => {
    const ctx = await gpuContext();
    const width = 64;
    const rows = 3;
    const pos = 2;
    const data = randomF32(rows * width, rng(7), 30);
    const cache = upload(ctx, new Uint16Array(8 * width).fill(0x7bff)); // 65504 everywhere
    const step = new StepUniform(ctx.device);
    step.write(rows, pos);
    const d = await kvAppend(ctx, { width, cache: 'f16' }, { step: step.buffer, src: upload(ctx, data), cache });
    runDispatches(ctx, [d], rows);
    const halves = new Uint16Array(await readBuffer(ctx, cache));
    for (let i = 0; i < 8 * width; i++) {
      const row = Math.floor(i / width);
      const got = f16ToF32(halves[i]);
      if (row < pos || row >= pos + rows) {
        expect(got, `untouched element ${i}`).toBe(65504);
      } else {
        // WGSL lets the f32 → f16 conversion round to either neighbour: one f16 ulp (2^-10
        // relative; 2^-24 absolute for subnormals) is the tolerance.
        const x = data[i - pos * width];
        expect(Math.abs(got - x), `element ${i}`).toBeLessThanOrEqual(Math.max(Math.abs(x) * 2 ** -10, 2 ** -24));
      }
    }
  });

  it('rejects an odd width for an f16 cache', async () => {
    const ctx = await gpuContext();
    await expect(kvAppend(ctx, { width: 7, cache: 'f16' }, {} as Parameters<typeof kvAppend>[2])).rejects.toThrow(/even/);
  });
});
