import { hasKvProjections, kvWidth, type ModelConfig } from '../config.ts';
import { layerTensorNames, WTE } from '../tensor-names.ts';
import type { WeightPlan } from '../weight-plan.ts';

/**
 * Bytes one decoded token must read at `context` tokens of context: every weight a decode step
 * touches (the embedding's one row, the k chosen experts' share of each stacked expert tensor,
 * every other tensor whole) plus the KV cache rows attention reads (keys, and values where a
 * model has its own; MoLM's are the same rows). The numerator of the roofline ratio.
 */
export function decodeReadBytes(c: ModelConfig, plan: WeightPlan, context: number): number {
  const share = new Map<string, number>([[WTE, 1 / c.vocabSize]]);
  for (let l = 0; l < c.nLayer; l++) {
    const n = layerTensorNames(l);
    share.set(n.queryExperts, c.kAtt / c.nAttExperts).set(n.outputExperts, c.kAtt / c.nAttExperts);
    share.set(n.upExperts, c.kMlp / c.nMlpExperts).set(n.downExperts, c.kMlp / c.nMlpExperts);
  }
  const weights = plan.entries.reduce((a, e) => a + e.bytes * (share.get(e.name) ?? 1), 0);
  const kv = c.nLayer * context * kvWidth(c) * 4 * (hasKvProjections(c) ? 2 : 1);
  return weights + kv;
}
