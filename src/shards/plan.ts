import type { ModelConfig } from '../config.ts';
import { UsageError } from '../errors.ts';
import { expectedTensorShapes } from '../tensor-names.ts';
import { matrixStorage } from '../quant/layout.ts';
import { expertBytesOf, storageBytes, type StorageType } from '../storage-types.ts';
import type { ManifestTensor } from '../manifest.ts';

// How a converted model is laid out in shards (docs/format.md): tensors in load order, each in
// its GPU storage layout, packed into shards of at most `shardBytes`, split into pieces where a
// shard fills up. Stacked expert tensors [E, in, out] are cut only between experts when one
// expert fits in a shard, so a single expert can be fetched (or evicted) on its own.

export const DEFAULT_SHARD_BYTES = 32 * 1024 * 1024;

/** Where a piece is cut is 4-byte aligned: GPU writeBuffer offsets and sizes must be. */
const ALIGN = 4;

/** The storage types the converter can be asked for (matrices; vectors are always f32). */
export const CONVERT_DTYPES = ['f32', 'f16', 'bf16', 'q8', 'q4'] as const satisfies readonly StorageType[];
export type ConvertDtype = (typeof CONVERT_DTYPES)[number];

/**
 * The storage type of one tensor when the model is converted to `dtype`: vectors (LayerNorm,
 * biases) stay f32; matrices take `dtype`, except that q8 / q4 fall back to f16 for a matrix
 * whose input dimension is not a multiple of 32 (src/quant/layout.ts, `canQuantize`).
 */
export function storageFor(shape: readonly number[], dtype: ConvertDtype): StorageType {
  if (shape.length < 2) return 'f32';
  return matrixStorage(dtype, shape);
}

export interface TensorToPlace {
  name: string;
  shape: number[];
  storage: StorageType;
}

export interface ShardPlan {
  tensors: ManifestTensor[];
  /** Bytes of each shard, in order (shard i is `shardFileName(i)`). */
  shardBytes: number[];
  totalBytes: number;
}

export function shardFileName(index: number): string {
  return `shard-${String(index).padStart(5, '0')}.bin`;
}

/** The largest shard size a plan may use: a positive multiple of 4 bytes, at most `limit`. */
export function shardCapacity(limit: number): number {
  const cap = Math.floor(limit / ALIGN) * ALIGN;
  if (!Number.isFinite(limit) || cap < ALIGN) {
    throw new UsageError(`The shard size must be at least ${ALIGN} bytes, got ${limit}.`);
  }
  return cap;
}

/**
 * Places tensors, in the given order, into shards of at most `maxShardBytes`. A new shard is
 * started only when the current one cannot take the next piece, so shards are full except the
 * last and where a whole expert did not fit.
 */
export function planShards(tensors: readonly TensorToPlace[], maxShardBytes = DEFAULT_SHARD_BYTES): ShardPlan {
  const cap = shardCapacity(maxShardBytes);
  const shardBytes: number[] = [];
  const placed: ManifestTensor[] = [];
  let used = cap; // "the current shard is full": the first piece opens shard 0

  /** Adds `bytes` at the end of the current shard (merging with the previous piece there). */
  const put = (pieces: ManifestTensor['pieces'], bytes: number) => {
    const shard = shardBytes.length - 1;
    const last = pieces[pieces.length - 1];
    if (last && last.shard === shard && last.offset + last.bytes === used) last.bytes += bytes;
    else pieces.push({ shard, offset: used, bytes });
    used += bytes;
    shardBytes[shard] = used;
  };
  const newShard = () => {
    shardBytes.push(0);
    used = 0;
  };

  for (const t of tensors) {
    const bytes = storageBytes(t.shape, t.storage);
    const expertBytes = expertBytesOf(t.shape, t.storage);
    const pieces: ManifestTensor['pieces'] = [];
    let left = bytes;
    if (expertBytes !== undefined && expertBytes % ALIGN === 0 && expertBytes > 0 && expertBytes <= cap) {
      // Whole experts only: as many as fit in the current shard, the rest in the next ones.
      let experts = t.shape[0];
      while (experts > 0) {
        let fit = Math.floor((cap - used) / expertBytes);
        if (fit === 0) {
          newShard();
          fit = Math.floor(cap / expertBytes);
        }
        const n = Math.min(fit, experts);
        put(pieces, n * expertBytes);
        experts -= n;
        left -= n * expertBytes;
      }
    }
    // Anything else (and padding after the last expert, if a layout has any) is cut anywhere.
    while (left > 0) {
      if (used >= cap) newShard();
      const n = Math.min(left, cap - used);
      put(pieces, n);
      left -= n;
    }
    placed.push({ name: t.name, storage: t.storage, shape: [...t.shape], bytes, pieces, ...(expertBytes !== undefined ? { expertBytes } : {}) });
  }
  return { tensors: placed, shardBytes, totalBytes: shardBytes.reduce((a, b) => a + b, 0) };
}

/** The tensors of a model in load order with their storage types for a conversion to `dtype`. */
export function tensorsToPlace(config: ModelConfig, dtype: ConvertDtype): TensorToPlace[] {
  return [...expectedTensorShapes(config)].map(([name, shape]) => ({ name, shape, storage: storageFor(shape, dtype) }));
}
