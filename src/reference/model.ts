import type { TensorSource } from '../checkpoint/types.ts';
import { type ModelConfig, hasKvProjections, headSize, kvWidth } from '../config.ts';
import { ModelFormatError, UsageError } from '../errors.ts';
import { decodeTensor } from '../quant/decode.ts';
import { stickBreakingAttention } from './attention.ts';
import { embedding } from './embedding.ts';
import { expertCombine, expertProject } from './experts.ts';
import { layerNorm } from './layer-norm.ts';
import { linear } from './linear.ts';
import { type Routing, routerTopK } from './router.ts';
import { argmax } from './sampler.ts';

// The whole MoLM / ModuleFormer forward pass in float64, block by block as docs/architecture.md
// "One block" writes it. It is the yardstick for the GPU model and the `--device cpu` backend:
// every step is the plain definition, composed from the single-purpose functions of this folder.

/** Hugging Face tensor name → values in float64, row-major as stored. */
export type ReferenceWeights = Map<string, Float64Array>;

/**
 * Reads every tensor of a checkpoint into float64 (the unused attention buffers excepted), in any
 * stored dtype: Q8 / Q4 matrices of converted models give their dequantised values.
 */
export async function loadReferenceWeights(source: TensorSource): Promise<ReferenceWeights> {
  const weights: ReferenceWeights = new Map();
  for (const [name, info] of source.tensors) {
    if (name.endsWith('.attn.mask') || name.endsWith('.attn.cum_weight')) continue;
    weights.set(name, Float64Array.from(decodeTensor(await source.read(name), info)));
  }
  return weights;
}

/** Routing decisions of one layer for the rows of the latest prefill or decode call. */
export interface LayerRouting {
  attention: Routing;
  mlp: Routing;
}

interface GateWeights {
  w0: Float64Array; // [G, C]
  b0: Float64Array; // [G]
  w3: Float64Array; // [E, G]
}

interface LayerWeights {
  ln1Weight: Float64Array;
  ln1Bias: Float64Array;
  attGate: GateWeights;
  query: Float64Array; // [E_a, C, A]
  output: Float64Array; // [E_a, A, C]
  /** k_proj / v_proj, present only for models that are not MoLM-shaped. */
  kv: { wk: Float64Array; bk: Float64Array; wv: Float64Array; bv: Float64Array } | null;
  ln2Weight: Float64Array;
  ln2Bias: Float64Array;
  mlpGate: GateWeights;
  up: Float64Array; // [E_m, C, F]
  down: Float64Array; // [E_m, F, C]
}

/** Rows appended over time; a capacity-doubling buffer so decode does not copy the cache each step. */
class RowCache {
  private data: Float64Array;
  private count = 0;

  constructor(private readonly width: number) {
    this.data = new Float64Array(16 * width);
  }

  append(src: Float64Array, rows: number): void {
    const need = (this.count + rows) * this.width;
    if (need > this.data.length) {
      const grown = new Float64Array(Math.max(need, 2 * this.data.length));
      grown.set(this.data.subarray(0, this.count * this.width));
      this.data = grown;
    }
    this.data.set(src.subarray(0, rows * this.width), this.count * this.width);
    this.count += rows;
  }

  /** The filled rows, [rows, width]; a view valid until the next append. */
  view(): Float64Array {
    return this.data.subarray(0, this.count * this.width);
  }

  clear(): void {
    this.count = 0;
  }
}

function addInPlace(target: Float64Array, delta: Float64Array): void {
  for (let i = 0; i < target.length; i++) target[i] += delta[i];
}

export class ReferenceModel {
  readonly config: ModelConfig;
  /** Per layer, the routing of the rows of the latest prefill/decode call (for debugging and tests). */
  lastRouting?: LayerRouting[];

  private readonly wte: Float64Array;
  private readonly lnfWeight: Float64Array;
  private readonly lnfBias: Float64Array;
  private readonly lmHead: Float64Array;
  private readonly layers: LayerWeights[];
  /** Per layer: keys (for MoLM, also the values: both are the ln_1 output). */
  private readonly keys: RowCache[];
  /** Per layer: values, only for models with a v_proj. */
  private readonly values: RowCache[] | null;
  private tokens = 0;

  constructor(config: ModelConfig, weights: ReferenceWeights) {
    this.config = config;
    const c = config;
    const C = c.nEmbd;
    const A = c.attHidden;
    const G = c.gatingSize;
    const get = (name: string, shape: number[]): Float64Array => {
      const t = weights.get(name);
      const expected = shape.reduce((a, b) => a * b, 1);
      if (!t) throw new ModelFormatError(`The checkpoint has no tensor "${name}" (shape [${shape.join(', ')}]); the config says the model needs it.`);
      if (t.length !== expected) {
        throw new ModelFormatError(`Tensor "${name}" has ${t.length} values; the config implies shape [${shape.join(', ')}] (${expected}).`);
      }
      return t;
    };
    const gate = (prefix: string, experts: number): GateWeights => ({
      w0: get(`${prefix}.gate.w_gate.0.weight`, [G, C]),
      b0: get(`${prefix}.gate.w_gate.0.bias`, [G]),
      w3: get(`${prefix}.gate.w_gate.3.weight`, [experts, G]),
    });

    this.wte = get('transformer.wte.weight', [c.vocabSize, C]);
    this.lnfWeight = get('transformer.ln_f.weight', [C]);
    this.lnfBias = get('transformer.ln_f.bias', [C]);
    this.lmHead = get('lm_head.weight', [c.vocabSize, C]);
    const projections = hasKvProjections(c);
    this.layers = [];
    for (let l = 0; l < c.nLayer; l++) {
      const p = `transformer.h.${l}`;
      this.layers.push({
        ln1Weight: get(`${p}.ln_1.weight`, [C]),
        ln1Bias: get(`${p}.ln_1.bias`, [C]),
        attGate: gate(`${p}.attn.q_proj`, c.nAttExperts),
        query: get(`${p}.attn.q_proj.experts.weight`, [c.nAttExperts, C, A]),
        output: get(`${p}.attn.q_proj.output_experts.weight`, [c.nAttExperts, A, C]),
        kv: projections
          ? {
              wk: get(`${p}.attn.k_proj.weight`, [A, C]),
              bk: get(`${p}.attn.k_proj.bias`, [A]),
              wv: get(`${p}.attn.v_proj.weight`, [A, C]),
              bv: get(`${p}.attn.v_proj.bias`, [A]),
            }
          : null,
        ln2Weight: get(`${p}.ln_2.weight`, [C]),
        ln2Bias: get(`${p}.ln_2.bias`, [C]),
        mlpGate: gate(`${p}.mlpf`, c.nMlpExperts),
        up: get(`${p}.mlpf.experts.weight`, [c.nMlpExperts, C, c.ffdHidden]),
        down: get(`${p}.mlpf.output_experts.weight`, [c.nMlpExperts, c.ffdHidden, C]),
      });
    }
    const width = kvWidth(c);
    this.keys = this.layers.map(() => new RowCache(width));
    this.values = projections ? this.layers.map(() => new RowCache(width)) : null;
  }

  /** Tokens in the KV cache. */
  get length(): number {
    return this.tokens;
  }

  /**
   * Runs new tokens after those already cached (so repeated calls are chunked prefill) and
   * returns their logits, [ids.length, vocab].
   */
  prefill(ids: ArrayLike<number>): Float64Array {
    if (ids.length === 0) throw new UsageError('prefill needs at least one token.');
    return this.forward(ids);
  }

  /** One token after those cached: its logits, [vocab]. */
  decode(id: number): Float64Array {
    return this.forward([id]);
  }

  /** Empties the KV cache to start a new sequence. */
  reset(): void {
    for (const k of this.keys) k.clear();
    for (const v of this.values ?? []) v.clear();
    this.tokens = 0;
    this.lastRouting = undefined;
  }

  private forward(ids: ArrayLike<number>): Float64Array {
    const c = this.config;
    const T = ids.length;
    const C = c.nEmbd;
    const A = c.attHidden;
    const F = c.ffdHidden;
    const H = c.nHead;
    const d = headSize(c);
    const eps = c.layerNormEpsilon;
    const pos0 = this.length;

    // embedding() validates every id before any cache is touched.
    const h = embedding(ids, this.wte, C);
    const routing: LayerRouting[] = [];
    for (let l = 0; l < this.layers.length; l++) {
      const w = this.layers[l];

      const x = layerNorm(h, T, C, w.ln1Weight, w.ln1Bias, eps);
      const att = routerTopK(x, T, C, w.attGate.w0, w.attGate.b0, w.attGate.w3, c.gatingSize, c.nAttExperts, c.kAtt);
      if (w.kv && this.values) {
        this.keys[l].append(linear(x, T, C, A, w.kv.wk, w.kv.bk), T);
        this.values[l].append(linear(x, T, C, A, w.kv.wv, w.kv.bv), T);
      } else {
        this.keys[l].append(x, T); // MoLM: K = V = ln_1 output
      }
      const keys = this.keys[l].view();
      const values = this.values ? this.values[l].view() : keys;
      // [T, k, A] is [T, k, H, d]: each slot's query split into heads, head h against K/V head h.
      const q = expertProject(x, T, c.kAtt, false, C, A, w.query, att.ids, 'none');
      const o = stickBreakingAttention(q, keys, values, T, c.kAtt, H, d, pos0);
      const y = expertProject(o, T, c.kAtt, true, A, C, w.output, att.ids, 'none');
      addInPlace(h, expertCombine(y, att.gates, T, c.kAtt, C));

      const x2 = layerNorm(h, T, C, w.ln2Weight, w.ln2Bias, eps);
      const mlp = routerTopK(x2, T, C, w.mlpGate.w0, w.mlpGate.b0, w.mlpGate.w3, c.gatingSize, c.nMlpExperts, c.kMlp);
      const up = expertProject(x2, T, c.kMlp, false, C, F, w.up, mlp.ids, 'gelu_tanh');
      const down = expertProject(up, T, c.kMlp, true, F, C, w.down, mlp.ids, 'none');
      addInPlace(h, expertCombine(down, mlp.gates, T, c.kMlp, C));

      routing.push({ attention: att, mlp });
    }
    this.tokens += T;
    this.lastRouting = routing;

    const final = layerNorm(h, T, C, this.lnfWeight, this.lnfBias, eps);
    return linear(final, T, C, c.vocabSize, this.lmHead, null);
  }
}

/**
 * Greedy decoding: prefills `prompt` after whatever the model has cached (reset() it first for a
 * fresh sequence), then picks the argmax n times. Returns the n new tokens; the last one is not
 * fed back, as it needs no cache row.
 */
export function greedyGenerate(model: ReferenceModel, prompt: number[], n: number): number[] {
  const V = model.config.vocabSize;
  const out: number[] = [];
  if (n <= 0) return out;
  let logits = model.prefill(prompt);
  for (let i = 0; i < n; i++) {
    const id = argmax(logits.subarray(logits.length - V));
    out.push(id);
    if (i + 1 < n) logits = model.decode(id);
  }
  return out;
}
