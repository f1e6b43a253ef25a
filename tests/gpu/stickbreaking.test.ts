import { describe, expect, it } from 'vitest';
import { runDispatches } from '../../src/kernels/dispatch.ts';
import { decodeSegments, stickBreakingDecode, stickBreakingPrefill } from '../../src/kernels/stickbreaking.ts';
import { stickBreakingAttention } from '../../src/reference/attention.ts';
import { gpuContext, maxAbsDiff, output, readF32, stepUniform, upload, useKernelProfile } from './harness.ts';
import { attentionInputs, LARGE, NORMAL, SLOW, type Logits } from '../shared/attention-cases.ts';

// Tolerance on max |GPU − float64 reference| / max |V|. Every weight is ≤ 1 and they sum to ≤ 1,
// so an output error is a weight error times |V|. Weight errors come from f32 logits (a d-term
// dot product: ~1e-6 relative on a unit-sized logit at d = 1024) and f32 sums of −softplus over
// the context (~1e-7 per key, through exp). Measured on SwiftShader: at most 5e-7 (decode) and
// 1.2e-6 (prefill, whose logits are one 1024-term serial sum per invocation), 2e-6 with logits
// of ±30; 2e-5 leaves room for GPUs whose exp is less exact.
const TOL = 2e-5;

interface Shape {
  name: string;
  k: number;
  heads: number;
  headSize: number;
  /** MoLM: keys and values are one buffer. */
  shared: boolean;
}

const MOLM: Shape = { name: 'MoLM k=2 H=1 d=1024', k: 2, heads: 1, headSize: 1024, shared: true };
const GENERAL: Shape = { name: 'k=3 H=2 d=12', k: 3, heads: 2, headSize: 12, shared: false };
// d = 100: a partial last chunk of the prefill's 64-dim staging and 128 lanes for 100 dims.
const ODD: Shape = { name: 'k=1 H=3 d=100', k: 1, heads: 3, headSize: 100, shared: false };

function inputs(seed: number, s: Shape, qRows: number, rows: number, filled: number, logits: Logits) {
  return attentionInputs(seed, { k: s.k, heads: s.heads, d: s.headSize, shared: s.shared }, qRows, rows, filled, logits);
}

function reference(s: Shape, x: ReturnType<typeof inputs>, T: number, pos: number): Float64Array {
  const n = (pos + T) * x.width;
  return stickBreakingAttention(
    Float64Array.from(x.q),
    Float64Array.from(x.keys.subarray(0, n)),
    Float64Array.from(x.values.subarray(0, n)),
    T,
    s.k,
    s.heads,
    s.headSize,
    pos,
  );
}

function expectRelClose(actual: Float32Array, expected: Float64Array, vmax: number, tol: number, what: string): void {
  const err = maxAbsDiff(actual, expected) / vmax;
  expect(err, `${what}: max error ${err.toExponential(2)} × max|V| exceeds ${tol}`).toBeLessThanOrEqual(tol);
}

async function runDecode(s: Shape, maxContext: number, len: number, logits: Logits, seed: number) {
  const ctx = await gpuContext();
  const x = inputs(seed, s, 1, maxContext, len, logits);
  const keys = upload(ctx, x.keys, 'keys');
  const values = s.shared ? keys : upload(ctx, x.values, 'values');
  const o = output(ctx, s.k * x.width * 4);
  const step = stepUniform(ctx, 1, len - 1);
  const d = await stickBreakingDecode(
    ctx,
    { k: s.k, heads: s.heads, headSize: s.headSize, maxContext },
    { step: step.buffer, q: upload(ctx, x.q, 'q'), keys, values, o },
  );
  runDispatches(ctx, d, 1);
  return { actual: await readF32(ctx, o), expected: reference(s, x, 1, len - 1), vmax: x.vmax };
}

async function runPrefill(s: Shape, T: number, pos: number, logits: Logits, seed: number) {
  const ctx = await gpuContext();
  // Two spare cache rows past the chunk: NaN, never to be read.
  const x = inputs(seed, s, T, pos + T + 2, pos + T, logits);
  const keys = upload(ctx, x.keys, 'keys');
  const values = s.shared ? keys : upload(ctx, x.values, 'values');
  const o = output(ctx, T * s.k * x.width * 4);
  const step = stepUniform(ctx, T, pos);
  const d = await stickBreakingPrefill(ctx, s, { step: step.buffer, q: upload(ctx, x.q, 'q'), keys, values, o });
  runDispatches(ctx, [d], T);
  return { actual: await readF32(ctx, o), expected: reference(s, x, T, pos), vmax: x.vmax };
}

// Both shapes of the split: the workgroup-parallel kernel ('gpu') and the serial one of CPU
// adapters ('cpu', shaders/stickbreaking_decode_serial.wgsl), against the same reference.
for (const profile of ['gpu', 'cpu'] as const) {
  describe(`stick-breaking decode (split + merge), ${profile} shape`, () => {
    useKernelProfile(profile);
    // maxContext 2048: P = 64 segments of ceil(len / 64) keys, one 32-key block each at most.
    // maxContext 4096: still 64 segments, now up to 64 keys: two blocks per segment.
    // maxContext 200: P = 7, an odd count that does not divide the block size.
    const cases: [Shape, number, number[]][] = [
      [MOLM, 2048, [1, 2, 63, 64, 65, 127, 128, 129, 1500]],
      [MOLM, 4096, [2049, 3000]],
      [GENERAL, 2048, [1, 2, 63, 64, 65, 191, 192, 193, 2048]],
      [GENERAL, 4096, [2047, 2049, 2113, 4096]],
      [GENERAL, 200, [1, 6, 7, 8, 34, 35, 36, 200]],
      [ODD, 2048, [1, 65, 700]],
    ];
    for (const [s, maxContext, lens] of cases) {
      const P = decodeSegments(maxContext);
      it(`${s.name}, maxContext ${maxContext} (P = ${P}), lengths ${lens.join(', ')}`, async () => {
        for (const len of lens) {
          const r = await runDecode(s, maxContext, len, NORMAL, len * 7 + s.headSize);
          expectRelClose(r.actual, r.expected, r.vmax, TOL, `len ${len}`);
        }
      });
    }
    it('stays accurate with logits of ±30 (softplus at both tails)', async () => {
      for (const [s, len] of [
        [MOLM, 300],
        [GENERAL, 1000],
      ] as const) {
        const r = await runDecode(s, 2048, len, LARGE, len + 1);
        expectRelClose(r.actual, r.expected, r.vmax, TOL, `${s.name} len ${len}`);
      }
    });
    it('weighs every segment and block correctly when the stick lasts hundreds of keys', async () => {
      for (const [s, maxContext, len] of [
        [MOLM, 2048, 1500],
        [MOLM, 4096, 3000],
        [GENERAL, 4096, 2113],
        [ODD, 2048, 700],
      ] as const) {
        const r = await runDecode(s, maxContext, len, SLOW, len + 3);
        expectRelClose(r.actual, r.expected, r.vmax, TOL, `${s.name} len ${len}`);
      }
    });
  });
}

for (const profile of ['gpu', 'cpu'] as const) {
  describe(`stick-breaking prefill, ${profile} shape (${profile === 'cpu' ? 'serial' : 'tiled'})`, () => {
    useKernelProfile(profile);
    // BQ = 16 rows per tile, BK = 32 keys per block. pos > 0 continues a chunked prefill whose
    // earlier keys are already in the cache.
    const tc: [number, number][] = [
      [1, 0],
      [15, 0],
      [16, 0],
      [17, 0],
      [35, 0],
      [1, 33],
      [17, 40],
      [35, 29],
    ];
    for (const s of [MOLM, GENERAL]) {
      it(`${s.name}, (T, pos) = ${tc.map(([t, p]) => `(${t}, ${p})`).join(' ')}`, async () => {
        for (const [T, pos] of tc) {
          const r = await runPrefill(s, T, pos, NORMAL, T * 100 + pos + s.headSize);
          expectRelClose(r.actual, r.expected, r.vmax, TOL, `T ${T} pos ${pos}`);
        }
      });
    }
    it(`${GENERAL.name}: a long chunk after a long history`, async () => {
      const r = await runPrefill(GENERAL, 100, 250, NORMAL, 5);
      expectRelClose(r.actual, r.expected, r.vmax, TOL, 'T 100 pos 250');
    });
    it(`${ODD.name}`, async () => {
      for (const [T, pos] of [
        [17, 0],
        [20, 45],
      ]) {
        const r = await runPrefill(ODD, T, pos, NORMAL, T + pos);
        expectRelClose(r.actual, r.expected, r.vmax, TOL, `T ${T} pos ${pos}`);
      }
    });
    it('weighs every key block correctly when the stick lasts hundreds of keys', async () => {
      for (const [s, T, pos] of [
        [MOLM, 35, 100],
        [GENERAL, 100, 250],
        [ODD, 20, 45],
      ] as const) {
        const r = await runPrefill(s, T, pos, SLOW, T + pos + 1);
        expectRelClose(r.actual, r.expected, r.vmax, TOL, `${s.name} T ${T} pos ${pos}`);
      }
    });
    it('stays accurate with logits of ±30 (softplus at both tails)', async () => {
      for (const s of [MOLM, GENERAL]) {
        const r = await runPrefill(s, 35, 29, LARGE, 77);
        expectRelClose(r.actual, r.expected, r.vmax, TOL, s.name);
      }
    });
  });
}
