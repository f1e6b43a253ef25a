import type { ModelConfig } from '../config.ts';
import type { PackRange } from '../packs/pack-shapes.ts';
import type { FinishReason, GenerateOptions, GenerationProgress, GenerationResult, RoutingTrace } from './generation.ts';

// The text engine's API, which LocalEngine (this thread) and WorkerEngine (a Web Worker) both
// implement and the front ends, the CLI and chat completions are written against.

/** Streamed text: iterate it for the pieces; `result` settles when the iteration ends. */
export interface TextStream extends AsyncIterable<string> {
  readonly result: Promise<GenerationResult>;
}

/** Iterates a stream to its end (discarding the pieces) and returns its result. */
export async function runToEnd(stream: TextStream): Promise<GenerationResult> {
  for await (const _ of stream);
  return stream.result;
}

/** The text-generation API, the same on the main thread, in a worker and in Node. */
export interface Engine {
  readonly config: ModelConfig;
  /** Tokens the context holds (prompt and new tokens together). */
  readonly maxContext: number;
  /** A human-readable name of where the model runs (adapter, wasm threads, or the CPU reference). */
  readonly device: string;
  /** Which engine runs the model. */
  readonly backend: EngineBackend;
  generate(prompt: string, options?: GenerateOptions): TextStream;
  /** Runs a generation to its end. */
  complete(prompt: string, options?: GenerateOptions): Promise<GenerationResult>;
  readonly chat: { readonly completions: ChatCompletionsApi };
  encode(text: string): Promise<number[]>;
  decode(ids: readonly number[]): Promise<string>;
  /** Forgets the context kept from the last generation. */
  reset(): Promise<void>;
  /** The expert packs merged into the model, in order, with the experts each one added (docs/extending.md). */
  readonly packs: readonly PackRange[];
  /**
   * Runs the base model with these expert packs (URLs of converted packs; in Node also folders)
   * in place of the current ones; [] gives back the base, bit for bit. A pack that does not fit
   * the base throws and leaves the engine as it was; otherwise the context is forgotten.
   */
  setPacks(packs: readonly string[]): Promise<void>;
  /** Frees the GPU memory; the engine cannot be used afterwards. */
  dispose(): Promise<void>;
}

export interface EngineOptions {
  /** A Jinja chat template (messages, add_generation_prompt) replacing the default one. */
  chatTemplate?: string;
  /** Model name reported by chat completions. */
  modelName?: string;
  device?: string;
}

/** What a LocalEngine is told of its model beyond EngineOptions. */
export interface LocalEngineOptions extends EngineOptions {
  backend?: EngineBackend;
}

/** WebGPU kernels, the WebAssembly CPU engine, or the float64 reference (the CLI's --device cpu). */
export type EngineBackend = 'webgpu' | 'wasm' | 'cpu';

/** OpenAI-style chat completions over an engine (src/engine/chat.ts). */
export interface ChatCompletionsApi {
  create(request: ChatCompletionRequest & { stream: true }): Promise<AsyncIterable<ChatCompletionChunk>>;
  create(request: ChatCompletionRequest & { stream?: false }): Promise<ChatCompletion>;
  create(request: ChatCompletionRequest): Promise<ChatCompletion | AsyncIterable<ChatCompletionChunk>>;
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface ChatCompletionRequest {
  messages: ChatMessage[];
  stream?: boolean;
  /** New tokens at most (OpenAI's two names for it). */
  max_tokens?: number;
  max_completion_tokens?: number;
  temperature?: number;
  top_p?: number;
  /** Not in OpenAI's API; as GenerateOptions.topK. */
  top_k?: number;
  /** Not in OpenAI's API; as GenerateOptions.repetitionPenalty. */
  repetition_penalty?: number;
  seed?: number;
  /** Added to the template's own stop strings (DEFAULT_CHAT_STOP for the default template). */
  stop?: string | string[];
  /** A Jinja template for this request only. */
  chat_template?: string;
  /** Not in OpenAI's API; as GenerateOptions.routingTrace: the result carries `routing`. */
  routing_trace?: boolean;
  signal?: AbortSignal;
  /** As GenerateOptions.onProgress: called after each new token. */
  onProgress?: (p: GenerationProgress) => void;
}

export interface ChatUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** molm-web's timings (as WebLLM's usage.extra). */
  extra: {
    time_to_first_token_ms: number;
    prefill_tokens_per_s: number;
    decode_tokens_per_s: number;
    cached_prompt_tokens: number;
    truncated_prompt_tokens: number;
    total_ms: number;
  };
}

export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: { index: 0; message: { role: 'assistant'; content: string }; finish_reason: FinishReason; logprobs: null }[];
  usage: ChatUsage;
  /** With routing_trace: which experts each token of the prompt and reply used. */
  routing?: RoutingTrace;
}

export interface ChatCompletionChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  /** Empty in the last chunk, which carries `usage` (and `routing` when asked for). */
  choices: { index: 0; delta: { role?: 'assistant'; content?: string }; finish_reason: FinishReason | null; logprobs: null }[];
  usage?: ChatUsage;
  routing?: RoutingTrace;
}
