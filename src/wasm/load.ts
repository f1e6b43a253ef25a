import type { FileSource } from '../checkpoint/types.ts';
import { planWeights, type WeightProgress } from '../model/weights.ts';
import type { WeightType } from '../gpu/wgsl.ts';
import { openModelFolder } from '../shards/model-folder.ts';
import { WasmModel, type WasmModelOptions } from './model.ts';

/**
 * Model folder (a Hugging Face checkpoint or a converted one) → wasm model: the same plan as
 * the GPU path (storage type per tensor), then the tensors read one at a time into the memory.
 */
export async function loadWasmModel(
  files: FileSource,
  options: WasmModelOptions & { matrixType?: WeightType; onProgress?: (p: WeightProgress) => void } = {},
): Promise<WasmModel> {
  const { config, tensors } = await openModelFolder(files);
  try {
    const plan = planWeights(config, tensors, { matrixType: options.matrixType });
    return await WasmModel.create(config, plan, options, (w) => w.upload(tensors, options.onProgress));
  } finally {
    await tensors.close();
  }
}
