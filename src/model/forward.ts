import { hasKvProjections, headSize, type ModelConfig } from '../config.ts';
import type { GpuContext } from '../gpu/context.ts';
import type { Dispatch } from '../kernels/dispatch.ts';
import { embedding } from '../kernels/embedding.ts';
import { expertCombine, expertProject } from '../kernels/expert-matvec.ts';
import {
  MAX_SORTED_EXPERTS,
  expertGroupedMatmul,
  expertSlotSum,
  expertSort,
  groupTileRows,
  groupsLayout,
  type GroupsLayout,
} from '../kernels/expert-grouped.ts';
import { kvAppend } from '../kernels/kv-append.ts';
import { layerNorm } from '../kernels/layer-norm.ts';
import { linear } from '../kernels/linear.ts';
import { routerTopK } from '../kernels/router.ts';
import { tuningOf } from '../kernels/tuning.ts';
import { sampler, type SamplerParams } from '../kernels/sampler.ts';
import { stickBreakingDecode, stickBreakingPrefill } from '../kernels/stickbreaking.ts';
import type { StepUniform } from '../kernels/step.ts';
import type { Activations } from './activations.ts';
import type { KvCache } from './kv-cache.ts';
import { LM_HEAD, LN_F_BIAS, LN_F_WEIGHT, WTE, layerTensorNames } from '../tensor-names.ts';
import type { GpuWeights } from './weights.ts';

/** What a step computes after the last block. */
export type StepHead =
  | 'none' // a prefill chunk that is not the last: only the KV cache matters
  | 'sample' // logits of the last row, then the sampler writes the next id on the GPU
  | 'all'; // logits of every row (the `logits` command, the golden tests)

export interface ForwardResources {
  ctx: GpuContext;
  config: ModelConfig;
  weights: GpuWeights;
  cache: KvCache;
  acts: Activations;
  step: StepUniform;
  samplerParams: SamplerParams;
  /**
   * Under a GPU memory budget (src/model/expert-streamer.ts): the expert kernels index their slotted
   * weights with these per-layer slot ids instead of the routers' expert ids.
   */
  expertSlots?: { attIds: GPUBuffer[]; mlpIds: GPUBuffer[]; att: number; mlp: number };
}

/**
 * How a prefill chunk's expert projections are grouped by expert (src/kernels/expert-grouped.ts):
 * the sort's layout for each router, or null where prefill keeps the per-slot kernels (more
 * experts than the sort takes). Activations size their `expertGroups` buffer from it.
 */
export function prefillGroups(ctx: GpuContext, c: ModelConfig, rows: number): { att: GroupsLayout; mlp: GroupsLayout; bytes: number } | null {
  if (Math.max(c.nAttExperts, c.nMlpExperts) > MAX_SORTED_EXPERTS) return null;
  const tm = groupTileRows(ctx);
  const att = groupsLayout(c.nAttExperts, c.kAtt, rows, tm);
  const mlp = groupsLayout(c.nMlpExperts, c.kMlp, rows, tm);
  return { att, mlp, bytes: Math.max(att.bytes, mlp.bytes) };
}

/**
 * The dispatches of one step, in order: a block as docs/architecture.md ("The numerical
 * contract") writes it, for every layer, then the head. Planned once at load time per kind of step; a step only writes the Step uniform and
 * records these dispatches.
 */
/**
 * Which routers' experts a prefill step of `rows` rows groups by expert. A grouped tile computes
 * its TM slots whether or not the expert has that many, so a short chunk (a 16-token prompt: one
 * or two slots per expert of 16 or 32) spends most of its work on empty rows; where the adapter's
 * tuning says so (groupedMinSlotsPerExpert: CPU emulations), such a router keeps the per-slot
 * kernels of decode, whose work follows the slots exactly.
 */
export function prefillGrouping(ctx: GpuContext, c: ModelConfig, rows: number): { att: boolean; mlp: boolean } {
  const min = tuningOf(ctx).groupedMinSlotsPerExpert;
  return { att: (rows * c.kAtt) / c.nAttExperts >= min, mlp: (rows * c.kMlp) / c.nMlpExperts >= min };
}

export async function planStep(
  r: ForwardResources,
  kind: 'prefill' | 'decode',
  head: StepHead,
  grouping: { att: boolean; mlp: boolean } = { att: true, mlp: true },
): Promise<Dispatch[]> {
  const { ctx, config: c, weights: w, cache, acts: a } = r;
  const step = r.step.buffer;
  // Each matrix's own storage type: under q8 / q4, matrices that cannot be quantised are f16.
  const st = (name: string) => w.storage(name);
  const C = c.nEmbd;
  const eps = c.layerNormEpsilon;
  const kv = hasKvProjections(c);
  // Which ids and how many experts the expert kernels see: the routers' own, or slots.
  const slots = r.expertSlots;
  const attExperts = slots?.att ?? c.nAttExperts;
  const mlpExperts = slots?.mlp ?? c.nMlpExperts;
  const attIds = (l: number) => slots?.attIds[l] ?? a.attIds[l];
  const mlpIds = (l: number) => slots?.mlpIds[l] ?? a.mlpIds[l];
  // Prefill groups the slots by expert (one grouped matmul per projection); decode has one row,
  // nothing to group. Under an expert budget (slot ids) steps are one token: no grouping either.
  const groups = kind === 'prefill' && !slots && a.expertGroups ? prefillGroups(ctx, c, a.maxRows) : null;
  const d: Promise<Dispatch | Dispatch[]>[] = [];

  // The attention and MLP routers differ only in their weights and where their choices go.
  const router = (which: 'att' | 'mlp', w0: string, b0: string, w3: string, experts: number, k: number, l: number) =>
    routerTopK(
      ctx,
      { width: C, gating: c.gatingSize, experts, k, manyRows: kind === 'prefill' },
      { w0: st(w0), w3: st(w3) },
      {
        step,
        x: a.x,
        w0: w.get(w0),
        b0: w.get(b0),
        w3: w.get(w3),
        ids: (which === 'att' ? a.attIds : a.mlpIds)[l],
        gates: (which === 'att' ? a.attGates : a.mlpGates)[l],
        probs: (which === 'att' ? a.attProbs : a.mlpProbs)[l],
      },
      `router.${which}.${l}`,
    );

  // The expert projections of one router's choices: grouped by expert in prefill (a sort, then
  // one matmul per projection, gate-weighted slot outputs summed into h), per slot in decode.
  const moe = (which: 'att' | 'mlp', l: number) => {
    const k = which === 'att' ? c.kAtt : c.kMlp;
    const g = grouping[which] ? groups?.[which] : undefined;
    const ids = which === 'att' ? attIds(l) : mlpIds(l);
    const E = which === 'att' ? attExperts : mlpExperts;
    const gates = (which === 'att' ? a.attGates : a.mlpGates)[l];
    return {
      sort: (): Promise<Dispatch>[] => (g ? [expertSort(ctx, g, { step, ids, groups: a.expertGroups! }, `sort.${which}.${l}`)] : []),
      // y[r, s] = act(x[r] @ W[e(r, s)])
      project: (
        inDim: number,
        outDim: number,
        activation: 'none' | 'gelu_tanh',
        tensor: string,
        x: GPUBuffer,
        y: GPUBuffer,
        label: string,
      ): Promise<Dispatch>[] =>
        g
          ? [
              expertGroupedMatmul(
                ctx,
                g,
                { inDim, outDim, perSlotInput: false, activation, gated: false },
                st(tensor),
                { x, weight: w.get(tensor), groups: a.expertGroups!, y },
                label,
              ),
            ]
          : [
              expertProject(
                ctx,
                { inDim, outDim, experts: E, k, perSlotInput: false, activation },
                st(tensor),
                { step, x, weight: w.get(tensor), ids, y },
                label,
              ),
            ],
      // h[r] += Σ_s gate(r, s) · (x[r, s] @ W[e(r, s)])
      combine: (inDim: number, tensor: string, x: GPUBuffer, label: string, sumLabel: string): Promise<Dispatch>[] =>
        g
          ? [
              expertGroupedMatmul(
                ctx,
                g,
                { inDim, outDim: C, perSlotInput: true, activation: 'none', gated: true },
                st(tensor),
                { x, weight: w.get(tensor), groups: a.expertGroups!, gates, y: a.slotOut! },
                label,
              ),
              expertSlotSum(ctx, { width: C, k }, { step, y: a.slotOut!, h: a.h }, sumLabel),
            ]
          : [expertCombine(ctx, { inDim, outDim: C, experts: E, k }, st(tensor), { step, x, weight: w.get(tensor), ids, gates, h: a.h }, label)],
    };
  };

  d.push(
    embedding(ctx, { width: C, vocab: c.vocabSize }, st(WTE), {
      step,
      ids: kind === 'decode' ? a.nextId : a.ids,
      wte: w.get(WTE),
      h: a.h,
    }),
  );
  for (let l = 0; l < c.nLayer; l++) {
    const n = layerTensorNames(l);
    d.push(layerNorm(ctx, { width: C, eps }, { step, x: a.h, weight: w.get(n.ln1Weight), bias: w.get(n.ln1Bias), y: a.x }, `ln_1.${l}`));
    if (kv) {
      const proj = { inDim: C, outDim: c.attHidden, hasBias: true };
      d.push(linear(ctx, proj, st(n.kWeight), { step, x: a.x, weight: w.get(n.kWeight), bias: w.get(n.kBias), y: a.k! }, `k_proj.${l}`));
      d.push(linear(ctx, proj, st(n.vWeight), { step, x: a.x, weight: w.get(n.vWeight), bias: w.get(n.vBias), y: a.v! }, `v_proj.${l}`));
      d.push(kvAppend(ctx, { width: cache.width }, { step, src: a.k!, cache: cache.keys[l] }, `kv_append.k.${l}`));
      d.push(kvAppend(ctx, { width: cache.width }, { step, src: a.v!, cache: cache.values[l] }, `kv_append.v.${l}`));
    } else {
      d.push(kvAppend(ctx, { width: cache.width }, { step, src: a.x, cache: cache.keys[l] }, `kv_append.${l}`));
    }
    d.push(router('att', n.attGate0Weight, n.attGate0Bias, n.attGate3Weight, c.nAttExperts, c.kAtt, l));
    const attMoe = moe('att', l);
    d.push(...attMoe.sort(), ...attMoe.project(C, c.attHidden, 'none', n.queryExperts, a.x, a.q, `q_proj.${l}`));
    const att = { k: c.kAtt, heads: c.nHead, headSize: headSize(c) };
    const attBuffers = { step, q: a.q, keys: cache.keys[l], values: cache.values[l], o: a.attnOut };
    d.push(
      kind === 'decode'
        ? stickBreakingDecode(ctx, { ...att, maxContext: cache.maxContext }, attBuffers, `attention.${l}`)
        : stickBreakingPrefill(ctx, att, attBuffers, `attention.${l}`),
    );
    d.push(...attMoe.combine(c.attHidden, n.outputExperts, a.attnOut, `o_proj.${l}`, `o_sum.${l}`));
    d.push(layerNorm(ctx, { width: C, eps }, { step, x: a.h, weight: w.get(n.ln2Weight), bias: w.get(n.ln2Bias), y: a.x }, `ln_2.${l}`));
    d.push(router('mlp', n.mlpGate0Weight, n.mlpGate0Bias, n.mlpGate3Weight, c.nMlpExperts, c.kMlp, l));
    const mlpMoe = moe('mlp', l);
    d.push(...mlpMoe.sort(), ...mlpMoe.project(C, c.ffdHidden, 'gelu_tanh', n.upExperts, a.x, a.up, `mlp_up.${l}`));
    d.push(...mlpMoe.combine(c.ffdHidden, n.downExperts, a.up, `mlp_down.${l}`, `mlp_sum.${l}`));
  }
  if (head !== 'none') {
    d.push(layerNorm(ctx, { width: C, eps }, { step, x: a.h, weight: w.get(LN_F_WEIGHT), bias: w.get(LN_F_BIAS), y: a.x }, 'ln_f'));
    const all = head === 'all';
    d.push(
      linear(
        ctx,
        { inDim: C, outDim: c.vocabSize, hasBias: false, lastRowOnly: !all },
        st(LM_HEAD),
        {
          step,
          x: a.x,
          weight: w.get(LM_HEAD),
          y: all ? a.allLogits : a.lastLogits,
        },
        'lm_head',
      ),
    );
    if (!all) {
      d.push(
        sampler(
          ctx,
          { vocab: c.vocabSize },
          { step, logits: a.lastLogits, params: r.samplerParams.buffer, out: a.nextId, seen: r.samplerParams.seen },
          'sample',
        ),
      );
    }
  }
  return (await Promise.all(d)).flat();
}
