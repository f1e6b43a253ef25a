import type { GpuContext } from '../gpu/context.ts';
import { weightSpec } from '../gpu/weight-accessors.ts';
import type { StorageType } from '../storage-types.ts';
import { bindGroup, type Binding, type Dispatch } from './dispatch.ts';

export interface EmbeddingBuffers {
  step: Binding; // Step uniform
  ids: Binding; // [rows] u32 token ids (during decode: the sampler's output, read on the GPU)
  wte: Binding; // [V, C] in the weight type
  h: Binding; // [rows, C] f32 out
}

/** Embedding lookup of every token row (shaders/embedding.wgsl); ids ≥ vocab give zeros. */
export async function embedding(
  gpu: GpuContext,
  shape: { width: number; vocab: number },
  weightType: StorageType,
  b: EmbeddingBuffers,
  label = 'embedding',
): Promise<Dispatch> {
  const { width, vocab } = shape;
  if (!Number.isInteger(width) || width < 1 || !Number.isInteger(vocab) || vocab < 1) {
    throw new Error(`embedding: width ${width} and vocab ${vocab} must be positive integers`);
  }
  if (width * vocab > 0xffffffff) throw new Error(`embedding: a ${vocab}×${width} table overflows u32 indexing`);
  const pipeline = await gpu.pipelines.get('embedding.wgsl', {
    defines: { C: width, V: vocab, WG: 64 },
    weights: { wte: weightSpec(weightType, [vocab, width]) },
  });
  return {
    label,
    pipeline,
    bindGroup: bindGroup(gpu.device, pipeline, { 0: b.step, 1: b.ids, 2: b.wte, 3: b.h }, label),
    grid: (rows) => [rows, 1, 1],
  };
}
