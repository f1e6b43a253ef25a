import type { ModelConfig } from './config.ts';
import { f32ToBf16, f32ToF16 } from './checkpoint/dtype.ts';
import type { DType, TensorInfo, TensorSource } from './checkpoint/types.ts';
import { ModelFormatError } from './errors.ts';
import { type StorageType, storageBytes, storageOfDtype } from './storage-types.ts';
import { decodeTensor } from './quant/decode.ts';
import { canQuantize, isQuantType, matrixStorage, quantize, quantizedBytes } from './quant/layout.ts';
import { expectedTensorShapes } from './tensor-names.ts';

// What every backend does with a model's tensors before it has memory for them: the storage type
// and byte size of each (planned from a checkpoint, or taken from a converted model's manifest),
// and the conversion of a tensor's bytes into its storage type. Device-free: the GPU weights
// (src/model/weights.ts) and the wasm weights (src/wasm/weights.ts) both start from a plan.

/** How each tensor will sit in a backend's memory: decided before the device exists (it sets the limits). */
export interface WeightPlan {
  /**
   * The storage type asked for (or chosen) for matrices. Individual matrices may differ: under
   * q8 / q4, those whose input dimension is not a multiple of 32 are f16 (see `entries`).
   * Vectors (LayerNorm, biases) are always f32.
   */
  matrixType: StorageType;
  entries: { name: string; shape: number[]; storage: StorageType; bytes: number }[];
  maxTensorBytes: number;
  totalBytes: number;
}

/**
 * Storage of every tensor. Without `matrixType`: quantised matrices (Q8 / Q4, from converted
 * shards) stay as they are, and the other matrices keep the checkpoint's own float type when all
 * of them share it (half the memory and bandwidth, exact), f32 when they are mixed. With
 * `matrixType`: every matrix gets that type; a q8 / q4 matrix that is already stored in it is
 * uploaded as is, other matrices are quantised at upload, and a matrix that cannot be quantised
 * (input dimension not a multiple of 32) is stored as f16.
 */
export function planWeights(config: ModelConfig, source: TensorSource, options: { matrixType?: StorageType } = {}): WeightPlan {
  const shapes = expectedTensorShapes(config);
  const floatDtypes = new Set<DType>();
  const quantDtypes = new Set<DType>();
  for (const [name, shape] of shapes) {
    const info = source.tensors.get(name);
    if (!info) throw new ModelFormatError(`The checkpoint has no tensor "${name}", which the model needs. Is it a complete MoLM checkpoint?`);
    if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i])) {
      throw new ModelFormatError(
        `Tensor "${name}" has shape [${info.shape}], but config.json implies [${shape}]. The weights and config.json do not belong together.`,
      );
    }
    const stored = storageOfDtype(info.dtype);
    if (!stored) throw new ModelFormatError(`Tensor "${name}" is ${info.dtype}; weights must be F32, F16, BF16, Q8 or Q4.`);
    if (isQuantType(stored)) {
      if (shape.length < 2 || !canQuantize(shape)) {
        throw new ModelFormatError(`Tensor "${name}" [${shape}] is stored as ${info.dtype}, which only matrices whose shape[1] is a multiple of 32 can be.`);
      }
      const bytes = quantizedBytes(shape, stored);
      if (info.byteLength !== bytes) {
        throw new ModelFormatError(`Tensor "${name}" is ${info.dtype} [${shape}], which takes ${bytes} bytes, but the file holds ${info.byteLength}.`);
      }
      quantDtypes.add(info.dtype);
    } else if (shape.length > 1) {
      floatDtypes.add(info.dtype);
    }
  }
  const floatType: StorageType = floatDtypes.size === 1 ? storageOfDtype([...floatDtypes][0])! : 'f32';
  const matrixType: StorageType = options.matrixType ?? (quantDtypes.size === 1 ? storageOfDtype([...quantDtypes][0])! : floatType);
  const entries = [...shapes].map(([name, shape]) => {
    const stored = storageOfDtype(source.tensors.get(name)!.dtype)!;
    let storage: StorageType;
    if (shape.length === 1) storage = 'f32';
    else if (options.matrixType) storage = matrixStorage(options.matrixType, shape);
    // A quantised (converted) model's other matrices keep their own types, as its manifest
    // says (f16 where one could not be quantised, f32 for a router rebuilt with packs).
    else storage = isQuantType(stored) || quantDtypes.size > 0 ? stored : floatType;
    return { name, shape, storage, bytes: storageBytes(shape, storage) };
  });
  return {
    matrixType,
    entries,
    maxTensorBytes: Math.max(...entries.map((e) => e.bytes)),
    totalBytes: entries.reduce((a, e) => a + e.bytes, 0),
  };
}

/** A tensor as a converted model stores it (manifest.json): already in its GPU storage layout. */
export interface StoredTensor {
  name: string;
  shape: readonly number[];
  storage: StorageType;
  /** Bytes of its GPU buffer (4-byte aligned), as the shards hold them. */
  bytes: number;
}

/**
 * The plan of a converted model (src/shards): every tensor keeps the storage type and byte count
 * the converter wrote, since shards are copied into GPU buffers as they are. Checks that every
 * tensor the config implies is there with its shape, that vectors are f32 and that matrices are
 * stored as `matrixType` (or f16 where a q8 / q4 model could not quantise them).
 */
export function planStoredWeights(config: ModelConfig, stored: Iterable<StoredTensor>, matrixType: StorageType): WeightPlan {
  const byName = new Map([...stored].map((t) => [t.name, t]));
  const entries: WeightPlan['entries'] = [];
  for (const [name, shape] of expectedTensorShapes(config)) {
    const t = byName.get(name);
    if (!t) throw new ModelFormatError(`The converted model has no tensor "${name}", which the model needs. Convert the model again.`);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new ModelFormatError(`Tensor "${name}" has shape [${t.shape}], but the config implies [${shape}]. Convert the model again.`);
    }
    const want: StorageType = shape.length > 1 ? matrixStorage(matrixType, shape) : 'f32';
    if (t.storage !== want) {
      throw new ModelFormatError(`Tensor "${name}" is stored as ${t.storage}, but this engine reads it as ${want}. Convert the model again.`);
    }
    if (!Number.isSafeInteger(t.bytes) || t.bytes <= 0 || t.bytes % 4 !== 0) {
      throw new ModelFormatError(`Tensor "${name}" has ${t.bytes} bytes; a stored tensor takes a positive multiple of 4.`);
    }
    entries.push({ name, shape: [...shape], storage: t.storage, bytes: t.bytes });
  }
  return {
    matrixType,
    entries,
    maxTensorBytes: Math.max(...entries.map((e) => e.bytes)),
    totalBytes: entries.reduce((a, e) => a + e.bytes, 0),
  };
}

/** Converts a tensor's stored bytes into the bytes of its storage type (the same for every backend). */
export function toStorage(bytes: Uint8Array, info: TensorInfo, storage: StorageType): Uint8Array {
  if (storageOfDtype(info.dtype) === storage) return bytes;
  const f = decodeTensor(bytes, info);
  if (isQuantType(storage)) return quantize(f, info.shape, storage);
  if (storage === 'f32') return new Uint8Array(f.buffer, f.byteOffset, f.byteLength);
  // Narrowing (f32 → 16-bit, or between 16-bit types) is lossy and goes through f32.
  const out = new Uint16Array(f.length);
  const round = storage === 'bf16' ? f32ToBf16 : f32ToF16;
  for (let i = 0; i < f.length; i++) out[i] = round(f[i]);
  return new Uint8Array(out.buffer);
}

export interface WeightProgress {
  loadedBytes: number;
  totalBytes: number;
  tensor: string;
}

/**
 * Stacked expert tensors ([E, …]) to keep only partly on the GPU: tensor name → the number of
 * expert slots its buffer gets. All E experts stay in host memory, to be copied into slots on
 * demand (loadExpert); the slots start out holding experts 0 … slots − 1.
 */
export type ExpertSlots = ReadonlyMap<string, number>;
