import type { DType } from './checkpoint/types.ts';
import { blockBytes, canQuantize, isQuantType, quantizedBytes } from './quant/layout.ts';

// How a tensor's values are stored, in shards and in every backend's memory alike (the shards
// are copied into GPU buffers and the wasm memory as they are): the one list of storage types,
// their byte sizes, and their names as a checkpoint reader reports them. The q8 / q4 layouts
// themselves are src/quant/layout.ts.

/**
 * f32, or 16-bit floats kept packed two per u32 (kernels unpack them), or q8 / q4: 8- and 4-bit
 * values with an f16 scale per 32 inputs. Compute is always f32.
 */
export type StorageType = 'f32' | 'bf16' | 'f16' | 'q8' | 'q4';
export { type QuantType, isQuantType } from './quant/layout.ts';

/** Checkpoint dtype of each storage type, as a TensorSource reports it. */
export const DTYPE_OF_STORAGE: Record<StorageType, DType> = { f32: 'F32', f16: 'F16', bf16: 'BF16', q8: 'Q8', q4: 'Q4' };

export const STORAGE_TYPES = Object.keys(DTYPE_OF_STORAGE) as StorageType[];

/** The storage type a checkpoint dtype is read into; undefined for I8 (no storage holds it). */
export function storageOfDtype(dtype: DType): StorageType | undefined {
  return STORAGE_TYPES.find((s) => DTYPE_OF_STORAGE[s] === dtype);
}

const ALIGN = 4;
const product = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** Bytes of one element of a float storage type. */
function elementBytes(storage: StorageType): number {
  if (storage === 'f32') return 4;
  if (storage === 'f16' || storage === 'bf16') return 2;
  throw new Error(`${storage} is not an element storage type`);
}

/** Bytes of a tensor in a storage type, padded to a 4-byte multiple (the size of its buffer). */
export function storageBytes(shape: readonly number[], storage: StorageType): number {
  if (isQuantType(storage)) return quantizedBytes(shape, storage);
  return Math.ceil((product(shape) * elementBytes(storage)) / ALIGN) * ALIGN;
}

/** Bytes of the tensor's values without final padding (what TensorSource.read returns). */
export function valueBytes(shape: readonly number[], storage: StorageType): number {
  if (isQuantType(storage)) return quantizedBytes(shape, storage);
  return product(shape) * elementBytes(storage);
}

/** Whether a tensor of this shape can be stored in this storage type. */
export function canStore(shape: readonly number[], storage: StorageType): boolean {
  if (isQuantType(storage)) return canQuantize(shape);
  return storage === 'f32' || storage === 'f16' || storage === 'bf16';
}

/**
 * For a stacked expert tensor [E, in, out]: the bytes of one expert, which are contiguous in every
 * storage type (expert e starts at e × this): slice e for float types, block e (its packed
 * words, then its scales) for q8 / q4. Undefined for other tensors.
 */
export function expertBytesOf(shape: readonly number[], storage: StorageType): number | undefined {
  if (shape.length !== 3) return undefined;
  if (isQuantType(storage)) return blockBytes(shape, storage);
  return shape[1] * shape[2] * elementBytes(storage);
}
