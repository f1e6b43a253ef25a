import { afterAll, describe, expect, it } from 'vitest';
import { runDispatches, type Dispatch } from '../../src/kernels/dispatch.ts';
import { linear } from '../../src/kernels/linear.ts';
import { expertProject } from '../../src/kernels/expert-matvec.ts';
import { expertGroupedMatmul, expertSort, groupTileRows, groupsLayout } from '../../src/kernels/expert-grouped.ts';
import { linear as linearRef } from '../../src/reference/linear.ts';
import { expertProject as projectRef } from '../../src/reference/experts.ts';
import type { GpuContext } from '../../src/gpu/context.ts';
import { U, maxAbs, randomIds, slotBound } from '../shared/expert-cases.ts';
import { expectClose, gpuContext, randomF32, readF32, rng, stepUniform, upload, weightData } from './harness.ts';

// The shader-f16 path: f16 weights read as native f16 pairs instead of unpacked u32 words. Where
// the device has shader-f16 the native variants must compile and give the u32 path's values bit
// for bit (the conversion to f32 is exact, the arithmetic the same); where it lacks the feature,
// asking for them must fall back to the u32 path (PipelineCache.f16Fallbacks) with the same
// values. Both sides are also checked against the float64 reference.

const ctx = await gpuContext();
const saved = ctx.useShaderF16;
afterAll(() => {
  ctx.useShaderF16 = saved;
});

/** Builds and runs `plan` with native f16 off, then on; returns both outputs and the pipelines' labels. */
async function bothWays(plan: (c: GpuContext) => Promise<{ dispatches: Dispatch[]; rows: number; out: GPUBuffer }>) {
  const results: Float32Array[] = [];
  const labels: string[] = [];
  for (const native of [false, true]) {
    ctx.useShaderF16 = native;
    const fallbacks = ctx.pipelines.f16Fallbacks.length;
    const { dispatches, rows, out } = await plan(ctx);
    ctx.device.pushErrorScope('validation');
    runDispatches(ctx, dispatches, rows);
    results.push(await readF32(ctx, out));
    expect((await ctx.device.popErrorScope())?.message ?? null).toBeNull();
    labels.push(dispatches.at(-1)!.pipeline.label);
    if (native && !ctx.hasShaderF16) expect(ctx.pipelines.f16Fallbacks.length, 'a fallback is recorded').toBeGreaterThan(fallbacks);
  }
  expect(labels[0]).not.toContain('"enables":["f16"]');
  if (ctx.hasShaderF16) expect(labels[1], 'the native variant runs').toContain('"f16"');
  else expect(labels[1], 'the u32 variant runs').toBe(labels[0]);
  expect(Array.from(results[1]), 'native f16 equals the u32 path exactly').toEqual(Array.from(results[0]));
  return results[1];
}

describe(`shader-f16 weights (${ctx.hasShaderF16 ? 'native on this device' : 'not on this device: the fallback is tested'})`, () => {
  it('linear 96 -> 37 over 5 rows (the lm_head kernel) matches the reference', async () => {
    const rand = rng(1);
    const [rows, IN, OUT] = [5, 96, 37];
    const x = randomF32(rows * IN, rand);
    const w = weightData(randomF32(OUT * IN, rand, 1 / Math.sqrt(IN)), 'f16');
    const got = await bothWays(async (c) => {
      const y = upload(c, new Float32Array(rows * OUT).fill(NaN));
      const d = await linear(c, { inDim: IN, outDim: OUT, hasBias: false }, 'f16', {
        step: stepUniform(c, rows).buffer,
        x: upload(c, x),
        weight: upload(c, w.data),
        y,
      });
      return { dispatches: [d], rows, out: y };
    });
    const expected = linearRef(Float64Array.from(x), rows, IN, OUT, w.rounded, null);
    expectClose(got, expected, slotBound(x, IN, 1 / Math.sqrt(IN)) + U * maxAbs(expected), 'linear');
  });

  it('expert projection (decode) and grouped expert matmul (prefill), 64 -> 40, E 5, k 2', async () => {
    const rand = rng(2);
    const [rows, IN, OUT, E, k] = [19, 64, 40, 5, 2];
    const x = randomF32(rows * IN, rand);
    const w = weightData(randomF32(E * IN * OUT, rand, 1 / Math.sqrt(IN)), 'f16');
    const ids = randomIds(rows, k, E, rand, 1);
    const expected = projectRef(Float64Array.from(x), rows, k, false, IN, OUT, w.rounded, ids, 'none');
    const tol = slotBound(x, IN, 1 / Math.sqrt(IN)) + U * maxAbs(expected);
    const shape = { inDim: IN, outDim: OUT, perSlotInput: false, activation: 'none' as const };
    const matvec = await bothWays(async (c) => {
      const y = upload(c, new Float32Array(rows * k * OUT).fill(NaN));
      const d = await expertProject(c, { ...shape, experts: E, k }, 'f16', {
        step: stepUniform(c, rows).buffer,
        x: upload(c, x),
        weight: upload(c, w.data),
        ids: upload(c, ids),
        y,
      });
      return { dispatches: [d], rows, out: y };
    });
    expectClose(matvec, expected, tol, 'expert projection');
    const grouped = await bothWays(async (c) => {
      const g = groupsLayout(E, k, rows, groupTileRows(c));
      const groups = upload(c, new Uint32Array(g.bytes / 4));
      const step = stepUniform(c, rows).buffer;
      const y = upload(c, new Float32Array(rows * k * OUT).fill(NaN));
      const sort = await expertSort(c, g, { step, ids: upload(c, ids), groups });
      const mm = await expertGroupedMatmul(c, g, { ...shape, gated: false }, 'f16', { x: upload(c, x), weight: upload(c, w.data), groups, y });
      return { dispatches: [sort, mm], rows, out: y };
    });
    expectClose(grouped, expected, tol, 'grouped expert matmul');
  });
});
