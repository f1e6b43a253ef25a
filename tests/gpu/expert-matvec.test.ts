import { describe, expect, it } from 'vitest';
import { runDispatches } from '../../src/kernels/dispatch.ts';
import { expertCombine, expertProject } from '../../src/kernels/expert-matvec.ts';
import type { StorageType } from '../../src/storage-types.ts';
import { expertCombine as combineRef, expertProject as projectRef } from '../../src/reference/experts.ts';
import { blockBytes, isQuantType } from '../../src/quant/layout.ts';
import { GELU_SLOPE, U, combineCase, maxAbs, maxGateSum, randomGates, randomIds, slotBound } from '../shared/expert-cases.ts';
import {
  expectClose,
  gpuContext,
  KERNEL_SHAPES,
  kernelShapeName,
  randomF32,
  readF32,
  rng,
  stepUniform,
  subgroupsDefine,
  upload,
  useKernelProfile,
  weightData,
} from './harness.ts';

async function runProject(
  type: StorageType,
  shape: Parameters<typeof expertProject>[1],
  rows: number,
  x: Float32Array,
  weight: GPUBuffer,
  ids: Uint32Array,
): Promise<Float32Array> {
  const ctx = await gpuContext();
  // NaN: an output the kernel fails to write fails the comparison.
  const y = upload(ctx, new Float32Array(rows * shape.k * shape.outDim).fill(NaN));
  ctx.device.pushErrorScope('validation');
  const d = await expertProject(ctx, shape, type, { step: stepUniform(ctx, rows).buffer, x: upload(ctx, x), weight, ids: upload(ctx, ids), y });
  expect(d.pipeline.label).toContain(subgroupsDefine(ctx));
  runDispatches(ctx, [d], rows);
  const got = await readF32(ctx, y, rows * shape.k * shape.outDim);
  expect(await ctx.device.popErrorScope()).toBeNull();
  return got;
}

async function runCombine(
  type: StorageType,
  shape: Parameters<typeof expertCombine>[1],
  rows: number,
  x: Float32Array,
  weight: GPUBuffer,
  ids: Uint32Array,
  gates: Float32Array,
  h0: Float32Array,
): Promise<Float32Array> {
  const ctx = await gpuContext();
  const h = upload(ctx, h0);
  ctx.device.pushErrorScope('validation');
  const d = await expertCombine(ctx, shape, type, {
    step: stepUniform(ctx, rows).buffer,
    x: upload(ctx, x),
    weight,
    ids: upload(ctx, ids),
    gates: upload(ctx, gates),
    h,
  });
  expect(d.pipeline.label).toContain(subgroupsDefine(ctx));
  runDispatches(ctx, [d], rows);
  const got = await readF32(ctx, h, rows * shape.outDim);
  expect(await ctx.device.popErrorScope()).toBeNull();
  return got;
}

interface RandomCase {
  rows: number;
  inDim: number;
  outDim: number;
  experts: number;
  k: number;
}

async function checkProject(type: StorageType, c: RandomCase & { perSlotInput: boolean; activation: 'none' | 'gelu_tanh' }, seed: number): Promise<void> {
  const ctx = await gpuContext();
  const rand = rng(seed);
  const scale = 1 / Math.sqrt(c.inDim);
  const x = randomF32(c.rows * (c.perSlotInput ? c.k : 1) * c.inDim, rand);
  const w = weightData(randomF32(c.experts * c.inDim * c.outDim, rand, scale), type, [c.experts, c.inDim, c.outDim]);
  const ids = randomIds(c.rows, c.k, c.experts, rand);
  const weight = upload(ctx, w.data);
  const got = await runProject(type, c, c.rows, x, weight, ids);
  weight.destroy();
  const expected = projectRef(Float64Array.from(x), c.rows, c.k, c.perSlotInput, c.inDim, c.outDim, w.rounded, ids, c.activation);
  const bound = slotBound(x, c.inDim, scale);
  // Through the GELU: its slope, plus its own float32 evaluation (exp-based, a few ulp relative;
  // measured ≤ 1e-7).
  const tol = c.activation === 'gelu_tanh' ? GELU_SLOPE * bound + 2e-6 * Math.max(1, maxAbs(expected)) : bound + U * maxAbs(expected);
  expectClose(got, expected, tol, `${type} ${JSON.stringify(c)}`);
}

async function checkCombine(type: StorageType, c: RandomCase, seed: number): Promise<void> {
  const ctx = await gpuContext();
  const rand = rng(seed);
  const scale = 1 / Math.sqrt(c.inDim);
  const x = randomF32(c.rows * c.k * c.inDim, rand);
  const w = weightData(randomF32(c.experts * c.inDim * c.outDim, rand, scale), type, [c.experts, c.inDim, c.outDim]);
  const ids = randomIds(c.rows, c.k, c.experts, rand);
  const gates = randomGates(c.rows, c.k, rand);
  const h0 = randomF32(c.rows * c.outDim, rand);
  const weight = upload(ctx, w.data);
  const got = await runCombine(type, c, c.rows, x, weight, ids, gates, h0);
  weight.destroy();
  const { expected, tol } = combineCase(c, x, w.rounded, scale, ids, gates, h0);
  expectClose(got, expected, tol, `${type} ${JSON.stringify(c)}`);
}

/**
 * Closed-form routing check with exact arithmetic: five hand-built experts (identity, doubling,
 * zero, reversal, negated shift), integer inputs and power-of-two gates, so every output is an
 * exact float in all three weight types and a routing mistake is an exact wrong number.
 */
function handExperts(inDim: number, outDim: number): Float32Array {
  const w = new Float32Array(5 * inDim * outDim);
  const set = (e: number, i: number, j: number, v: number) => {
    if (i >= 0 && i < inDim) w[(e * inDim + i) * outDim + j] = v;
  };
  for (let j = 0; j < outDim; j++) {
    set(0, j, j, 1); // y_j = x_j
    set(1, j, j, 2); // y_j = 2·x_j
    // expert 2: all zero
    set(3, outDim - 1 - j, j, 1); // y_j = x_{out-1-j}
    set(4, j + 1, j, -1); // y_j = -x_{j+1}
  }
  return w;
}

function handExpert(e: number, x: Float32Array, off: number, inDim: number, outDim: number): number[] {
  const at = (i: number) => (i >= 0 && i < inDim ? x[off + i] : 0);
  return Array.from({ length: outDim }, (_, j) => [at(j), 2 * at(j), 0, at(outDim - 1 - j), -at(j + 1)][Math.min(e, 4)]);
}

/**
 * MoLM's MLP experts, 1024 -> 2048 (GELU) and 2048 -> 1024, E 32, k 2, one row. The reference sees
 * only the two selected experts (ids remapped to 0, 1): the full tensors in float64 would be half
 * a gigabyte. Float types: one random [32, 1024, 2048] tensor serves as both the up [E, C, F] and
 * the down [E, F, C] weights. Quantised types lay out up and down differently, so each is built
 * from its two selected experts, quantised alone (an expert is one contiguous block), with random
 * words (garbage scales, often NaN) in every other expert's block.
 */
async function checkMolmMlp(type: StorageType, seed: number): Promise<void> {
  const ctx = await gpuContext();
  const rand = rng(seed);
  const [C, F, E, k] = [1024, 2048, 32, 2];
  const ids = Uint32Array.of(29, 6);
  const gates = Float32Array.of(0.375, 0.25);
  const local = Uint32Array.of(0, 1);
  let up: { weight: GPUBuffer; selected: Float32Array };
  let down: { weight: GPUBuffer; selected: Float32Array };
  if (isQuantType(type)) {
    const stacked = (inDim: number, outDim: number) => {
      const block = blockBytes([1, inDim, outDim], type);
      const bytes = new Uint8Array(E * block);
      const garbage = new Uint32Array(bytes.buffer);
      for (let i = 0; i < garbage.length; i++) garbage[i] = Math.floor(rand() * 2 ** 32);
      const selected = new Float32Array(k * inDim * outDim);
      ids.forEach((e, s) => {
        const w = weightData(randomF32(inDim * outDim, rand, 1 / Math.sqrt(C)), type, [1, inDim, outDim]);
        bytes.set(w.data as Uint8Array, e * block);
        selected.set(w.rounded, s * inDim * outDim);
      });
      return { weight: upload(ctx, bytes), selected };
    };
    up = stacked(C, F);
    down = stacked(F, C);
  } else {
    const w = weightData(randomF32(E * C * F, rand, 1 / Math.sqrt(C)), type);
    const selected = new Float32Array(k * C * F);
    ids.forEach((e, s) => {
      selected.set(w.rounded.subarray(e * C * F, (e + 1) * C * F), s * C * F);
    });
    const weight = upload(ctx, w.data);
    up = { weight, selected };
    down = { weight, selected };
  }

  const x = randomF32(C, rand);
  const upGot = await runProject(type, { inDim: C, outDim: F, experts: E, k, perSlotInput: false, activation: 'gelu_tanh' }, 1, x, up.weight, ids);
  const upRef = projectRef(Float64Array.from(x), 1, k, false, C, F, up.selected, local, 'gelu_tanh');
  const upTol = GELU_SLOPE * slotBound(x, C, 1 / Math.sqrt(C)) + 2e-6 * Math.max(1, maxAbs(upRef));
  expectClose(upGot, upRef, upTol, `${type} up`);

  // The down projection runs on the reference's up output, so its check is independent of the first.
  const mid = Float32Array.from(upRef);
  const h0 = randomF32(C, rand);
  const h = await runCombine(type, { inDim: F, outDim: C, experts: E, k }, 1, mid, down.weight, ids, gates, h0);
  up.weight.destroy();
  down.weight.destroy();
  const add = combineRef(projectRef(Float64Array.from(mid), 1, k, true, F, C, down.selected, local, 'none'), Float64Array.from(gates), 1, k, C);
  const hRef = Float64Array.from(h0, (v, i) => v + add[i]);
  const downTol = maxGateSum(gates, k) * slotBound(mid, F, 1 / Math.sqrt(C)) + (k + 2) * U * maxAbs(hRef);
  expectClose(h, hRef, downTol, `${type} down`);
}

// The subgroup shape needs the device feature (SwiftShader has it, with subgroups of 4).
const { hasSubgroups } = await gpuContext();

// In the gpu profile SPLIT (lanes along IN per column pair) is 256 / COLS, at most IN rounded up
// to a power of two: 2 at IN 2 (with subgroups: one run of 2 lanes, no barrier), 8 for the
// closed-form shapes, 16 or 32 for the others (4 or 8 runs of 4 lanes per pair: one barrier).
for (const shape of KERNEL_SHAPES)
  describe.skipIf(shape.subgroups && !hasSubgroups)(`expert_matvec kernels, ${kernelShapeName(shape)}`, () => {
    useKernelProfile(shape.profile, shape.subgroups);
    // Quantised weights need IN % 32 == 0; the reference runs on the dequantised values, with the
    // same tolerances. 64 -> 33 has an odd OUT (element path), 96 -> 40 an even one (pairs).
    const quantTypes: StorageType[] = ['q8', 'q4'];
    quantTypes.forEach((type, t) => {
      describe(`${type} weights`, () => {
        it('project, 64 -> 33 (odd out), E 5, k 2, shared input, 3 rows', () =>
          checkProject(type, { rows: 3, inDim: 64, outDim: 33, experts: 5, k: 2, perSlotInput: false, activation: 'none' }, 300 + t));
        it('project, 96 -> 40, E 5, k 3, per-slot input, tanh GELU, 3 rows', () =>
          checkProject(type, { rows: 3, inDim: 96, outDim: 40, experts: 5, k: 3, perSlotInput: true, activation: 'gelu_tanh' }, 310 + t));
        it('combine, 64 -> 33, E 5, k 3, 3 rows', () => checkCombine(type, { rows: 3, inDim: 64, outDim: 33, experts: 5, k: 3 }, 330 + t));
        it('combine, 96 -> 40, E 5, k 2, 4 rows', () => checkCombine(type, { rows: 4, inDim: 96, outDim: 40, experts: 5, k: 2 }, 340 + t));
        it('MoLM attention query projection 1024 -> 1024, E 16, k 2, one row', () =>
          checkProject(type, { rows: 1, inDim: 1024, outDim: 1024, experts: 16, k: 2, perSlotInput: false, activation: 'none' }, 350 + t));
        it('MoLM attention output projection 1024 -> 1024, E 16, k 2, one row', () =>
          checkCombine(type, { rows: 1, inDim: 1024, outDim: 1024, experts: 16, k: 2 }, 360 + t));
        it('MoLM MLP 1024 -> 2048 (GELU) and 2048 -> 1024, E 32, k 2, one row', () => checkMolmMlp(type, 370 + t));
      });
    });

    const types: StorageType[] = ['f32', 'bf16', 'f16'];
    types.forEach((type, t) => {
      describe(`${type} weights`, () => {
        it('project, odd shape 97 -> 33, E 5, k 2, shared input, 3 rows', () =>
          checkProject(type, { rows: 3, inDim: 97, outDim: 33, experts: 5, k: 2, perSlotInput: false, activation: 'none' }, 100 + t));
        it('project, odd shape 97 -> 33, E 5, k 3, per-slot input, tanh GELU, 3 rows', () =>
          checkProject(type, { rows: 3, inDim: 97, outDim: 33, experts: 5, k: 3, perSlotInput: true, activation: 'gelu_tanh' }, 110 + t));
        it('project, even shape 64 -> 32 (packed pairs), E 5, k 2, 4 rows', () =>
          checkProject(type, { rows: 4, inDim: 64, outDim: 32, experts: 5, k: 2, perSlotInput: false, activation: 'gelu_tanh' }, 120 + t));
        it('combine, odd shape 97 -> 33, E 5, k 3, 3 rows', () => checkCombine(type, { rows: 3, inDim: 97, outDim: 33, experts: 5, k: 3 }, 130 + t));
        it('combine, even shape 64 -> 32, E 5, k 2, 4 rows', () => checkCombine(type, { rows: 4, inDim: 64, outDim: 32, experts: 5, k: 2 }, 140 + t));
        it('MoLM attention query projection 1024 -> 1024, E 16, k 2, one row', () =>
          checkProject(type, { rows: 1, inDim: 1024, outDim: 1024, experts: 16, k: 2, perSlotInput: false, activation: 'none' }, 150 + t));
        it('MoLM attention output projection 1024 -> 1024, E 16, k 2, one row', () =>
          checkCombine(type, { rows: 1, inDim: 1024, outDim: 1024, experts: 16, k: 2 }, 160 + t));

        it('MoLM MLP 1024 -> 2048 (GELU) and 2048 -> 1024, E 32, k 2, one row', () => checkMolmMlp(type, 170 + t));

        for (const [inDim, outDim] of [
          [6, 6],
          [7, 5],
        ]) {
          it(`closed-form routing, ${inDim} -> ${outDim}: identity, double, zero, reversal, negated shift; id 7 clamps to expert 4`, async () => {
            const ctx = await gpuContext();
            const [E, k, rows] = [5, 2, 4];
            const weight = upload(ctx, weightData(handExperts(inDim, outDim), type).data);
            // Every expert appears, in both slots, on different rows; 7 is out of range.
            const ids = Uint32Array.of(0, 1, 2, 3, 4, 0, 1, 7);
            const x = Float32Array.from({ length: rows * k * inDim }, (_, i) => (i % 2 ? -1 : 1) * (i + 1));

            const shared = await runProject(type, { inDim, outDim, experts: E, k, perSlotInput: false, activation: 'none' }, rows, x, weight, ids);
            const perSlot = await runProject(type, { inDim, outDim, experts: E, k, perSlotInput: true, activation: 'none' }, rows, x, weight, ids);
            const gates = Float32Array.of(0.25, 0.5, 0.5, 0.25, 0.25, 0.5, 0.5, 0.25);
            const h0 = Float32Array.from({ length: rows * outDim }, (_, i) => 1000 + i);
            const h = await runCombine(type, { inDim, outDim, experts: E, k }, rows, x, weight, ids, gates, h0);
            weight.destroy();

            const want = { shared: [] as number[], perSlot: [] as number[], h: [] as number[] };
            for (let r = 0; r < rows; r++) {
              const acc = Array.from(h0.subarray(r * outDim, (r + 1) * outDim));
              for (let s = 0; s < k; s++) {
                const e = ids[r * k + s];
                want.shared.push(...handExpert(e, x, r * inDim, inDim, outDim));
                const ys = handExpert(e, x, (r * k + s) * inDim, inDim, outDim);
                want.perSlot.push(...ys);
                ys.forEach((v, j) => {
                  acc[j] += gates[r * k + s] * v;
                });
              }
              want.h.push(...acc);
            }
            // Exact: tolerance 0 (compared by value, so -0 equals 0).
            expectClose(shared, want.shared, 0, `${type} project, shared input`);
            expectClose(perSlot, want.perSlot, 0, `${type} project, per-slot input`);
            expectClose(h, want.h, 0, `${type} combine`);
          });
        }
      });
    });

    it('folds more than 65535 (row, slot) pairs or rows into grid z', async () => {
      await checkProject('f16', { rows: 22_000, inDim: 2, outDim: 3, experts: 5, k: 3, perSlotInput: false, activation: 'none' }, 180);
      await checkCombine('bf16', { rows: 66_000, inDim: 2, outDim: 3, experts: 5, k: 2 }, 181);
    });
  });
