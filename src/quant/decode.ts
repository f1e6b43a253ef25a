import { toFloat32 } from '../checkpoint/dtype.ts';
import type { TensorInfo } from '../checkpoint/types.ts';
import { dequantize } from './layout.ts';

/**
 * Decodes a tensor's stored bytes, in any dtype, into float32 values, row-major in its shape.
 * Q8 / Q4 (converted shards, src/quant/layout.ts) need the shape, which `toFloat32` lacks.
 */
export function decodeTensor(bytes: Uint8Array, info: Pick<TensorInfo, 'dtype' | 'shape'>): Float32Array {
  switch (info.dtype) {
    case 'Q8':
      return dequantize(bytes, info.shape, 'q8');
    case 'Q4':
      return dequantize(bytes, info.shape, 'q4');
    default:
      return toFloat32(bytes, info.dtype);
  }
}
