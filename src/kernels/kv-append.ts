import type { GpuContext } from '../gpu/context.ts';
import { bindGroup, type Binding, type Dispatch } from './dispatch.ts';

export interface KvAppendBuffers {
  step: Binding; // Step uniform: rows go to cache rows pos .. pos + n_tokens - 1
  src: Binding; // [rows, width] f32
  cache: Binding; // [maxContext, width] f32, or f16 pairs packed in u32 when shape.cache is 'f16'
}

/**
 * Copies this step's rows into the KV cache at the step's position (shaders/kv_append.wgsl).
 * `cache` picks the cache's storage type (f32 by default; f16 needs an even width). Rows past
 * the end of the cache binding are dropped.
 */
export async function kvAppend(gpu: GpuContext, shape: { width: number; cache?: 'f32' | 'f16' }, b: KvAppendBuffers, label = 'kv_append'): Promise<Dispatch> {
  const { width } = shape;
  const half = shape.cache === 'f16';
  if (!Number.isInteger(width) || width < 1 || (half && width % 2 !== 0)) {
    throw new Error(`kv_append: width ${width} must be a positive integer${half ? ', even for an f16 cache' : ''}`);
  }
  const pipeline = await gpu.pipelines.get('kv_append.wgsl', { defines: { W: width, HALF: half, WG: 64 } });
  return {
    label,
    pipeline,
    bindGroup: bindGroup(gpu.device, pipeline, { 0: b.step, 1: b.src, 2: b.cache }, label),
    grid: (rows) => [rows, 1, 1],
  };
}
