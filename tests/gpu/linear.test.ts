import { describe, expect, it } from 'vitest';
import { runDispatches } from '../../src/kernels/dispatch.ts';
import { linear } from '../../src/kernels/linear.ts';
import type { StorageType } from '../../src/storage-types.ts';
import { linear as linearRef } from '../../src/reference/linear.ts';
import { linearTolerance as tolerance } from '../shared/linear-bound.ts';
import {
  expectClose,
  gpuContext,
  KERNEL_SHAPES,
  kernelShapeName,
  output,
  randomF32,
  readF32,
  rng,
  setKernelShape,
  stepUniform,
  subgroupsDefine,
  upload,
  weightData,
  type KernelShape,
} from './harness.ts';

interface Case {
  rows: number;
  inDim: number;
  outDim: number;
  hasBias: boolean;
  lastRowOnly: boolean;
}

const GPU_TREE: KernelShape = { profile: 'gpu', subgroups: false };

async function check(type: StorageType, c: Case, seed: number, shape: KernelShape = GPU_TREE): Promise<void> {
  const ctx = await gpuContext();
  // Every kernel shape (cooperative lanes for GPUs, reduced within subgroups or through workgroup
  // memory; a row per invocation for CPU adapters) runs here.
  setKernelShape(ctx, shape);
  const rand = rng(seed);
  const scale = 1 / Math.sqrt(c.inDim);
  const x = randomF32(c.rows * c.inDim, rand);
  const w = weightData(randomF32(c.outDim * c.inDim, rand, scale), type, [c.outDim, c.inDim]);
  const bias = c.hasBias ? randomF32(c.outDim, rand) : null;
  const outRows = c.lastRowOnly ? 1 : c.rows;
  const weight = upload(ctx, w.data);
  // NaN bytes: a row the kernel fails to write shows up as NaN.
  const y = upload(ctx, new Float32Array(outRows * c.outDim).fill(NaN));
  ctx.device.pushErrorScope('validation');
  const d = await linear(ctx, c, type, {
    step: stepUniform(ctx, c.rows).buffer,
    x: upload(ctx, x),
    weight,
    bias: bias ? upload(ctx, bias) : undefined,
    y,
  });
  expect(d.pipeline.label).toContain(subgroupsDefine(ctx));
  runDispatches(ctx, [d], c.rows);
  const got = await readF32(ctx, y, outRows * c.outDim);
  expect(await ctx.device.popErrorScope()).toBeNull();
  weight.destroy();

  const xs = c.lastRowOnly ? x.subarray((c.rows - 1) * c.inDim) : x;
  const expected = linearRef(Float64Array.from(xs), outRows, c.inDim, c.outDim, w.rounded, bias && Float64Array.from(bias));
  expectClose(got, expected, tolerance(xs, outRows, c.inDim, scale, expected), `${type} ${JSON.stringify(c)}`);
}

// The subgroup shape needs the device feature (SwiftShader has it, with subgroups of 4).
const { hasSubgroups } = await gpuContext();

describe('linear kernel', () => {
  // Lanes per row (gpu profile) follow IN: 4 up to 64 (a row within one subgroup of 4 or more),
  // 8 at 96 to 128, 16 at 200, 32 at 1024 (rows across several subgroups of 4: one barrier).
  const types: StorageType[] = ['f32', 'bf16', 'f16'];
  for (const profile of KERNEL_SHAPES)
    types.forEach((type, t) => {
      describe.skipIf(profile.subgroups && !hasSubgroups)(`${type} weights, ${kernelShapeName(profile)}`, () => {
        it('odd shape 97 -> 33, 3 rows, bias (element path, a group of 3 token rows)', () =>
          check(type, { rows: 3, inDim: 97, outDim: 33, hasBias: true, lastRowOnly: false }, 11 + t, profile));
        it('even shape 64 -> 33, 21 rows, no bias (packed path; chunks of 16 + 5: groups of 4, 4, 4, 4 | 4, 1)', () =>
          check(type, { rows: 21, inDim: 64, outDim: 33, hasBias: false, lastRowOnly: false }, 21 + t, profile));
        it('one row, 97 -> 7 with bias', () => check(type, { rows: 1, inDim: 97, outDim: 7, hasBias: true, lastRowOnly: false }, 31 + t, profile));
        it('lastRowOnly reads row n_tokens - 1 and writes row 0', () =>
          check(type, { rows: 5, inDim: 97, outDim: 33, hasBias: true, lastRowOnly: true }, 41 + t, profile));
        it('lm_head shape 1024 -> 50295, lastRowOnly, 2 rows', () =>
          check(type, { rows: 2, inDim: 1024, outDim: 50295, hasBias: false, lastRowOnly: true }, 51 + t, profile));
        it('200 -> 37, 21 rows, bias (16 lanes per row; several reductions per workgroup)', () =>
          check(type, { rows: 21, inDim: 200, outDim: 37, hasBias: true, lastRowOnly: false }, 71 + t, profile));
      });
    });

  // Quantised weights need IN % 32 == 0; the reference runs on the dequantised values.
  const quantTypes: StorageType[] = ['q8', 'q4'];
  for (const profile of KERNEL_SHAPES)
    quantTypes.forEach((type, t) => {
      describe.skipIf(profile.subgroups && !hasSubgroups)(`${type} weights, ${kernelShapeName(profile)}`, () => {
        it('96 -> 40, 3 rows, bias (a group of 3 token rows)', () =>
          check(type, { rows: 3, inDim: 96, outDim: 40, hasBias: true, lastRowOnly: false }, 211 + t, profile));
        it('64 -> 33, 21 rows, no bias (chunks of 16 + 5)', () =>
          check(type, { rows: 21, inDim: 64, outDim: 33, hasBias: false, lastRowOnly: false }, 221 + t, profile));
        it('one row, 32 -> 7 with bias', () => check(type, { rows: 1, inDim: 32, outDim: 7, hasBias: true, lastRowOnly: false }, 231 + t, profile));
        it('lastRowOnly, 5 rows, 96 -> 33', () => check(type, { rows: 5, inDim: 96, outDim: 33, hasBias: true, lastRowOnly: true }, 241 + t, profile));
        it('lm_head shape 1024 -> 50295, lastRowOnly, 2 rows', () =>
          check(type, { rows: 2, inDim: 1024, outDim: 50295, hasBias: false, lastRowOnly: true }, 251 + t, profile));
        it('128 -> 37, 21 rows (8 lanes per row; several reductions per workgroup)', () =>
          check(type, { rows: 21, inDim: 128, outDim: 37, hasBias: false, lastRowOnly: false }, 261 + t, profile));
      });
    });

  it('folds more than 65535 workgroups of output rows into grid z (3 -> 600000)', () =>
    check('bf16', { rows: 1, inDim: 3, outDim: 600_000, hasBias: true, lastRowOnly: false }, 61));

  it('a step of 0 rows dispatches nothing', async () => {
    const ctx = await gpuContext();
    const d = await linear(ctx, { inDim: 4, outDim: 4, hasBias: false }, 'f32', {
      step: stepUniform(ctx, 0).buffer,
      x: output(ctx, 16),
      weight: output(ctx, 64),
      y: output(ctx, 16),
    });
    expect(d.grid(0)).toEqual([0, 1, 1]);
  });

  it('rejects a bias buffer that does not match hasBias', async () => {
    const ctx = await gpuContext();
    const b = { step: stepUniform(ctx, 1).buffer, x: output(ctx, 16), weight: output(ctx, 64), y: output(ctx, 16) };
    await expect(linear(ctx, { inDim: 4, outDim: 4, hasBias: true }, 'f32', b)).rejects.toThrow(/hasBias/);
  });
});
