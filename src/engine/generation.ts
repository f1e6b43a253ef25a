import type { PackRange } from '../packs/pack-shapes.ts';
import { UsageError } from '../errors.ts';
import type { SamplingOptions } from '../token-model.ts';
import type { RoutingRecord } from '../token-model.ts';

/** How a generation is steered. Every field is optional. */
export interface GenerateOptions {
  /** New tokens at most (default 256). */
  maxNewTokens?: number;
  /** 0 picks the most likely token (greedy); default 0.7. */
  temperature?: number;
  /** Keep the k most likely tokens (0: all; default 40). */
  topK?: number;
  /** Keep the most likely tokens holding this share of the probability (1: all; default 0.95). */
  topP?: number;
  /** > 1 discourages tokens already in the context (default 1.1; 1: off). */
  repetitionPenalty?: number;
  /** The same seed, prompt and options give the same text (default: a random seed). */
  seed?: number;
  /** Generation ends before the first of these strings; the string itself is not emitted. */
  stop?: string | readonly string[];
  /** End at the model's end-of-text token (default true). */
  stopAtEndOfText?: boolean;
  /** Ends the generation within one token; the text so far is kept (finishReason 'abort'). */
  signal?: AbortSignal;
  /**
   * When prompt + maxNewTokens exceed the context: 'error' (default) throws ContextLengthError;
   * 'truncate-start' drops the prompt's oldest tokens to make room.
   */
  contextOverflow?: 'error' | 'truncate-start';
  /** Return the routers' choices for every token of this call (GenerationResult.routing). */
  routingTrace?: boolean;
  /** Called after each new token, with the counts and speed so far. */
  onProgress?: (p: GenerationProgress) => void;
}

export interface GenerationProgress {
  completionTokens: number;
  timeToFirstTokenMs: number;
  /** New tokens per second after the first one, so far. */
  decodeTokensPerS: number;
}

/**
 * Which experts each token used: RoutingRecord's [token, layer, k] arrays for the tokens this
 * call computed, in order: the prompt's (after any reused from the last call), then the new
 * ones the model read back. A generation that ends at maxNewTokens never reads its last token,
 * so that token has no routing.
 */
export interface RoutingTrace extends RoutingRecord {
  nAttExperts: number;
  nMlpExperts: number;
  /** The expert packs merged in when the trace was made: which expert ids are whose (their ranges). */
  packs: PackRange[];
  /** The traced tokens' ids, and each one decoded on its own. */
  ids: number[];
  pieces: string[];
  /** How many of the traced tokens are prompt tokens. */
  promptTokens: number;
}

/** Why a generation ended: a stop string or end-of-text, maxNewTokens, or the signal. */
export type FinishReason = 'stop' | 'length' | 'abort';

export interface Usage {
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
  /** Prompt tokens whose keys and values were reused from the previous call (not recomputed). */
  cachedPromptTokens: number;
  /** Prompt tokens dropped by contextOverflow 'truncate-start'. */
  truncatedPromptTokens: number;
  /** From the call to the first new token. */
  timeToFirstTokenMs: number;
  /** Prompt tokens computed per second (up to the first new token). */
  prefillTokensPerS: number;
  /** New tokens per second after the first one. */
  decodeTokensPerS: number;
  totalMs: number;
  /** Under a GPU memory budget: this call's expert picks found resident (hits) or loaded (misses). */
  expertCache?: { hits: number; misses: number; hitRate: number };
}

export interface GenerationResult {
  text: string;
  finishReason: FinishReason;
  usage: Usage;
  /** Present when the call asked for routingTrace. */
  routing?: RoutingTrace;
}

export const DEFAULT_GENERATE_OPTIONS = {
  maxNewTokens: 256,
  temperature: 0.7,
  topK: 40,
  topP: 0.95,
  repetitionPenalty: 1.1,
  stopAtEndOfText: true,
  contextOverflow: 'error',
} as const;

export interface ResolvedOptions {
  maxNewTokens: number;
  sampling: Required<SamplingOptions>;
  stop: string[];
  stopAtEndOfText: boolean;
  contextOverflow: 'error' | 'truncate-start';
  routingTrace: boolean;
}

function check(ok: boolean, message: string): void {
  if (!ok) throw new UsageError(message);
}

/** Options with defaults filled in, validated with messages that name the field. */
export function resolveOptions(o: GenerateOptions = {}): ResolvedOptions {
  const d = DEFAULT_GENERATE_OPTIONS;
  const maxNewTokens = o.maxNewTokens ?? d.maxNewTokens;
  const temperature = o.temperature ?? d.temperature;
  const topK = o.topK ?? d.topK;
  const topP = o.topP ?? d.topP;
  const repetitionPenalty = o.repetitionPenalty ?? d.repetitionPenalty;
  const seed = o.seed ?? Math.floor(Math.random() * 0x100000000);
  check(Number.isInteger(maxNewTokens) && maxNewTokens >= 0, `maxNewTokens must be a non-negative integer, got ${maxNewTokens}.`);
  check(Number.isFinite(temperature) && temperature >= 0, `temperature must be a number ≥ 0, got ${temperature}.`);
  check(Number.isInteger(topK) && topK >= 0, `topK must be a non-negative integer, got ${topK}.`);
  check(Number.isFinite(topP) && topP > 0 && topP <= 1, `topP must be in (0, 1], got ${topP}.`);
  check(Number.isFinite(repetitionPenalty) && repetitionPenalty > 0, `repetitionPenalty must be a positive number, got ${repetitionPenalty}.`);
  check(Number.isInteger(seed), `seed must be an integer, got ${seed}.`);
  const stop = o.stop === undefined ? [] : typeof o.stop === 'string' ? [o.stop] : [...o.stop];
  check(
    stop.every((s) => typeof s === 'string'),
    'stop must be a string or an array of strings.',
  );
  const contextOverflow = o.contextOverflow ?? d.contextOverflow;
  check(
    contextOverflow === 'error' || contextOverflow === 'truncate-start',
    `contextOverflow must be 'error' or 'truncate-start', got ${String(contextOverflow)}.`,
  );
  return {
    maxNewTokens,
    sampling: { temperature, topK, topP, repetitionPenalty, seed: seed >>> 0 },
    stop,
    stopAtEndOfText: o.stopAtEndOfText ?? d.stopAtEndOfText,
    contextOverflow,
    routingTrace: o.routingTrace === true,
  };
}
