import { describe, it } from 'vitest';
import { layerNorm as layerNormRef } from '../../src/reference/layer-norm.ts';
import { expectClose, randomF32, rng } from '../shared/numeric.ts';
import { kernelMemory, THREADS } from './harness.ts';

// layer_norm sums the mean and the biased variance in float64 (two passes), then writes
// out = (x − m)·inv·w + b in float32 with m = f32(mean) and inv = f32(1/√(var + eps)).

const U = 2 ** -24;
const EPS = 1e-5;

/** Half an ulp of |v| in float32: how far f32(v) can be from v. */
function halfUlp(v: number): number {
  return v === 0 ? 0 : 2 ** (Math.floor(Math.log2(Math.abs(v))) - 24);
}

/**
 * Float32 error allowed, the largest over rows of
 *   (½ulp(mean) + 4·2^-24·max|x − mean|)·inv·max|w| + 2·2^-24·max|out|:
 * the mean rounded to float32 shifts every x − m by up to ½ulp(mean), then x − m, ·inv (itself
 * rounded), ·w and +b each round once. With a common offset of 1000 the first term, 3e-5 before
 * scaling (the size of the rounding of x itself), dominates: measured errors reach 65% of the
 * bound there and 20-40% on rows without an offset. A float32 variance E[x²] − mean² (at offset
 * 1000, x² ≈ 1e6 has ulps of 0.06 against a variance of 3), an unbiased variance (÷(width − 1):
 * relative 1/(2·width) ≈ 5e-3 at width 97), eps outside the root (a factor of 2 on the rows of
 * spread 3e-3, whose variance is below eps), or a missing weight or bias exceed it.
 */
function tolerance(x: Float32Array, rows: number, width: number, w: Float32Array, expected: Float64Array): number {
  let maxW = 0;
  for (const v of w) maxW = Math.max(maxW, Math.abs(v));
  let tol = 0;
  for (let r = 0; r < rows; r++) {
    const row = x.subarray(r * width, (r + 1) * width);
    let mean = 0;
    for (const v of row) mean += v;
    mean /= width;
    let variance = 0;
    let maxDev = 0;
    for (const v of row) {
      variance += (v - mean) ** 2;
      maxDev = Math.max(maxDev, Math.abs(v - mean));
    }
    const inv = 1 / Math.sqrt(variance / width + EPS);
    let maxOut = 0;
    for (let i = 0; i < width; i++) maxOut = Math.max(maxOut, Math.abs(expected[r * width + i]));
    tol = Math.max(tol, (halfUlp(mean) + 4 * U * maxDev) * inv * maxW + 2 * U * maxOut);
  }
  return tol;
}

interface Case {
  rows: number;
  width: number;
  /** x = offset + uniform ±spread. */
  offset: number;
  spread: number;
}

async function check(c: Case, seed: number, threads: number): Promise<void> {
  const m = await kernelMemory(threads);
  const rand = rng(seed);
  const x = randomF32(c.rows * c.width, rand, c.spread).map((v) => v + c.offset);
  const w = randomF32(c.width, rand);
  const b = randomF32(c.width, rand);
  const out = m.out(c.rows * c.width);
  m.k.layer_norm(out, m.put(x), c.rows, c.width, m.put(w), m.put(b), EPS);
  const expected = layerNormRef(Float64Array.from(x), c.rows, c.width, w, b, EPS);
  expectClose(m.f32(out, c.rows * c.width), expected, tolerance(x, c.rows, c.width, w, expected), `${JSON.stringify(c)}, ${threads} thread(s)`);
}

describe('wasm layer_norm', () => {
  for (const threads of THREADS) {
    describe(`${threads} thread(s)`, () => {
      it('odd width 97, 3 rows', () => check({ rows: 3, width: 97, offset: 0, spread: 3 }, 11, threads));
      it('a large common offset: 1000 ± 3, odd width 97', () => check({ rows: 2, width: 97, offset: 1000, spread: 3 }, 12, threads));
      it('MoLM width 1024, 5 rows, offset 5', () => check({ rows: 5, width: 1024, offset: 5, spread: 3 }, 13, threads));
      it('variance below eps (spread 3e-3): eps inside the root', () => check({ rows: 2, width: 33, offset: 1, spread: 3e-3 }, 14, threads));
      it('width 1: zero variance, out = bias', () => check({ rows: 4, width: 1, offset: 0, spread: 2 }, 15, threads));
    });
  }
});
