import type { ModelConfig } from '../config.ts';
import { ContextLengthError, UsageError } from '../errors.ts';
import type { SamplingOptions } from '../kernels/sampler.ts';
import type { ReferenceModel } from '../reference/model.ts';
import { applyRepetitionPenalty, sample, uniformFromSeed } from '../reference/sampler.ts';

/**
 * What the text engine needs of a model: token ids in, token ids out, and a context it can keep
 * between calls. GpuModel (WebGPU) has exactly this shape; `referenceTokenModel` puts the
 * float64 CPU reference behind it (the CLI's `--device cpu`).
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
  destroy(): void;
}

/** The CPU reference as a TokenModel (it recomputes the whole context on truncate). */
export function referenceTokenModel(ref: ReferenceModel, maxContext: number): TokenModel {
  const V = ref.config.vocabSize;
  let ids: number[] = [];
  const room = (n: number) => {
    if (ids.length + n > maxContext) {
      throw new ContextLengthError(`${ids.length + n} tokens do not fit the context of ${maxContext} tokens.`);
    }
  };
  return {
    config: ref.config,
    maxContext,
    get contextIds() {
      return ids;
    },
    truncate(length) {
      const keep = ids.slice(0, Math.max(0, length));
      ref.reset();
      ids = [];
      if (keep.length) {
        ref.prefill(keep);
        ids = keep;
      }
    },
    reset() {
      ref.reset();
      ids = [];
    },
    async prefillLogits(prompt) {
      room(prompt.length);
      const out = Float32Array.from(ref.prefill([...prompt]));
      ids.push(...prompt);
      return out;
    },
    async *generate(prompt, n, s) {
      if (prompt.length === 0) throw new UsageError('The prompt is empty: give at least one token.');
      room(prompt.length + Math.max(0, n - 1));
      if (n <= 0) return;
      const penalty = s.repetitionPenalty ?? 1;
      let logits = ref.prefill([...prompt]);
      ids.push(...prompt);
      for (let i = 0; i < n; i++) {
        const last = applyRepetitionPenalty(logits.subarray(logits.length - V), ids, penalty);
        const id = sample(last, s, uniformFromSeed(s.seed, ref.length));
        if (i + 1 < n) {
          logits = ref.decode(id);
          ids.push(id);
        }
        yield id;
      }
    },
    destroy() {},
  };
}
