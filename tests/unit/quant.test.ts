import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { f16ToF32, f32ToF16 } from '../../src/checkpoint/dtype.ts';
import { openCheckpoint } from '../../src/checkpoint/index.ts';
import { nodeFileSource } from '../../src/checkpoint/node-files.ts';
import { ModelFormatError } from '../../src/errors.ts';
import { preprocess, type Variant } from '../../src/gpu/wgsl.ts';
import { planWeights } from '../../src/weight-plan.ts';
import { decodeTensor } from '../../src/quant/decode.ts';
import { blockBytes, canQuantize, dequantize, matrixStorage, quantize, quantizedBytes, type QuantType } from '../../src/quant/layout.ts';
import { loadReferenceWeights } from '../../src/reference/model.ts';
import { quantizedSource } from '../quant-source.ts';

const GOLDEN = fileURLToPath(new URL('../fixtures/golden/tiny-molm', import.meta.url));
const QMAX: Record<QuantType, number> = { q8: 127, q4: 7 };

function words(bytes: Uint8Array): number[] {
  return Array.from(new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4));
}

/** xorshift in [-1, 1). */
function rand(seed: number): () => number {
  let s = seed;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return ((s >>> 0) / 2 ** 32) * 2 - 1;
  };
}

describe('q8 / q4 layout: hand-built examples', () => {
  it('q4 2-D [2, 32]: exact packed words, nibbles in order, scales two per word, ties away from zero', () => {
    const v = new Float32Array(64);
    // Row 0, scale 0.25 (max 1.75 = 7 · 0.25): q = 1..7, -7 in the first word.
    [1, 2, 3, 4, 5, 6, 7, -7].forEach((q, k) => {
      v[k] = q * 0.25;
    });
    // Row 1, scale 2 (max 14): q -7, 1, then 1/2 = 0.5 → 1 and -1/2 → -1 (ties away from zero),
    // 3/2 = 1.5 → 2, and q 7 as the last value of the row.
    v.set([-14, 2, 1, -1, 3], 32);
    v[63] = 14;
    const bytes = quantize(v, [2, 32], 'q4');
    expect(bytes.byteLength).toBe(36);
    expect(quantizedBytes([2, 32], 'q4')).toBe(36);
    expect(words(bytes)).toEqual([
      0x97654321,
      0,
      0,
      0, // row 0: words [1, 4]
      0x0002f119,
      0,
      0,
      0x70000000, // row 1
      0x40003400, // scales: 0.25 (0x3400) in the low half, 2 (0x4000) in the high half
    ]);
    const back = dequantize(bytes, [2, 32], 'q4');
    const want = Float32Array.from(v);
    want.set([-14, 2, 2, -2, 4], 32); // the ties and 1.5 moved by s/2 = 1
    expect(Array.from(back)).toEqual(Array.from(want));
  });

  it('q8 3-D [2, 32, 3]: word (w, j) holds inputs 4w..4w+3 of column j, odd scale count padded, experts contiguous', () => {
    const [E, IN, OUT] = [2, 32, 3];
    // |q| reaches 127 exactly once per column, so the scale is exactly 2^-(j + e).
    const qOf = (e: number, i: number, j: number) => (i === (j + e) % 32 ? 127 : ((i * 5 + j * 13 + e * 29) % 200) - 100);
    const v = new Float32Array(E * IN * OUT);
    for (let e = 0; e < E; e++) for (let i = 0; i < IN; i++) for (let j = 0; j < OUT; j++) v[(e * IN + i) * OUT + j] = qOf(e, i, j) * 2 ** -(j + e);
    const bytes = quantize(v, [E, IN, OUT], 'q8');
    // A block: 8 × 3 words of values, then 3 scales in 2 words (the 4th half is padding).
    expect(blockBytes([E, IN, OUT], 'q8')).toBe(104);
    expect(bytes.byteLength).toBe(208);
    const w = words(bytes);
    expect(w[0]).toBe(0xaba6a17f); // e 0, j 0, i 0..3: 127, -95, -90, -85
    const signed = new Int8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let e = 0; e < E; e++) {
      for (let i = 0; i < IN; i++) {
        for (let j = 0; j < OUT; j++) {
          const word = e * 26 + Math.floor(i / 4) * OUT + j;
          expect(signed[4 * word + (i % 4)]).toBe(qOf(e, i, j));
        }
      }
    }
    expect(w.slice(24, 26)).toEqual([0x38003c00, 0x00003400]); // expert 0: 1, 0.5 | 0.25, pad
    expect(w.slice(50, 52)).toEqual([0x34003800, 0x00003000]); // expert 1: 0.5, 0.25 | 0.125, pad
    // Expert e alone gives exactly bytes [e · blockBytes, (e + 1) · blockBytes).
    for (let e = 0; e < E; e++) {
      const alone = quantize(v.subarray(e * IN * OUT, (e + 1) * IN * OUT), [1, IN, OUT], 'q8');
      expect(Array.from(alone)).toEqual(Array.from(bytes.subarray(e * 104, (e + 1) * 104)));
    }
    expect(Array.from(dequantize(bytes, [E, IN, OUT], 'q8'))).toEqual(Array.from(v));
  });

  it('a 2-D tensor with one group pads its single scale; zero and tiny groups', () => {
    const v = new Float32Array(32);
    expect(words(quantize(v, [1, 32], 'q4'))).toEqual([0, 0, 0, 0, 0]); // all zeros: scale 0
    v[5] = 1e-9; // a non-zero group whose scale would be subnormal gets 2^-14 (0x0400)
    const tiny = words(quantize(v, [1, 32], 'q8'));
    expect(tiny.length).toBe(9);
    expect(tiny[8]).toBe(0x0400);
    expect(dequantize(quantize(v, [1, 32], 'q8'), [1, 32], 'q8').every((x) => x === 0)).toBe(true);
  });

  it('which shapes can be quantised, the f16 fallback, and refusals', () => {
    expect(canQuantize([4, 32])).toBe(true);
    expect(canQuantize([2, 64, 5])).toBe(true);
    expect(canQuantize([4, 33])).toBe(false);
    expect(canQuantize([4, 16])).toBe(false);
    expect(canQuantize([32])).toBe(false);
    expect(canQuantize([2, 2, 32, 4])).toBe(false);
    expect(matrixStorage('q4', [16, 16])).toBe('f16');
    expect(matrixStorage('q8', [16, 64])).toBe('q8');
    expect(matrixStorage('bf16', [16, 16])).toBe('bf16');
    expect(() => quantize(new Float32Array(4 * 33), [4, 33], 'q4')).toThrow(/cannot be quantised/);
    expect(() => quantize(new Float32Array(64), [2, 32], 'q4')).not.toThrow();
    expect(() => quantize(new Float32Array(64).fill(NaN), [2, 32], 'q4')).toThrow(/NaN/);
    expect(() => quantize(new Float32Array(10), [2, 32], 'q4')).toThrow(/10 values/);
    expect(() => dequantize(new Uint8Array(8), [2, 32], 'q4')).toThrow(/36/);
  });
});

describe('q8 / q4 round trip', () => {
  for (const type of ['q8', 'q4'] as const) {
    for (const shape of [
      [5, 96],
      [3, 64, 7],
      [2, 32, 8],
    ]) {
      it(`${type} [${shape}]: every element within half its group's scale`, () => {
        const r = rand(shape.reduce((a, b) => a * b + 1, 7));
        const n = shape.reduce((a, b) => a * b, 1);
        const v = new Float32Array(n);
        // Magnitudes vary by group (1e-3 .. 10), so scales vary too.
        for (let i = 0; i < n; i++) v[i] = r() * 10 ** (1 + 2 * r());
        const back = dequantize(quantize(v, shape, type), shape, type);
        const [inDim, cols, blocks] = shape.length === 2 ? [shape[1], shape[0], 1] : [shape[1], shape[2], shape[0]];
        const at = (b: number, c: number, i: number) => (shape.length === 2 ? c * inDim + i : (b * inDim + i) * cols + c);
        let worst = 0;
        for (let b = 0; b < blocks; b++) {
          for (let c = 0; c < cols; c++) {
            for (let g = 0; g < inDim; g += 32) {
              let max = 0;
              for (let i = g; i < g + 32; i++) max = Math.max(max, Math.abs(v[at(b, c, i)]));
              // The stored scale is the f16 rounding of max / QMAX: at most 2^-11 relative above it.
              const s = f16ToF32(f32ToF16(max / QMAX[type]));
              expect(s).toBeLessThanOrEqual((max / QMAX[type]) * (1 + 2 ** -11));
              for (let i = g; i < g + 32; i++) {
                const err = Math.abs(back[at(b, c, i)] - v[at(b, c, i)]);
                expect(err).toBeLessThanOrEqual(s / 2 + 1e-7 * Math.abs(v[at(b, c, i)]));
                worst = Math.max(worst, err / s);
              }
            }
          }
        }
        expect(worst).toBeGreaterThan(0.4); // the bound is tight: errors do reach ~s/2
      });
    }
  }

  it('random normal weights: measured error relative to the weights (reported)', () => {
    const r = rand(99);
    const n = 256 * 1024;
    const v = new Float32Array(n);
    for (let i = 0; i < n; i += 2) {
      // Box-Muller, σ = 0.02 (MoLM's initializer range).
      const u = Math.max(1e-12, (r() + 1) / 2);
      const t = Math.PI * (r() + 1);
      const m = 0.02 * Math.sqrt(-2 * Math.log(u));
      v[i] = m * Math.cos(t);
      v[i + 1] = m * Math.sin(t);
    }
    let rms = 0;
    for (const x of v) rms += x * x;
    rms = Math.sqrt(rms / n);
    for (const type of ['q8', 'q4'] as const) {
      const back = dequantize(quantize(v, [256, 1024], type), [256, 1024], type);
      let se = 0;
      let max = 0;
      for (let i = 0; i < n; i++) {
        const d = back[i] - v[i];
        se += d * d;
        max = Math.max(max, Math.abs(d));
      }
      const rel = Math.sqrt(se / n) / rms;
      console.log(`${type}: rms error / rms weight = ${rel.toExponential(3)}, max |error| = ${max.toExponential(3)} (σ 0.02)`);
      // Uniform rounding error s/√12 with s ≈ 2.2σ / QMAX (the typical group max of 32 normals).
      expect(rel).toBeLessThan(type === 'q8' ? 0.01 : 0.15);
    }
  });
});

describe('decodeTensor, the weight plan and the reference with q8 / q4', () => {
  it('decodeTensor handles Q8 / Q4 and the element dtypes', () => {
    const v = Float32Array.from({ length: 64 }, (_, i) => (i - 30) / 8);
    expect(Array.from(decodeTensor(quantize(v, [2, 32], 'q8'), { dtype: 'Q8', shape: [2, 32] }))).toEqual(
      Array.from(dequantize(quantize(v, [2, 32], 'q8'), [2, 32], 'q8')),
    );
    expect(Array.from(decodeTensor(new Uint8Array(v.buffer), { dtype: 'F32', shape: [2, 32] }))).toEqual(Array.from(v));
    const half = Uint16Array.from(v, f32ToF16);
    expect(Array.from(decodeTensor(new Uint8Array(half.buffer), { dtype: 'F16', shape: [64] }))).toEqual(Array.from(v));
  });

  it('planWeights: matrixType q4 quantises what it can, f16 for the rest (tiny-molm: G = 16, F = 48)', async () => {
    const { config, tensors } = await openCheckpoint(nodeFileSource(GOLDEN));
    try {
      for (const type of ['q8', 'q4'] as const) {
        const plan = planWeights(config, tensors, { matrixType: type });
        expect(plan.matrixType).toBe(type);
        const storage = Object.fromEntries(plan.entries.map((e) => [e.name, e.storage]));
        expect(storage['transformer.wte.weight']).toBe(type); // [97, 32]
        expect(storage['lm_head.weight']).toBe(type);
        expect(storage['transformer.h.0.attn.q_proj.gate.w_gate.0.weight']).toBe(type); // [16, 32]
        expect(storage['transformer.h.0.attn.q_proj.gate.w_gate.3.weight']).toBe('f16'); // [4, 16]
        expect(storage['transformer.h.0.mlpf.experts.weight']).toBe(type); // [6, 32, 48]
        expect(storage['transformer.h.0.mlpf.output_experts.weight']).toBe('f16'); // [6, 48, 32]
        expect(storage['transformer.h.0.ln_1.weight']).toBe('f32');
        for (const e of plan.entries) {
          if (e.storage === type) expect(e.bytes).toBe(quantizedBytes(e.shape, type));
        }
      }
    } finally {
      await tensors.close();
    }
  });

  it('planWeights keeps converted Q4 / F16 tensors as stored, and checks their sizes', async () => {
    const { config, tensors } = await openCheckpoint(nodeFileSource(GOLDEN));
    try {
      const q = quantizedSource(tensors, 'q4');
      const plan = planWeights(config, q);
      expect(plan.matrixType).toBe('q4');
      for (const e of plan.entries) {
        const dtype = q.tensors.get(e.name)!.dtype;
        expect(e.storage, e.name).toBe({ Q4: 'q4', F16: 'f16', F32: 'f32' }[dtype as string]);
      }
      // Forcing f32 dequantises them.
      expect(planWeights(config, q, { matrixType: 'f32' }).entries.every((e) => e.storage === 'f32')).toBe(true);
      // A Q4 tensor of the wrong size, or a Q4 vector, is a format error.
      const bad = new Map(q.tensors);
      const name = 'lm_head.weight';
      bad.set(name, { ...bad.get(name)!, byteLength: 12 });
      expect(() => planWeights(config, { ...q, tensors: bad })).toThrow(ModelFormatError);
      const vec = new Map(q.tensors);
      vec.set('transformer.ln_f.weight', { ...vec.get('transformer.ln_f.weight')!, dtype: 'Q4' });
      expect(() => planWeights(config, { ...q, tensors: vec })).toThrow(/Q4/);
    } finally {
      await tensors.close();
    }
  });

  it('loadReferenceWeights reads a converted model as its dequantised values', async () => {
    const { tensors } = await openCheckpoint(nodeFileSource(GOLDEN));
    try {
      const plain = await loadReferenceWeights(tensors);
      const q = await loadReferenceWeights(quantizedSource(tensors, 'q8'));
      const name = 'transformer.h.1.attn.q_proj.experts.weight'; // [4, 32, 32]
      const values = Float32Array.from(plain.get(name)!);
      expect(Array.from(q.get(name)!)).toEqual(Array.from(dequantize(quantize(values, [4, 32, 32], 'q8'), [4, 32, 32], 'q8')));
      expect(Array.from(q.get('transformer.ln_f.bias')!)).toEqual(Array.from(plain.get('transformer.ln_f.bias')!));
    } finally {
      await tensors.close();
    }
  });
});

describe('#weights with q8 / q4', () => {
  const variant = (weight: Variant['weights']): Variant => ({
    defines: { IN: 64, OUT: 4, LANES: 4, RPW: 8, CHUNK: 16, HAS_BIAS: false, LAST_ROW_ONLY: false, SUBGROUPS: false },
    weights: weight,
  });

  it('generates both accessors from the shape, and refuses a q type without one', () => {
    for (const type of ['q8', 'q4'] as const) {
      const code = preprocess('linear.wgsl', variant({ weight: { type, shape: [4, 64] } }));
      expect(code).toContain('fn weight_at(i: u32) -> f32');
      expect(code).toContain('fn weight_at2(i: u32) -> vec2f');
      const experts = preprocess('expert_matvec.wgsl', {
        defines: { IN: 64, OUT: 6, E: 3, K: 2, COLS: 4, SPLIT: 64, PER_SLOT_INPUT: false, GELU: false, COMBINE: false, SUBGROUPS: false },
        weights: { weight: { type, shape: [3, 64, 6] } },
      });
      expect(experts).toContain('fn weight_at2(i: u32) -> vec2f');
    }
    expect(() => preprocess('linear.wgsl', variant({ weight: 'q4' }))).toThrow(/shape/);
    expect(() => preprocess('linear.wgsl', variant({ weight: { type: 'q4', shape: [4, 48] } }))).toThrow(/cannot be quantised/);
  });
});
