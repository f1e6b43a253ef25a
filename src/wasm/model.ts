import { hasKvProjections, headSize, kvWidth, type ModelConfig } from '../config.ts';
import type { TokenModel } from '../token-model.ts';
import { ComputeThreadError, ContextLengthError, DeviceLimitError, UsageError } from '../errors.ts';
import { ExpertResidency } from '../experts/residency.ts';
import { EXPERT_TENSORS, expertSlots, slotCounts, type ExpertBudget, type SlotCounts } from '../experts/slots.ts';
import type { SamplingOptions } from '../token-model.ts';
import { emptyRoutingRecord, type RoutingRecord } from '../token-model.ts';
import { LM_HEAD, LN_F_BIAS, LN_F_WEIGHT, WTE, layerTensorNames } from '../tensor-names.ts';
import type { WeightPlan } from '../weight-plan.ts';
import { uniformFromSeed } from '../reference/sampler.ts';
import { ACT_GELU_TANH, ACT_NONE, STORAGE_CODE, type KernelExports } from './abi.ts';
import { MemoryLayout, WASM_MEMORY_LIMIT, WasmRuntime, type RuntimeOptions } from './runtime.ts';
import { WasmWeights } from './weights.ts';

export interface WasmModelOptions extends RuntimeOptions {
  /** Tokens the KV cache holds (default: the config's n_ctx, at most 2048). */
  maxContext?: number;
  /** Prompt tokens per prefill step (default 128). */
  prefillChunk?: number;
  /**
   * Keep only this many bytes (or this share, '50%') of expert weights in the wasm memory, the
   * rest in host memory, copied in when a router picks them. By default only a model that would
   * not fit `memoryLimit` streams its experts, with as many slots as fit.
   */
  expertBudget?: ExpertBudget;
  /** The most bytes of wasm memory to use (default 4 GiB, wasm32's limit). */
  memoryLimit?: number;
}

/** Experts kept in slots: one residency per router, and the slot ids the expert kernels read. */
interface ExpertStreaming {
  slots: SlotCounts;
  att: ExpertResidency[];
  mlp: ExpertResidency[];
  loadedBytes: number;
}

const F32 = 4;

/** Every region of one model in the wasm memory, laid out before the memory exists. */
class Regions {
  readonly ids: number;
  readonly h: number;
  readonly x: number;
  readonly x2: number;
  readonly q: number;
  readonly o: number;
  readonly y: number;
  readonly up: number;
  readonly hidden: number;
  readonly routerLogits: number;
  readonly scratch: number;
  readonly tasks: number;
  readonly counts: number;
  readonly partial: number;
  /** Decode's expert projections: the partial sums of their runs of input rows. */
  readonly expertPartial: number;
  readonly logits: number;
  readonly samplerP: number;
  readonly samplerSel: number;
  readonly seen: number;
  readonly streamSums: number;
  /** Under an expert budget: the slot of each pick, [k]. */
  readonly slotIds: number;
  /** Per layer: router ids and gates of the current step ([rows, k]). */
  readonly attIds: number[] = [];
  readonly attGates: number[] = [];
  readonly mlpIds: number[] = [];
  readonly mlpGates: number[] = [];
  /** Per layer: keys, and values (the same region for MoLM, whose K = V = ln_1 output). */
  readonly keys: number[] = [];
  readonly values: number[] = [];

  constructor(c: ModelConfig, layout: MemoryLayout, rows: number, maxContext: number, taskBytes: number, partialFloats: number, weightBytes: number) {
    const C = c.nEmbd,
      A = c.attHidden,
      F = c.ffdHidden,
      V = c.vocabSize;
    const k = Math.max(c.kAtt, c.kMlp);
    const f = (n: number) => layout.take(n * F32);
    this.ids = layout.take(rows * 4);
    this.h = f(rows * C);
    this.x = f(rows * C);
    this.x2 = f(rows * C);
    this.q = f(rows * c.kAtt * A);
    this.o = f(rows * c.kAtt * A);
    this.y = f(rows * k * C);
    this.up = f(rows * c.kMlp * F);
    this.hidden = f(rows * c.gatingSize);
    this.routerLogits = f(rows * Math.max(c.nAttExperts, c.nMlpExperts));
    this.scratch = f(rows * Math.max(C, A, F, c.gatingSize));
    this.tasks = layout.take(rows * k * taskBytes);
    this.counts = layout.take((Math.max(c.nAttExperts, c.nMlpExperts) + 1) * 4);
    this.partial = f(partialFloats);
    this.expertPartial = f(expertPartialFloats(c));
    this.logits = f(rows * V);
    this.samplerP = layout.take(V * 8, 8);
    this.samplerSel = layout.take(V * 8, 8);
    this.seen = layout.take(maxContext * 4);
    this.streamSums = layout.take(Math.ceil(weightBytes / (256 << 10)) * 64);
    this.slotIds = layout.take(k * 4);
    const width = kvWidth(c);
    const kv = hasKvProjections(c);
    for (let l = 0; l < c.nLayer; l++) {
      this.attIds.push(layout.take(rows * c.kAtt * 4));
      this.attGates.push(f(rows * c.kAtt));
      this.mlpIds.push(layout.take(rows * c.kMlp * 4));
      this.mlpGates.push(f(rows * c.kMlp));
      const keys = f(maxContext * width);
      this.keys.push(keys);
      this.values.push(kv ? f(maxContext * width) : keys);
    }
  }
}

/** expert_partial_floats (src/wasm/kernels/expert.c) for this model: k × input runs of 128 × widest output. */
function expertPartialFloats(c: ModelConfig): number {
  const widest = Math.max(c.nEmbd, c.attHidden, c.ffdHidden);
  return Math.max(c.kAtt, c.kMlp) * Math.ceil(widest / 128) * widest;
}

/** One layer's weights as the kernels take them: addresses and storage codes, planned at load. */
interface LayerPlan {
  ln1: [number, number];
  ln2: [number, number];
  /** Router: w0, its storage, b0, w3, its storage. */
  attGate: [number, number, number, number, number];
  mlpGate: [number, number, number, number, number];
  query: [number, number];
  output: [number, number];
  up: [number, number];
  down: [number, number];
  /** k / v projections: weight, storage, bias (models that have them). */
  k: [number, number, number] | null;
  v: [number, number, number] | null;
  /** Slotted expert tensors (experts streamed), for ExpertResidency's copies. */
  attTensors: [string, string];
  mlpTensors: [string, string];
}

function planLayers(c: ModelConfig, w: WasmWeights): LayerPlan[] {
  const at = (name: string): [number, number] => [w.at(name), STORAGE_CODE[w.storage(name)]];
  const gate = (w0: string, b0: string, w3: string): [number, number, number, number, number] => [...at(w0), w.at(b0), ...at(w3)];
  return Array.from({ length: c.nLayer }, (_, l) => {
    const n = layerTensorNames(l);
    return {
      ln1: [w.at(n.ln1Weight), w.at(n.ln1Bias)],
      ln2: [w.at(n.ln2Weight), w.at(n.ln2Bias)],
      attGate: gate(n.attGate0Weight, n.attGate0Bias, n.attGate3Weight),
      mlpGate: gate(n.mlpGate0Weight, n.mlpGate0Bias, n.mlpGate3Weight),
      query: at(n.queryExperts),
      output: at(n.outputExperts),
      up: at(n.upExperts),
      down: at(n.downExperts),
      k: hasKvProjections(c) ? [...at(n.kWeight), w.at(n.kBias)] : null,
      v: hasKvProjections(c) ? [...at(n.vWeight), w.at(n.vBias)] : null,
      attTensors: [n.queryExperts, n.outputExperts],
      mlpTensors: [n.upExperts, n.downExperts],
    };
  });
}

/** Which rows of a step get logits. */
type Head = 'none' | 'last' | 'all';

/**
 * A MoLM model on the CPU through the wasm kernels: the same forward pass as the GPU path
 * (src/model/forward.ts), kernel by kernel, over one memory laid out at load time. A step
 * allocates nothing: it writes the ids, calls the kernels, and reads the sampled id.
 */
export class WasmModel implements TokenModel {
  private ids: number[] = [];
  private tracing = false;
  private trace: RoutingRecord | null = null;
  private k: KernelExports;
  private readonly eps: number;
  private readonly layers: LayerPlan[];
  /** Views of the memory (it never grows, so they stay valid). */
  private readonly heapF32: Float32Array;
  private readonly heapI32: Int32Array;

  private constructor(
    readonly config: ModelConfig,
    readonly runtime: WasmRuntime,
    readonly weights: WasmWeights,
    private readonly r: Regions,
    readonly maxContext: number,
    readonly rows: number,
    private readonly streaming: ExpertStreaming | null,
  ) {
    this.k = runtime.kernels;
    this.eps = config.layerNormEpsilon;
    this.layers = planLayers(config, weights);
    this.heapF32 = new Float32Array(runtime.memory.buffer);
    this.heapI32 = new Int32Array(runtime.memory.buffer);
  }

  /**
   * Lays out the memory for this model, creates it (DeviceLimitError when it cannot be had) and
   * starts the threads. The weights are empty: write them through `weights` (WasmWeights.upload
   * for a checkpoint, writePiece for shards) before the first step.
   */
  static async create(config: ModelConfig, plan: WeightPlan, options: WasmModelOptions): Promise<WasmModel> {
    const maxContext = options.maxContext ?? Math.min(config.nCtx ?? 2048, 2048);
    const chunk = Math.min(options.prefillChunk ?? 128, maxContext);
    if (!Number.isInteger(maxContext) || maxContext < 1) throw new UsageError(`maxContext must be a positive integer, got ${maxContext}`);
    if (!Number.isInteger(chunk) || chunk < 1) throw new UsageError(`prefillChunk must be a positive integer, got ${chunk}`);
    const limit = options.memoryLimit ?? WASM_MEMORY_LIMIT;
    // Fixed-size arrays in the kernels: router.c's probabilities, attention.c's slots.
    if (Math.max(config.nAttExperts, config.nMlpExperts) > 256 || config.kAtt > 8) {
      throw new UsageError(
        `The wasm engine runs models with at most 256 experts per router and k_att ≤ 8; this one has ${Math.max(config.nAttExperts, config.nMlpExperts)} and ${config.kAtt}. Use backend 'webgpu'.`,
      );
    }
    // Sizes the kernels report need an instance; these two are fixed by the C sources.
    const taskBytes = 4 * (2 + 2 * 4);
    const seg = 64;
    const partialFloats = Math.ceil(maxContext / seg) * config.nHead * Math.max(config.kAtt, 1) * (headSize(config) + 1);
    const lay = (slots: SlotCounts | null) => {
      const layout = new MemoryLayout();
      const weights = new WasmWeights(plan, layout, slots ? expertSlots(config, slots) : undefined);
      // Under a budget every step is one token: a chunk of rows would need more experts at once than the slots hold.
      const rows = slots ? 1 : chunk;
      const regions = new Regions(config, layout, rows, maxContext, taskBytes, partialFloats, plan.totalBytes);
      return { layout, weights, regions, rows };
    };
    let slots = options.expertBudget ? slotCounts(config, plan, options.expertBudget.bytes) : null;
    let laid = lay(slots);
    const { extraBytes } = await WasmRuntime.threadsFor(options);
    if (!slots && laid.layout.bytes + extraBytes > limit) {
      // Too big: as many expert slots as fit under the limit, the rest streamed from host memory.
      const least = lay({ att: config.kAtt, mlp: config.kMlp, expertBytes: 0, slotBytes: 0 });
      const room = limit - least.layout.bytes - extraBytes;
      if (room < 0) {
        const mib = (b: number) => (b / 2 ** 20).toFixed(0);
        throw new DeviceLimitError(
          `This model (${mib(plan.totalBytes)} MiB of weights, a ${maxContext}-token context) needs ${mib(least.layout.bytes)} MiB of WebAssembly memory even with its experts streamed, past the ${mib(limit)} MiB limit: use a shorter maxContext, a more compressed model (q4), or WebGPU.`,
        );
      }
      // (One-row steps alone may make room for every expert: then all stay, in as many slots.)
      slots = slotCounts(config, plan, minimumSlotBytes(config, plan) + room) ?? {
        att: config.nAttExperts,
        mlp: config.nMlpExperts,
        expertBytes: 0,
        slotBytes: 0,
      };
      laid = lay(slots);
    }
    const what = `This model (${(plan.totalBytes / 2 ** 20).toFixed(0)} MiB of weights, a ${maxContext}-token context)`;
    const runtime = await WasmRuntime.create(laid.layout, what, { ...options, memoryLimit: limit });
    try {
      const k = runtime.kernels;
      const widest = Math.max(config.nEmbd, config.attHidden, config.ffdHidden);
      if (
        k.expert_task_bytes() !== taskBytes ||
        k.stickbreaking_partial_floats(maxContext, config.kAtt, config.nHead, headSize(config)) !== partialFloats ||
        k.expert_partial_floats(Math.max(config.kAtt, config.kMlp), widest, widest) !== expertPartialFloats(config)
      ) {
        throw new Error('wasm kernels: src/wasm/model.ts sizes its scratch differently from the kernels');
      }
      laid.weights.attach(runtime);
      const policy = options.expertBudget?.policy ?? 'lfu';
      const streaming = slots && {
        slots,
        att: Array.from({ length: config.nLayer }, () => new ExpertResidency(config.nAttExperts, slots!.att, policy)),
        mlp: Array.from({ length: config.nLayer }, () => new ExpertResidency(config.nMlpExperts, slots!.mlp, policy)),
        loadedBytes: 0,
      };
      return new WasmModel(config, runtime, laid.weights, laid.regions, maxContext, laid.rows, streaming);
    } catch (e) {
      runtime.destroy();
      throw e;
    }
  }

  /** Under an expert budget: the slots per layer and the cache's counts so far; else null. */
  get expertCache(): { hits: number; misses: number; hitRate: number; loadedBytes: number; attSlots: number; mlpSlots: number } | null {
    const s = this.streaming;
    if (!s) return null;
    let hits = 0;
    let misses = 0;
    for (const r of [...s.att, ...s.mlp]) {
      hits += r.hits;
      misses += r.misses;
    }
    return { hits, misses, hitRate: hits / Math.max(1, hits + misses), loadedBytes: s.loadedBytes, attSlots: s.slots.att, mlpSlots: s.slots.mlp };
  }

  /**
   * Under an expert budget: makes the k experts a router picked resident (copying the missing
   * ones into slots) and writes their slot ids; the pointer the expert kernels read ids from.
   */
  private resident(kind: 'att' | 'mlp', layer: number, ids: number, k: number): number {
    const s = this.streaming;
    if (!s) return ids;
    const picks = this.heapI32.subarray(ids / 4, ids / 4 + k);
    const residency = s[kind][layer];
    const plan = this.layers[layer];
    const tensors = kind === 'att' ? plan.attTensors : plan.mlpTensors;
    for (const load of residency.admit(picks)) {
      for (const t of tensors) s.loadedBytes += this.weights.loadExpert(t, load.expert, load.slot);
    }
    for (let i = 0; i < k; i++) this.heapI32[this.r.slotIds / 4 + i] = residency.slotOf(picks[i]);
    return this.r.slotIds;
  }

  get contextIds(): readonly number[] {
    return this.ids;
  }

  get threads(): number {
    return this.runtime.threads;
  }

  /** What runs the model, for people: "WebAssembly SIMD, 2 threads". */
  get description(): string {
    const t = this.runtime.threads;
    return `WebAssembly SIMD, ${t} thread${t === 1 ? '' : 's'}${this.runtime.threadsOff && t === 1 ? ` (${this.runtime.threadsOff})` : ''}`;
  }

  /** Bytes of the wasm memory: weights, caches, activations and scratch. */
  get memoryBytes(): number {
    return this.runtime.memory.buffer.byteLength;
  }

  /** Bytes per second of a plain read of all the weights on every thread: the best a decode step could stream. */
  readBandwidth(): number {
    // The weights are laid out first and back to back (their slots only, when experts stream).
    const first = Math.min(...this.weights.plan.entries.map((e) => this.weights.at(e.name)));
    const bytes = this.weights.memoryBytes;
    let best = Infinity;
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      this.k.stream_read(first, bytes, this.r.streamSums);
      best = Math.min(best, performance.now() - t0);
    }
    return bytes / (best / 1000);
  }

  /**
   * Wall time of every kernel call of one step (each call timed around itself; labelled by
   * kernel and matrix shape) and the number of calls: `ids` run after the current context,
   * which they extend. For benchmarks.
   */
  async kernelTimes(ids: readonly number[]): Promise<{ calls: number; ms: Record<string, number> }> {
    this.checkIds(ids);
    this.checkRoom(ids.length);
    const real = this.k;
    const ms: Record<string, number> = {};
    let calls = 0;
    const timed = {} as Record<string, unknown>;
    for (const [name, f] of Object.entries(real)) {
      if (typeof f !== 'function') {
        timed[name] = f;
        continue;
      }
      timed[name] = (...a: number[]) => {
        const t0 = performance.now();
        const out = (f as (...x: number[]) => number)(...a);
        const label = name === 'expert_project' ? `expert ${a[5]}x${a[6]}` : name === 'linear' ? `linear ${a[3]}x${a[4]}` : name;
        ms[label] = (ms[label] ?? 0) + performance.now() - t0;
        calls++;
        return out;
      };
    }
    this.k = timed as unknown as KernelExports;
    try {
      this.run(ids, 'last');
    } finally {
      this.k = real;
    }
    for (const key of Object.keys(ms)) ms[key] = Math.round(ms[key] * 100) / 100;
    return { calls, ms };
  }

  truncate(length: number): void {
    this.ids.length = Math.max(0, Math.min(length, this.ids.length));
  }

  reset(): void {
    this.ids.length = 0;
  }

  traceRouting(on: boolean): void {
    this.tracing = on;
    if (on && !this.trace) this.trace = emptyRoutingRecord(this.config, this.maxContext);
  }

  async readRouting(start: number, end: number): Promise<RoutingRecord> {
    const c = this.config;
    const from = Math.max(0, start);
    const T = Math.max(0, Math.min(end, this.ids.length) - from);
    const out = emptyRoutingRecord(c, T);
    if (!this.trace) return out;
    const L = c.nLayer;
    out.attExperts.set(this.trace.attExperts.subarray(from * L * c.kAtt, (from + T) * L * c.kAtt));
    out.attGates.set(this.trace.attGates.subarray(from * L * c.kAtt, (from + T) * L * c.kAtt));
    out.mlpExperts.set(this.trace.mlpExperts.subarray(from * L * c.kMlp, (from + T) * L * c.kMlp));
    out.mlpGates.set(this.trace.mlpGates.subarray(from * L * c.kMlp, (from + T) * L * c.kMlp));
    return out;
  }

  private checkIds(ids: readonly number[]): void {
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.config.vocabSize) {
        throw new UsageError(`Token id ${id} is outside the vocabulary [0, ${this.config.vocabSize}).`);
      }
    }
  }

  private checkRoom(tokens: number): void {
    if (this.ids.length + tokens > this.maxContext) {
      throw new ContextLengthError(
        `${this.ids.length + tokens} tokens do not fit the context of ${this.maxContext} tokens (${this.ids.length} already in it). Shorten the prompt, lower maxNewTokens, or create the engine with a larger maxContext.`,
      );
    }
  }

  private checkThreads(): void {
    const failed = this.runtime.failed;
    if (failed) throw new ComputeThreadError(`A compute thread of the CPU engine stopped (${failed}); the engine cannot continue. Create a new engine.`);
  }

  /**
   * One step: `ids` after the context (at most `rows` of them) through every layer, their keys
   * and values appended to the cache; logits of the last row, of every row, or none.
   */
  private step(ids: readonly number[], head: Head): void {
    this.checkThreads();
    const c = this.config,
      k = this.k,
      r = this.r,
      w = this.weights;
    const T = ids.length;
    const pos0 = this.ids.length;
    const C = c.nEmbd,
      A = c.attHidden,
      F = c.ffdHidden,
      G = c.gatingSize;
    for (let i = 0; i < T; i++) this.heapI32[r.ids / 4 + i] = ids[i];
    k.embedding(r.h, w.at(WTE), STORAGE_CODE[w.storage(WTE)], c.vocabSize, C, r.ids, T);
    const width = kvWidth(c);
    const Ea = this.streaming ? this.streaming.slots.att : c.nAttExperts;
    const Em = this.streaming ? this.streaming.slots.mlp : c.nMlpExperts;
    for (let l = 0; l < c.nLayer; l++) {
      const p = this.layers[l];
      k.layer_norm(r.x, r.h, T, C, p.ln1[0], p.ln1[1], this.eps);
      const [g0, s0, b0, g3, s3] = p.attGate;
      k.router(r.attIds[l], r.attGates[l], r.x, T, C, g0, s0, b0, g3, s3, G, c.nAttExperts, c.kAtt, r.hidden, r.routerLogits, r.scratch);
      const keysAt = r.keys[l] + pos0 * width * F32;
      if (p.k && p.v) {
        k.linear(keysAt, r.x, T, C, A, p.k[0], p.k[1], p.k[2], r.scratch);
        k.linear(r.values[l] + pos0 * width * F32, r.x, T, C, A, p.v[0], p.v[1], p.v[2], r.scratch);
      } else {
        this.heapF32.copyWithin(keysAt / F32, r.x / F32, r.x / F32 + T * C); // MoLM: K = V = ln_1 output
      }
      const attIds = this.resident('att', l, r.attIds[l], c.kAtt);
      k.expert_project(r.q, r.x, T, c.kAtt, 0, C, A, p.query[0], p.query[1], Ea, attIds, ACT_NONE, r.tasks, r.counts, r.expertPartial);
      k.stickbreaking(r.o, r.q, r.keys[l], r.values[l], T, c.kAtt, c.nHead, headSize(c), pos0, width, r.partial);
      k.expert_project(r.y, r.o, T, c.kAtt, 1, A, C, p.output[0], p.output[1], Ea, attIds, ACT_NONE, r.tasks, r.counts, r.expertPartial);
      k.expert_combine(r.h, r.y, r.attGates[l], T, c.kAtt, C);

      k.layer_norm(r.x2, r.h, T, C, p.ln2[0], p.ln2[1], this.eps);
      const [m0, t0, mb0, m3, t3] = p.mlpGate;
      k.router(r.mlpIds[l], r.mlpGates[l], r.x2, T, C, m0, t0, mb0, m3, t3, G, c.nMlpExperts, c.kMlp, r.hidden, r.routerLogits, r.scratch);
      const mlpIds = this.resident('mlp', l, r.mlpIds[l], c.kMlp);
      k.expert_project(r.up, r.x2, T, c.kMlp, 0, C, F, p.up[0], p.up[1], Em, mlpIds, ACT_GELU_TANH, r.tasks, r.counts, r.expertPartial);
      k.expert_project(r.y, r.up, T, c.kMlp, 1, F, C, p.down[0], p.down[1], Em, mlpIds, ACT_NONE, r.tasks, r.counts, r.expertPartial);
      k.expert_combine(r.h, r.y, r.mlpGates[l], T, c.kMlp, C);
      if (this.tracing) this.record(l, pos0, T);
    }
    if (head !== 'none') {
      const first = head === 'last' ? T - 1 : 0;
      const rows = T - first;
      k.layer_norm(r.x, r.h + first * C * F32, rows, C, w.at(LN_F_WEIGHT), w.at(LN_F_BIAS), this.eps);
      k.linear(r.logits, r.x, rows, C, c.vocabSize, w.at(LM_HEAD), STORAGE_CODE[w.storage(LM_HEAD)], 0, r.scratch);
    }
    this.checkThreads();
    for (let i = 0; i < T; i++) this.ids.push(ids[i]);
  }

  private record(layer: number, pos0: number, T: number): void {
    const c = this.config,
      t = this.trace!,
      buf = this.runtime.memory.buffer,
      L = c.nLayer;
    const ai = new Int32Array(buf, this.r.attIds[layer], T * c.kAtt),
      ag = new Float32Array(buf, this.r.attGates[layer], T * c.kAtt);
    const mi = new Int32Array(buf, this.r.mlpIds[layer], T * c.kMlp),
      mg = new Float32Array(buf, this.r.mlpGates[layer], T * c.kMlp);
    for (let i = 0; i < T; i++) {
      const p = pos0 + i;
      t.attExperts.set(ai.subarray(i * c.kAtt, (i + 1) * c.kAtt), (p * L + layer) * c.kAtt);
      t.attGates.set(ag.subarray(i * c.kAtt, (i + 1) * c.kAtt), (p * L + layer) * c.kAtt);
      t.mlpExperts.set(mi.subarray(i * c.kMlp, (i + 1) * c.kMlp), (p * L + layer) * c.kMlp);
      t.mlpGates.set(mg.subarray(i * c.kMlp, (i + 1) * c.kMlp), (p * L + layer) * c.kMlp);
    }
  }

  /** Runs `ids` in chunks of `rows`; the last chunk gets `lastHead`, the others none unless `every`. */
  private run(ids: readonly number[], lastHead: Head, out?: Float32Array): void {
    const V = this.config.vocabSize;
    for (let start = 0; start < ids.length; start += this.rows) {
      const chunk = ids.slice(start, start + this.rows);
      const isLast = start + this.rows >= ids.length;
      this.step(chunk, out ? 'all' : isLast ? lastHead : 'none');
      if (out) out.set(new Float32Array(this.runtime.memory.buffer, this.r.logits, chunk.length * V), start * V);
    }
  }

  async prefillLogits(ids: readonly number[]): Promise<Float32Array> {
    this.checkIds(ids);
    this.checkRoom(ids.length);
    const out = new Float32Array(ids.length * this.config.vocabSize);
    this.run(ids, 'all', out);
    return out;
  }

  async prefill(ids: readonly number[]): Promise<void> {
    this.checkIds(ids);
    this.checkRoom(ids.length);
    this.run(ids, 'none');
  }

  /** Feeds one token; its logits, [vocab]. */
  async decodeLogits(id: number): Promise<Float32Array> {
    this.checkIds([id]);
    this.checkRoom(1);
    this.step([id], 'last');
    return new Float32Array(this.runtime.memory.buffer, this.r.logits, this.config.vocabSize).slice();
  }

  /** Draws the next id from the last step's logits, by src/reference/sampler.ts's definition. */
  private sample(s: SamplingOptions, penalised: number): number {
    const V = this.config.vocabSize,
      k = this.k,
      r = this.r;
    const penalty = s.repetitionPenalty ?? 1;
    if (penalty !== 1 && penalised > 0) k.apply_penalty(r.logits, r.seen, penalised, penalty);
    if (!(s.temperature > 0)) return k.argmax(r.logits, V);
    return k.sample(r.logits, V, s.temperature, s.topK, s.topP, uniformFromSeed(s.seed, this.ids.length), r.samplerP, r.samplerSel);
  }

  async *generate(prompt: readonly number[], maxNewTokens: number, sampling: SamplingOptions): AsyncGenerator<number> {
    if (prompt.length === 0) throw new UsageError('The prompt is empty: give at least one token.');
    this.checkIds(prompt);
    this.checkRoom(prompt.length + Math.max(0, maxNewTokens - 1));
    if (maxNewTokens <= 0) return;
    const penalty = sampling.repetitionPenalty ?? 1;
    if (!(penalty > 0) || !Number.isFinite(penalty)) throw new UsageError(`repetitionPenalty must be a positive number, got ${penalty}`);
    // The tokens the penalty applies to (each once), kept in the memory for apply_penalty.
    const seen = new Set<number>();
    const see = (id: number) => {
      if (penalty === 1 || seen.has(id)) return;
      this.heapI32[this.r.seen / 4 + seen.size] = id;
      seen.add(id);
    };
    for (const id of this.ids) see(id);
    for (const id of prompt) see(id);
    this.run(prompt, 'last');
    for (let i = 0; i < maxNewTokens; i++) {
      const id = this.sample(sampling, seen.size);
      // The token goes out before the step that feeds it back runs: the step blocks this
      // thread, and a caller timing tokens as they arrive must see each step's real cost (two
      // tokens would otherwise arrive together, the second step already paid for the first).
      yield id;
      if (i + 1 < maxNewTokens) {
        see(id);
        this.step([id], 'last');
      }
      // Let the thread's other work (an abort, a message) run between tokens.
      await yieldToEventLoop();
    }
  }

  destroy(): void {
    this.runtime.destroy();
  }
}

/** Bytes of the k experts of each kind every layer needs at least. */
function minimumSlotBytes(c: ModelConfig, plan: WeightPlan): number {
  const bytes = new Map(plan.entries.map((e) => [e.name, e.bytes]));
  let n = 0;
  for (let l = 0; l < c.nLayer; l++) {
    for (const t of EXPERT_TENSORS.att(l)) n += (bytes.get(t)! / c.nAttExperts) * c.kAtt;
    for (const t of EXPERT_TENSORS.mlp(l)) n += (bytes.get(t)! / c.nMlpExperts) * c.kMlp;
  }
  return n;
}

/** One channel for every yield: a decoded token allocates no new one. */
let channel: { port: MessagePort; waiting: (() => void)[] } | undefined;

/** A macrotask turn without timer clamping. */
function yieldToEventLoop(): Promise<void> {
  if (typeof setImmediate === 'function') return new Promise((resolve) => setImmediate(resolve));
  if (typeof MessageChannel === 'function') {
    if (!channel) {
      const ch = new MessageChannel();
      const waiting: (() => void)[] = [];
      ch.port1.onmessage = () => waiting.shift()?.();
      channel = { port: ch.port2, waiting };
    }
    const c = channel;
    return new Promise((resolve) => {
      c.waiting.push(resolve);
      c.port.postMessage(null);
    });
  }
  return new Promise((resolve) => setTimeout(resolve, 0));
}
