import type { TokenModel } from '../token-model.ts';
import { UsageError } from '../errors.ts';

export interface EvalResult {
  /** Tokens scored (every token of the text). */
  tokens: number;
  window: number;
  windows: number;
  /** Mean negative log-likelihood, nats per token. */
  nll: number;
  perplexity: number;
  /** Scored tokens per second, logits readback and log-softmax included. */
  tokens_per_s: number;
  seconds: number;
}

/**
 * Perplexity of a token stream. The stream is cut into windows of `window` tokens; each window
 * is run from an empty context, preceded by the token before it (end-of-text for the first), so
 * every token is scored given at least one token, as a bigram model scores it. The log-softmax
 * is taken in float64 on the CPU.
 */
export async function evaluatePerplexity(
  model: TokenModel,
  ids: readonly number[],
  o: { window: number; eos: number; onWindow?: (done: number, total: number) => void },
): Promise<EvalResult> {
  if (ids.length === 0) throw new UsageError('The text has no tokens.');
  if (!Number.isInteger(o.window) || o.window < 1 || o.window > model.maxContext) {
    throw new UsageError(`--window must be between 1 and the context (${model.maxContext}), got ${o.window}.`);
  }
  const V = model.config.vocabSize;
  const t0 = performance.now();
  let nll = 0;
  let windows = 0;
  for (let start = 0; start < ids.length; start += o.window) {
    const targets = ids.slice(start, start + o.window);
    const input = [start === 0 ? o.eos : ids[start - 1], ...targets.slice(0, -1)];
    model.reset();
    const logits = await model.prefillLogits(input);
    for (let r = 0; r < targets.length; r++) {
      const row = logits.subarray(r * V, (r + 1) * V);
      let max = -Infinity;
      for (let i = 0; i < V; i++) if (row[i] > max) max = row[i];
      let sum = 0;
      for (let i = 0; i < V; i++) sum += Math.exp(row[i] - max);
      nll += max + Math.log(sum) - row[targets[r]];
    }
    windows++;
    o.onWindow?.(Math.min(start + o.window, ids.length), ids.length);
  }
  model.reset();
  const seconds = (performance.now() - t0) / 1000;
  const mean = nll / ids.length;
  return { tokens: ids.length, window: o.window, windows, nll: mean, perplexity: Math.exp(mean), tokens_per_s: ids.length / seconds, seconds };
}
