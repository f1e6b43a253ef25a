import { openCheckpoint } from '../checkpoint/hf-folder.ts';
import type { FileSource, TensorSource } from '../checkpoint/types.ts';
import type { ModelConfig } from '../config.ts';
import { MANIFEST_FILE, type Manifest } from '../manifest.ts';
import { type OpenManifestOptions, openManifest } from './manifest-source.ts';
import { mergePacks } from '../packs/merge.ts';
import type { LoadedPack } from '../packs/pack-shapes.ts';
import { weightsSha256 as weightsSha256Of } from '../packs/weights-hash.ts';

/** A model folder opened for reading: its config and its tensors, whichever form it has. */
export interface ModelFolder {
  config: ModelConfig;
  /** config.json as written (for a converted model, the copy in its manifest). */
  rawConfig: Record<string, unknown>;
  tensors: TensorSource;
  /** The manifest of a converted model; null for a Hugging Face checkpoint folder, or with packs merged in. */
  manifest: Manifest | null;
}

/**
 * Opens a model folder: a converted model (manifest.json + shards, `molm convert`) when it has a
 * manifest.json, else a Hugging Face checkpoint folder in any of its forms.
 */
export async function openModelFolder(files: FileSource, options: OpenModelOptions = {}): Promise<ModelFolder> {
  const base = await openBaseFolder(files, options);
  const packs = options.packs ?? [];
  if (packs.length === 0) return base;
  try {
    // A converted model records its weights hash; a checkpoint's is computed (one tensor at a time).
    const weightsSha256 = base.manifest ? base.manifest.weightsSha256 : await weightsSha256Of(base.config, base.tensors);
    const merge = mergePacks({ config: base.config, rawConfig: base.rawConfig, weightsSha256, location: files.location }, packs);
    return { config: merge.config, rawConfig: merge.rawConfig, tensors: merge.source(base.tensors), manifest: null };
  } catch (e) {
    await base.tensors.close();
    throw e;
  }
}

export interface OpenModelOptions extends OpenManifestOptions {
  /** Expert packs merged into the model (src/packs/): the folder then reads as the merged model. */
  packs?: readonly LoadedPack[];
}

async function openBaseFolder(files: FileSource, options: OpenManifestOptions): Promise<ModelFolder> {
  const probe = await files.open(MANIFEST_FILE);
  if (probe !== null) {
    await probe.close?.();
    const { manifest, config, tensors } = await openManifest(files, options);
    return { config, rawConfig: manifest.config, tensors, manifest };
  }
  const { config, rawConfig, tensors } = await openCheckpoint(files);
  return { config, rawConfig, tensors, manifest: null };
}
