import { hasKvProjections, type ModelConfig } from '../config.ts';
import type { TensorSource } from '../checkpoint/types.ts';
import { ContextLengthError, UsageError } from '../errors.ts';
import type { DeviceRequirements, GpuContext } from '../gpu/context.ts';
import { timePasses } from '../gpu/profiler.ts';
import { mapRead, submit, withMappedRange } from '../gpu/queue.ts';
import type { StorageType } from '../storage-types.ts';
import { encodeDispatches, type Dispatch } from '../kernels/dispatch.ts';
import { SamplerParams } from '../kernels/sampler.ts';
import { GREEDY, type SamplingOptions } from '../token-model.ts';
import { StepUniform } from '../kernels/step.ts';
import { Activations } from './activations.ts';
import { planStep, prefillGrouping, prefillGroups, type ForwardResources, type StepHead } from './forward.ts';
import { KvCache } from './kv-cache.ts';
import { ExpertStreamer, expertSlots, slotCounts, type ExpertBudget, type ExpertCacheStats, type SlotCounts } from './expert-streamer.ts';
import type { EvictionPolicy } from '../experts/residency.ts';
import { RoutingRecorder } from './routing-trace.ts';
import type { RoutingRecord } from '../token-model.ts';
import { GpuWeights } from './weights.ts';
import { planWeights, type WeightPlan, type WeightProgress } from '../weight-plan.ts';

export interface GpuModelOptions {
  /** Tokens the KV cache holds (prompt and generated); default the config's n_ctx, at most 2048. */
  maxContext?: number;
  /** Prompt tokens per prefill step; longer prompts run in several steps. */
  prefillChunk?: number;
  /** Force a storage type for matrices (default: the checkpoint's own, or f32 when mixed). */
  matrixType?: StorageType;
  /** Keep only the experts that fit this budget on the GPU, streaming the others in (docs/experts.md). */
  expertBudget?: ExpertBudget;
  onProgress?: (p: WeightProgress) => void;
}

/** Under an expert budget: the slots per layer and the eviction policy (GpuModel.fromWeights). */
export interface ExpertStreaming {
  slots: SlotCounts;
  policy?: EvictionPolicy;
}

/** The expert slots a budget gives a model of this plan (null: no budget, or everything fits). */
export function planExpertStreaming(config: ModelConfig, plan: WeightPlan, budget: ExpertBudget | undefined): ExpertStreaming | null {
  if (!budget) return null;
  const slots = slotCounts(config, plan, budget.bytes);
  return slots && { slots, policy: budget.policy };
}

/** The KV cache rows a model gets when the caller does not say: MoLM's n_ctx is 12288, too many for most devices. */
export function defaultMaxContext(config: ModelConfig): number {
  return Math.min(config.nCtx ?? 2048, 2048);
}

/** The KV cache's rows and the prefill chunk's rows, validated. */
function contextSizes(config: ModelConfig, options: Pick<GpuModelOptions, 'maxContext' | 'prefillChunk'>): { maxContext: number; rows: number } {
  const maxContext = options.maxContext ?? defaultMaxContext(config);
  const rows = Math.min(options.prefillChunk ?? 128, maxContext);
  if (!Number.isInteger(maxContext) || maxContext < 1) throw new UsageError(`maxContext must be a positive integer, got ${maxContext}`);
  if (!Number.isInteger(rows) || rows < 1) throw new UsageError(`prefillChunk must be a positive integer, got ${rows}`);
  return { maxContext, rows };
}

/**
 * A MoLM model on the GPU: weights, KV cache, activations and the planned dispatches of its
 * steps. Prefill and decode only write the Step uniform, record the planned dispatches and read
 * back what the caller asked for: during generation that is one u32 per token.
 */
export class GpuModel {
  private decodePlan: Dispatch[] = [];
  /** Under an expert budget: the body-only decode plan (prompt tokens), and the streamer. */
  private decodeBodyPlan: Dispatch[] = [];
  private streamer: ExpertStreamer | null = null;
  private prefillPlans = new Map<string, Promise<Dispatch[]>>();
  private idSlot = 0;
  /** The tokens whose keys and values are in the cache, by position. */
  private ids: number[] = [];
  /** Set when the model was given its own device (loadGpuModel): destroying the model ends it. */
  ownsContext = false;

  private constructor(
    readonly ctx: GpuContext,
    readonly config: ModelConfig,
    readonly weights: GpuWeights,
    readonly cache: KvCache,
    readonly acts: Activations,
    private readonly step: StepUniform,
    private readonly samplerParams: SamplerParams,
    private readonly routing: RoutingRecorder,
  ) {}

  /** The device limits this model needs, known before any weight is read. */
  static requirements(config: ModelConfig, plan: WeightPlan, options: GpuModelOptions = {}): DeviceRequirements {
    const { maxContext, rows } = contextSizes(config, options);
    const largestActivation = Math.max(
      rows * config.vocabSize * 4,
      rows * config.kMlp * config.ffdHidden * 4,
      maxContext * Math.max(config.nEmbd, config.attHidden) * 4,
    );
    const maxBindingBytes = Math.max(plan.maxTensorBytes, largestActivation);
    return { maxBindingBytes, maxBufferBytes: maxBindingBytes };
  }

  static async load(ctx: GpuContext, config: ModelConfig, source: TensorSource, options: GpuModelOptions = {}): Promise<GpuModel> {
    const plan = planWeights(config, source, { matrixType: options.matrixType });
    contextSizes(config, options);
    const streaming = planExpertStreaming(config, plan, options.expertBudget);
    const weights = await GpuWeights.upload(ctx, source, plan, options.onProgress, streaming ? expertSlots(config, streaming.slots) : undefined);
    return GpuModel.fromWeights(ctx, config, weights, { ...options, streaming });
  }

  /**
   * A model on weights that are already in GPU buffers (converted shards are written piece by
   * piece: GpuWeights.create, writePiece, finishWrites). The model owns the weights from here:
   * if this fails, they are destroyed.
   */
  static async fromWeights(
    ctx: GpuContext,
    config: ModelConfig,
    weights: GpuWeights,
    options: Pick<GpuModelOptions, 'maxContext' | 'prefillChunk'> & { streaming?: ExpertStreaming | null } = {},
  ): Promise<GpuModel> {
    let cache: KvCache | undefined;
    let acts: Activations | undefined;
    try {
      const { maxContext, rows } = contextSizes(config, options);
      const device = ctx.device;
      cache = new KvCache(device, config, maxContext);
      // Under an expert budget every step is one token: prefill is never grouped.
      const groupsBytes = options.streaming ? 0 : (prefillGroups(ctx, config, rows)?.bytes ?? 0);
      acts = new Activations(device, config, rows, hasKvProjections(config), groupsBytes);
      const routing = new RoutingRecorder(ctx, config, maxContext);
      const model = new GpuModel(ctx, config, weights, cache, acts, new StepUniform(device), new SamplerParams(device, config.vocabSize), routing);
      if (options.streaming) {
        // Every step is one token, cut after each router: see ExpertStreamer.
        const s = new ExpertStreamer(ctx, config, weights, acts, options.streaming.slots, options.streaming.policy);
        model.streamer = s;
        const resources = { ...model.resources, expertSlots: { attIds: s.attSlotIds, mlpIds: s.mlpSlotIds, att: s.slots.att, mlp: s.slots.mlp } };
        [model.decodePlan, model.decodeBodyPlan] = await Promise.all([planStep(resources, 'decode', 'sample'), planStep(resources, 'decode', 'none')]);
        return model;
      }
      model.decodePlan = await planStep(model.resources, 'decode', 'sample');
      // The plans of full chunks and of short prompts (whose experts may not be grouped).
      await Promise.all([model.prefillPlan('none'), model.prefillPlan('sample'), model.prefillPlan('none', 1), model.prefillPlan('sample', 1)]);
      return model;
    } catch (e) {
      weights.destroy();
      cache?.destroy();
      acts?.destroy();
      throw e;
    }
  }

  private get resources(): ForwardResources {
    const { ctx, config, weights, cache, acts, step, samplerParams } = this;
    return { ctx, config, weights, cache, acts, step, samplerParams };
  }

  /** The prefill plan of a chunk of `rows` rows (by default the largest): grouped or per-slot experts, as prefillGrouping says. */
  private prefillPlan(head: StepHead, rows = this.acts.maxRows): Promise<Dispatch[]> {
    const grouping = prefillGrouping(this.ctx, this.config, rows);
    const key = `${head}:${grouping.att}:${grouping.mlp}`;
    let p = this.prefillPlans.get(key);
    if (!p) {
      p = planStep(this.resources, 'prefill', head, grouping);
      this.prefillPlans.set(key, p);
    }
    return p;
  }

  /** Tokens in the KV cache. */
  get position(): number {
    return this.cache.length;
  }

  get maxContext(): number {
    return this.cache.maxContext;
  }

  /** The tokens in the context (their keys and values are in the cache), in order. */
  get contextIds(): readonly number[] {
    return this.ids;
  }

  /** Forgets the context (the cache contents are simply overwritten later). */
  reset(): void {
    this.truncate(0);
  }

  /**
   * Keeps the first `length` tokens of the context and forgets the rest: a prompt that starts
   * with them continues from there without recomputing them (stick-breaking attention has no
   * positions to shift, and a token's keys and values depend only on the tokens before it).
   */
  truncate(length: number): void {
    const n = Math.max(0, Math.min(length, this.ids.length));
    this.ids.length = n;
    this.cache.length = n;
  }

  /**
   * Records the routers' choices for every token the model reads from now on (a few buffer
   * copies per step; nothing while off). readRouting returns them by context position.
   */
  traceRouting(on: boolean): void {
    this.routing.on = on;
  }

  /** The routing of context positions [start, end), recorded while traceRouting was on. */
  async readRouting(start: number, end: number): Promise<RoutingRecord> {
    this.ctx.assertAlive();
    return this.routing.read(Math.max(0, start), Math.min(end, this.cache.length));
  }

  /** GPU memory held by weights, KV cache and activations. */
  get gpuBytes(): number {
    return this.weights.gpuBytes + this.cache.bytes + this.acts.bytes;
  }

  /** Under an expert budget: the expert cache's hits, misses and bytes loaded so far; else null. */
  get expertCache(): (ExpertCacheStats & { attSlots: number; mlpSlots: number }) | null {
    return this.streamer && { ...this.streamer.stats, attSlots: this.streamer.slots.att, mlpSlots: this.streamer.slots.mlp };
  }

  /** Dispatches recorded for one decoded token. */
  get dispatchesPerToken(): number {
    return this.decodePlan.length;
  }

  private checkIds(ids: readonly number[]): void {
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.config.vocabSize) {
        throw new UsageError(`Token id ${id} is outside the vocabulary [0, ${this.config.vocabSize}).`);
      }
    }
  }

  private checkRoom(tokens: number): void {
    if (this.cache.length + tokens > this.cache.maxContext) {
      throw new ContextLengthError(
        `${this.cache.length + tokens} tokens do not fit the context of ${this.cache.maxContext} tokens (${this.cache.length} already in it). Shorten the prompt, lower maxNewTokens, or create the engine with a larger maxContext.`,
      );
    }
  }

  /** Records one step: writes the Step uniform, the planned dispatches, then `after` (copies). */
  private submitStep(dispatches: Dispatch[], rows: number, after?: (enc: GPUCommandEncoder) => void): void {
    this.ctx.assertAlive();
    this.step.write(rows, this.cache.length);
    const enc = this.ctx.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    encodeDispatches(pass, dispatches, rows);
    pass.end();
    after?.(enc);
    this.routing.record(enc, this.acts, this.cache.length, rows);
    submit(this.ctx, enc);
    this.cache.length += rows;
  }

  /**
   * One token through a step under an expert budget: `id` (or the id the sampler left on the
   * GPU, when null) in, the plan run in pieces by the streamer, `after` (copies) at its end.
   */
  private async streamToken(id: number | null, plan: Dispatch[], after?: (enc: GPUCommandEncoder) => void): Promise<void> {
    this.ctx.assertAlive();
    if (id !== null) this.ctx.device.queue.writeBuffer(this.acts.nextId, 0, Uint32Array.of(id));
    const position = this.cache.length;
    this.step.write(1, position);
    await this.streamer!.run(plan, (enc) => {
      after?.(enc);
      this.routing.record(enc, this.acts, position, 1);
    });
    this.cache.length += 1;
  }

  /** streamToken for each id, reading back each one's logits when `logits` is given. */
  private async streamTokens(ids: readonly number[], logits?: Float32Array): Promise<void> {
    const V = this.config.vocabSize;
    for (const [i, id] of ids.entries()) {
      if (!logits) {
        await this.streamToken(id, this.decodeBodyPlan);
      } else {
        await this.streamToken(id, this.decodePlan, (enc) => enc.copyBufferToBuffer(this.acts.lastLogits, 0, this.acts.lastLogitsReadback, 0, V * 4));
        logits.set(new Float32Array(await mapRead(this.ctx, this.acts.lastLogitsReadback, V * 4)), i * V);
      }
      this.ids.push(id);
    }
  }

  /** Runs the prompt through the model in chunks; logits of every position, [T, vocab]. */
  async prefillLogits(ids: readonly number[]): Promise<Float32Array> {
    this.checkIds(ids);
    this.checkRoom(ids.length);
    const V = this.config.vocabSize;
    if (this.streamer) {
      const logits = new Float32Array(ids.length * V);
      await this.streamTokens(ids, logits);
      return logits;
    }
    const out = new Float32Array(ids.length * V);
    for (const { chunk, start } of this.chunksOf(ids)) {
      const bytes = chunk.length * V * 4;
      this.submitChunk(chunk, await this.prefillPlan('all', chunk.length), (enc) =>
        enc.copyBufferToBuffer(this.acts.allLogits, 0, this.acts.allLogitsReadback, 0, bytes),
      );
      out.set(new Float32Array(await mapRead(this.ctx, this.acts.allLogitsReadback, bytes)), start * V);
    }
    return out;
  }

  /**
   * Appends the ids to the context without computing any logits (the KV cache, and the routing
   * trace when it is on): for profiling and for priming a context.
   */
  async prefill(ids: readonly number[]): Promise<void> {
    this.checkIds(ids);
    this.checkRoom(ids.length);
    if (this.streamer) return this.streamTokens(ids);
    for (const { chunk } of this.chunksOf(ids)) this.submitChunk(chunk, await this.prefillPlan('none', chunk.length));
  }

  /** Feeds one token through a decode step; its logits, [vocab]. */
  async decodeLogits(id: number): Promise<Float32Array> {
    this.checkIds([id]);
    this.checkRoom(1);
    if (this.streamer) return (await this.prefillLogits([id])).subarray(0, this.config.vocabSize);
    this.ctx.device.queue.writeBuffer(this.acts.nextId, 0, Uint32Array.of(id));
    const bytes = this.config.vocabSize * 4;
    this.submitStep(this.decodePlan, 1, (enc) => enc.copyBufferToBuffer(this.acts.lastLogits, 0, this.acts.lastLogitsReadback, 0, bytes));
    this.ids.push(id);
    return new Float32Array(await mapRead(this.ctx, this.acts.lastLogitsReadback, bytes));
  }

  /** Submits the prompt's prefill; the sampler leaves the first new token in `nextId` on the GPU. */
  private async submitPrefill(ids: readonly number[]): Promise<void> {
    for (const { chunk, isLast } of this.chunksOf(ids)) {
      const plan = await this.prefillPlan(isLast ? 'sample' : 'none', chunk.length);
      this.submitChunk(chunk, plan, isLast ? (enc) => this.copyId(enc) : undefined);
    }
  }

  /** The ids cut into prefill chunks of the activations' rows. */
  private *chunksOf(ids: readonly number[]): Generator<{ chunk: readonly number[]; start: number; isLast: boolean }> {
    for (let start = 0; start < ids.length; start += this.acts.maxRows) {
      yield { chunk: ids.slice(start, start + this.acts.maxRows), start, isLast: start + this.acts.maxRows >= ids.length };
    }
  }

  /** One prefill chunk: its ids to the GPU, the plan submitted (with `after`'s copies), the ids into the context. */
  private submitChunk(chunk: readonly number[], plan: Dispatch[], after?: (enc: GPUCommandEncoder) => void): void {
    this.ctx.device.queue.writeBuffer(this.acts.ids, 0, Uint32Array.from(chunk));
    this.submitStep(plan, chunk.length, after);
    this.ids.push(...chunk);
  }

  private copyId(enc: GPUCommandEncoder): void {
    enc.copyBufferToBuffer(this.acts.nextId, 0, this.acts.idReadback[this.idSlot], 0, 4);
  }

  private async readId(): Promise<number> {
    const slot = this.idSlot;
    this.idSlot ^= 1;
    return withMappedRange(this.ctx, this.acts.idReadback[slot], 4, (range) => new Uint32Array(range)[0]);
  }

  /**
   * Appends the prompt to the context and yields up to `maxNewTokens` sampled ids. Each decode
   * step is queued before the previous token is read back, so the GPU never waits on the CPU;
   * the only readback is the sampled id. Stops early when the consumer stops iterating.
   * The repetition penalty counts every token of the context, the prompt included.
   */
  async *generate(prompt: readonly number[], maxNewTokens: number, sampling: SamplingOptions = GREEDY): AsyncGenerator<number> {
    if (prompt.length === 0) throw new UsageError('The prompt is empty: give at least one token.');
    this.checkIds(prompt);
    // The last new token is returned but never fed back, so it needs no cache row.
    this.checkRoom(prompt.length + Math.max(0, maxNewTokens - 1));
    if (maxNewTokens <= 0) return;
    this.samplerParams.write(sampling);
    this.samplerParams.writeSeen((sampling.repetitionPenalty ?? 1) === 1 ? [] : [...this.ids, ...prompt]);
    this.idSlot = 0;
    if (this.streamer) {
      yield* this.generateStreamed(prompt, maxNewTokens);
      return;
    }
    await this.submitPrefill(prompt);
    for (let i = 0; i < maxNewTokens; i++) {
      const fed = i + 1 < maxNewTokens;
      if (fed) {
        // The slot after the one being read receives the next step's id.
        const readSlot = this.idSlot;
        this.idSlot ^= 1;
        this.submitStep(this.decodePlan, 1, (enc) => this.copyId(enc));
        this.idSlot = readSlot;
      }
      const id = await this.readId();
      if (fed) this.ids.push(id);
      yield id;
    }
  }

  /** generate under an expert budget: one token per step, each step waits for its routers. */
  private async *generateStreamed(prompt: readonly number[], maxNewTokens: number): AsyncGenerator<number> {
    await this.streamTokens(prompt.slice(0, -1));
    await this.streamToken(prompt[prompt.length - 1], this.decodePlan, (enc) => this.copyId(enc));
    this.ids.push(prompt[prompt.length - 1]);
    for (let i = 0; i < maxNewTokens; i++) {
      const id = await this.readId();
      // The token goes out before the next step: a streamed step waits for its routers, so it
      // cannot overlap the caller's work, and a caller timing tokens as they arrive must see
      // each step's real cost (a 2-token generation reported 2.66 tokens/s where 0.19 was true).
      yield id;
      if (i + 1 < maxNewTokens) {
        // The sampled id is already in nextId on the GPU.
        await this.streamToken(null, this.decodePlan, (enc) => this.copyId(enc));
        this.ids.push(id);
      }
    }
  }

  /**
   * Time of each planned dispatch of a step, each in a pass of its own (timePasses: GPU
   * timestamps where the device has them, else the wall clock). Runs on the current context,
   * whose contents it overwrites: call reset() after.
   */
  async kernelTimes(
    kind: 'prefill' | 'decode',
    rows: number,
    head: StepHead = 'sample',
  ): Promise<{ label: string; ms: number; source: 'timestamp' | 'wall' }[]> {
    if (this.streamer) throw new UsageError('Kernel times are measured without a GPU memory budget.');
    const n = kind === 'decode' ? 1 : Math.min(rows, this.acts.maxRows);
    const plan = kind === 'decode' ? this.decodePlan : await this.prefillPlan(head, n);
    this.checkRoom(n);
    this.step.write(n, this.cache.length);
    const times = await timePasses(
      this.ctx,
      plan.map((d) => (pass: GPUComputePassEncoder) => encodeDispatches(pass, [d], n)),
    );
    return plan.map((d, i) => ({ label: d.label, ...times[i] }));
  }

  destroy(): void {
    this.weights.destroy();
    this.cache.destroy();
    this.acts.destroy();
    this.step.buffer.destroy();
    this.samplerParams.destroy();
    this.routing.destroy();
    this.streamer?.destroy();
    if (this.ownsContext) this.ctx.destroy();
  }
}
