import { describe, expect, it } from 'vitest';
import { runDispatches } from '../../src/kernels/dispatch.ts';
import { expertGroupedMatmul, expertSlotSum, expertSort, groupTileRows, groupsLayout, type GroupsLayout } from '../../src/kernels/expert-grouped.ts';
import type { StorageType } from '../../src/storage-types.ts';
import { expertProject as projectRef, groupByExpert } from '../../src/reference/experts.ts';
import { GELU_SLOPE, U, combineCase, maxAbs, randomGates, randomIds, slotBound } from '../shared/expert-cases.ts';
import { expectClose, gpuContext, randomF32, readF32, readU32, rng, stepUniform, upload, useKernelProfile, weightData } from './harness.ts';

// Prefill's grouped expert kernels: the sort against its CPU twin (exact), the grouped matmuls
// against the float64 expert reference with the float32 bounds of the decode kernels' tests
// (tests/gpu/expert-matvec.test.ts): grouping changes which weights are read together, not the
// arithmetic of one slot.

/** Sorts `ids` on the GPU; the layout and the groups buffer for the matmuls. */
async function sortOnGpu(ids: Uint32Array, rows: number, experts: number, k: number, maxRows: number) {
  const ctx = await gpuContext();
  const g = groupsLayout(experts, k, maxRows, groupTileRows(ctx));
  // 0xffffffff everywhere: anything the sort should write and does not is visible.
  const groups = upload(ctx, new Uint32Array(g.bytes / 4).fill(0xffffffff), 'groups');
  const step = stepUniform(ctx, rows).buffer;
  ctx.device.pushErrorScope('validation');
  runDispatches(ctx, [await expertSort(ctx, g, { step, ids: upload(ctx, ids), groups })], rows);
  expect(await ctx.device.popErrorScope()).toBeNull();
  return { ctx, g, groups, step };
}

async function checkSort(rows: number, k: number, experts: number, maxRows: number, seed: number, bias: number): Promise<void> {
  const rand = rng(seed);
  const ids = randomIds(rows, k, experts, rand, bias);
  // An id past the last expert (a router bug) is grouped with the last expert, as the matmul reads it.
  ids[Math.floor(rand() * ids.length)] = experts + 3;
  const { ctx, g, groups } = await sortOnGpu(ids, rows, experts, k, maxRows);
  const got = await readU32(ctx, groups);
  const want = groupByExpert(ids, experts, g.tm);
  expect(got[0], 'tile count').toBe(want.tiles.length);
  expect(want.tiles.length).toBeLessThanOrEqual(g.maxTiles(rows));
  expect(Array.from(got.subarray(g.offsetsAt, g.offsetsAt + experts + 1)), 'offsets').toEqual(want.offsets);
  expect(Array.from(got.subarray(g.orderAt, g.orderAt + rows * k)), 'order').toEqual(want.order);
  expect(Array.from(got.subarray(g.tilesAt, g.tilesAt + 2 * want.tiles.length)), 'tiles').toEqual(want.tiles.flat());
}

interface Case {
  rows: number;
  inDim: number;
  outDim: number;
  experts: number;
  k: number;
  /** Skew of the routing (randomIds): 0 uniform, larger piles slots onto low ids. */
  bias: number;
}

/** The grouped project (sort + matmul) vs the reference: y[s] = act(x[src(s)] @ W[e(s)]). */
async function checkProject(type: StorageType, c: Case & { perSlotInput: boolean; activation: 'none' | 'gelu_tanh' }, seed: number) {
  const rand = rng(seed);
  const scale = 1 / Math.sqrt(c.inDim);
  const x = randomF32(c.rows * (c.perSlotInput ? c.k : 1) * c.inDim, rand);
  const w = weightData(randomF32(c.experts * c.inDim * c.outDim, rand, scale), type, [c.experts, c.inDim, c.outDim]);
  const ids = randomIds(c.rows, c.k, c.experts, rand, c.bias);
  // The step carries fewer rows than the buffers hold, as a prompt's last chunk does.
  const { ctx, g, groups } = await sortOnGpu(ids, c.rows, c.experts, c.k, c.rows + 7);
  const y = upload(ctx, new Float32Array(c.rows * c.k * c.outDim).fill(NaN));
  const weight = upload(ctx, w.data);
  ctx.device.pushErrorScope('validation');
  const d = await expertGroupedMatmul(ctx, g, { ...c, gated: false }, type, { x: upload(ctx, x), weight, groups, y });
  runDispatches(ctx, [d], c.rows);
  const got = await readF32(ctx, y);
  const err = await ctx.device.popErrorScope();
  expect(err?.message ?? null).toBeNull();
  weight.destroy();
  const expected = projectRef(Float64Array.from(x), c.rows, c.k, c.perSlotInput, c.inDim, c.outDim, w.rounded, ids, c.activation);
  const bound = slotBound(x, c.inDim, scale);
  const tol = c.activation === 'gelu_tanh' ? GELU_SLOPE * bound + 2e-6 * Math.max(1, maxAbs(expected)) : bound + U * maxAbs(expected);
  expectClose(got, expected, tol, `${type} ${JSON.stringify(c)}`);
}

/** The grouped combine (sort + gated matmul + slot sum) vs the reference: h[r] += Σ_s g·(x[s] @ W[e(s)]). */
async function checkCombine(type: StorageType, c: Case, seed: number) {
  const rand = rng(seed);
  const scale = 1 / Math.sqrt(c.inDim);
  const x = randomF32(c.rows * c.k * c.inDim, rand);
  const w = weightData(randomF32(c.experts * c.inDim * c.outDim, rand, scale), type, [c.experts, c.inDim, c.outDim]);
  const ids = randomIds(c.rows, c.k, c.experts, rand, c.bias);
  const gates = randomGates(c.rows, c.k, rand);
  const h0 = randomF32(c.rows * c.outDim, rand);
  const { ctx, g, groups, step } = await sortOnGpu(ids, c.rows, c.experts, c.k, c.rows + 7);
  const slots = upload(ctx, new Float32Array((c.rows + 7) * c.k * c.outDim).fill(NaN));
  const h = upload(ctx, h0);
  const weight = upload(ctx, w.data);
  ctx.device.pushErrorScope('validation');
  const shape = { inDim: c.inDim, outDim: c.outDim, perSlotInput: true, activation: 'none' as const, gated: true };
  const matmul = await expertGroupedMatmul(ctx, g, shape, type, { x: upload(ctx, x), weight, groups, gates: upload(ctx, gates), y: slots });
  const sum = await expertSlotSum(ctx, { width: c.outDim, k: c.k }, { step, y: slots, h });
  runDispatches(ctx, [matmul, sum], c.rows);
  const got = await readF32(ctx, h);
  expect(await ctx.device.popErrorScope()).toBeNull();
  weight.destroy();
  const { expected, tol } = combineCase(c, x, w.rounded, scale, ids, gates, h0);
  expectClose(got, expected, tol, `${type} ${JSON.stringify(c)}`);
}

describe('expert_sort', () => {
  it('groups 37 rows × k 2 over 8 experts, skewed, stable, tiles of the profile', () => checkSort(37, 2, 8, 40, 1, 2));
  it('one row, k 3, 32 experts', () => checkSort(1, 3, 32, 128, 2, 0));
  it('128 rows × k 2 over 16 experts (a full default chunk), uniform', () => checkSort(128, 2, 16, 128, 3, 0));
  it('every slot on one expert: tiles split it', async () => {
    const rows = 50;
    const ids = new Uint32Array(rows).fill(2);
    const { ctx, g, groups } = await sortOnGpu(ids, rows, 4, 1, rows);
    const got = await readU32(ctx, groups);
    expect(got[0]).toBe(Math.ceil(rows / g.tm));
    expect(Array.from(got.subarray(g.offsetsAt, g.offsetsAt + 5))).toEqual([0, 0, 0, rows, rows]);
  });
  it('rejects more experts than one workgroup sorts', () => {
    expect(() => groupsLayout(257, 2, 8, 8)).toThrow(/1 to 256/);
  });
});

for (const profile of ['gpu', 'cpu'] as const)
  describe(`grouped expert matmuls, ${profile} kernel profile`, () => {
    useKernelProfile(profile);
    const types: StorageType[] = ['f32', 'bf16', 'f16', 'q8', 'q4'];
    types.forEach((type, t) => {
      describe(`${type} weights`, () => {
        // IN a multiple of 32 for q8 / q4. 33 columns: an odd OUT; 37 rows: tiles that do not fill.
        it('project, 64 -> 33, E 5, k 2, shared input, 37 rows, skewed routing', () =>
          checkProject(type, { rows: 37, inDim: 64, outDim: 33, experts: 5, k: 2, bias: 2, perSlotInput: false, activation: 'none' }, 10 + t));
        it('project, 96 -> 40, E 6, k 3, per-slot input, tanh GELU, 21 rows', () =>
          checkProject(type, { rows: 21, inDim: 96, outDim: 40, experts: 6, k: 3, bias: 0, perSlotInput: true, activation: 'gelu_tanh' }, 20 + t));
        it('project, one row', () =>
          checkProject(type, { rows: 1, inDim: 64, outDim: 40, experts: 5, k: 2, bias: 0, perSlotInput: false, activation: 'gelu_tanh' }, 30 + t));
        it('combine, 64 -> 33, E 5, k 3, 29 rows, skewed routing', () =>
          checkCombine(type, { rows: 29, inDim: 64, outDim: 33, experts: 5, k: 3, bias: 3 }, 40 + t));
        it('combine, 96 -> 40, E 8, k 2, 40 rows', () => checkCombine(type, { rows: 40, inDim: 96, outDim: 40, experts: 8, k: 2, bias: 0 }, 50 + t));
      });
    });
    it('MoLM attention widths, 1024 -> 1024, E 4, k 2, 24 rows, bf16: query and output projections', async () => {
      const c = { rows: 24, inDim: 1024, outDim: 1024, experts: 4, k: 2, bias: 1 };
      await checkProject('bf16', { ...c, perSlotInput: false, activation: 'none' }, 60);
      await checkCombine('bf16', c, 61);
    });
  });

/** The layout is the sort's and the matmuls' contract: a tile bound too small loses slots. */
describe('groupsLayout', () => {
  it('bounds the tiles of any routing', () => {
    const g: GroupsLayout = groupsLayout(5, 2, 16, 8);
    const rand = rng(7);
    for (let trial = 0; trial < 200; trial++) {
      const rows = 1 + Math.floor(rand() * 16);
      const ids = randomIds(rows, 2, 5, rand, Math.floor(rand() * 4));
      expect(groupByExpert(ids, 5, 8).tiles.length).toBeLessThanOrEqual(g.maxTiles(rows));
    }
    // Worst case: every expert a single slot past a full tile.
    expect(g.maxTiles(16)).toBe(Math.floor((32 + 5 * 7) / 8));
  });
});
