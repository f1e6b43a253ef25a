import { Template } from '@huggingface/jinja';
import { UsageError } from '../errors.ts';
import {
  type ChatCompletion,
  type ChatCompletionChunk,
  type ChatCompletionRequest,
  type ChatCompletionsApi,
  type ChatMessage,
  type ChatUsage,
  type Engine,
  runToEnd,
} from './api.ts';
import type { FinishReason, GenerateOptions, GenerationResult, Usage } from './generation.ts';

// engine.chat.completions.create in the shape of OpenAI's Chat Completions API (the shape
// WebLLM and most client code speak), over engine.generate and a Jinja chat template.

/**
 * MoLM is a base model with no chat format of its own, so the default template is plain
 * dialogue text. `messages` and `add_generation_prompt` are the variables chat templates on the
 * Hugging Face Hub use, so any of them can replace it (EngineOptions.chatTemplate).
 */
export const DEFAULT_CHAT_TEMPLATE = `{%- for message in messages -%}
{%- if message.role == 'system' -%}
{{ message.content + '\\n\\n' }}
{%- elif message.role == 'user' -%}
{{ 'User: ' + message.content + '\\n' }}
{%- else -%}
{{ 'Assistant: ' + message.content + '\\n' }}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{ 'Assistant:' }}
{%- endif -%}`;

/** Where the default template's reply ends: the model starting the next turn. */
export const DEFAULT_CHAT_STOP = ['\nUser:', '\nAssistant:'];

const templates = new Map<string, Template>();

/** The prompt a template makes of the messages (with the assistant's turn opened). */
export function renderChat(messages: ChatMessage[], template: string = DEFAULT_CHAT_TEMPLATE): string {
  if (!Array.isArray(messages) || messages.length === 0) throw new UsageError('messages must be a non-empty array of { role, content }.');
  for (const [i, m] of messages.entries()) {
    if (!m || !['system', 'user', 'assistant'].includes(m.role) || typeof m.content !== 'string') {
      throw new UsageError(`messages[${i}] must be { role: 'system' | 'user' | 'assistant', content: string }, got ${JSON.stringify(m)}.`);
    }
  }
  let t = templates.get(template);
  if (!t) {
    try {
      t = new Template(template);
    } catch (e) {
      throw new UsageError(`The chat template does not parse: ${(e as Error).message}`);
    }
    templates.set(template, t);
  }
  try {
    return t.render({ messages, add_generation_prompt: true, bos_token: '', eos_token: '<|endoftext|>' });
  } catch (e) {
    throw new UsageError(`The chat template failed on these messages: ${(e as Error).message}`);
  }
}

let counter = 0;
const completionId = () => `chatcmpl-${Date.now().toString(36)}${(counter++).toString(36)}`;

function chatUsage(r: GenerationResult): ChatUsage {
  const u = r.usage;
  return {
    prompt_tokens: u.promptTokens,
    completion_tokens: u.completionTokens,
    total_tokens: u.totalTokens,
    extra: {
      time_to_first_token_ms: u.timeToFirstTokenMs,
      prefill_tokens_per_s: u.prefillTokensPerS,
      decode_tokens_per_s: u.decodeTokensPerS,
      cached_prompt_tokens: u.cachedPromptTokens,
      truncated_prompt_tokens: u.truncatedPromptTokens,
      total_ms: u.totalMs,
    },
  };
}

/** A chat completion's usage as the engine's Usage (what generate's result carries). */
export function usageFromChat(u: ChatUsage): Usage {
  return {
    promptTokens: u.prompt_tokens,
    completionTokens: u.completion_tokens,
    totalTokens: u.total_tokens,
    cachedPromptTokens: u.extra.cached_prompt_tokens,
    truncatedPromptTokens: u.extra.truncated_prompt_tokens,
    timeToFirstTokenMs: u.extra.time_to_first_token_ms,
    prefillTokensPerS: u.extra.prefill_tokens_per_s,
    decodeTokensPerS: u.extra.decode_tokens_per_s,
    totalMs: u.extra.total_ms,
  };
}

export class ChatCompletions implements ChatCompletionsApi {
  constructor(
    private readonly engine: Pick<Engine, 'generate'>,
    private readonly defaults: { template?: string; modelName?: string } = {},
  ) {}

  create(request: ChatCompletionRequest & { stream: true }): Promise<AsyncIterable<ChatCompletionChunk>>;
  create(request: ChatCompletionRequest & { stream?: false }): Promise<ChatCompletion>;
  create(request: ChatCompletionRequest): Promise<ChatCompletion | AsyncIterable<ChatCompletionChunk>>;
  async create(request: ChatCompletionRequest): Promise<ChatCompletion | AsyncIterable<ChatCompletionChunk>> {
    const template = request.chat_template ?? this.defaults.template;
    const prompt = renderChat(request.messages, template);
    const own = template === undefined ? DEFAULT_CHAT_STOP : [];
    const extra = request.stop === undefined ? [] : typeof request.stop === 'string' ? [request.stop] : request.stop;
    const options: GenerateOptions = {
      maxNewTokens: request.max_completion_tokens ?? request.max_tokens,
      temperature: request.temperature,
      topP: request.top_p,
      topK: request.top_k,
      repetitionPenalty: request.repetition_penalty,
      seed: request.seed,
      stop: [...own, ...extra],
      signal: request.signal,
      routingTrace: request.routing_trace,
      onProgress: request.onProgress,
    };
    const stream = this.engine.generate(prompt, options);
    const id = completionId();
    const created = Math.floor(Date.now() / 1000);
    const model = this.defaults.modelName ?? 'molm';
    if (!request.stream) {
      const r = await runToEnd(stream);
      return {
        id,
        object: 'chat.completion',
        created,
        model,
        choices: [{ index: 0, message: { role: 'assistant', content: r.text }, finish_reason: r.finishReason, logprobs: null }],
        usage: chatUsage(r),
        ...(r.routing && { routing: r.routing }),
      };
    }
    return (async function* (): AsyncGenerator<ChatCompletionChunk> {
      const chunk = (delta: { role?: 'assistant'; content?: string }, finish: FinishReason | null): ChatCompletionChunk => ({
        id,
        object: 'chat.completion.chunk',
        created,
        model,
        choices: [{ index: 0, delta, finish_reason: finish, logprobs: null }],
      });
      yield chunk({ role: 'assistant', content: '' }, null);
      for await (const text of stream) yield chunk({ content: text }, null);
      const r = await stream.result;
      yield chunk({}, r.finishReason);
      yield { id, object: 'chat.completion.chunk', created, model, choices: [], usage: chatUsage(r), ...(r.routing && { routing: r.routing }) };
    })();
  }
}
