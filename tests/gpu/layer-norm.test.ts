import { describe, it } from 'vitest';
import { layerNorm } from '../../src/kernels/layer-norm.ts';
import { runDispatches } from '../../src/kernels/dispatch.ts';
import { layerNorm as layerNormRef } from '../../src/reference/layer-norm.ts';
import { expectClose, gpuContext, output, randomF32, readF32, rng, stepUniform, upload, useKernelProfile } from './harness.ts';

for (const profile of ['gpu', 'cpu'] as const)
  describe(`layer_norm kernel, ${profile} shape`, () => {
    useKernelProfile(profile);
    // f32 accumulation over a row of width C: error ~ C · 2^-24 relative; 2e-5 absolute on unit-scale data.
    const TOL = 2e-5;
    for (const [rows, width] of [
      [1, 32],
      [3, 1024],
      [5, 97],
      [2, 1],
    ] as const) {
      it(`matches the float64 reference on ${rows}×${width}`, async () => {
        const ctx = await gpuContext();
        const rand = rng(rows * 1000 + width);
        // An offset mean checks the two-pass variance.
        const x = randomF32(rows * width, rand, 3).map((v) => v + 5);
        const w = randomF32(width, rand);
        const b = randomF32(width, rand);
        const y = output(ctx, rows * width * 4);
        const d = await layerNorm(
          ctx,
          { width, eps: 1e-5 },
          { step: stepUniform(ctx, rows).buffer, x: upload(ctx, x), weight: upload(ctx, w), bias: upload(ctx, b), y },
        );
        runDispatches(ctx, [d], rows);
        const expected = layerNormRef(Float64Array.from(x), rows, width, w, b, 1e-5);
        expectClose(await readF32(ctx, y, rows * width), expected, width === 1 ? 1e-6 : TOL);
      });
    }
  });
