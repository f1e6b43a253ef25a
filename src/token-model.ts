import type { ModelConfig } from './config.ts';

// The seam between the text engine (src/engine) and the models behind it: the WebGPU model
// (src/model), the WebAssembly engine (src/wasm) and the float64 reference (src/reference) all
// take token ids and give token ids, sampled as SamplingOptions say, with their routing on request.

/** How the next token is drawn from the logits (the same in every backend). */
export interface SamplingOptions {
  /** ≤ 0: greedy (argmax, lowest index on ties). */
  temperature: number;
  /** Keep the topK most probable tokens (ties at the boundary kept too); 0: no limit. */
  topK: number;
  /** Keep the most probable tokens until their mass reaches topP of the top-k mass; ≥ 1: no limit. */
  topP: number;
  /** Seeds the draw; the same seed and position always give the same token. */
  seed: number;
  /** > 1 makes tokens already in the context less likely (CTRL's penalty); 1 (default): off. */
  repetitionPenalty?: number;
}

/** Argmax at every step. */
export const GREEDY: SamplingOptions = { temperature: 0, topK: 0, topP: 1, seed: 0 };

/**
 * The routing of a run of context positions: for each token and layer, the attention and MLP
 * experts its routers chose (slots in descending probability) and their gates (the softmax
 * probabilities the experts' outputs are weighted by). Flat typed arrays, [tokens, layers, k].
 */
export interface RoutingRecord {
  tokens: number;
  layers: number;
  kAtt: number;
  kMlp: number;
  attExperts: Uint32Array;
  attGates: Float32Array;
  mlpExperts: Uint32Array;
  mlpGates: Float32Array;
}

/** A record of `tokens` tokens, all zeros, shaped for this config. */
export function emptyRoutingRecord(c: Pick<ModelConfig, 'nLayer' | 'kAtt' | 'kMlp'>, tokens: number): RoutingRecord {
  const L = c.nLayer;
  return {
    tokens,
    layers: L,
    kAtt: c.kAtt,
    kMlp: c.kMlp,
    attExperts: new Uint32Array(tokens * L * c.kAtt),
    attGates: new Float32Array(tokens * L * c.kAtt),
    mlpExperts: new Uint32Array(tokens * L * c.kMlp),
    mlpGates: new Float32Array(tokens * L * c.kMlp),
  };
}

/**
 * What the text engine needs of a model: token ids in, token ids out, and a context it can keep
 * between calls. GpuModel (WebGPU) and WasmModel have exactly this shape; `referenceTokenModel`
 * (src/reference/token-model.ts) puts the float64 CPU reference behind it (the CLI's `--device cpu`).
 */
export interface TokenModel {
  readonly config: ModelConfig;
  readonly maxContext: number;
  /** The tokens in the context, in order. */
  readonly contextIds: readonly number[];
  /** Keeps the first `length` tokens of the context. */
  truncate(length: number): void;
  reset(): void;
  /** Appends the prompt to the context and yields up to maxNewTokens sampled ids. */
  generate(prompt: readonly number[], maxNewTokens: number, sampling: SamplingOptions): AsyncGenerator<number>;
  /** Appends the ids to the context; logits of every position, [ids.length, vocab]. */
  prefillLogits(ids: readonly number[]): Promise<Float32Array>;
  /** Appends the ids to the context, computing no logits where the model can skip them. */
  prefill?(ids: readonly number[]): Promise<void>;
  /** Under a GPU memory budget: the expert cache's counts so far (null or absent: no budget). */
  readonly expertCache?: { hits: number; misses: number } | null;
  /** Records the routers' choices of every token read from now on (off: no cost). */
  traceRouting?(on: boolean): void;
  /** The routing of context positions [start, end), recorded while tracing was on. */
  readRouting?(start: number, end: number): Promise<RoutingRecord>;
  destroy(): void;
}
