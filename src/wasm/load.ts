import type { FileSource } from '../checkpoint/types.ts';
import type { StorageType } from '../storage-types.ts';
import { planWeights, type WeightProgress } from '../weight-plan.ts';
import { streamShards, type ShardLoadOptions } from '../shards/load-model.ts';
import { openModelFolder } from '../shards/model-folder.ts';
import { WasmModel, type WasmModelOptions } from './model.ts';
import type { LoadedPack, PackLoadOptions } from '../packs/pack-shapes.ts';

/**
 * Model folder (a Hugging Face checkpoint or a converted one) → wasm model: the same plan as
 * the GPU path (storage type per tensor), then the tensors read one at a time into the memory.
 */
export async function loadWasmModel(
  files: FileSource,
  options: WasmModelOptions & { matrixType?: StorageType; onProgress?: (p: WeightProgress) => void; packs?: readonly LoadedPack[] } = {},
): Promise<WasmModel> {
  const { config, tensors } = await openModelFolder(files, { packs: options.packs });
  try {
    const plan = planWeights(config, tensors, { matrixType: options.matrixType });
    const model = await WasmModel.create(config, plan, options);
    try {
      await model.weights.upload(tensors, options.onProgress);
      return model;
    } catch (e) {
      model.destroy();
      throw e;
    }
  } finally {
    await tensors.close();
  }
}

/**
 * A converted model from its URL into the wasm memory, through the same shard cache as the GPU
 * path (streamShards): the memory is laid out and allocated before any download, and each
 * verified shard's pieces are copied into it.
 */
export function loadWasmModelFromUrl(url: string, options: ShardLoadOptions & WasmModelOptions & PackLoadOptions = {}): Promise<WasmModel> {
  return streamShards(url, options, async ({ config, plan }) => {
    const model = await WasmModel.create(config, plan, options);
    return {
      sink: model.weights,
      finish: async () => model,
      abandon: () => model.destroy(),
    };
  });
}
