import { describe, expect, it } from 'vitest';
import { embedding } from '../../src/kernels/embedding.ts';
import { runDispatches } from '../../src/kernels/dispatch.ts';
import type { StorageType } from '../../src/storage-types.ts';
import { embedding as embeddingRef } from '../../src/reference/embedding.ts';
import { gpuContext, randomF32, readF32, rng, stepUniform, upload, weightData } from './harness.ts';

describe('embedding kernel', () => {
  // A copy: every value must come back bit for bit (tolerance 0), the reference seeing the
  // same rounded weights.
  const cases: [StorageType, number, number, number][] = [
    // type, rows, width, vocab
    ['f32', 3, 64, 50],
    ['bf16', 5, 33, 17],
    ['f16', 2, 1024, 100],
    // Quantised (grouped along C): q · s is exact in float32 on both sides, so still bit for bit.
    ['q8', 3, 64, 50],
    ['q4', 4, 96, 17],
    ['q4', 2, 1024, 100],
  ];
  for (const [type, rows, width, vocab] of cases) {
    it(`copies rows of a ${type} table (${rows} ids, C=${width}, V=${vocab}) and zeroes out-of-range ids`, async () => {
      const ctx = await gpuContext();
      const rand = rng(rows * 131 + width * 7 + vocab);
      const wte = weightData(randomF32(vocab * width, rand, 2), type, [vocab, width]);
      // Valid ids (the last row of the table included), then two past the end: one row each.
      const valid = Array.from({ length: rows }, (_, i) => (i === 0 ? vocab - 1 : Math.floor(rand() * vocab)));
      const ids = Uint32Array.from([...valid, vocab, 0xffffffff]);
      const n = ids.length;
      // Pre-filled with garbage, so zeros must really be written.
      const h = upload(ctx, new Float32Array(n * width).fill(7));
      const d = await embedding(ctx, { width, vocab }, type, { step: stepUniform(ctx, n).buffer, ids: upload(ctx, ids), wte: upload(ctx, wte.data), h });
      runDispatches(ctx, [d], n);
      const got = await readF32(ctx, h, n * width);
      const want = embeddingRef(valid, wte.rounded, width);
      expect(Array.from(got.subarray(0, rows * width))).toEqual(Array.from(want));
      expect(got.subarray(rows * width).every((v) => v === 0)).toBe(true);
    });
  }

  it('leaves rows beyond the step untouched', async () => {
    const ctx = await gpuContext();
    const width = 16;
    const wte = randomF32(4 * width, rng(5));
    const h = upload(ctx, new Float32Array(3 * width).fill(7));
    const step = stepUniform(ctx, 1);
    const d = await embedding(ctx, { width, vocab: 4 }, 'f32', { step: step.buffer, ids: upload(ctx, Uint32Array.from([2, 1, 0])), wte: upload(ctx, wte), h });
    runDispatches(ctx, [d], 3); // more workgroups than the step's rows: the extra ones must idle
    const got = await readF32(ctx, h);
    expect(Array.from(got.subarray(0, width))).toEqual(Array.from(wte.subarray(2 * width, 3 * width)));
    expect(got.subarray(width).every((v) => v === 7)).toBe(true);
  });
});
