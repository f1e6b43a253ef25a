import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { nodeFileSource } from '../src/checkpoint/node-files.ts';
import { LocalEngine } from '../src/engine/engine.ts';
import { referenceTokenModel } from '../src/reference/token-model.ts';
import { MolmTokenizer } from '../src/engine/tokenizer.ts';
import { ReferenceModel, loadReferenceWeights } from '../src/reference/model.ts';
import { openModelFolder } from '../src/shards/model-folder.ts';

// The model molm-web ships (tools/train → molm convert → public/models/), used by the tests
// that need real text: a trained MoLM with the real tokenizer.
export const BUILT_IN_MODEL = {
  /** The converted folder, relative to the repository root (Node). */
  dir: 'public/models/molm-brown',
  /** The same folder as the Vite server publishes it (relative to the server's root URL). */
  url: 'models/molm-brown/',
};

/** The built-in model's tokenizer. */
export function builtInTokenizer(): MolmTokenizer {
  return MolmTokenizer.fromJson(readFileSync(join(BUILT_IN_MODEL.dir, 'tokenizer.json'), 'utf8'));
}

/** The text engine over the float64 CPU reference of the built-in model: the GPU tests' twin. */
export async function builtInReferenceEngine(maxContext: number): Promise<LocalEngine> {
  const { config, tensors } = await openModelFolder(nodeFileSource(BUILT_IN_MODEL.dir));
  const weights = await loadReferenceWeights(tensors);
  await tensors.close();
  return new LocalEngine(referenceTokenModel(new ReferenceModel(config, weights), maxContext), builtInTokenizer());
}
