import type { FileSource } from '../checkpoint/types.ts';
import { openModelFolder } from '../shards/model-folder.ts';
import { GpuContext, type GpuContextOptions } from '../gpu/context.ts';
import { GpuModel, type GpuModelOptions } from './model.ts';
import { planWeights } from './weights.ts';

/**
 * Model folder (a Hugging Face checkpoint, or a converted one: src/shards/model-folder.ts) → GPU
 * model: reads the config and the tensor table, plans the weight storage, asks the adapter for a
 * device with exactly the limits that plan needs, then streams the weights in. Nothing is uploaded before the device is known to be able to hold the model.
 */
export async function loadGpuModel(files: FileSource, options: GpuModelOptions & GpuContextOptions = {}): Promise<GpuModel> {
  const { config, tensors } = await openModelFolder(files);
  try {
    const plan = planWeights(config, tensors, { matrixType: options.matrixType });
    const ctx = await GpuContext.create(GpuModel.requirements(config, plan, options), options);
    try {
      const model = await GpuModel.load(ctx, config, tensors, options);
      model.ownsContext = true;
      return model;
    } catch (e) {
      ctx.destroy();
      throw e;
    }
  } finally {
    await tensors.close();
  }
}
