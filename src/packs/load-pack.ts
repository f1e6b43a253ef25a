import type { FileSource, TensorInfo } from '../checkpoint/types.ts';
import { ModelFormatError } from '../errors.ts';
import { LIMITS, parseJsonFile, readBounded } from '../limits.ts';
import { MANIFEST_FILE, type PackManifest } from '../manifest.ts';
import { type ShardLoadOptions, streamStored } from '../shards/load-model.ts';
import { openShardTensors, tensorInfoOf } from '../shards/manifest-source.ts';
import { valueBytes } from '../storage-types.ts';
import type { WeightPlan } from '../weight-plan.ts';
import { validatePackManifest } from './pack-manifest.ts';
import type { LoadedPack } from './pack-shapes.ts';

// A converted expert pack (manifest.json + shards) into memory, from a folder or from a URL
// through the shard cache, verified shard by shard. Whether it fits a base is checked where it
// meets one (checkPackAgainstBase), so one loaded pack can be tried on several.

type PackTensors = Map<string, { info: TensorInfo; bytes: Uint8Array }>;

/** Opens a converted pack folder and reads its tensors (each shard's sha256 checked). */
export async function openPackFolder(files: FileSource): Promise<LoadedPack> {
  const where = `${files.location}/${MANIFEST_FILE}`;
  const source = await files.open(MANIFEST_FILE);
  if (source === null) {
    throw new ModelFormatError(
      `${files.location} has no ${MANIFEST_FILE}: give a converted expert pack's folder (\`molm convert\` on the pack's source folder).`,
    );
  }
  const limits = { what: where, maxBytes: LIMITS.indexBytes, fix: 'give a converted expert pack (`molm convert`)' };
  let manifest: PackManifest;
  try {
    manifest = validatePackManifest(parseJsonFile(await readBounded(source, limits), limits), where);
  } finally {
    await source.close?.();
  }
  const source2 = await openShardTensors(files, manifest);
  const tensors: PackTensors = new Map();
  try {
    for (const t of manifest.tensors) tensors.set(t.name, { info: tensorInfoOf(t), bytes: await source2.read(t.name) });
  } finally {
    await source2.close();
  }
  return { info: manifest, location: files.location, tensors };
}

/**
 * A converted pack from its URL (its manifest.json or folder) into memory, through the same
 * shard cache as models: cached packs load offline.
 */
export function loadPack(url: string, options: ShardLoadOptions = {}): Promise<LoadedPack> {
  return streamStored(
    url,
    options,
    (json, manifestUrl) => {
      const manifest = validatePackManifest(json, manifestUrl);
      const entries = manifest.tensors.map((t) => ({ name: t.name, shape: [...t.shape], storage: t.storage, bytes: t.bytes }));
      const plan: WeightPlan = {
        matrixType: manifest.dtype,
        entries,
        maxTensorBytes: Math.max(0, ...entries.map((e) => e.bytes)),
        totalBytes: entries.reduce((a, e) => a + e.bytes, 0),
      };
      return { manifest, plan };
    },
    async ({ manifest }, manifestUrl) => {
      const buffers = new Map(manifest.tensors.map((t) => [t.name, new Uint8Array(t.bytes)]));
      const written = new Map<string, number>();
      return {
        sink: {
          writePiece: (name, offset, bytes) => {
            buffers.get(name)!.set(bytes, offset);
            written.set(name, (written.get(name) ?? 0) + bytes.byteLength);
          },
          finishWrites: () => {
            for (const t of manifest.tensors) {
              if (written.get(t.name) !== t.bytes) throw new ModelFormatError(`${manifestUrl}: "${t.name}" did not receive all its bytes.`);
            }
          },
        },
        finish: async () => {
          const tensors: PackTensors = new Map();
          for (const t of manifest.tensors) {
            tensors.set(t.name, { info: tensorInfoOf(t), bytes: buffers.get(t.name)!.subarray(0, valueBytes(t.shape, t.storage)) });
          }
          return { info: manifest, location: manifestUrl, tensors };
        },
        abandon: () => buffers.clear(),
      };
    },
  );
}
