import type { ModelConfig } from '../config.ts';
import { AbortError, ContextLengthError, UsageError } from '../errors.ts';
import { type Engine, type EngineBackend, type LocalEngineOptions, type TextStream, runToEnd } from './api.ts';
import { ChatCompletions } from './chat.ts';
import { resolveOptions, type FinishReason, type GenerateOptions, type GenerationResult, type RoutingTrace, type Usage } from './generation.ts';
import { TurnQueue } from './queue.ts';
import { StopStringMatcher } from './stop-strings.ts';
import type { TokenModel } from '../token-model.ts';
import type { MolmTokenizer } from './tokenizer.ts';
import type { PackRange } from '../packs/pack-shapes.ts';

/**
 * Replaces the model with the base plus these packs: checks the packs before `current` is
 * destroyed, and leaves a working model (the old packs' when the new load fails) before it throws.
 */
export type PackSwap = (packs: readonly string[], current: TokenModel) => Promise<{ model: TokenModel; packs: PackRange[]; failure?: unknown }>;

const now = () => performance.now();

/** Length of the common prefix of two id lists. */
function commonPrefix(a: readonly number[], b: readonly number[]): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

/**
 * The engine on this thread, over a TokenModel and a tokenizer. Generations run one at a time,
 * in call order (later calls wait: see TurnQueue). The context of the last generation is kept:
 * a prompt that extends it (the next turn of a chat) only computes its new tokens.
 */
export class LocalEngine implements Engine {
  readonly chat: { readonly completions: ChatCompletions };
  readonly device: string;
  readonly backend: EngineBackend;
  private readonly turns = new TurnQueue();
  private disposed = false;
  private current: TokenModel;
  private activePacks: readonly PackRange[];
  private readonly swap?: PackSwap;

  constructor(
    model: TokenModel,
    readonly tokenizer: MolmTokenizer,
    options: LocalEngineOptions & { packs?: readonly PackRange[]; swap?: PackSwap } = {},
  ) {
    this.current = model;
    this.activePacks = options.packs ?? [];
    this.swap = options.swap;
    this.device = options.device ?? 'unknown';
    this.backend = options.backend ?? 'webgpu';
    this.chat = { completions: new ChatCompletions(this, { template: options.chatTemplate, modelName: options.modelName }) };
  }

  /** The model the engine runs now (another one after setPacks). */
  get model(): TokenModel {
    return this.current;
  }

  get packs(): readonly PackRange[] {
    return this.activePacks;
  }

  /**
   * Runs the base with these packs instead of the current ones (none: the base, bit for bit).
   * The packs are loaded and checked against the base first: a bad one throws and the engine
   * keeps its model. Then the model is rebuilt, so the context is forgotten.
   */
  async setPacks(packs: readonly string[]): Promise<void> {
    if (!Array.isArray(packs) || !packs.every((p) => typeof p === 'string' && p !== '')) {
      throw new UsageError('setPacks takes an array of pack URLs (or, in Node, folders).');
    }
    if (!this.swap) throw new UsageError('This engine was not created by createEngine, so it cannot load packs.');
    const release = await this.turns.acquire();
    try {
      if (this.disposed) throw new UsageError('The engine was disposed: create a new one.');
      const next = await this.swap(packs, this.current);
      this.current = next.model;
      this.activePacks = next.packs;
      if (next.failure !== undefined) throw next.failure;
    } finally {
      release();
    }
  }

  get config(): ModelConfig {
    return this.model.config;
  }

  get maxContext(): number {
    return this.model.maxContext;
  }

  async encode(text: string): Promise<number[]> {
    return this.tokenizer.encode(text);
  }

  async decode(ids: readonly number[]): Promise<string> {
    return this.tokenizer.decode(ids);
  }

  generate(prompt: string, options: GenerateOptions = {}): TextStream {
    let settle!: { resolve: (r: GenerationResult) => void; reject: (e: unknown) => void };
    const result = new Promise<GenerationResult>((resolve, reject) => (settle = { resolve, reject }));
    result.catch(() => {}); // a caller that only iterates sees the error there
    const run = this.run(prompt, options, settle);
    let started = false;
    return {
      result,
      [Symbol.asyncIterator]() {
        if (started) throw new UsageError('A TextStream can be iterated once.');
        started = true;
        return run;
      },
    };
  }

  complete(prompt: string, options: GenerateOptions = {}): Promise<GenerationResult> {
    return runToEnd(this.generate(prompt, options));
  }

  async reset(): Promise<void> {
    const release = await this.turns.acquire();
    try {
      this.model.reset();
    } finally {
      release();
    }
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    const release = await this.turns.acquire();
    this.disposed = true;
    this.model.destroy();
    release();
  }

  private async *run(
    prompt: string,
    options: GenerateOptions,
    settle: { resolve: (r: GenerationResult) => void; reject: (e: unknown) => void },
  ): AsyncGenerator<string> {
    const started = now();
    const signal = options.signal;
    let release: (() => void) | undefined;
    let settled = false;
    // What the finally block reports when the caller stops iterating early.
    let text = '';
    let n = 0;
    let firstAt = 0;
    let promptTokens = 0;
    let reused = 0;
    let truncated = 0;
    let computed = 0;
    const cacheBefore = this.model.expertCache ? { ...this.model.expertCache } : null;
    const usage = (): Usage => {
      const ended = now();
      const cache = this.model.expertCache;
      const expertCache = cache && cacheBefore && { hits: cache.hits - cacheBefore.hits, misses: cache.misses - cacheBefore.misses };
      return {
        ...(expertCache && { expertCache: { ...expertCache, hitRate: expertCache.hits / Math.max(1, expertCache.hits + expertCache.misses) } }),
        promptTokens,
        completionTokens: n,
        totalTokens: promptTokens + n,
        cachedPromptTokens: reused,
        truncatedPromptTokens: truncated,
        timeToFirstTokenMs: n ? firstAt - started : 0,
        prefillTokensPerS: n ? computed / ((firstAt - started) / 1000) : 0,
        decodeTokensPerS: n > 1 ? (n - 1) / ((ended - firstAt) / 1000) : 0,
        totalMs: ended - started,
      };
    };
    let routing: RoutingTrace | undefined;
    let traced = false;
    const finish = (finishReason: FinishReason) => {
      settled = true;
      settle.resolve({ text, finishReason, usage: usage(), ...(routing && { routing }) });
    };
    try {
      if (typeof prompt !== 'string') throw new UsageError(`The prompt must be a string, got ${typeof prompt}.`);
      const o = resolveOptions(options);
      try {
        release = await this.turns.acquire(signal);
      } catch (e) {
        if (!(e instanceof AbortError)) throw e;
        finish('abort');
        return;
      }
      if (this.disposed) throw new UsageError('The engine was disposed: create a new one.');

      // The prompt's ids; an empty prompt starts from end-of-text, as GPT-2-style models do.
      const eos = this.config.eosTokenId;
      let ids = this.tokenizer.encode(prompt);
      if (ids.length === 0) ids = [eos];
      promptTokens = ids.length;
      const room = this.maxContext - Math.max(0, o.maxNewTokens - 1);
      if (ids.length > room) {
        if (o.contextOverflow === 'truncate-start' && room >= 1) {
          truncated = ids.length - room;
          ids = ids.slice(truncated);
        } else {
          throw new ContextLengthError(
            `The prompt has ${ids.length} tokens and maxNewTokens is ${o.maxNewTokens}, but the context holds ${this.maxContext} tokens. ` +
              `Shorten the prompt, lower maxNewTokens, pass contextOverflow: 'truncate-start' to drop the oldest prompt tokens, or create the engine with a larger maxContext.`,
          );
        }
      }

      // Reuse the keys and values of the context the last call left behind, up to where the
      // prompts differ; at least one token is computed, for its logits.
      reused = Math.min(commonPrefix(this.model.contextIds, ids), ids.length - 1);
      this.model.truncate(reused);
      const fresh = ids.slice(reused);
      computed = fresh.length;

      if (o.routingTrace && !this.model.traceRouting) throw new UsageError('This model cannot trace its routing.');
      this.model.traceRouting?.(o.routingTrace);
      traced = o.routingTrace;

      const detok = this.tokenizer.streamDecoder();
      const stops = new StopStringMatcher(o.stop);
      let finishReason: FinishReason = 'length';
      if (signal?.aborted) return finish('abort');
      for await (const id of this.model.generate(fresh, o.maxNewTokens, o.sampling)) {
        n++;
        if (n === 1) firstAt = now();
        if (options.onProgress) {
          const u = usage();
          options.onProgress({ completionTokens: n, timeToFirstTokenMs: u.timeToFirstTokenMs, decodeTokensPerS: u.decodeTokensPerS });
        }
        if (o.stopAtEndOfText && id === eos) {
          finishReason = 'stop';
          break;
        }
        const piece = stops.push(detok.push(id));
        if (piece) {
          text += piece;
          yield piece;
        }
        if (stops.stopped) {
          finishReason = 'stop';
          break;
        }
        if (signal?.aborted) {
          finishReason = 'abort';
          break;
        }
      }
      if (!stops.stopped) {
        const tail = stops.push(detok.flush()) + stops.flush();
        if (tail) {
          text += tail;
          yield tail;
        }
      }
      if (o.routingTrace) routing = await this.readRouting(reused, fresh.length);
      finish(finishReason);
    } catch (e) {
      settled = true;
      settle.reject(e);
      throw e;
    } finally {
      // Reached without settling only when the caller stopped iterating.
      if (!settled) finish('abort');
      if (traced) this.model.traceRouting?.(false);
      release?.();
    }
  }

  /** The routing of the context from `start` on, with each token's text. */
  private async readRouting(start: number, promptTokens: number): Promise<RoutingTrace> {
    const end = this.model.contextIds.length;
    const record = await this.model.readRouting!(start, end);
    const ids = this.model.contextIds.slice(start, end);
    const c = this.config;
    return {
      ...record,
      nAttExperts: c.nAttExperts,
      nMlpExperts: c.nMlpExperts,
      packs: [...this.packs],
      ids,
      pieces: ids.map((id) => this.tokenizer.decode([id])),
      promptTokens,
    };
  }
}
