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
  /** Under --gpu-memory-budget: expert slots per layer and the cache's hits and misses over both runs. */
  expert_cache?: { attSlots: number; mlpSlots: number; hits: number; misses: number; hitRate: number; loadedBytes: number };
  /** With --kernels: ms per kernel (summed over layers), each dispatch timed alone. */
  prefill_kernel_ms?: Record<string, number>;
  decode_kernel_ms?: Record<string, number>;
}

/** Dispatch times summed by kernel, layers folded together ("mlp_up.3" → "mlp_up"). */
function byKernel(times: { label: string; ms: number }[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const t of times) {
    const k = t.label.replace(/\.\d+$/, '');
    out[k] = Math.round(((out[k] ?? 0) + t.ms) * 10) / 10;
  }
  return out;
}

/**
 * Times a prefill of `promptTokens` ids and the decode of `newTokens` ids after it (greedy). A
 * warm-up run first compiles nothing new (pipelines are made at load) but fills driver caches.
 */
export async function runBench(model: CliModel, o: { promptTokens: number; newTokens: number; kernels?: boolean }): Promise<BenchResult> {
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
  let kernels: Pick<BenchResult, 'prefill_kernel_ms' | 'decode_kernel_ms'> = {};
  if (o.kernels && model.gpu) {
    model.reset();
    const prefill = byKernel(await model.gpu.kernelTimes('prefill', prompt.length));
    const decode = byKernel(await model.gpu.kernelTimes('decode', 1));
    model.reset();
    kernels = { prefill_kernel_ms: prefill, decode_kernel_ms: decode };
  }
  return {
    adapter: model.description,
    prompt_tokens: prompt.length,
    new_tokens: r.count,
    prefill_tokens_per_s: prompt.length / ((r.first - r.t0) / 1000),
    decode_tokens_per_s: r.count > 1 ? (r.count - 1) / decodeSeconds : NaN,
    ttft_ms: r.first - r.t0,
    gpu_bytes: model.gpu?.gpuBytes,
    dispatches_per_token: model.gpu?.dispatchesPerToken,
    ...(model.gpu?.expertCache && { expert_cache: model.gpu.expertCache }),
    ...kernels,
  };
}
