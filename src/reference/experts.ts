import { geluTanh } from './math.ts';

export type ExpertActivation = 'none' | 'gelu_tanh';

/**
 * Applies each slot's selected expert: y[r, s] = act(x[r, (s)] · W[ids[r*k + s]]).
 *
 * ModuleFormer stores expert matrices as [expert, in, out], the transpose of nn.Linear, so the
 * loop walks one input at a time and accumulates a contiguous output row. With perSlotInput
 * false, x is [rows, inDim] and every slot reads the same row (the query and MLP-up projections);
 * with it true, x is [rows, k, inDim] (the output and MLP-down projections). Returns [rows, k, outDim].
 */
export function expertProject(
  x: Float64Array,
  rows: number,
  k: number,
  perSlotInput: boolean,
  inDim: number,
  outDim: number,
  weight: ArrayLike<number>,
  ids: ArrayLike<number>,
  activation: ExpertActivation,
): Float64Array {
  const out = new Float64Array(rows * k * outDim);
  const experts = Math.floor(weight.length / (inDim * outDim));
  for (let r = 0; r < rows; r++) {
    for (let s = 0; s < k; s++) {
      const e = ids[r * k + s];
      if (!(e >= 0 && e < experts)) throw new RangeError(`expert id ${e} (row ${r}, slot ${s}) is not below ${experts}`);
      const xBase = (perSlotInput ? r * k + s : r) * inDim;
      const wBase = e * inDim * outDim;
      const yBase = (r * k + s) * outDim;
      for (let i = 0; i < inDim; i++) {
        const xi = x[xBase + i];
        const wRow = wBase + i * outDim;
        for (let o = 0; o < outDim; o++) out[yBase + o] += xi * weight[wRow + o];
      }
      if (activation === 'gelu_tanh') {
        for (let o = 0; o < outDim; o++) out[yBase + o] = geluTanh(out[yBase + o]);
      }
    }
  }
  return out;
}

/** Gate-weighted sum over the k slots: out[r] = Σ_s gates[r*k + s] · y[r, s]. Returns [rows, outDim]. */
export function expertCombine(y: Float64Array, gates: ArrayLike<number>, rows: number, k: number, outDim: number): Float64Array {
  const out = new Float64Array(rows * outDim);
  for (let r = 0; r < rows; r++) {
    for (let s = 0; s < k; s++) {
      const g = gates[r * k + s];
      const yBase = (r * k + s) * outDim;
      for (let o = 0; o < outDim; o++) out[r * outDim + o] += g * y[yBase + o];
    }
  }
  return out;
}

/** Slots grouped by expert, as shaders/expert_sort.wgsl lays them out (its CPU twin). */
export interface ExpertGroups {
  /** offsets[e] .. offsets[e + 1]: expert e's positions in `order` (E + 1 entries). */
  offsets: number[];
  /** Slot indices (row·k + slot), by expert, in slot order within an expert. */
  order: number[];
  /** Tiles of up to `tileRows` positions of one expert: [expert, first position]. */
  tiles: [number, number][];
}

/** A stable counting sort of slots by expert id (ids past the last expert count as the last). */
export function groupByExpert(ids: ArrayLike<number>, experts: number, tileRows: number): ExpertGroups {
  const byExpert: number[][] = Array.from({ length: experts }, () => []);
  for (let s = 0; s < ids.length; s++) byExpert[Math.min(ids[s], experts - 1)].push(s);
  const offsets = [0];
  const tiles: [number, number][] = [];
  for (const [e, slots] of byExpert.entries()) {
    const first = offsets[e];
    for (let p = 0; p < slots.length; p += tileRows) tiles.push([e, first + p]);
    offsets.push(first + slots.length);
  }
  return { offsets, order: byExpert.flat(), tiles };
}
