import type { TensorInfo, TensorSource } from '../src/checkpoint/types.ts';
import { f32ToF16 } from '../src/checkpoint/dtype.ts';
import { decodeTensor } from '../src/quant/decode.ts';
import { canQuantize, quantize, quantizedBytes, type QuantType } from '../src/quant/layout.ts';

/**
 * A checkpoint as the shard converter stores it under a q dtype (shared by unit and GPU tests):
 * every matrix that can be quantised becomes Q8 / Q4 (bytes in src/quant/layout.ts's layout),
 * the other matrices F16, vectors keep their dtype. Tensors are converted when read.
 */
export function quantizedSource(source: TensorSource, type: QuantType): TensorSource {
  const dtype = type === 'q8' ? 'Q8' : 'Q4';
  const tensors = new Map<string, TensorInfo>();
  for (const [name, info] of source.tensors) {
    if (info.shape.length < 2) tensors.set(name, info);
    else if (canQuantize(info.shape)) tensors.set(name, { ...info, dtype, byteLength: quantizedBytes(info.shape, type) });
    else tensors.set(name, { ...info, dtype: 'F16', byteLength: 2 * info.shape.reduce((a, b) => a * b, 1) });
  }
  return {
    tensors,
    async read(name) {
      const info = source.tensors.get(name)!;
      const bytes = await source.read(name);
      const to = tensors.get(name)!;
      if (to.dtype === info.dtype) return bytes;
      const values = decodeTensor(bytes, info);
      if (to.dtype === 'F16') return new Uint8Array(Uint16Array.from(values, f32ToF16).buffer);
      return quantize(values, info.shape, type);
    },
    close: () => source.close(),
  };
}
