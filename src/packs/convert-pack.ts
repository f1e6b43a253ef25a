import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { openSafetensors } from '../checkpoint/safetensors.ts';
import type { FileSource } from '../checkpoint/types.ts';
import { ModelFormatError } from '../errors.ts';
import { LIMITS, parseJsonObject, readBounded } from '../limits.ts';
import { MANIFEST_FILE, PACK_FORMAT, PACK_VERSION, type PackInfo, type PackManifest } from '../manifest.ts';
import { type ConvertProgress, writeManifest, writeShards } from '../shards/convert.ts';
import { type ConvertDtype, storageFor } from '../shards/plan.ts';
import { validatePackInfo } from './pack-manifest.ts';

// `molm convert` on a pack's source folder (pack.json + model.safetensors, as tools/train/pack.py
// writes it) → a converted pack: manifest.json ("molm-web-pack") + shards, like a model's.

export const PACK_SOURCE_FILE = 'pack.json';
const PACK_WEIGHTS_FILE = 'model.safetensors';

/** pack.json of a source folder, checked; null when the folder has none (it is not a pack). */
export async function readPackSourceInfo(files: FileSource): Promise<PackInfo | null> {
  const source = await files.open(PACK_SOURCE_FILE);
  if (source === null) return null;
  const where = `${files.location}/${PACK_SOURCE_FILE}`;
  const limits = { what: where, maxBytes: LIMITS.configBytes, fix: 'write pack.json as docs/format.md describes' };
  try {
    const json = parseJsonObject(await readBounded(source, limits), limits);
    return validatePackInfo(json, (what) => {
      throw new ModelFormatError(`${where}: ${what}; see docs/format.md, "Expert packs".`);
    });
  } finally {
    await source.close?.();
  }
}

export interface ConvertPackOptions {
  source: FileSource;
  outDir: string;
  dtype: ConvertDtype;
  shardBytes?: number;
  onProgress?: (p: ConvertProgress) => void;
}

/** Converts a pack's source folder into a converted pack in `outDir`. */
export async function convertPack(o: ConvertPackOptions): Promise<PackManifest> {
  const info = await readPackSourceInfo(o.source);
  if (!info) throw new ModelFormatError(`${o.source.location} has no ${PACK_SOURCE_FILE}: it is not an expert pack's source folder.`);
  const weights = await o.source.open(PACK_WEIGHTS_FILE);
  if (weights === null) throw new ModelFormatError(`${o.source.location} has no ${PACK_WEIGHTS_FILE}, which holds a pack's tensors.`);
  const tensors = await openSafetensors(weights, PACK_WEIGHTS_FILE);
  try {
    if (tensors.unreadable.size > 0) {
      const [name, dtype] = [...tensors.unreadable][0];
      throw new ModelFormatError(`${o.source.location}/${PACK_WEIGHTS_FILE}: "${name}" is ${dtype}; a pack's tensors are F32, F16 or BF16.`);
    }
    if (tensors.tensors.size === 0) throw new ModelFormatError(`${o.source.location}/${PACK_WEIGHTS_FILE} holds no tensor.`);
    const toPlace = [...tensors.tensors.values()]
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
      .map((t) => ({ name: t.name, shape: t.shape, storage: storageFor(t.shape, o.dtype) }));
    await mkdir(o.outDir, { recursive: true });
    await rm(join(o.outDir, MANIFEST_FILE), { force: true });
    const written = await writeShards(o, toPlace, tensors);
    const manifest: PackManifest = { format: PACK_FORMAT, version: PACK_VERSION, ...info, dtype: o.dtype, tensors: written.tensors, shards: written.shards };
    if (written.shards.reduce((a, s) => a + s.bytes, 0) > LIMITS.packBytes) {
      throw new ModelFormatError(`${o.source.location}: the pack takes more than the ${LIMITS.packBytes} bytes a pack may have.`);
    }
    await writeManifest(o.outDir, manifest, written.shards);
    return manifest;
  } finally {
    await tensors.close();
  }
}
