import { describe, expect, it } from 'vitest';
import type { StorageType } from '../../src/storage-types.ts';
import { expertProject as projectRef } from '../../src/reference/experts.ts';
import { ACT_GELU_TANH, ACT_NONE, STORAGE_CODE } from '../../src/wasm/abi.ts';
import { GELU_SLOPE, maxAbs, randomGates, randomIds, slotBound, U } from '../shared/expert-cases.ts';
import { expectClose, randomF32, rng, weightData } from '../shared/numeric.ts';
import { kernelMemory, THREADS } from './harness.ts';

// expert_project groups (row, slot) pairs by expert into tasks of up to 4 rows; decode is rows = 1.
// The reference applies each slot's expert directly, so a pair routed to the wrong task, row or
// column shows up as an error of the size of an output.

interface Case {
  rows: number;
  k: number;
  experts: number;
  inDim: number;
  outDim: number;
  perSlot: boolean;
  gelu: boolean;
  /** Skew the routing towards low ids, so some experts get many pairs (tasks of 4 and a tail). */
  bias?: number;
}

const TASK_BYTES = 40;

async function project(type: StorageType, c: Case, seed: number, threads: number): Promise<Float32Array> {
  const m = await kernelMemory(threads);
  const rand = rng(seed);
  const scale = 1 / Math.sqrt(c.inDim);
  const x = randomF32(c.rows * (c.perSlot ? c.k : 1) * c.inDim, rand);
  const w = weightData(randomF32(c.experts * c.inDim * c.outDim, rand, scale), type, [c.experts, c.inDim, c.outDim]);
  const ids = randomIds(c.rows, c.k, c.experts, rand, c.bias ?? 0);
  const y = m.out(c.rows * c.k * c.outDim);
  m.k.expert_project(
    y,
    m.put(x),
    c.rows,
    c.k,
    c.perSlot ? 1 : 0,
    c.inDim,
    c.outDim,
    m.put(w.data),
    STORAGE_CODE[type],
    c.experts,
    m.put(Int32Array.from(ids)),
    c.gelu ? ACT_GELU_TANH : ACT_NONE,
    m.alloc(c.rows * c.k * TASK_BYTES),
    m.alloc((c.experts + 1) * 4),
    m.alloc(m.k.expert_partial_floats(c.k, c.inDim, c.outDim) * 4),
  );
  const got = m.f32(y, c.rows * c.k * c.outDim);
  const expected = projectRef(Float64Array.from(x), c.rows, c.k, c.perSlot, c.inDim, c.outDim, w.rounded, ids, c.gelu ? 'gelu_tanh' : 'none');
  // Each slot's bound (through the GELU's slope when it applies), plus the GELU's own float32
  // rounding (a few ulps of its output; the approximation of shaders/lib/gelu.wgsl is within 4e-7).
  const tol = slotBound(x, c.inDim, scale) * (c.gelu ? GELU_SLOPE : 1) + (c.gelu ? 4e-7 + 4 * U * maxAbs(expected) : 0);
  expectClose(got, expected, tol, `${type} ${JSON.stringify(c)}, ${threads} thread(s)`);
  return got;
}

describe('wasm expert projections', () => {
  const types: StorageType[] = ['f32', 'bf16', 'f16', 'q8', 'q4'];
  for (const threads of THREADS) {
    types.forEach((type, t) => {
      describe(`${type} weights, ${threads} thread(s)`, () => {
        it('decode: one row, k = 2 of 8 experts, 64 -> 80 (shared input, as the query projection)', () =>
          project(type, { rows: 1, k: 2, experts: 8, inDim: 64, outDim: 80, perSlot: false, gelu: false }, 11 + t, threads));
        it('decode: MLP up 1024 -> 2048 with the tanh GELU', () =>
          project(type, { rows: 1, k: 2, experts: 4, inDim: 1024, outDim: 2048, perSlot: false, gelu: true }, 21 + t, threads));
        it('decode: per-slot inputs 2048 -> 1024 (the down projection)', () =>
          project(type, { rows: 1, k: 2, experts: 4, inDim: 2048, outDim: 1024, perSlot: true, gelu: false }, 31 + t, threads));
        it('prefill: 19 rows grouped by expert, skewed routing (tasks of 4, 3, 2 and 1 rows)', () =>
          project(type, { rows: 19, k: 2, experts: 6, inDim: 96, outDim: 72, perSlot: true, gelu: true, bias: 2 }, 41 + t, threads));
        it('odd output width 37 (vector blocks and scalar tail columns)', () =>
          project(type, { rows: 5, k: 3, experts: 5, inDim: 64, outDim: 37, perSlot: false, gelu: false }, 51 + t, threads));
      });
    });
    it(`odd input width 45 (float types only), ${threads} thread(s)`, () =>
      project('bf16', { rows: 3, k: 2, experts: 3, inDim: 45, outDim: 24, perSlot: true, gelu: false }, 61, threads));
  }

  it('gives the same bits on 1 and 2 threads', async () => {
    const c: Case = { rows: 9, k: 2, experts: 8, inDim: 256, outDim: 512, perSlot: false, gelu: true, bias: 1 };
    const one = await project('q4', c, 71, 1);
    const two = await project('q4', c, 71, 2);
    expect(Buffer.from(two.buffer).equals(Buffer.from(one.buffer))).toBe(true);
  });

  it('expert_combine: h[r] += Σ_s g[r, s]·y[r, s]', async () => {
    const m = await kernelMemory(1);
    const rand = rng(81);
    const c = { rows: 4, inDim: 1, outDim: 33, k: 3 };
    // A combine of one-input "experts" equal to y itself: x = y, W = 1.
    const y = randomF32(c.rows * c.k * c.outDim, rand);
    const gates = randomGates(c.rows, c.k, rand);
    const h0 = randomF32(c.rows * c.outDim, rand);
    const h = m.put(h0);
    m.k.expert_combine(h, m.put(y), m.put(gates), c.rows, c.k, c.outDim);
    const got = m.f32(h, c.rows * c.outDim);
    const expected = Float64Array.from(h0);
    for (let r = 0; r < c.rows; r++)
      for (let i = 0; i < c.outDim; i++) {
        let s = 0;
        for (let j = 0; j < c.k; j++) s += gates[r * c.k + j] * y[(r * c.k + j) * c.outDim + i];
        expected[r * c.outDim + i] += s;
      }
    expectClose(got, expected, (c.k + 2) * U * maxAbs(expected), 'combine');
  });
});
