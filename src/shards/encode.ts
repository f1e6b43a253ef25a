import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from '../checkpoint/dtype.ts';
import type { DType } from '../checkpoint/types.ts';
import { GROUP, QUANT_BITS, blockBytes, isQuantType, quantize, quantizedBytes, type QuantType } from '../quant/layout.ts';
import { type StorageType, storageBytes } from '../storage-types.ts';

// One tensor from a checkpoint dtype to its storage bytes in a converted model. Node-free, so
// the same code can convert in a browser. The storage bytes are produced a range at a time (the
// converter asks for one shard piece after another), so the peak is the source tensor plus one
// piece: float types are converted element by element, q8 / q4 expert tensors one expert at a
// time, and only a 2-D q8 / q4 matrix (at most ~9/16 of its bf16 size) is held whole.

const CHUNK = 1 << 16;

const SAME: Partial<Record<DType, StorageType>> = { F32: 'f32', F16: 'f16', BF16: 'bf16' };

/** Decodes `count` values of `bytes` (in `dtype`) starting at element `start` into `out`. */
export function decodeInto(bytes: Uint8Array, dtype: DType, start: number, count: number, out: Float32Array): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (dtype) {
    case 'F32':
      for (let i = 0; i < count; i++) out[i] = view.getFloat32((start + i) * 4, true);
      return;
    case 'F16':
      for (let i = 0; i < count; i++) out[i] = f16ToF32(view.getUint16((start + i) * 2, true));
      return;
    case 'BF16':
      for (let i = 0; i < count; i++) out[i] = bf16ToF32(view.getUint16((start + i) * 2, true));
      return;
    case 'I8':
      for (let i = 0; i < count; i++) out[i] = view.getInt8(start + i);
      return;
    default:
      throw new Error(`cannot decode ${String(dtype)} here`);
  }
}

/** Produces a tensor's storage bytes, a range at a time. */
export interface TensorEncoder {
  /** Bytes of the whole tensor in its storage type (`storageBytes`). */
  readonly bytes: number;
  /** Storage bytes [start, end): 4-byte aligned bounds (the converter's pieces). */
  range(start: number, end: number): Uint8Array;
}

function checkRange(start: number, end: number, bytes: number): void {
  if (!(start % 4 === 0 && (end % 4 === 0 || end === bytes) && 0 <= start && start <= end && end <= bytes)) {
    throw new Error(`storage range ${start}..${end} of a ${bytes}-byte tensor is not 4-byte aligned or out of bounds`);
  }
}

/** A float-typed tensor in a float storage type; the padding after the last element is zero. */
function floatEncoder(bytes: Uint8Array, dtype: DType, elements: number, storage: StorageType): TensorEncoder {
  const size = storageBytes([elements], storage);
  const width = storage === 'f32' ? 4 : 2;
  const chunk = new Float32Array(Math.min(CHUNK, elements));
  return {
    bytes: size,
    range(start, end) {
      checkRange(start, end, size);
      const out = new Uint8Array(end - start);
      if (SAME[dtype] === storage) {
        out.set(bytes.subarray(start, Math.min(end, elements * width)));
        return out;
      }
      const view = new DataView(out.buffer);
      const first = start / width;
      const last = Math.min(elements, Math.ceil(end / width));
      for (let at = first; at < last; at += CHUNK) {
        const n = Math.min(CHUNK, last - at);
        decodeInto(bytes, dtype, at, n, chunk);
        const base = (at - first) * width;
        switch (storage) {
          case 'f32':
            for (let i = 0; i < n; i++) view.setFloat32(base + i * 4, chunk[i], true);
            break;
          case 'f16':
            for (let i = 0; i < n; i++) view.setUint16(base + i * 2, f32ToF16(chunk[i]), true);
            break;
          case 'bf16':
            for (let i = 0; i < n; i++) view.setUint16(base + i * 2, f32ToBf16(chunk[i]), true);
            break;
          default:
            throw new Error(`${String(storage)} is not a float storage type`);
        }
      }
      return out;
    },
  };
}

/**
 * A q8 / q4 tensor. The layout (src/quant/layout.ts) makes slicing exact: a 3-D tensor is one
 * block per expert, and quantising expert e alone as [1, IN, OUT] gives block e's bytes; a 2-D
 * [R, IN] tensor is one block of row-major words followed by row-major scales, so rows r0..r1
 * quantised alone give those rows' words and scales (r1 − r0 even keeps their scales on whole
 * u32 words). Neither needs a whole-tensor float32 copy.
 */
function quantEncoder(bytes: Uint8Array, dtype: DType, shape: readonly number[], type: QuantType): TensorEncoder {
  const size = quantizedBytes(shape, type);
  if (shape.length === 3) {
    const [experts, inDim, outDim] = shape;
    const one = [1, inDim, outDim];
    const n = inDim * outDim;
    const block = blockBytes(shape, type);
    const values = new Float32Array(n);
    let cached: { e: number; bytes: Uint8Array } | null = null;
    const expert = (e: number) => {
      if (cached?.e !== e) {
        decodeInto(bytes, dtype, e * n, n, values);
        cached = { e, bytes: quantize(values, one, type) };
      }
      return cached.bytes;
    };
    return {
      bytes: size,
      range(start, end) {
        checkRange(start, end, size);
        const out = new Uint8Array(end - start);
        for (let e = Math.floor(start / block); e < experts && e * block < end; e++) {
          const from = Math.max(start, e * block);
          const to = Math.min(end, (e + 1) * block);
          out.set(expert(e).subarray(from - e * block, to - e * block), from - start);
        }
        return out;
      },
    };
  }
  let whole: Uint8Array | null = null;
  return {
    bytes: size,
    range(start, end) {
      checkRange(start, end, size);
      whole ??= quantizeRows(bytes, dtype, shape, type);
      return whole.slice(start, end);
    },
  };
}

function quantizeRows(bytes: Uint8Array, dtype: DType, shape: readonly number[], type: QuantType): Uint8Array {
  const out = new Uint8Array(quantizedBytes(shape, type));
  const [rows, inDim] = shape;
  const wordBytesPerRow = (inDim * QUANT_BITS[type]) / 8;
  const scaleBytesPerRow = (inDim / GROUP) * 2;
  const scalesAt = rows * wordBytesPerRow;
  const chunkRows = Math.max(2, 2 * Math.floor(CHUNK / inDim / 2));
  const values = new Float32Array(Math.min(rows, chunkRows) * inDim);
  for (let r0 = 0; r0 < rows; r0 += chunkRows) {
    const n = Math.min(chunkRows, rows - r0);
    const chunk = values.subarray(0, n * inDim);
    decodeInto(bytes, dtype, r0 * inDim, n * inDim, chunk);
    const q = quantize(chunk, [n, inDim], type);
    out.set(q.subarray(0, n * wordBytesPerRow), r0 * wordBytesPerRow);
    out.set(q.subarray(n * wordBytesPerRow, n * (wordBytesPerRow + scaleBytesPerRow)), scalesAt + r0 * scaleBytesPerRow);
  }
  return out;
}

/**
 * The storage bytes of a checkpoint tensor (`bytes` in `dtype`, logical `shape`) in storage type
 * `storage`, to be read a range at a time. `bytes` must stay unchanged while it is used.
 */
export function tensorEncoder(bytes: Uint8Array, dtype: DType, shape: readonly number[], storage: StorageType): TensorEncoder {
  if (isQuantType(storage)) return quantEncoder(bytes, dtype, shape, storage);
  return floatEncoder(
    bytes,
    dtype,
    shape.reduce((a, b) => a * b, 1),
    storage,
  );
}

/** The whole storage bytes of a tensor: exactly `storageBytes(shape, storage)` bytes. */
export function encodeTensor(bytes: Uint8Array, dtype: DType, shape: readonly number[], storage: StorageType): Uint8Array {
  const e = tensorEncoder(bytes, dtype, shape, storage);
  return e.range(0, e.bytes);
}
