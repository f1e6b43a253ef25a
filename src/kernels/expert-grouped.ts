import type { GpuContext } from '../gpu/context.ts';
import { runsOf8, weightSpec } from '../gpu/weight-accessors.ts';
import { tuningOf } from './tuning.ts';
import type { StorageType } from '../storage-types.ts';
import { MAX_GROUPS, bindGroup, foldedGrid, type Binding, type Dispatch } from './dispatch.ts';

/**
 * Prefill's expert projections, grouped by expert: a counting sort of the chunk's (row, slot)
 * pairs by the expert the router chose (shaders/expert_sort.wgsl), then one grouped matmul per
 * projection (shaders/expert_matmul.wgsl) whose workgroups each take up to TM slots of one
 * expert, and for the output and down projections a slot sum into the residual stream
 * (shaders/expert_slot_sum.wgsl). Decode (one row) keeps the matrix-vector kernels of
 * expert-matvec.ts, where there is nothing to group.
 */

/** The most experts the sort handles: one invocation each, in one workgroup. */
export const MAX_SORTED_EXPERTS = 256;

/** Where expert_sort.wgsl writes its parts in the `groups` buffer (u32 offsets), and its size. */
export interface GroupsLayout {
  experts: number;
  k: number;
  maxRows: number;
  /** Slots per tile. */
  tm: number;
  offsetsAt: number;
  orderAt: number;
  tilesAt: number;
  /** The most tiles a step of `rows` rows can have. */
  maxTiles(rows: number): number;
  bytes: number;
}

/** Slots per tile of the grouped matmul on this adapter (src/kernels/tuning.ts). */
export function groupTileRows(gpu: GpuContext): number {
  return tuningOf(gpu).groupedTileSlots;
}

export function groupsLayout(experts: number, k: number, maxRows: number, tm: number): GroupsLayout {
  if (!Number.isInteger(experts) || experts < 1 || experts > MAX_SORTED_EXPERTS) {
    throw new Error(`expert_sort: ${experts} experts; the sort handles 1 to ${MAX_SORTED_EXPERTS}`);
  }
  if (![4, 8, 16].includes(tm)) throw new Error(`expert_matmul: tiles of ${tm} slots; 4, 8 or 16 are built`);
  // Σ_e ceil(c_e / TM) with Σ c_e = n·K and at most min(E, n·K) non-empty experts.
  const maxTiles = (rows: number) => {
    const slots = rows * k;
    return Math.floor((slots + Math.min(experts, slots) * (tm - 1)) / tm);
  };
  const offsetsAt = 1;
  const orderAt = offsetsAt + experts + 1;
  const tilesAt = orderAt + maxRows * k;
  return { experts, k, maxRows, tm, offsetsAt, orderAt, tilesAt, maxTiles, bytes: (tilesAt + 2 * maxTiles(maxRows)) * 4 };
}

function layoutDefines(g: GroupsLayout) {
  return { E: g.experts, K: g.k, TM: g.tm, OFFSETS_AT: g.offsetsAt, ORDER_AT: g.orderAt, TILES_AT: g.tilesAt };
}

/** Sorts a step's slots by expert into `groups` (layout `g`). */
export async function expertSort(
  gpu: GpuContext,
  g: GroupsLayout,
  b: { step: Binding; ids: Binding; groups: Binding },
  label = 'expert_sort',
): Promise<Dispatch> {
  let wg = 1;
  while (wg < g.experts) wg *= 2;
  const pipeline = await gpu.pipelines.get('expert_sort.wgsl', { defines: { ...layoutDefines(g), WG: wg } });
  return {
    label,
    pipeline,
    bindGroup: bindGroup(gpu.device, pipeline, { 0: b.step, 1: b.ids, 2: b.groups }, label),
    grid: (rows) => (rows === 0 ? [0, 1, 1] : [1, 1, 1]),
  };
}

export interface GroupedMatmulShape {
  inDim: number;
  outDim: number;
  /** x is [rows, k, in] (one input per slot) instead of [rows, in] shared by the k slots. */
  perSlotInput: boolean;
  activation: 'none' | 'gelu_tanh';
  /** Multiply each slot's output by its gate (the output and down projections). */
  gated: boolean;
}

export interface GroupedMatmulBuffers {
  x: Binding; // [rows, in] f32, or [rows, k, in] with perSlotInput
  weight: Binding; // [experts, in, out] in the variant's StorageType
  groups: Binding; // expertSort's output for the same ids
  gates?: Binding; // [rows, k] f32, with gated
  y: Binding; // [rows, k, out] f32
}

/** Column pairs per workgroup. */
const COLS = 64;

/** y[s] = act(x[src(s)] @ W[e(s)]) (· gate[s] when gated) for every slot of a step, by expert tiles. */
export async function expertGroupedMatmul(
  gpu: GpuContext,
  g: GroupsLayout,
  shape: GroupedMatmulShape,
  weightType: StorageType,
  b: GroupedMatmulBuffers,
  label = 'expert_matmul',
): Promise<Dispatch> {
  const { inDim, outDim } = shape;
  for (const [name, v] of Object.entries({ inDim, outDim })) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`${label}: ${name} must be a positive integer, got ${v}`);
  }
  if (g.experts * inDim * outDim > 2 ** 32) throw new Error(`${label}: expert tensor too large to index with u32`);
  if (shape.gated && !b.gates) throw new Error(`${label}: a gated matmul needs the gates`);
  const pipeline = await gpu.pipelines.get('expert_matmul.wgsl', {
    defines: {
      IN: inDim,
      OUT: outDim,
      ...layoutDefines(g),
      COLS,
      PER_SLOT_INPUT: shape.perSlotInput,
      GELU: shape.activation === 'gelu_tanh',
      GATED: shape.gated,
      RUN8: runsOf8(weightType, inDim),
    },
    weights: { weight: weightSpec(weightType, [g.experts, inDim, outDim]) },
  });
  const resources: Record<number, Binding> = { 1: b.x, 2: b.weight, 3: b.groups, 5: b.y };
  if (shape.gated) resources[4] = b.gates!;
  const columnTiles = Math.ceil(outDim / (2 * COLS));
  return {
    label,
    pipeline,
    bindGroup: bindGroup(gpu.device, pipeline, resources, label),
    grid: (rows) => foldedGrid(label, columnTiles, g.maxTiles(rows)),
  };
}

/** h[r] += Σ_k y[r, k] for the rows of a step: the end of a grouped combine. */
export async function expertSlotSum(
  gpu: GpuContext,
  shape: { width: number; k: number },
  b: { step: Binding; y: Binding; h: Binding },
  label = 'expert_slot_sum',
): Promise<Dispatch> {
  const WG = 256;
  const pipeline = await gpu.pipelines.get('expert_slot_sum.wgsl', { defines: { OUT: shape.width, K: shape.k, WG } });
  return {
    label,
    pipeline,
    bindGroup: bindGroup(gpu.device, pipeline, { 0: b.step, 1: b.y, 2: b.h }, label),
    grid: (rows) => {
      const blocks = Math.ceil((rows * shape.width) / WG);
      if (blocks === 0) return [0, 1, 1];
      const y = Math.ceil(blocks / MAX_GROUPS);
      return [Math.ceil(blocks / y), y, 1];
    },
  };
}
