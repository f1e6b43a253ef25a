import type { GpuContext } from '../gpu/context.ts';
import { weightSpec } from '../gpu/weight-accessors.ts';
import { tuningOf } from './tuning.ts';
import type { StorageType } from '../storage-types.ts';
import { bindGroup, type Binding, type Dispatch } from './dispatch.ts';

export interface RouterShape {
  width: number; // C
  gating: number; // G, the router's hidden size
  experts: number; // E
  k: number; // experts chosen per token
  /**
   * Planned for steps of many rows (prefill): on a CPU adapter each row is then routed by one
   * invocation (shaders/router_topk_serial.wgsl), with no barriers; one-row steps keep the
   * workgroup kernel, whose invocations share the row's dot products.
   */
  manyRows?: boolean;
}

export interface RouterBuffers {
  step: Binding; // Step uniform
  x: Binding; // [rows, C] f32
  w0: Binding; // [G, C] nn.Linear weight, in the weight type
  b0: Binding; // [G] f32
  w3: Binding; // [E, G] nn.Linear weight, no bias, in the weight type
  ids: Binding; // [rows, k] u32 out: expert ids, slot 0 the most probable
  gates: Binding; // [rows, k] f32 out: their softmax probabilities (not renormalised)
  probs: Binding; // [rows, E] f32 out: the full softmax, for routing traces
}

// The shader keeps the input row, the hidden layer and the logits in workgroup memory, within
// the 16 KiB every adapter grants; softmax and ranking give one expert to each invocation.

export const ROUTER_LIMITS = { maxWidth: 2048, maxGating: 1024, maxExperts: 128, maxK: 8 } as const;

function checkShape(s: RouterShape): void {
  const intIn = (v: number, lo: number, hi: number) => Number.isInteger(v) && v >= lo && v <= hi;
  const L = ROUTER_LIMITS;
  const problems: string[] = [];
  if (!intIn(s.width, 1, L.maxWidth)) problems.push(`width ${s.width} must be an integer in 1..${L.maxWidth}`);
  if (!intIn(s.gating, 1, L.maxGating)) problems.push(`gating ${s.gating} must be an integer in 1..${L.maxGating}`);
  if (!intIn(s.experts, 1, L.maxExperts)) problems.push(`experts ${s.experts} must be an integer in 1..${L.maxExperts}`);
  if (!intIn(s.k, 1, Math.min(L.maxK, s.experts))) {
    problems.push(`k ${s.k} must be an integer in 1..min(${L.maxK}, experts)`);
  }
  if (problems.length) throw new Error(`router_topk cannot run this router: ${problems.join('; ')}`);
}

/**
 * The MoLM router of every token row (shaders/router_topk.wgsl): top-k experts and their gates
 * from softmax(gelu_erf(x·W0ᵀ + b0)·W3ᵀ). One workgroup per row.
 */
export async function routerTopK(
  gpu: GpuContext,
  shape: RouterShape,
  weightType: StorageType | { w0: StorageType; w3: StorageType },
  b: RouterBuffers,
  label = 'router_topk',
): Promise<Dispatch> {
  checkShape(shape);
  // Each matrix has its own storage: under q8 / q4 one may have fallen back to f16.
  const types = typeof weightType === 'string' ? { w0: weightType, w3: weightType } : weightType;
  const tuning = tuningOf(gpu);
  const serial = tuning.routerSerialRows && shape.manyRows === true;
  const SERIAL_WG = tuning.serialWorkgroup;
  const common = { C: shape.width, G: shape.gating, E: shape.experts, K: shape.k };
  const pipeline = await gpu.pipelines.get(serial ? 'router_topk_serial.wgsl' : 'router_topk.wgsl', {
    defines: serial ? { ...common, WG: SERIAL_WG } : { ...common, ...tuning.routerShape(shape.experts) },
    weights: {
      w0: weightSpec(types.w0, [shape.gating, shape.width]),
      w3: weightSpec(types.w3, [shape.experts, shape.gating]),
    },
  });
  return {
    label,
    pipeline,
    bindGroup: bindGroup(gpu.device, pipeline, { 0: b.step, 1: b.x, 2: b.w0, 3: b.b0, 4: b.w3, 5: b.ids, 6: b.gates, 7: b.probs }, label),
    grid: (rows) => (serial ? [Math.ceil(rows / SERIAL_WG), 1, 1] : [rows, 1, 1]),
  };
}
