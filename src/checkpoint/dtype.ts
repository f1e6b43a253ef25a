import type { DType } from './types.ts';

// Conversions between stored dtypes and float32. Everything is little-endian, as safetensors
// and torch storages are on every platform molm-web runs on.

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function bf16ToF32(bits: number): number {
  u32[0] = bits << 16;
  return f32[0];
}

export function f16ToF32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >> 10) & 0x1f;
  const frac = bits & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** Rounds a float32 to bf16 bits, round-to-nearest-even (as torch does). */
export function f32ToBf16(x: number): number {
  f32[0] = x;
  const bits = u32[0];
  if ((bits & 0x7fffffff) > 0x7f800000) return (bits >>> 16) | 0x40; // quiet NaN
  const rounded = bits + 0x7fff + ((bits >>> 16) & 1);
  return (rounded >>> 16) & 0xffff;
}

/** Rounds a float32 to IEEE half bits, round-to-nearest-even. */
export function f32ToF16(x: number): number {
  f32[0] = x;
  const bits = u32[0];
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  let mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let m = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    if (rest > half || (rest === half && m & 1)) m++;
    return sign | m;
  }
  let m = mant >>> 13;
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && m & 1)) {
    m++;
    if (m === 0x400) {
      m = 0;
      e++;
      if (e >= 31) return sign | 0x7c00;
    }
  }
  return sign | (e << 10) | m;
}

/**
 * Decodes stored bytes of an element dtype into float32 values. Q8 / Q4 need the tensor's shape:
 * use `decodeTensor` (src/quant/decode.ts), which handles every dtype.
 */
export function toFloat32(bytes: Uint8Array, dtype: DType): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (dtype) {
    case 'F32': {
      if (bytes.byteOffset % 4 === 0) return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4).slice();
      const out = new Float32Array(bytes.byteLength / 4);
      for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(i * 4, true);
      return out;
    }
    case 'BF16': {
      const out = new Float32Array(bytes.byteLength / 2);
      for (let i = 0; i < out.length; i++) out[i] = bf16ToF32(view.getUint16(i * 2, true));
      return out;
    }
    case 'F16': {
      const out = new Float32Array(bytes.byteLength / 2);
      for (let i = 0; i < out.length; i++) out[i] = f16ToF32(view.getUint16(i * 2, true));
      return out;
    }
    case 'I8': {
      const out = new Float32Array(bytes.byteLength);
      for (let i = 0; i < out.length; i++) out[i] = view.getInt8(i);
      return out;
    }
    case 'Q8':
    case 'Q4':
      throw new Error(`${dtype} tensors need their shape to be decoded: use decodeTensor (src/quant/decode.ts)`);
  }
}

/** Decodes stored bytes into float64 values (for the CPU reference). */
export function toFloat64(bytes: Uint8Array, dtype: DType): Float64Array {
  return Float64Array.from(toFloat32(bytes, dtype));
}
