import type { GpuContext } from '../gpu/context.ts';
import { bindGroup, type Binding, type Dispatch } from './dispatch.ts';
import { tuningOf } from './tuning.ts';

export interface LayerNormBuffers {
  step: Binding; // Step uniform
  x: Binding; // [rows, width] f32
  weight: Binding; // [width] f32
  bias: Binding; // [width] f32
  y: Binding; // [rows, width] f32
}

/** LayerNorm of every token row (shaders/layer_norm.wgsl). */
export async function layerNorm(gpu: GpuContext, shape: { width: number; eps: number }, b: LayerNormBuffers, label = 'layer_norm'): Promise<Dispatch> {
  const wg = tuningOf(gpu).layerNormWorkgroup;
  const pipeline = await gpu.pipelines.get('layer_norm.wgsl', {
    defines: { C: shape.width, WG: wg, EPS: { f32: shape.eps } },
  });
  return {
    label,
    pipeline,
    bindGroup: bindGroup(gpu.device, pipeline, { 0: b.step, 1: b.x, 2: b.weight, 3: b.bias, 4: b.y }, label),
    grid: (rows) => [rows, 1, 1],
  };
}
