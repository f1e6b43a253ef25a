import type { StorageType } from './storage-types.ts';

/**
 * molm-web's shard format (docs/format.md): a manifest.json next to binary shards. Tensors are
 * stored in their GPU storage layout, so shards are copied into GPU buffers without conversion.
 */
export const MANIFEST_FORMAT = 'molm-web-shards';
/** 2: tokenizer.json is listed with its size and sha256 (1 named it only). */
export const MANIFEST_VERSION = 2;
/** The manifest's file name inside a converted model folder. */
export const MANIFEST_FILE = 'manifest.json';

export interface ManifestTensor {
  name: string;
  /** Storage type (src/quant/ documents the q8 / q4 layouts). */
  storage: StorageType;
  /** Logical shape, as in the Hugging Face checkpoint. */
  shape: number[];
  /** Bytes of the tensor in its storage type (4-byte aligned). */
  bytes: number;
  /**
   * Where the bytes are: the tensor is the concatenation of its pieces, in order. A stacked
   * expert tensor is cut only at expert boundaries (when an expert fits in a shard), so one
   * expert can be fetched or evicted alone; other tensors may be cut anywhere.
   */
  pieces: { shard: number; offset: number; bytes: number }[];
  /** For stacked expert tensors [E, in, out]: bytes of one expert (expert e starts at e × this). */
  expertBytes?: number;
}

/** A file next to the manifest: a shard or tokenizer.json. */
export interface ManifestFile {
  /** One path segment of safe characters (src/limits.ts, isSafeFileName). */
  file: string;
  bytes: number;
  /** Lower-case hex sha256 of the file's bytes. */
  sha256: string;
}

export type ManifestShard = ManifestFile;

export interface Manifest {
  format: typeof MANIFEST_FORMAT;
  version: number;
  /** The Hugging Face config.json, verbatim. */
  config: Record<string, unknown>;
  /** tokenizer.json next to the manifest, verified like a shard; null when the model has none. */
  tokenizer: ManifestFile | null;
  /** The storage type the converter was asked for (matrices; vectors stay f32). */
  dtype: StorageType;
  tensors: ManifestTensor[];
  shards: ManifestShard[];
}
