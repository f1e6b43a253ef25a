import { openCheckpoint } from '../checkpoint/hf-folder.ts';
import type { FileSource, TensorSource } from '../checkpoint/types.ts';
import type { ModelConfig } from '../config.ts';
import { MANIFEST_FILE, type Manifest } from '../manifest.ts';
import { type OpenManifestOptions, openManifest } from './manifest-source.ts';

/** A model folder opened for reading: its config and its tensors, whichever form it has. */
export interface ModelFolder {
  config: ModelConfig;
  /** config.json as written (for a converted model, the copy in its manifest). */
  rawConfig: Record<string, unknown>;
  tensors: TensorSource;
  /** The manifest of a converted model; null for a Hugging Face checkpoint folder. */
  manifest: Manifest | null;
}

/**
 * Opens a model folder: a converted model (manifest.json + shards, `molm convert`) when it has a
 * manifest.json, else a Hugging Face checkpoint folder in any of its forms.
 */
export async function openModelFolder(files: FileSource, options: OpenManifestOptions = {}): Promise<ModelFolder> {
  const probe = await files.open(MANIFEST_FILE);
  if (probe !== null) {
    await probe.close?.();
    const { manifest, config, tensors } = await openManifest(files, options);
    return { config, rawConfig: manifest.config, tensors, manifest };
  }
  const { config, rawConfig, tensors } = await openCheckpoint(files);
  return { config, rawConfig, tensors, manifest: null };
}
