import type { ModelConfig } from '../config.ts';
import { UsageError } from '../errors.ts';
import { layerTensorNames } from '../tensor-names.ts';
import type { ExpertSlots, WeightPlan } from '../weight-plan.ts';
import type { EvictionPolicy } from './residency.ts';

// How many experts of each kind a memory budget holds per layer: device-free, shared by the
// GPU's ExpertStreamer and the wasm engine's expert slots.

/** Experts under a memory budget (the GPU's, or the wasm memory's). */
export interface ExpertBudget {
  /** Bytes of expert weights the GPU (or the wasm memory) may hold, or a share of them: '25%'. */
  bytes: number | string;
  /** Which resident expert makes room for a missing one (default 'lfu', measured: docs/experts.md). */
  policy?: EvictionPolicy;
}

/** Slots per layer for each kind of expert under a budget; null when every expert fits. */
export interface SlotCounts {
  att: number;
  mlp: number;
  /** Bytes of all experts, and of the slots. */
  expertBytes: number;
  slotBytes: number;
}

export const EXPERT_TENSORS = {
  att: (l: number) => [layerTensorNames(l).queryExperts, layerTensorNames(l).outputExperts],
  mlp: (l: number) => [layerTensorNames(l).upExperts, layerTensorNames(l).downExperts],
} as const;

/**
 * How many experts of each kind every layer keeps on the GPU within `budget` bytes of expert
 * weights: the same share of each kind, never fewer than the router's k (a token needs its k
 * experts at once). Null when the budget holds them all.
 */
export function slotCounts(c: ModelConfig, plan: WeightPlan, budget: number | string): SlotCounts | null {
  const bytesOf = (name: string) => plan.entries.find((e) => e.name === name)!.bytes;
  let att = 0;
  let mlp = 0;
  for (let l = 0; l < c.nLayer; l++) {
    att += EXPERT_TENSORS.att(l).reduce((a, n) => a + bytesOf(n), 0);
    mlp += EXPERT_TENSORS.mlp(l).reduce((a, n) => a + bytesOf(n), 0);
  }
  const expertBytes = att + mlp;
  let bytes: number;
  if (typeof budget === 'string' && /^\d+(\.\d+)?%$/.test(budget.trim())) bytes = (parseFloat(budget) / 100) * expertBytes;
  else bytes = Number(budget);
  if (!Number.isFinite(bytes) || bytes <= 0)
    throw new UsageError(`The GPU memory budget must be a number of bytes or a share like '25%', got ${String(budget)}.`);
  if (bytes >= expertBytes) return null;
  const perAtt = att / c.nAttExperts;
  const perMlp = mlp / c.nMlpExperts;
  const minimum = c.kAtt * perAtt + c.kMlp * perMlp;
  if (bytes < minimum) {
    throw new UsageError(
      `A GPU memory budget of ${bytes.toFixed(0)} bytes cannot hold the ${c.kAtt} attention and ${c.kMlp} MLP experts a token needs in every layer (${minimum.toFixed(0)} bytes of the ${expertBytes} of expert weights). Raise the budget.`,
    );
  }
  const share = bytes / expertBytes;
  let sAtt = Math.max(c.kAtt, Math.floor(share * c.nAttExperts));
  let sMlp = Math.max(c.kMlp, Math.floor(share * c.nMlpExperts));
  // Flooring to k can overshoot the budget; take slots back from the larger kind until it fits.
  while (sAtt * perAtt + sMlp * perMlp > bytes) {
    if (sMlp > c.kMlp && (sMlp * perMlp >= sAtt * perAtt || sAtt === c.kAtt)) sMlp--;
    else sAtt--;
  }
  return { att: sAtt, mlp: sMlp, expertBytes, slotBytes: sAtt * perAtt + sMlp * perMlp };
}

/** The slotted tensors of a model with these slot counts (GpuWeights' ExpertSlots). */
export function expertSlots(c: ModelConfig, slots: SlotCounts): ExpertSlots {
  const m = new Map<string, number>();
  for (let l = 0; l < c.nLayer; l++) {
    for (const n of EXPERT_TENSORS.att(l)) m.set(n, slots.att);
    for (const n of EXPERT_TENSORS.mlp(l)) m.set(n, slots.mlp);
  }
  return m;
}
