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
  /**
   * The content hash of the weights (src/packs/weights-hash.ts): what an expert pack names as
   * its base. Written by \`molm convert\`; absent in models converted before packs existed.
   */
  weightsSha256?: string;
}

// Expert packs (src/packs/, docs/format.md "Expert packs"): the same shard format, with a
// description of what the pack adds to which base instead of a config.

export const PACK_FORMAT = 'molm-web-pack';
export const PACK_VERSION = 1;

/** What a pack adds to every layer. */
export interface PackAdds {
  /** Attention experts added to every layer's attention MoE. */
  attExperts: number;
  /** MLP experts added to every layer's MLP MoE. */
  mlpExperts: number;
  /** Hidden units added to every router (attention and MLP alike); only the new experts' logits read them. */
  routerUnits: number;
}

/** A pack's description, as its manifest (and the pack.json of its source folder) holds it. */
export interface PackInfo {
  name: string;
  domain: string;
  description: string;
  base: { name: string; weightsSha256: string };
  adds: PackAdds;
  /** How it was trained: the data, held-out parts, time (free JSON, bounded in size). */
  training: Record<string, unknown>;
}

/** A converted pack's manifest.json. */
export interface PackManifest extends PackInfo {
  format: typeof PACK_FORMAT;
  version: number;
  /** The storage type the converter was asked for (matrices; vectors stay f32). */
  dtype: StorageType;
  tensors: ManifestTensor[];
  shards: ManifestShard[];
}

/** What the shard cache stores: a model's manifest or a pack's. */
export type StoredManifest = Manifest | PackManifest;
