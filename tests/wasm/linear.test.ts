import { describe, expect, it } from 'vitest';
import type { StorageType } from '../../src/storage-types.ts';
import { linear as linearRef } from '../../src/reference/linear.ts';
import { STORAGE_CODE } from '../../src/wasm/abi.ts';
import { expectClose, randomF32, rng, weightData } from '../shared/numeric.ts';
import { kernelMemory, THREADS } from './harness.ts';
import { linearTolerance as tolerance } from '../shared/linear-bound.ts';

interface Case {
  rows: number;
  inDim: number;
  outDim: number;
  bias: boolean;
}

async function check(type: StorageType, c: Case, seed: number, threads: number): Promise<Float32Array> {
  const m = await kernelMemory(threads);
  const rand = rng(seed);
  const scale = 1 / Math.sqrt(c.inDim);
  const x = randomF32(c.rows * c.inDim, rand);
  const w = weightData(randomF32(c.outDim * c.inDim, rand, scale), type, [c.outDim, c.inDim]);
  const bias = c.bias ? randomF32(c.outDim, rand) : null;
  const y = m.out(c.rows * c.outDim);
  m.k.linear(y, m.put(x), c.rows, c.inDim, c.outDim, m.put(w.data), STORAGE_CODE[type], bias ? m.put(bias) : 0, m.alloc(c.rows * c.inDim * 4));
  const got = m.f32(y, c.rows * c.outDim);
  const expected = linearRef(Float64Array.from(x), c.rows, c.inDim, c.outDim, w.rounded, bias && Float64Array.from(bias));
  expectClose(got, expected, tolerance(x, c.rows, c.inDim, scale, expected), `${type} ${JSON.stringify(c)}, ${threads} thread(s)`);
  return got;
}

describe('wasm linear kernel', () => {
  for (const threads of THREADS) {
    (['f32', 'bf16', 'f16'] as const).forEach((type, t) => {
      describe(`${type} weights, ${threads} thread(s)`, () => {
        it('odd shape 97 -> 33, 3 rows, bias (the scalar path)', () => check(type, { rows: 3, inDim: 97, outDim: 33, bias: true }, 11 + t, threads));
        it('64 -> 33, 7 rows (vector path: row tiles of 4 + 3)', () => check(type, { rows: 7, inDim: 64, outDim: 33, bias: false }, 21 + t, threads));
        it('one row, 1024 -> 300 with bias (the four-chain dot product)', () =>
          check(type, { rows: 1, inDim: 1024, outDim: 300, bias: true }, 31 + t, threads));
        // The full lm_head (50295 rows) for f32 only: rounding 51M values to 16 bits in JS takes 13 s.
        if (type === 'f32')
          it('lm_head shape 1024 -> 50295, one row', () => check(type, { rows: 1, inDim: 1024, outDim: 50295, bias: false }, 51 + t, threads));
        else it('1024 -> 5003, one row (many units of output rows)', () => check(type, { rows: 1, inDim: 1024, outDim: 5003, bias: false }, 51 + t, threads));
      });
    });
    (['q8', 'q4'] as const).forEach((type, t) => {
      describe(`${type} weights, ${threads} thread(s)`, () => {
        it('96 -> 40, 3 rows, bias', () => check(type, { rows: 3, inDim: 96, outDim: 40, bias: true }, 211 + t, threads));
        it('64 -> 33, 6 rows (row tiles of 4 + 2)', () => check(type, { rows: 6, inDim: 64, outDim: 33, bias: false }, 221 + t, threads));
        it('one row, 32 -> 7 with bias', () => check(type, { rows: 1, inDim: 32, outDim: 7, bias: true }, 231 + t, threads));
        it('router shape 1024 -> 256, 5 rows', () => check(type, { rows: 5, inDim: 1024, outDim: 256, bias: true }, 241 + t, threads));
        it('lm_head shape 1024 -> 50295, one row', () => check(type, { rows: 1, inDim: 1024, outDim: 50295, bias: false }, 251 + t, threads));
      });
    });
  }

  it('gives the same bits on 1 and 2 threads (rows are split, never a sum)', async () => {
    for (const type of ['f32', 'q4'] as const) {
      const c = { rows: 2, inDim: 1024, outDim: 4099, bias: true };
      const one = await check(type, c, 301, 1);
      const two = await check(type, c, 301, 2);
      expect(Buffer.from(two.buffer).equals(Buffer.from(one.buffer))).toBe(true);
    }
  });
});
