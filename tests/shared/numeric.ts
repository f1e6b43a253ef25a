import { expect } from 'vitest';
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from '../../src/checkpoint/dtype.ts';
import type { StorageType } from '../../src/storage-types.ts';
import { dequantize, isQuantType, quantize } from '../../src/quant/layout.ts';

// Numbers every kernel test uses, whichever engine it tests: seeded random inputs, weights in
// each storage type with the values they really hold, and the closeness check.

/** A deterministic generator so a failing case can be rerun; a new seed per test call site. */
export function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
}

/** Uniform values in [-scale, scale), rounded to float32 (what the GPU will see). */
export function randomF32(n: number, rand: () => number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (rand() * 2 - 1) * scale;
  return a;
}

/** Largest |a - b| over the arrays (lengths must match). */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

/** Asserts max |actual - expected| <= tol, reporting the error found. */
export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what = 'values'): void {
  const err = maxAbsDiff(actual, expected);
  expect(err, `${what}: max abs error ${err} exceeds ${tol}`).toBeLessThanOrEqual(tol);
}

/**
 * A weight tensor as the GPU stores it for `type` (16-bit values packed two per u32, element 0
 * in the low half; q8 / q4 in the layout of src/quant/layout.ts, which needs the tensor's
 * shape), and the float32 values it really holds after rounding or quantisation: references
 * must run on `rounded`, so that only the kernel's arithmetic is under test.
 */
export function weightData(values: Float32Array, type: StorageType, shape?: readonly number[]): { data: ArrayBufferView; rounded: Float32Array } {
  if (type === 'f32') return { data: values, rounded: values };
  if (isQuantType(type)) {
    if (!shape) throw new Error(`weightData: ${type} needs the tensor's shape`);
    const data = quantize(values, shape, type);
    return { data, rounded: dequantize(data, shape, type) };
  }
  const bits = new Uint16Array(values.length);
  const rounded = new Float32Array(values.length);
  const [encode, decode] = type === 'bf16' ? [f32ToBf16, bf16ToF32] : [f32ToF16, f16ToF32];
  for (let i = 0; i < values.length; i++) {
    bits[i] = encode(values[i]);
    rounded[i] = decode(bits[i]);
  }
  return { data: bits, rounded };
}
