import type { TensorInfo, TensorSource } from '../checkpoint/types.ts';
import type { ModelConfig } from '../config.ts';
import { UsageError } from '../errors.ts';
import { layerTensorNames } from '../tensor-names.ts';
import { decodeTensor } from '../quant/decode.ts';
import type { ExpertUsage, KindUsage } from './usage.ts';

/** Which experts a pruned model keeps: per layer, the original ids, ascending. */
export interface ExpertSelection {
  attention: number[][];
  mlp: number[][];
}

export type PruneRule = { keep: number } | { mass: number };

/**
 * Experts ranked by the gate mass a corpus gave them (ties: more often chosen, then lower id).
 * `keep: N` keeps the top N of every layer. `mass: p` finds, per layer, the fewest experts that
 * hold a share p of the layer's gate mass, and keeps the largest such count in every layer: the
 * runtime stacks each layer's experts in one tensor and a model has one expert count, so every
 * layer keeps the same number. Never fewer than the router's k.
 */
export function selectExperts(usage: ExpertUsage, rule: PruneRule): ExpertSelection {
  const ranked = (u: KindUsage) => u.mass.map((m, e) => ({ e, m, n: u.count[e] })).sort((a, b) => b.m - a.m || b.n - a.n || a.e - b.e);
  const countFor = (kind: 'attention' | 'mlp', k: number, experts: number): number => {
    if ('keep' in rule) {
      if (!Number.isInteger(rule.keep) || rule.keep < 1) throw new UsageError(`--keep must be a positive integer, got ${rule.keep}.`);
      if (rule.keep < k) throw new UsageError(`--keep ${rule.keep} is below the ${kind} router's k (${k}): it picks ${k} experts per token.`);
      return Math.min(rule.keep, experts);
    }
    if (!(rule.mass > 0 && rule.mass <= 1)) throw new UsageError(`--mass must be in (0, 1], got ${rule.mass}.`);
    let most = k;
    for (const layer of usage.layers) {
      const r = ranked(layer[kind]);
      const total = r.reduce((a, x) => a + x.m, 0);
      let held = 0;
      let n = 0;
      while (n < r.length && held < rule.mass * total) held += r[n++].m;
      most = Math.max(most, n);
    }
    return Math.min(most, experts);
  };
  const pick = (kind: 'attention' | 'mlp', n: number) =>
    usage.layers.map((layer) =>
      ranked(layer[kind])
        .slice(0, n)
        .map((x) => x.e)
        .sort((a, b) => a - b),
    );
  return {
    attention: pick('attention', countFor('attention', usage.kAtt, usage.nAttExperts)),
    mlp: pick('mlp', countFor('mlp', usage.kMlp, usage.nMlpExperts)),
  };
}

/**
 * The model with only the selected experts: each layer's stacked expert tensors and its
 * routers' output rows (gate.w_gate.3, one row per expert) keep the selected experts, in order,
 * and the config's expert counts shrink to match. The router is then the same network over
 * fewer outputs: its softmax runs over the kept experts only, so a pruned expert can never be
 * chosen and the gates of the kept ones are their probabilities among the kept (the original
 * ones renormalised). Everything else is unchanged. Tensors come out as F32 (the writer encodes
 * them again; re-encoding decoded q8 / q4 values reproduces the same bytes).
 */
export function prunedTensors(source: TensorSource, c: ModelConfig, keep: ExpertSelection): { tensors: TensorSource; config: Partial<Record<string, number>> } {
  const sliced = new Map<string, number[]>(); // tensor name → experts kept (rows of dim 0)
  for (let l = 0; l < c.nLayer; l++) {
    const n = layerTensorNames(l);
    for (const name of [n.attGate3Weight, n.queryExperts, n.outputExperts]) sliced.set(name, keep.attention[l]);
    for (const name of [n.mlpGate3Weight, n.upExperts, n.downExperts]) sliced.set(name, keep.mlp[l]);
  }
  const counts = new Set([keep.attention, keep.mlp].map((k) => new Set(k.map((x) => x.length)).size));
  if ([...counts].some((n) => n !== 1)) throw new UsageError('Every layer must keep the same number of experts of a kind.');
  // The shard writer encodes from float dtypes: q8 / q4 tensors are decoded too.
  const decoded = (info: TensorInfo) => sliced.has(info.name) || info.dtype === 'Q8' || info.dtype === 'Q4';
  const tensors = new Map<string, TensorInfo>();
  for (const [name, info] of source.tensors) {
    const rows = sliced.get(name);
    const shape = rows ? [rows.length, ...info.shape.slice(1)] : info.shape;
    tensors.set(name, {
      name,
      dtype: decoded(info) ? 'F32' : info.dtype,
      shape,
      byteLength: decoded(info) ? shape.reduce((a, b) => a * b, 4) : info.byteLength,
    });
  }
  return {
    config: { n_att_experts: keep.attention[0].length, n_mlp_experts: keep.mlp[0].length },
    tensors: {
      tensors,
      async read(name) {
        const info = source.tensors.get(name)!;
        const bytes = await source.read(name);
        if (!decoded(info)) return bytes;
        const all = decodeTensor(bytes, info);
        const rows = sliced.get(name);
        if (!rows) return new Uint8Array(all.buffer, all.byteOffset, all.byteLength);
        const per = info.shape.slice(1).reduce((a, b) => a * b, 1);
        const out = new Float32Array(rows.length * per);
        rows.forEach((e, i) => {
          out.set(all.subarray(e * per, (e + 1) * per), i * per);
        });
        return new Uint8Array(out.buffer);
      },
      close: () => source.close(),
    },
  };
}
