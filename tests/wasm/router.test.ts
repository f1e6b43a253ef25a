import { describe, expect, it } from 'vitest';
import type { StorageType } from '../../src/storage-types.ts';
import { geluErf } from '../../src/reference/math.ts';
import { routerTopK as routerRef } from '../../src/reference/router.ts';
import { STORAGE_CODE } from '../../src/wasm/abi.ts';
import { expectClose, randomF32, rng, weightData } from '../shared/numeric.ts';
import { kernelMemory, THREADS } from './harness.ts';

// router: p = softmax(gelu_erf(x·W0ᵀ + b0)·W3ᵀ) per row, then the k most likely experts (ties to
// the lower id) with their raw probabilities as gates. The two layers are the linear kernel
// (tested in linear.test.ts), the GELU is float32 (the polynomials of shaders/lib/gelu.wgsl),
// the softmax and the selection float64.

/**
 * Gates: the weights are the same float32 values on both sides, so a gate's error is the float32
 * accumulation of the two layers (C and G terms), gelu_erf's approximation (< 4e-7) carried
 * through W3, and the softmax's sensitivity to its logits (∂p_e/∂l ≤ 1/4): a few 1e-7 at most.
 * Measured here: at most 1.3e-7; 1e-6 is the GPU tests' bound for the same arithmetic. A tanh
 * GELU in the router (~1e-3 on these logits), gates renormalised over the k (≥ 0.1 here), or a
 * wrong row or expert exceed it by orders of magnitude.
 */
const TOL = 1e-6;
/**
 * Inputs are drawn so that, in the reference, every slot's probability is at least this far
 * from its neighbours' in the sorted order (the k-th from the (k+1)-th included). The kernel's
 * probabilities are within TOL of the reference's, so with MARGIN > 2·TOL no two experts can
 * swap ranks: every id must match exactly.
 */
const MARGIN = 1e-4;

interface Case {
  rows: number;
  width: number;
  gating: number;
  experts: number;
  k: number;
}

interface Routed {
  ids: Int32Array;
  gates: Float32Array;
}

/** The smallest gap between neighbours among the k + 1 most likely of one row's probabilities. */
function slotMargin(probs: Float64Array, k: number): number {
  const sorted = Array.from(probs).sort((a, b) => b - a);
  let gap = Infinity;
  for (let s = 0; s < k && s + 1 < sorted.length; s++) gap = Math.min(gap, sorted[s] - sorted[s + 1]);
  return gap;
}

async function route(types: { w0: StorageType; w3: StorageType }, c: Case, seed: number, threads: number): Promise<Routed> {
  const m = await kernelMemory(threads);
  const rand = rng(seed);
  // Scaled as in tests/gpu/router.test.ts: hidden pre-activations and logits are O(1), so the
  // softmax is neither flat nor one-hot and routing is decided by real margins.
  const w0 = weightData(randomF32(c.gating * c.width, rand, 1.5 / Math.sqrt(c.width)), types.w0, [c.gating, c.width]);
  const b0 = randomF32(c.gating, rand, 0.5);
  const w3 = weightData(randomF32(c.experts * c.gating, rand, 4 / Math.sqrt(c.gating)), types.w3, [c.experts, c.gating]);
  const ref = (x: Float32Array, rows: number) => routerRef(Float64Array.from(x), rows, c.width, w0.rounded, b0, w3.rounded, c.gating, c.experts, c.k);
  // Each row is redrawn until its slots are MARGIN apart (rarely needed: a few rows in a hundred).
  const x = new Float32Array(c.rows * c.width);
  for (let r = 0; r < c.rows; r++) {
    for (let tries = 0; ; tries++) {
      const row = randomF32(c.width, rand, 2);
      if (slotMargin(ref(row, 1).probs, c.k) > MARGIN) {
        x.set(row, r * c.width);
        break;
      }
      if (tries > 50) throw new Error('no well-separated row found');
    }
  }
  const ids = m.alloc(c.rows * c.k * 4);
  const gates = m.out(c.rows * c.k);
  m.k.router(
    ids,
    gates,
    m.put(x),
    c.rows,
    c.width,
    m.put(w0.data),
    STORAGE_CODE[types.w0],
    m.put(b0),
    m.put(w3.data),
    STORAGE_CODE[types.w3],
    c.gating,
    c.experts,
    c.k,
    m.out(c.rows * c.gating),
    m.out(c.rows * c.experts),
    m.out(c.rows * Math.max(c.width, c.gating)),
  );
  const got = { ids: m.i32(ids, c.rows * c.k), gates: m.f32(gates, c.rows * c.k) };
  const expected = ref(x, c.rows);
  const what = `${types.w0}/${types.w3} ${JSON.stringify(c)}`;
  expect(Array.from(got.ids), `${what}: ids`).toEqual(Array.from(expected.ids));
  expectClose(got.gates, expected.gates, TOL, `${what}: gates`);
  return got;
}

describe('wasm router', () => {
  const shapes: Case[] = [
    { rows: 1, width: 1024, gating: 256, experts: 32, k: 2 }, // MoLM's routers, decode
    { rows: 1, width: 1024, gating: 256, experts: 16, k: 4 },
    { rows: 6, width: 64, gating: 32, experts: 16, k: 2 }, // the linear kernel's row tiles of 4 + 2
    { rows: 9, width: 96, gating: 64, experts: 32, k: 4 }, // 4 + 4 + 1
  ];
  const types: StorageType[] = ['f32', 'bf16', 'q8', 'q4'];
  for (const threads of THREADS) {
    types.forEach((type, t) => {
      describe(`${type} weights, ${threads} thread(s)`, () => {
        shapes.forEach((c, i) => {
          it(`${c.rows} row(s), C=${c.width} G=${c.gating} E=${c.experts} k=${c.k}`, () => route({ w0: type, w3: type }, c, 100 * t + i + 1, threads));
        });
      });
    });
    it(`odd widths C=97 G=33 (float storage), ${threads} thread(s)`, async () => {
      await route({ w0: 'f32', w3: 'f32' }, { rows: 3, width: 97, gating: 33, experts: 16, k: 2 }, 501, threads);
      await route({ w0: 'bf16', w3: 'bf16' }, { rows: 5, width: 97, gating: 33, experts: 32, k: 4 }, 502, threads);
    });
    it(`mixed storage: q4 W0 with f16 W3 (a q model whose G is not a multiple of 32), ${threads} thread(s)`, () =>
      route({ w0: 'q4', w3: 'f16' }, { rows: 2, width: 64, gating: 16, experts: 16, k: 2 }, 511, threads));

    it(`picks a hand-built winner, keeps raw (unrenormalised) gates and breaks ties by the lower id, ${threads} thread(s)`, async () => {
      const m = await kernelMemory(threads);
      // C = G = 2, E = 4, k = 2: hidden = gelu_erf([x0, 0]) = [gelu_erf(1), 0]; logits = W3·hidden.
      const c: Case = { rows: 2, width: 2, gating: 2, experts: 4, k: 2 };
      const run = (w3: number[]) => {
        const ids = m.alloc(c.rows * c.k * 4);
        const gates = m.out(c.rows * c.k);
        m.k.router(
          ids,
          gates,
          m.put(new Float32Array([1, 0, 1, 0])),
          c.rows,
          c.width,
          m.put(new Float32Array([1, 0, 0, 0])),
          STORAGE_CODE.f32,
          m.put(new Float32Array(2)),
          m.put(Float32Array.from(w3)),
          STORAGE_CODE.f32,
          c.gating,
          c.experts,
          c.k,
          m.out(4),
          m.out(8),
          m.out(4),
        );
        return { ids: Array.from(m.i32(ids, 4)), gates: m.f32(gates, 4) };
      };
      const h = geluErf(1);
      // Row logits [2h, −h, 5h, 0]: expert 2 first, expert 0 second.
      const got = run([2, 0, -1, 0, 5, 0, 0, 0]);
      const z = [2 * h, -h, 5 * h, 0].map((l) => Math.exp(l - 5 * h));
      const p = z.map((v) => v / z.reduce((a, b) => a + b));
      expect(got.ids).toEqual([2, 0, 2, 0]);
      expectClose(got.gates, [p[2], p[0], p[2], p[0]], TOL, 'gates');
      expect(got.gates[0] + got.gates[1]).toBeLessThan(0.99); // not renormalised over the k
      // Experts 1 and 3 tie for the top (equal float32 logits, so equal probabilities): 1 first.
      const tie = run([0, 0, 3, 0, 1, 0, 3, 0]);
      expect(tie.ids).toEqual([1, 3, 1, 3]);
      expect(tie.gates[0]).toBe(tie.gates[1]);
    });
  }

  it('gives the same bits on 1 and 2 threads', async () => {
    const c: Case = { rows: 9, width: 96, gating: 64, experts: 32, k: 4 };
    const one = await route({ w0: 'q4', w3: 'q4' }, c, 601, 1);
    const two = await route({ w0: 'q4', w3: 'q4' }, c, 601, 2);
    expect(Buffer.from(two.gates.buffer).equals(Buffer.from(one.gates.buffer))).toBe(true);
  });
});
