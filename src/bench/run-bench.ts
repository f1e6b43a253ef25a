import type { TokenModel } from '../token-model.ts';
import { measureCopyBandwidth } from '../kernels/copy.ts';
import type { GpuModel } from '../model/model.ts';
import { GREEDY } from '../token-model.ts';
import { decodeReadBytes } from '../model/roofline.ts';
import type { WasmModel } from '../wasm/model.ts';

// The benchmark behind `molm bench` (Node, Dawn) and the benchmark page (demo/bench.html): the
// same measurements on whichever adapter runs it.

/** What a benchmark drives: a token model, a name for its adapter, and the GPU model if it has one. */
export interface BenchModel extends Pick<TokenModel, 'config' | 'reset' | 'generate'> {
  readonly description: string;
  readonly gpu?: GpuModel;
  readonly wasm?: WasmModel;
}

/** A GPU model as a BenchModel. */
export const benchModelOf = (gpu: GpuModel): BenchModel => ({
  config: gpu.config,
  description: gpu.ctx.description,
  gpu,
  reset: () => gpu.reset(),
  generate: (p, n, s) => gpu.generate(p, n, s),
});

export interface BenchResult {
  adapter: string;
  /** Which engine ran: WebGPU kernels, the WebAssembly CPU engine, or the float64 reference. */
  backend: 'webgpu' | 'wasm' | 'cpu';
  /** wasm only: compute threads, and SIMD (always on: the engine needs it). */
  threads?: number;
  simd?: boolean;
  /** wasm only: bytes of the engine's memory (weights, KV cache, activations). */
  memory_bytes?: number;
  prompt_tokens: number;
  new_tokens: number;
  prefill_tokens_per_s: number;
  decode_tokens_per_s: number;
  ttft_ms: number;
  /** Tokens in the context when decoding starts (the prompt). */
  context: number;
  gpu_bytes?: number;
  /**
   * What a decoded token must read (active weights + KV cache), the bandwidth of a plain memory
   * pass measured in the same run (GPU: a copy kernel; wasm: a parallel read of the weights on
   * every thread), and their ratio.
   */
  decode_bytes_per_token?: number;
  copy_bandwidth_bytes_per_s?: number;
  roofline_ratio?: number;
  /** GPU: dispatches recorded per decoded token; wasm: kernel calls per decoded token. */
  dispatches_per_token?: number;
  /** GPU only: the kernel shapes that ran ('cpu' on CPU adapters), and the optional features they used. */
  kernels?: { profile: 'gpu' | 'cpu'; subgroups: boolean; shader_f16: boolean };
  /** Under --gpu-memory-budget: expert slots per layer and the cache's hits and misses over both runs. */
  expert_cache?: { attSlots: number; mlpSlots: number; hits: number; misses: number; hitRate: number; loadedBytes: number };
  /** With --kernels: ms per kernel (summed over layers), each dispatch timed alone; decode at `context`. */
  prefill_kernel_ms?: Record<string, number>;
  decode_kernel_ms?: Record<string, number>;
  /** How the kernels were timed: GPU timestamp queries, or the wall clock (adapters without them). */
  kernel_timing?: 'timestamp' | 'wall';
}

/** Dispatch times summed by kernel, layers folded together ("mlp_up.3" → "mlp_up", "attention.3.split" → "attention.split"). */
function byKernel(times: { label: string; ms: number }[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const t of times) {
    const k = t.label.replace(/\.\d+(?=\.|$)/g, '');
    out[k] = Math.round(((out[k] ?? 0) + t.ms) * 10) / 10;
  }
  return out;
}

/**
 * Times a prefill of `promptTokens` ids and the decode of `newTokens` ids after it (greedy). A
 * warm-up run first compiles nothing new (pipelines are made at load) but fills driver caches.
 */
export async function runBench(model: BenchModel, o: { promptTokens: number; newTokens: number; kernels?: boolean }): Promise<BenchResult> {
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
  let kernels: Pick<BenchResult, 'prefill_kernel_ms' | 'decode_kernel_ms' | 'kernel_timing'> = {};
  if (o.kernels && model.gpu) {
    model.reset();
    const prefillTimes = await model.gpu.kernelTimes('prefill', prompt.length);
    // Decode kernels at the benchmark's context: attention's cost grows with it.
    model.reset();
    await model.gpu.prefill(prompt);
    const decode = byKernel(await model.gpu.kernelTimes('decode', 1));
    model.reset();
    kernels = { prefill_kernel_ms: byKernel(prefillTimes), decode_kernel_ms: decode, kernel_timing: prefillTimes[0]?.source };
  }
  let wasmCalls: number | undefined;
  if (model.wasm) {
    // Kernel calls per decoded token (the wasm twin of dispatches per token), and with
    // --kernels each kernel's wall time around its call.
    const w = model.wasm;
    w.reset();
    const prefill = await w.kernelTimes(prompt);
    const decode = await w.kernelTimes([prompt[0]]);
    w.reset();
    wasmCalls = decode.calls;
    if (o.kernels) kernels = { prefill_kernel_ms: prefill.ms, decode_kernel_ms: decode.ms, kernel_timing: 'wall' };
  }
  const decodeTokensPerS = r.count > 1 ? (r.count - 1) / decodeSeconds : NaN;
  let roofline: Pick<BenchResult, 'decode_bytes_per_token' | 'copy_bandwidth_bytes_per_s' | 'roofline_ratio'> = {};
  const plan = model.gpu?.weights.plan ?? model.wasm?.weights.plan;
  if (plan) {
    // The mean context over the decoded tokens: the KV cache grows by one row per token.
    const bytes = decodeReadBytes(model.config, plan, prompt.length + (r.count - 1) / 2);
    const copy = model.gpu ? await measureCopyBandwidth(model.gpu.ctx) : model.wasm!.readBandwidth();
    roofline = { decode_bytes_per_token: Math.round(bytes), copy_bandwidth_bytes_per_s: Math.round(copy), roofline_ratio: (bytes * decodeTokensPerS) / copy };
  }
  return {
    adapter: model.description,
    backend: model.gpu ? 'webgpu' : model.wasm ? 'wasm' : 'cpu',
    ...(model.wasm && { threads: model.wasm.threads, simd: true, memory_bytes: model.wasm.memoryBytes }),
    prompt_tokens: prompt.length,
    new_tokens: r.count,
    prefill_tokens_per_s: prompt.length / ((r.first - r.t0) / 1000),
    decode_tokens_per_s: decodeTokensPerS,
    ttft_ms: r.first - r.t0,
    context: prompt.length,
    ...roofline,
    gpu_bytes: model.gpu?.gpuBytes,
    dispatches_per_token: model.gpu?.dispatchesPerToken ?? wasmCalls,
    ...(model.gpu && { kernels: kernelPaths(model.gpu) }),
    ...((model.gpu?.expertCache ?? model.wasm?.expertCache) && { expert_cache: (model.gpu?.expertCache ?? model.wasm?.expertCache)! }),
    ...kernels,
  };
}

function kernelPaths(gpu: GpuModel): NonNullable<BenchResult['kernels']> {
  const ctx = gpu.ctx;
  return {
    profile: ctx.kernelProfile,
    subgroups: ctx.subgroupReductions,
    // Native f16 reads apply to f16 weights only, and not to variants that fell back.
    shader_f16: ctx.useShaderF16 && ctx.hasShaderF16 && ctx.pipelines.f16Fallbacks.length === 0 && gpu.weights.plan.entries.some((e) => e.storage === 'f16'),
  };
}
