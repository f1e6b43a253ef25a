import type { CliModel } from './backend.ts';
import { GREEDY } from '../model/model.ts';

export interface BenchResult {
  adapter: string;
  prompt_tokens: number;
  new_tokens: number;
  prefill_tokens_per_s: number;
  decode_tokens_per_s: number;
  ttft_ms: number;
  gpu_bytes?: number;
  dispatches_per_token?: number;
}

/**
 * Times a prefill of `promptTokens` ids and the decode of `newTokens` ids after it (greedy). A
 * warm-up run first compiles nothing new (pipelines are made at load) but fills driver caches.
 */
export async function runBench(model: CliModel, o: { promptTokens: number; newTokens: number }): Promise<BenchResult> {
  const V = model.config.vocabSize;
  const prompt = Array.from({ length: Math.max(1, o.promptTokens) }, (_, i) => (i * 7919 + 13) % V);
  const run = async () => {
    model.reset();
    const t0 = performance.now();
    let first = 0;
    let last = 0;
    let count = 0;
    for await (const _ of model.generate(prompt, Math.max(1, o.newTokens), GREEDY)) {
      last = performance.now();
      if (count++ === 0) first = last;
    }
    return { t0, first, last, count };
  };
  await run(); // warm-up
  const r = await run();
  const decodeSeconds = (r.last - r.first) / 1000;
  return {
    adapter: model.description,
    prompt_tokens: prompt.length,
    new_tokens: r.count,
    prefill_tokens_per_s: prompt.length / ((r.first - r.t0) / 1000),
    decode_tokens_per_s: r.count > 1 ? (r.count - 1) / decodeSeconds : NaN,
    ttft_ms: r.first - r.t0,
    gpu_bytes: model.gpu?.gpuBytes,
    dispatches_per_token: model.gpu?.dispatchesPerToken,
  };
}
