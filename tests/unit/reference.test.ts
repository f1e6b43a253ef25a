import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openCheckpoint } from '../../src/checkpoint/index.ts';
import { nodeFileSource } from '../../src/checkpoint/node-files.ts';
import { mergeSegments, type Segment, stickBreakingAttention, stickBreakingSegment } from '../../src/reference/attention.ts';
import { expertCombine, expertProject } from '../../src/reference/experts.ts';
import { layerNorm } from '../../src/reference/layer-norm.ts';
import { linear } from '../../src/reference/linear.ts';
import { erf, erfc, geluErf, geluTanh, sigmoid, softplus } from '../../src/reference/math.ts';
import { greedyGenerate, loadReferenceWeights, ReferenceModel } from '../../src/reference/model.ts';
import { routerTopK } from '../../src/reference/router.ts';
import { argmax, pcgHash, sample, uniformFromSeed } from '../../src/reference/sampler.ts';

/** Deterministic values in [-1, 1) (a small LCG), so failures reproduce. */
function randomArray(n: number, seed: number, scale = 1): Float64Array {
  let s = seed >>> 0;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = ((s / 2 ** 32) * 2 - 1) * scale;
  }
  return out;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe('math', () => {
  // Values from a float64 libm erf.
  it.each([
    [0.5, 0.5204998778130465],
    [1, 0.8427007929497149],
    [-2, -0.9953222650189527],
    [3, 0.9999779095030014],
    [0.1, 0.1124629160182849],
    [0.3, 0.3286267594591274],
    [-0.7, -0.6778011938374184],
    [1.7, 0.9837904585907745],
    [2.2, 0.9981371537020182],
    [2.5, 0.999593047982555],
    [2.9999, 0.9999778955735178],
    [3.0001, 0.9999779234241298],
    [3.5, 0.9999992569016276],
    [4, 0.9999999845827421],
    [-4.5, -0.9999999998033839],
    [5, 0.9999999999984626],
    [5.9, 0.9999999999999999],
  ])('erf(%f)', (x, expected) => {
    expect(Math.abs(erf(x) - expected)).toBeLessThanOrEqual(1e-15);
  });

  it('erf is odd, exact at 0 and saturates', () => {
    expect(erf(0)).toBe(0);
    expect(erf(1e-10)).toBeCloseTo(1.1283791670955126e-10, 24);
    expect(erf(7)).toBe(1);
    expect(erf(-Infinity)).toBe(-1);
    expect(erf(-1.3)).toBe(-erf(1.3));
  });

  it.each([
    [3.5, 7.430983723414128e-7],
    [5, 1.5374597944280351e-12],
    [8, 1.1224297172982928e-29],
    [12, 1.3562611692059042e-64],
    [26, 5.663192408856143e-296],
  ])('erfc(%f) keeps relative precision in the tail', (x, expected) => {
    expect(Math.abs(erfc(x) / expected - 1)).toBeLessThan(1e-13);
  });

  it('GELUs, softplus and sigmoid', () => {
    expect(geluErf(1)).toBeCloseTo(0.8413447460685429, 15); // Φ(1)
    expect(geluErf(-1)).toBeCloseTo(-1 + 0.8413447460685429, 15);
    expect(geluErf(-40)).toBe(-0); // no NaN from the tail
    expect(geluTanh(1)).toBeCloseTo(0.5 * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * 1.044715)), 15);
    expect(Math.abs(geluTanh(1.5) - geluErf(1.5))).toBeLessThan(1e-3);
    expect(softplus(0)).toBeCloseTo(Math.LN2, 15);
    expect(softplus(1000)).toBe(1000);
    expect(softplus(-1000)).toBe(0);
    expect(softplus(-30)).toBeCloseTo(Math.exp(-30), 25);
    expect(sigmoid(0)).toBe(0.5);
    expect(sigmoid(-1000)).toBe(0);
    expect(sigmoid(1000)).toBe(1);
    expect(sigmoid(2) + sigmoid(-2)).toBeCloseTo(1, 15);
  });
});

describe('dense pieces', () => {
  it('layerNorm uses the biased variance and the affine parameters', () => {
    const eps = 1e-5;
    const out = layerNorm(Float64Array.of(1, 2, 3, 4, 10, 10, 10, 10), 2, 4, [1, 2, 1, 1], [0, 0, 0, 1], eps);
    const s = Math.sqrt(1.25 + eps); // 1.25 = biased variance of 1..4
    expect(maxAbsDiff(out, [-1.5 / s, (2 * -0.5) / s, 0.5 / s, 1.5 / s + 1, 0, 0, 0, 1])).toBeLessThan(1e-15);
  });

  it('linear is x·Wᵀ + b with W [out, in]', () => {
    const y = linear(Float64Array.of(1, 2), 1, 2, 3, [1, 0, 0, 1, 1, 1], [0.5, 0, -1]);
    expect(Array.from(y)).toEqual([1.5, 2, 2]);
  });

  it('expertProject reads W[e] as [in, out] and combine weights slots by gates', () => {
    // Two experts, in 2, out 2: W0 = [[1, 2], [3, 4]], W1 = [[0, 1], [1, 0]].
    const w = [1, 2, 3, 4, 0, 1, 1, 0];
    const y = expertProject(Float64Array.of(1, 1), 1, 2, false, 2, 2, w, [1, 0], 'none');
    expect(Array.from(y)).toEqual([1, 1, 4, 6]);
    const perSlot = expertProject(Float64Array.of(1, 0, 0, 1), 1, 2, true, 2, 2, w, [0, 1], 'gelu_tanh');
    expect(maxAbsDiff(perSlot, [geluTanh(1), geluTanh(2), geluTanh(1), geluTanh(0)])).toBe(0);
    expect(Array.from(expertCombine(y, [0.5, 0.25], 1, 2, 2))).toEqual([1.5, 2]);
  });
});

describe('routerTopK', () => {
  // W0 = I, b0 = 0, so the hidden layer is gelu_erf(x) = x·Φ(x) with textbook Φ values, and
  // W3 picks hidden units as expert logits.
  const PHI1 = 0.8413447460685429;
  const PHI2 = 0.9772498680518208;
  const w0 = [1, 0, 0, 1];
  const b0 = [0, 0];

  it('softmax over all experts, descending top-k, gates not renormalised', () => {
    const w3 = [1, 0, 0, 1, 0, 0]; // logits [g(1), g(2), 0]
    const r = routerTopK(Float64Array.of(1, 2), 1, 2, w0, b0, w3, 2, 3, 2);
    const logits = [PHI1, 2 * PHI2, 0];
    const z = logits.reduce((a, l) => a + Math.exp(l), 0);
    const p = logits.map((l) => Math.exp(l) / z);
    expect(maxAbsDiff(r.probs, p)).toBeLessThan(1e-15);
    expect(Array.from(r.ids)).toEqual([1, 0]);
    expect(maxAbsDiff(r.gates, [p[1], p[0]])).toBeLessThan(1e-15);
    expect(r.gates[0] + r.gates[1]).toBeLessThan(1);
  });

  it('breaks ties by the lower expert index, per row', () => {
    const w3 = [0, 0, 1, 0, 0, 0]; // logits [0, g(x0), 0]: experts 0 and 2 tie
    const r = routerTopK(Float64Array.of(1, 2, -3, 0), 2, 2, w0, b0, w3, 2, 3, 2);
    expect(Array.from(r.ids)).toEqual([1, 0, 0, 2]); // row 2: g(-3) < 0, so 0 and 2 lead, then 1
    expect(r.gates[2]).toBe(r.gates[3]);
  });
});

describe('stick-breaking attention', () => {
  const T = 6;
  const k = 2;
  const H = 2;
  const d = 5;
  const pos0 = 7;
  const L = pos0 + T;
  const W = H * d;
  const q = randomArray(T * k * W, 1, 3);
  const keys = randomArray(L * W, 2, 2);
  const values = randomArray(L * W, 3);

  /** The textbook form: plain products of (1 − sigmoid), no logs. */
  function naive(t: number, s: number, h: number): Float64Array {
    const last = pos0 + t;
    const o = new Float64Array(d);
    const sig: number[] = [];
    for (let j = 0; j <= last; j++) {
      let dot = 0;
      for (let i = 0; i < d; i++) dot += q[((t * k + s) * H + h) * d + i] * keys[j * W + h * d + i];
      sig.push(1 / (1 + Math.exp(-dot / Math.sqrt(d))));
    }
    for (let j = 0; j <= last; j++) {
      let a = sig[j];
      for (let m = j + 1; m <= last; m++) a *= 1 - sig[m];
      for (let i = 0; i < d; i++) o[i] += a * values[j * W + h * d + i];
    }
    return o;
  }

  const direct = stickBreakingAttention(q, keys, values, T, k, H, d, pos0);

  it('matches the textbook product form', () => {
    for (let t = 0; t < T; t++)
      for (let s = 0; s < k; s++)
        for (let h = 0; h < H; h++) {
          const got = direct.subarray((t * k + s) * W + h * d, (t * k + s) * W + (h + 1) * d);
          expect(maxAbsDiff(got, naive(t, s, h))).toBeLessThan(1e-13);
        }
  });

  it('is causal: a later chunk sees the same rows as one long call', () => {
    const all = stickBreakingAttention(Float64Array.of(...randomArray(pos0 * k * W, 9), ...q), keys, values, L, k, H, d, 0);
    expect(maxAbsDiff(all.subarray(pos0 * k * W), direct)).toBeLessThan(1e-15);
  });

  const splits: [string, number[]][] = [
    ['one segment', []],
    ['every key alone', Array.from({ length: L - 1 }, (_, i) => i + 1)],
    ['uneven', [1, 4, 5, 11]],
    ['halves', [6]],
    ['empty segments included', [3, 3, 8]],
  ];

  it.each(splits)('merged segments (%s) equal the direct attention', (_name, cuts) => {
    for (let t = 0; t < T; t++) {
      const to = pos0 + t + 1;
      const bounds = [0, ...cuts.filter((c) => c < to), to];
      for (let s = 0; s < k; s++)
        for (let h = 0; h < H; h++) {
          const qh = q.subarray(((t * k + s) * H + h) * d, ((t * k + s) * H + h + 1) * d);
          const segs: Segment[] = [];
          for (let i = 0; i + 1 < bounds.length; i++) segs.push(stickBreakingSegment(qh, keys, values, W, h * d, d, bounds[i], bounds[i + 1]));
          // Oldest to newest, left fold.
          let folded = segs[0];
          for (const seg of segs.slice(1)) folded = mergeSegments(folded, seg);
          // Pairwise tree, as a parallel reduction would do it.
          let level = segs;
          while (level.length > 1) {
            const next: Segment[] = [];
            for (let i = 0; i < level.length; i += 2) next.push(i + 1 < level.length ? mergeSegments(level[i], level[i + 1]) : level[i]);
            level = next;
          }
          const want = direct.subarray((t * k + s) * W + h * d, (t * k + s) * W + (h + 1) * d);
          expect(maxAbsDiff(folded.o, want)).toBeLessThan(1e-12);
          expect(maxAbsDiff(level[0].o, want)).toBeLessThan(1e-12);
          expect(Math.abs(folded.s - level[0].s)).toBeLessThan(1e-12);
        }
    }
  });

  it('saturates without overflow on huge logits, and discards the leftover stick', () => {
    // One query at position 1 over keys [old, new] with values [1, 2]; d = 1, logits ±1e6.
    const run = (kOld: number, kNew: number): number =>
      stickBreakingAttention(Float64Array.of(1000), Float64Array.of(kOld, kNew), Float64Array.of(1, 2), 1, 1, 1, 1, 1)[0];
    expect(run(1000, 1000)).toBe(2); // the newest key takes the whole stick
    expect(run(1000, -1000)).toBe(1); // it takes nothing and leaves all of it to the older key
    expect(run(-1000, -1000)).toBe(0); // nobody takes anything: the leftover is dropped
  });
});

describe('sampler', () => {
  const logits = Float64Array.of(0.3, 2.1, -1, 2.0, 0.5, 1.7);
  const softmax = (l: ArrayLike<number>, temp: number): number[] => {
    const m = Math.max(...Array.from(l));
    const e = Array.from(l, (x) => Math.exp((x - m) / temp));
    const z = e.reduce((a, b) => a + b, 0);
    return e.map((x) => x / z);
  };

  it('argmax takes the lowest index on ties', () => {
    expect(argmax([1, 3, 3, 2])).toBe(1);
    expect(argmax(logits)).toBe(1);
  });

  it('pcgHash is the 32-bit PCG hash and uniformFromSeed is in [0, 1) on a 2^-24 grid', () => {
    // Reference values from arbitrary-precision integer arithmetic.
    expect([0, 1, 42, 0xffffffff, 123456789].map(pcgHash)).toEqual([129708002, 2831084092, 1223963391, 3861530882, 4272394698]);
    expect(uniformFromSeed(0, 0)).toBe(0.19039934873580933);
    expect(uniformFromSeed(42, 7)).toBe(0.8371119499206543);
    expect(uniformFromSeed(123, 1000)).toBe(0.2656227946281433);
    for (let step = 0; step < 1000; step++) {
      const u = uniformFromSeed(5, step);
      expect(u >= 0 && u < 1).toBe(true);
      expect(Math.fround(u)).toBe(u);
    }
  });

  it('temperature 0, topK 1 and a tiny topP all give the argmax for any u', () => {
    for (let i = 0; i < 64; i++) {
      const u = i / 64;
      expect(sample(logits, { temperature: 0, topK: 0, topP: 1 }, u)).toBe(1);
      expect(sample(logits, { temperature: 1.3, topK: 1, topP: 1 }, u)).toBe(1);
      expect(sample(logits, { temperature: 0.8, topK: 0, topP: 1e-6 }, u)).toBe(1);
      expect(sample(logits, { temperature: 0.8, topK: 3, topP: 0 }, u)).toBe(1);
    }
  });

  function histogram(opts: { temperature: number; topK: number; topP: number }, n: number, u: (i: number) => number): number[] {
    const counts = new Array<number>(logits.length).fill(0);
    for (let i = 0; i < n; i++) counts[sample(logits, opts, u(i))]++;
    return counts.map((c) => c / n);
  }

  it('the draw over evenly spread u reproduces the softmax', () => {
    const n = 100_000;
    const freq = histogram({ temperature: 0.7, topK: 0, topP: 1 }, n, (i) => (i + 0.5) / n);
    expect(maxAbsDiff(freq, softmax(logits, 0.7))).toBeLessThan(2 / n);
  });

  it('the draw over hashed u reproduces the softmax statistically', () => {
    const n = 40_000;
    const freq = histogram({ temperature: 1, topK: 0, topP: 1 }, n, (i) => uniformFromSeed(1234, i));
    expect(maxAbsDiff(freq, softmax(logits, 1))).toBeLessThan(0.01); // > 4 standard deviations
  });

  it('top-k keeps the k most likely, renormalised', () => {
    const n = 10_000;
    const freq = histogram({ temperature: 1, topK: 2, topP: 1 }, n, (i) => (i + 0.5) / n);
    const p = softmax(logits, 1);
    const z = p[1] + p[3];
    expect(maxAbsDiff(freq, [0, p[1] / z, 0, p[3] / z, 0, 0])).toBeLessThan(2 / n);
  });

  it('top-k keeps every token tied at the threshold', () => {
    const tied = [0, 1, 1, 1, 0.5];
    const seen = new Set<number>();
    for (let i = 0; i < 30; i++) seen.add(sample(tied, { temperature: 1, topK: 1, topP: 1 }, i / 30));
    expect([...seen].sort()).toEqual([1, 2, 3]);
  });

  it('top-p keeps the shortest most-likely prefix reaching the mass, ties included', () => {
    const l = [Math.log(0.2), Math.log(0.5), Math.log(0.3)];
    const n = 8000;
    const counts = [0, 0, 0];
    for (let i = 0; i < n; i++) counts[sample(l, { temperature: 1, topK: 0, topP: 0.7 }, (i + 0.5) / n)]++;
    expect(counts.map((c) => c / n)).toEqual([0, 5 / 8, 3 / 8]); // 0.5 < 0.7 ≤ 0.5 + 0.3
    // Exactly reaching the mass stops the prefix; ties with its last token stay.
    const t = [Math.log(0.4), Math.log(0.2), Math.log(0.2), Math.log(0.2)];
    const seen = new Set<number>();
    for (let i = 0; i < 50; i++) seen.add(sample(t, { temperature: 1, topK: 0, topP: 0.55 }, i / 50));
    expect([...seen].sort()).toEqual([0, 1, 2, 3]);
    expect(sample(t, { temperature: 1, topK: 0, topP: 0.3 }, 0.99)).toBe(0);
  });

  it('walks kept tokens in index order and never picks a zero-probability token', () => {
    const l = [0, -Infinity, 0];
    expect(sample(l, { temperature: 1, topK: 0, topP: 1 }, 0)).toBe(0);
    expect(sample(l, { temperature: 1, topK: 0, topP: 1 }, 0.4999)).toBe(0);
    expect(sample(l, { temperature: 1, topK: 0, topP: 1 }, 0.5)).toBe(2);
    expect(sample(l, { temperature: 1, topK: 0, topP: 1 }, 1)).toBe(2); // guard: past the end
  });
});

// ---------------------------------------------------------------------------------------------
// Whole model against the goldens of the PyTorch reference.

const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'golden');

interface Expected {
  input_ids: number[];
  logits_shape: [number, number];
  greedy_new_tokens: number[];
}

describe.each(['tiny-molm', 'tiny-generic-bf16'])('ReferenceModel on golden %s', (name) => {
  const dir = join(FIXTURES, name);
  const expected = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as Expected;
  const bytes = readFileSync(join(dir, 'expected_logits.f32'));
  const logits = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  const ids = expected.input_ids;
  const [T, V] = expected.logits_shape;

  async function load(): Promise<ReferenceModel> {
    const { config, tensors } = await openCheckpoint(nodeFileSource(dir));
    try {
      return new ReferenceModel(config, await loadReferenceWeights(tensors));
    } finally {
      await tensors.close();
    }
  }

  it('fixture is present', () => {
    expect(existsSync(join(dir, 'model.safetensors'))).toBe(true);
    expect(logits.length).toBe(T * V);
  });

  it('one prefill reproduces the logits', async () => {
    const model = await load();
    const got = model.prefill(ids);
    expect(got.length).toBe(T * V);
    // The goldens are float64 results stored as float32: agreement is ~2e-7, so 1e-5 has margin
    // and still catches the small bugs (a tanh GELU in the router moves logits by ~3e-3).
    expect(maxAbsDiff(got, logits)).toBeLessThan(1e-5);
    expect(model.length).toBe(T);
    expect(model.lastRouting?.length).toBe(model.config.nLayer);
  });

  it('prefill of one token then decode, and chunked prefill, give the same logits', async () => {
    const model = await load();
    const stepped = new Float64Array(T * V);
    stepped.set(model.prefill(ids.slice(0, 1)));
    for (let t = 1; t < T; t++) stepped.set(model.decode(ids[t]), t * V);
    expect(maxAbsDiff(stepped, logits)).toBeLessThan(1e-5);

    model.reset();
    expect(model.length).toBe(0);
    const chunked = new Float64Array(T * V);
    chunked.set(model.prefill(ids.slice(0, 5)));
    chunked.set(model.prefill(ids.slice(5)), 5 * V);
    expect(maxAbsDiff(chunked, stepped)).toBeLessThan(1e-12);
  });

  it('greedy generation reproduces the new tokens', async () => {
    const model = await load();
    expect(greedyGenerate(model, ids, expected.greedy_new_tokens.length)).toEqual(expected.greedy_new_tokens);
    expect(model.length).toBe(T + expected.greedy_new_tokens.length - 1);
  });
});
