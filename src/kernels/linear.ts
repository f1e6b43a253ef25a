import type { GpuContext } from '../gpu/context.ts';
import { runsOf8, weightSpec } from '../gpu/weight-accessors.ts';
import { tuningOf } from './tuning.ts';
import type { StorageType } from '../storage-types.ts';
import { bindGroup, type Binding, type Dispatch } from './dispatch.ts';

export interface LinearShape {
  inDim: number;
  outDim: number;
  hasBias: boolean;
  /** Read only x row (n_tokens − 1), write y row 0: generation needs only the last position's logits. */
  lastRowOnly?: boolean;
}

export interface LinearBuffers {
  step: Binding; // Step uniform
  x: Binding; // [rows, inDim] f32
  weight: Binding; // [outDim, inDim] (nn.Linear layout) in the variant's StorageType
  bias?: Binding; // [outDim] f32; required iff shape.hasBias
  y: Binding; // [rows, outDim] f32, or [1, outDim] with lastRowOnly
}

/** Token rows per workgroup along grid y: bounds the x rows one workgroup streams per weight row. */
const CHUNK = 16;
const MAX_GROUPS = 65535;

/** nn.Linear `y = x Wᵀ + b` over the step's token rows (shaders/linear.wgsl). */
export async function linear(gpu: GpuContext, shape: LinearShape, weightType: StorageType, b: LinearBuffers, label = 'linear'): Promise<Dispatch> {
  const { inDim, outDim, hasBias } = shape;
  const lastRowOnly = shape.lastRowOnly ?? false;
  const tuning = tuningOf(gpu);
  const rpw = tuning.linearRowsPerWorkgroup;
  const lanes = tuning.linearLanes(inDim);
  // Lanes of a row reduce within subgroups, and only the rows wider than a subgroup use
  // workgroup memory (one barrier instead of log2(lanes) + 1).
  const subgroups = gpu.subgroupReductions && lanes > 1;
  if (hasBias !== (b.bias !== undefined)) {
    throw new Error(`${label}: hasBias is ${hasBias} but a bias buffer was${b.bias ? '' : ' not'} given`);
  }
  if (!(inDim >= 1 && outDim >= 1)) throw new Error(`${label}: bad shape ${inDim} -> ${outDim}`);
  const pipeline = await gpu.pipelines.get('linear.wgsl', {
    defines: {
      IN: inDim,
      OUT: outDim,
      LANES: lanes,
      RPW: rpw,
      CHUNK,
      HAS_BIAS: hasBias,
      LAST_ROW_ONLY: lastRowOnly,
      SUBGROUPS: subgroups,
      RUN8: runsOf8(weightType, inDim),
    },
    weights: { weight: weightSpec(weightType, [outDim, inDim]) },
    ...(subgroups ? { enables: ['subgroups'] } : {}),
  });
  const resources: Record<number, Binding> = { 0: b.step, 1: b.x, 2: b.weight, 4: b.y };
  if (b.bias) resources[3] = b.bias;
  const blocks = Math.ceil(outDim / rpw);
  const gz = Math.ceil(blocks / MAX_GROUPS);
  const gx = Math.ceil(blocks / gz);
  return {
    label,
    pipeline,
    bindGroup: bindGroup(gpu.device, pipeline, resources, label),
    grid: (rows) => {
      if (rows === 0) return [0, 1, 1];
      const gy = lastRowOnly ? 1 : Math.ceil(rows / CHUNK);
      if (gy > MAX_GROUPS) throw new Error(`${label}: ${rows} rows exceed one dispatch`);
      return [gx, gy, gz];
    },
  };
}
