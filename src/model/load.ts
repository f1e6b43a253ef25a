import type { FileSource } from '../checkpoint/types.ts';
import { expertSlots, type ExpertBudget } from './expert-streamer.ts';
import { GpuContext, type GpuContextOptions } from '../gpu/context.ts';
import { workDone } from '../gpu/queue.ts';
import { openModelFolder } from '../shards/model-folder.ts';
import { streamShards, type ShardLoadOptions } from '../shards/load-model.ts';
import { GpuModel, planExpertStreaming, type GpuModelOptions } from './model.ts';
import { GpuWeights } from './weights.ts';
import { planWeights } from '../weight-plan.ts';
import type { LoadedPack, PackLoadOptions } from '../packs/pack-shapes.ts';

/**
 * Model folder (a Hugging Face checkpoint, or a converted one: src/shards/model-folder.ts) → GPU
 * model: reads the config and the tensor table, plans the weight storage, asks the adapter for a
 * device with exactly the limits that plan needs, then streams the weights in. Nothing is uploaded before the device is known to be able to hold the model.
 */
export async function loadGpuModel(
  files: FileSource,
  options: GpuModelOptions & GpuContextOptions & { packs?: readonly LoadedPack[] } = {},
): Promise<GpuModel> {
  const { config, tensors } = await openModelFolder(files, { packs: options.packs });
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

export interface LoadModelOptions extends ShardLoadOptions, PackLoadOptions {
  /** `navigator.gpu` by default; in Node, `await nodeGpu()`. */
  gpu?: GPU;
  powerPreference?: GPUPowerPreference;
  /** Tokens the KV cache holds (default 2048). */
  maxContext?: number;
  /** Prompt tokens per prefill step (default 128). */
  prefillChunk?: number;
  /** Keep only the experts that fit this budget on the GPU, streaming the others in (docs/experts.md). */
  expertBudget?: ExpertBudget;
}

/**
 * A converted model from its URL onto the GPU, through the shard cache (streamShards): the
 * device is created for the plan before any download, and each verified shard's pieces go
 * straight into the GPU buffers.
 */
export function loadModel(url: string, options: LoadModelOptions = {}): Promise<GpuModel> {
  return streamShards(url, options, async ({ config, plan }) => {
    const streaming = planExpertStreaming(config, plan, options.expertBudget);
    const sizes = { maxContext: options.maxContext, prefillChunk: options.prefillChunk };
    const ctx = await GpuContext.create(GpuModel.requirements(config, plan, sizes), { gpu: options.gpu, powerPreference: options.powerPreference });
    let weights: GpuWeights | undefined;
    try {
      weights = await GpuWeights.create(ctx, plan, streaming ? expertSlots(config, streaming.slots) : undefined);
    } catch (e) {
      ctx.destroy();
      throw e;
    }
    const w = weights;
    return {
      sink: {
        writePiece: (name, offset, bytes) => w.writePiece(name, offset, bytes),
        // The queue has copied the bytes once this resolves.
        flush: () => workDone(ctx),
        finishWrites: () => w.finishWrites(),
      },
      async finish() {
        // From here the model owns the weights (fromWeights destroys them if it fails).
        weights = undefined;
        const model = await GpuModel.fromWeights(ctx, config, w, { ...sizes, streaming });
        model.ownsContext = true;
        return model;
      },
      abandon() {
        weights?.destroy();
        ctx.destroy();
      },
    };
  });
}
