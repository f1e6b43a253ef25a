import { describe, expect, it } from 'vitest';
import { stickBreakingAttention } from '../../src/reference/attention.ts';
import { maxAbsDiff } from '../shared/numeric.ts';
import { kernelMemory, THREADS } from './harness.ts';
import { attentionInputs, LARGE, NORMAL, SLOW, type Logits } from '../shared/attention-cases.ts';

// stickbreaking: prefill (rows > 1) walks every key of a row with one running stick; decode
// (rows = 1) splits the keys into segments of SEG = 64, walks each alone and merges them newest
// to oldest. The reference is the direct form (all logits, suffix sums of softplus, weighted sum
// in key order), so a wrong segment bound, merge order or stick shows up as a weight error.

const SEG = 64;

/**
 * Tolerance on max |wasm − float64 reference| / max |V| (the reasoning of
 * tests/gpu/stickbreaking.test.ts). Every weight is ≤ 1 and they sum to ≤ 1, so an output error
 * is at most (the largest relative weight error) × max|V| plus a few roundings of the axpy. A
 * weight's relative error is the absolute error of its exponent l − softplus(l) + stick: the
 * float32 logit (a d-term dot product; ~1e-6 on logits of ±30 at d = 1024), the float32 exp and
 * log1p polynomials (~2 ulps) and the float32 sum of −softplus over the newer keys (decode
 * restarts it every 64 keys and adds the segment sticks in float32). Measured here: at most
 * 3.8e-7 for decode, 5.2e-7 for prefill and 2.1e-6 for prefill with logits of ±30 at d = 1024,
 * as SwiftShader's GPU kernels measure; 2e-5, the GPU tests' bound for the same float32
 * arithmetic, is ten times the largest. Bugs give far more: a dropped, doubled or extra key (the
 * row's own key, or the NaN row past it) moves the output by that key's weight, and with the
 * SLOW logits below a key 300 positions back still weighs ~1e-3 (50× the bound); a segment
 * merged with the wrong stick or out of order scales all of its weights by e^S, far from 1.
 */
const TOL = 2e-5;

interface Shape {
  name: string;
  k: number;
  heads: number;
  d: number;
  /** MoLM: keys and values are one buffer (the kernel gets one pointer twice). */
  shared: boolean;
}

const MOLM: Shape = { name: 'MoLM k=2 H=1 d=1024, keys = values', k: 2, heads: 1, d: 1024, shared: true };
/** d = 7: no 8-lane block of the dot product and no 4-lane block of the axpy; three heads per row. */
const ODD: Shape = { name: 'k=3 H=3 d=7', k: 3, heads: 3, d: 7, shared: false };
/** d = 20: two 8-lane blocks and a scalar tail of 4 in the dot, five 4-lane blocks in the axpy. */
const SMALL: Shape = { name: 'k=1 H=2 d=20', k: 1, heads: 2, d: 20, shared: false };

function inputs(seed: number, s: Shape, qRows: number, rows: number, filled: number, logits: Logits) {
  return attentionInputs(seed, { k: s.k, heads: s.heads, d: s.d, shared: s.shared }, qRows, rows, filled, logits);
}

/**
 * Runs `rows` query rows at positions pos0 … pos0 + rows − 1 on `threads` threads and checks them
 * against the reference; returns the output. Two NaN cache rows lie past the last key, and the
 * decode scratch is sized for that cache (NaN-filled: every part the merge reads must be written).
 */
async function attend(s: Shape, rows: number, pos0: number, logits: Logits, seed: number, threads: number): Promise<Float32Array> {
  const m = await kernelMemory(threads);
  const L = pos0 + rows;
  const cacheRows = L + 2;
  const x = inputs(seed, s, rows, cacheRows, L, logits);
  const keys = m.put(x.keys);
  const values = s.shared ? keys : m.put(x.values);
  const n = rows * s.k * x.width;
  const o = m.out(n);
  const partial = m.out(m.k.stickbreaking_partial_floats(cacheRows, s.k, s.heads, s.d));
  m.k.stickbreaking(o, m.put(x.q), keys, values, rows, s.k, s.heads, s.d, pos0, x.width, partial);
  const got = m.f32(o, n);
  const expected = stickBreakingAttention(
    Float64Array.from(x.q),
    Float64Array.from(x.keys.subarray(0, L * x.width)),
    Float64Array.from(x.values.subarray(0, L * x.width)),
    rows,
    s.k,
    s.heads,
    s.d,
    pos0,
  );
  const err = maxAbsDiff(got, expected) / x.vmax;
  const what = `${s.name}, rows ${rows} at ${pos0}, logits ±${logits.spread}${logits.shift ? ` ${logits.shift}` : ''}, ${threads} thread(s)`;
  expect(err, `${what}: max error ${err.toExponential(2)} × max|V| exceeds ${TOL}`).toBeLessThanOrEqual(TOL);
  return got;
}

describe('wasm stick-breaking attention', () => {
  it('sizes the decode scratch as one (d + 1)-float part per 64-key segment, head and slot', async () => {
    const m = await kernelMemory(1);
    expect(m.k.stickbreaking_partial_floats(1, 2, 1, 1024)).toBe(1 * 2 * 1025);
    expect(m.k.stickbreaking_partial_floats(SEG, 2, 1, 1024)).toBe(1 * 2 * 1025);
    expect(m.k.stickbreaking_partial_floats(SEG + 1, 3, 3, 7)).toBe(2 * 3 * 3 * 8);
    expect(m.k.stickbreaking_partial_floats(2048, 2, 1, 1024)).toBe(32 * 2 * 1025);
  });

  for (const threads of THREADS) {
    describe(`${threads} thread(s)`, () => {
      // Decode at position p reads keys 0 … p: one segment up to 63, two from 64 (the second
      // holding the single newest key), 4 at 200.
      for (const s of [MOLM, ODD, SMALL]) {
        it(`decode, ${s.name}: positions 0, 63, 64, 65, 200 (segment boundaries)`, async () => {
          for (const pos of [0, 63, 64, 65, 200]) await attend(s, 1, pos, NORMAL, pos * 7 + s.d, threads);
        });
      }
      it('decode: every segment weighed when the stick lasts hundreds of keys (logits near −5)', async () => {
        await attend(MOLM, 1, 700, SLOW, 703, threads);
        await attend(ODD, 1, 400, SLOW, 401, threads);
        await attend(SMALL, 1, 129, SLOW, 129, threads);
      });
      it('decode: logits of ±30 (softplus at both tails)', async () => {
        await attend(MOLM, 1, 300, LARGE, 301, threads);
        await attend(ODD, 1, 200, LARGE, 202, threads);
      });

      // Prefill: row t attends keys 0 … pos0 + t. pos0 > 0 continues a chunked prefill whose
      // earlier keys are already in the cache.
      const prefill: [number, number][] = [
        [2, 0],
        [17, 0],
        [3, 64],
        [17, 40],
        [35, 29],
      ];
      for (const s of [MOLM, ODD, SMALL]) {
        it(`prefill, ${s.name}: (rows, pos0) = ${prefill.map(([t, p]) => `(${t}, ${p})`).join(' ')}`, async () => {
          for (const [rows, pos0] of prefill) await attend(s, rows, pos0, NORMAL, rows * 100 + pos0 + s.d, threads);
        });
      }
      it('prefill: a long stick (logits near −5) and logits of ±30', async () => {
        await attend(MOLM, 20, 100, SLOW, 121, threads);
        await attend(ODD, 40, 150, SLOW, 191, threads);
        await attend(MOLM, 35, 29, LARGE, 77, threads);
        await attend(ODD, 35, 29, LARGE, 78, threads);
      });
    });
  }

  it('gives the same bits on 1 and 2 threads (segment bounds depend only on the position)', async () => {
    for (const s of [MOLM, ODD]) {
      const one = await attend(s, 1, 300, SLOW, 300 + s.d, 1);
      const two = await attend(s, 1, 300, SLOW, 300 + s.d, 2);
      expect(Buffer.from(two.buffer).equals(Buffer.from(one.buffer)), `decode at 300, ${s.name}`).toBe(true);
    }
    const one = await attend(ODD, 9, 50, NORMAL, 59, 1);
    const two = await attend(ODD, 9, 50, NORMAL, 59, 2);
    expect(Buffer.from(two.buffer).equals(Buffer.from(one.buffer)), 'prefill of 9 rows at 50').toBe(true);
  });
});
