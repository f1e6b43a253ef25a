// molm-web in Node: the browser API (src/index.ts), with a createEngine that gets WebGPU from
// Dawn (the `webgpu` package) and also opens local model folders. package.json maps Node's
// `import 'molm-web'` here.
import { existsSync } from 'node:fs';
import { nodeFileSource } from './checkpoint/node-files.ts';
import { createLocalEngine, type CreateEngineOptions } from './engine/create.ts';
import type { Engine } from './engine/api.ts';
import { nodeGpu } from './gpu/node-gpu.ts';

export * from './index.ts';
export { nodeGpu } from './gpu/node-gpu.ts';
export { nodeFileSource } from './checkpoint/node-files.ts';
export {
  DEFAULT_HUB_URL,
  type HubRepo,
  type HubSourceOptions,
  hubFileSource,
  hubResolveUrl,
  parseHubRepo,
} from './checkpoint/hub.ts';
export { type HubImport, type HubImportOptions, defaultCacheDir, hubCacheFolder, importHubModel } from './shards/hub-import.ts';

/**
 * Loads a model (a local folder, converted or Hugging Face, or a converted model's URL) with its
 * tokenizer, on Dawn's WebGPU, and returns the text engine.
 */
export async function createEngine(options: CreateEngineOptions): Promise<Engine> {
  return createLocalEngine(options, { gpu: nodeGpu, folder: nodeFileSource, isFolder: (path) => existsSync(path) });
}
