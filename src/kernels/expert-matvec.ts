import type { GpuContext } from '../gpu/context.ts';
import { runsOf8, weightSpec } from '../gpu/weight-accessors.ts';
import { tuningOf } from './tuning.ts';
import type { StorageType } from '../storage-types.ts';
import { bindGroup, foldedGrid, type Binding, type Dispatch } from './dispatch.ts';

export interface ExpertProjectShape {
  inDim: number;
  outDim: number;
  experts: number;
  k: number;
  /** x is [rows, k, in] (one input per slot) instead of [rows, in] shared by the k slots. */
  perSlotInput: boolean;
  activation: 'none' | 'gelu_tanh';
}

export interface ExpertProjectBuffers {
  step: Binding; // Step uniform
  x: Binding; // [rows, in] f32, or [rows, k, in] with perSlotInput
  weight: Binding; // [experts, in, out] in the variant's StorageType
  ids: Binding; // [rows, k] u32 expert of each slot (router output)
  y: Binding; // [rows, k, out] f32
}

export interface ExpertCombineShape {
  inDim: number;
  outDim: number;
  experts: number;
  k: number;
}

export interface ExpertCombineBuffers {
  step: Binding; // Step uniform
  x: Binding; // [rows, k, in] f32
  weight: Binding; // [experts, in, out] in the variant's StorageType
  ids: Binding; // [rows, k] u32
  gates: Binding; // [rows, k] f32
  h: Binding; // [rows, out] f32 residual stream, added to in place
}

/** Workgroup shape: COLS invocations along output-column pairs × SPLIT along `in` (src/kernels/tuning.ts). */
function tile(gpu: GpuContext, inDim: number, outDim: number, groupsPerRow: number): { COLS: number; SPLIT: number } {
  return tuningOf(gpu).expertMatvecTile(inDim, outDim, groupsPerRow);
}

/**
 * Whether a tile reduces within subgroups: split lanes sum in runs of 4 without a barrier, and
 * the runs' totals meet in workgroup memory after one barrier (the tree takes log2(SPLIT) + 1).
 */
function useSubgroups(gpu: GpuContext, split: number): boolean {
  return gpu.subgroupReductions && split > 1;
}

function checkShape(label: string, s: { inDim: number; outDim: number; experts: number; k: number }): void {
  for (const [name, v] of Object.entries(s)) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`${label}: ${name} must be a positive integer, got ${v}`);
  }
  if (s.experts * s.inDim * s.outDim > 2 ** 32) throw new Error(`${label}: expert tensor too large to index with u32`);
}

function grid(columnTiles: number, unitsPerRow: number, label: string): (rows: number) => readonly [number, number, number] {
  return (rows) => foldedGrid(label, columnTiles, rows * unitsPerRow);
}

/**
 * y[r, s, :] = act(x[r, (s,) :] @ W[ids[r, s]]) for the k selected experts of every token row:
 * the attention query projection and the MLP up-projection (shaders/expert_matvec.wgsl).
 */
export async function expertProject(
  gpu: GpuContext,
  shape: ExpertProjectShape,
  weightType: StorageType,
  b: ExpertProjectBuffers,
  label = 'expert_project',
): Promise<Dispatch> {
  const { inDim, outDim, experts, k } = shape;
  checkShape(label, { inDim, outDim, experts, k });
  const t = tile(gpu, inDim, outDim, k);
  const sg = useSubgroups(gpu, t.SPLIT);
  const pipeline = await gpu.pipelines.get('expert_matvec.wgsl', {
    defines: {
      IN: inDim,
      OUT: outDim,
      E: experts,
      K: k,
      ...t,
      PER_SLOT_INPUT: shape.perSlotInput,
      GELU: shape.activation === 'gelu_tanh',
      COMBINE: false,
      RUN8: runsOf8(weightType, inDim),
      SUBGROUPS: sg,
    },
    weights: { weight: weightSpec(weightType, [experts, inDim, outDim]) },
    ...(sg ? { enables: ['subgroups'] } : {}),
  });
  return {
    label,
    pipeline,
    bindGroup: bindGroup(gpu.device, pipeline, { 0: b.step, 1: b.x, 2: b.weight, 3: b.ids, 5: b.y }, label),
    grid: grid(Math.ceil(outDim / (2 * t.COLS)), k, label),
  };
}

/**
 * h[r, :] += Σ_s gates[r, s] · (x[r, s, :] @ W[ids[r, s]]): the attention output projection and
 * the MLP down-projection with the gate-weighted sum and the residual add fused in
 * (shaders/expert_matvec.wgsl).
 */
export async function expertCombine(
  gpu: GpuContext,
  shape: ExpertCombineShape,
  weightType: StorageType,
  b: ExpertCombineBuffers,
  label = 'expert_combine',
): Promise<Dispatch> {
  const { inDim, outDim, experts, k } = shape;
  checkShape(label, shape);
  const t = tile(gpu, inDim, outDim, 1);
  const sg = useSubgroups(gpu, t.SPLIT);
  const pipeline = await gpu.pipelines.get('expert_matvec.wgsl', {
    defines: {
      IN: inDim,
      OUT: outDim,
      E: experts,
      K: k,
      ...t,
      PER_SLOT_INPUT: true,
      GELU: false,
      COMBINE: true,
      RUN8: runsOf8(weightType, inDim),
      SUBGROUPS: sg,
    },
    weights: { weight: weightSpec(weightType, [experts, inDim, outDim]) },
    ...(sg ? { enables: ['subgroups'] } : {}),
  });
  return {
    label,
    pipeline,
    bindGroup: bindGroup(gpu.device, pipeline, { 0: b.step, 1: b.x, 2: b.weight, 3: b.ids, 4: b.gates, 5: b.h }, label),
    grid: grid(Math.ceil(outDim / (2 * t.COLS)), 1, label),
  };
}
