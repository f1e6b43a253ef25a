import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config.ts';
import { DEFAULT_CHAT_TEMPLATE, renderChat } from '../../src/engine/chat.ts';
import { LocalEngine } from '../../src/engine/engine.ts';
import { resolveOptions } from '../../src/engine/generation.ts';
import { StopStringMatcher } from '../../src/engine/stop-strings.ts';
import type { TokenModel } from '../../src/token-model.ts';
import { MolmTokenizer } from '../../src/engine/tokenizer.ts';
import { ContextLengthError, UsageError } from '../../src/errors.ts';
import type { SamplingOptions } from '../../src/token-model.ts';

// The engine's text logic (streaming, stop strings, abort, queueing, context policy, chat) over
// a scripted token source: these behaviours do not depend on the numbers a model computes, and
// a script makes every edge case (a character split over tokens, a stop string split over
// tokens) certain to occur. The same engine on real WebGPU models: tests/gpu/text-engine.test.ts.

const tokenizer = MolmTokenizer.fromJson(readFileSync('tests/fixtures/tokenizer/tokenizer.json', 'utf8'));
const config = parseConfig(JSON.parse(readFileSync('tests/fixtures/configs/molm-350m-4b.json', 'utf8')));
const EOS = 50256;

/** Yields a fixed script of ids, one per step, with a context like a real model's. */
class ScriptedModel implements TokenModel {
  readonly config = config;
  contextIds: number[] = [];
  calls: { prompt: number[]; sampling: SamplingOptions }[] = [];
  /** Resolved per token by the test, when set: lets a test hold a generation mid-way. */
  gate?: () => Promise<void>;
  constructor(
    readonly script: number[],
    readonly maxContext = 2048,
  ) {}
  truncate(n: number) {
    this.contextIds.length = Math.min(n, this.contextIds.length);
  }
  reset() {
    this.contextIds = [];
  }
  async prefillLogits(): Promise<Float32Array> {
    throw new Error('not scripted');
  }
  async *generate(prompt: readonly number[], n: number, sampling: SamplingOptions): AsyncGenerator<number> {
    if (this.contextIds.length + prompt.length + Math.max(0, n - 1) > this.maxContext) throw new ContextLengthError('scripted');
    this.calls.push({ prompt: [...prompt], sampling });
    this.contextIds.push(...prompt);
    for (let i = 0; i < n && i < this.script.length; i++) {
      await this.gate?.();
      const id = this.script[i];
      if (i + 1 < n) this.contextIds.push(id);
      yield id;
    }
  }
  destroy() {}
}

async function collect(stream: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const t of stream) out.push(t);
  return out;
}

const MULTIBYTE = 'Grüße, 世界! 🌍👋🏽 naïve café';

describe('LocalEngine (scripted tokens)', () => {
  it('streams text without ever emitting half a character', async () => {
    const ids = tokenizer.encode(MULTIBYTE);
    // The fixture must really split characters over tokens, or the test proves nothing.
    expect(ids.some((id) => tokenizer.decode([id]).includes('\uFFFD'))).toBe(true);
    const engine = new LocalEngine(new ScriptedModel(ids), tokenizer);
    const stream = engine.generate('x', { maxNewTokens: ids.length, stopAtEndOfText: false });
    const pieces = await collect(stream);
    for (const p of pieces) expect(p).not.toContain('\uFFFD');
    expect(pieces.join('')).toBe(MULTIBYTE);
    const r = await stream.result;
    expect(r.text).toBe(MULTIBYTE);
    expect(r.finishReason).toBe('length');
    expect(r.usage.completionTokens).toBe(ids.length);
  });

  it('ends before a stop string, even one split over tokens and multi-byte characters', async () => {
    const text = 'The cat sat. 世界 ends here. More text after.';
    const ids = tokenizer.encode(text);
    for (const stop of ['世界 ends', 'sat.', ' More', 'after.']) {
      const engine = new LocalEngine(new ScriptedModel(ids), tokenizer);
      const stream = engine.generate('x', { maxNewTokens: 100, stop: ['never', stop] });
      const pieces = await collect(stream);
      const want = text.slice(0, text.indexOf(stop));
      expect(pieces.join(''), stop).toBe(want);
      expect((await stream.result).finishReason).toBe('stop');
    }
    // A prefix of a stop string that never completes is released at the end.
    const engine = new LocalEngine(new ScriptedModel(tokenizer.encode('ab cd')), tokenizer);
    expect((await engine.complete('x', { stop: ' cde' })).text).toBe('ab cd');
  });

  it('stops at end-of-text unless told not to', async () => {
    const ids = [...tokenizer.encode('One two'), EOS, ...tokenizer.encode(' three')];
    const a = await new LocalEngine(new ScriptedModel(ids), tokenizer).complete('x');
    expect(a).toMatchObject({ text: 'One two', finishReason: 'stop' });
    const b = await new LocalEngine(new ScriptedModel(ids), tokenizer).complete('x', { stopAtEndOfText: false, maxNewTokens: ids.length });
    expect(b.text).toBe('One two<|endoftext|> three');
  });

  it('abort: ends within one token, keeps the text so far, and the engine runs the next call', async () => {
    const ids = tokenizer.encode(' a b c d e f g h i j k l m n o p');
    const model = new ScriptedModel(ids);
    const engine = new LocalEngine(model, tokenizer);
    const abort = new AbortController();
    const stream = engine.generate('x', { maxNewTokens: 100, signal: abort.signal });
    const pieces: string[] = [];
    for await (const t of stream) {
      pieces.push(t);
      if (pieces.length === 3) abort.abort();
    }
    const r = await stream.result;
    expect(r.finishReason).toBe('abort');
    expect(pieces.length).toBe(3);
    expect(r.usage.completionTokens).toBe(3);
    expect(r.text).toBe(' a b c');
    // Already aborted: nothing runs.
    const none = await engine.complete('x', { signal: AbortSignal.abort() });
    expect(none).toMatchObject({ text: '', finishReason: 'abort' });
    // Breaking out of the loop is an abort too, and the next call runs normally.
    for await (const _ of engine.generate('y', { maxNewTokens: 5 })) break;
    expect((await engine.complete('z', { maxNewTokens: 4 })).text).toBe(' a b c d');
  });

  it('runs one generation at a time: a second call waits for the first', async () => {
    const model = new ScriptedModel(tokenizer.encode(' one two three four'));
    const engine = new LocalEngine(model, tokenizer);
    const events: string[] = [];
    const run = async (name: string, prompt: string) => {
      const s = engine.generate(prompt, { maxNewTokens: 4 });
      for await (const t of s) events.push(`${name}:${t}`);
      events.push(`${name}:done`);
    };
    await Promise.all([run('A', 'first'), run('B', 'second')]);
    expect(events).toEqual(['A: one', 'A: two', 'A: three', 'A: four', 'A:done', 'B: one', 'B: two', 'B: three', 'B: four', 'B:done']);
    expect(model.calls.map((c) => tokenizer.decode(c.prompt))).toEqual(['first', 'second']);
    // A waiting call whose signal aborts leaves the queue without running.
    let release!: () => void;
    model.gate = () => new Promise<void>((r) => (release = r));
    const first = engine.complete('hold', { maxNewTokens: 2 });
    const abort = new AbortController();
    const second = engine.complete('queued', { maxNewTokens: 2, signal: abort.signal });
    await new Promise((r) => setTimeout(r, 10));
    abort.abort();
    expect(await second).toMatchObject({ text: '', finishReason: 'abort' });
    model.gate = undefined;
    release();
    expect((await first).text).toBe(' one two');
    expect(model.calls.map((c) => tokenizer.decode(c.prompt)).at(-1)).toBe('hold');
  });

  it('reuses the context a previous call left when the prompt extends it', async () => {
    const model = new ScriptedModel(tokenizer.encode(' and then some'));
    const engine = new LocalEngine(model, tokenizer);
    const first = await engine.complete('Once upon a time', { maxNewTokens: 4 });
    const second = await engine.complete('Once upon a time' + first.text + ' again', { maxNewTokens: 2 });
    const promptIds = tokenizer.encode('Once upon a time' + first.text + ' again');
    // Everything the first call put in the context (its prompt and all but its last token) is reused.
    expect(second.usage.cachedPromptTokens).toBe(tokenizer.encode('Once upon a time').length + 3);
    expect(model.calls[1].prompt).toEqual(promptIds.slice(second.usage.cachedPromptTokens));
    // The same prompt again still computes its last token.
    const third = await engine.complete('Once upon a time' + first.text + ' again', { maxNewTokens: 1 });
    expect(third.usage.cachedPromptTokens).toBe(promptIds.length - 1);
  });

  it('a prompt past the context: a clear error, or the oldest tokens dropped when asked', async () => {
    const engine = new LocalEngine(new ScriptedModel(tokenizer.encode(' ok'), 16), tokenizer);
    const long = 'word '.repeat(30);
    await expect(engine.complete(long, { maxNewTokens: 4 })).rejects.toThrow(ContextLengthError);
    await expect(engine.complete(long, { maxNewTokens: 4 })).rejects.toThrow(/truncate-start/);
    const r = await engine.complete(long, { maxNewTokens: 4, contextOverflow: 'truncate-start' });
    expect(r.usage.promptTokens).toBe(tokenizer.encode(long).length);
    expect(r.usage.truncatedPromptTokens).toBe(tokenizer.encode(long).length - 13);
    expect(r.text).toBe(' ok');
  });

  it('validates options with messages that name the field', () => {
    expect(() => resolveOptions({ temperature: -1 })).toThrow(/temperature/);
    expect(() => resolveOptions({ topP: 0 })).toThrow(/topP/);
    expect(() => resolveOptions({ topK: 1.5 })).toThrow(/topK/);
    expect(() => resolveOptions({ maxNewTokens: -1 })).toThrow(/maxNewTokens/);
    expect(() => resolveOptions({ repetitionPenalty: 0 })).toThrow(/repetitionPenalty/);
    expect(() => resolveOptions({ contextOverflow: 'drop' as 'error' })).toThrow(/contextOverflow/);
    expect(resolveOptions({ seed: 5 }).sampling).toEqual({ temperature: 0.7, topK: 40, topP: 0.95, repetitionPenalty: 1.1, seed: 5 });
  });
});

describe('stop string matcher', () => {
  it('holds back only what could start a stop string', () => {
    const m = new StopStringMatcher(['\nUser:']);
    expect(m.push('Hello')).toBe('Hello');
    expect(m.push(' there\n')).toBe(' there');
    expect(m.push('Us')).toBe('');
    expect(m.push('ually')).toBe('\nUsually');
    expect(m.push('\nUser: hi')).toBe('');
    expect(m.stopped).toBe(true);
  });
});

describe('chat template', () => {
  const messages = [
    { role: 'system' as const, content: 'Be brief.' },
    { role: 'user' as const, content: 'Hi' },
    { role: 'assistant' as const, content: 'Hello.' },
    { role: 'user' as const, content: 'Tell me a story.' },
  ];

  it('renders the default plain-dialogue template with @huggingface/jinja', () => {
    expect(renderChat(messages)).toBe('Be brief.\n\nUser: Hi\nAssistant: Hello.\nUser: Tell me a story.\nAssistant:');
    expect(renderChat(messages, DEFAULT_CHAT_TEMPLATE)).toBe(renderChat(messages));
  });

  it('takes a caller’s template, and says what is wrong with bad input', () => {
    const chatml =
      '{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}';
    expect(renderChat(messages.slice(1, 2), chatml)).toBe('<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n');
    expect(() => renderChat([], chatml)).toThrow(UsageError);
    expect(() => renderChat([{ role: 'robot' as 'user', content: 'x' }])).toThrow(/messages\[0\]/);
    expect(() => renderChat(messages, '{% for %}')).toThrow(/does not parse/);
  });

  it('chat.completions.create: OpenAI shapes, streamed deltas equal the whole reply', async () => {
    const reply = tokenizer.encode(' Once there was a fox.\nUser: and more');
    const model = new ScriptedModel(reply);
    const engine = new LocalEngine(model, tokenizer, { modelName: 'scripted' });
    const whole = await engine.chat.completions.create({ messages, max_tokens: 50, seed: 1 });
    expect(whole).toMatchObject({
      object: 'chat.completion',
      model: 'scripted',
      choices: [{ index: 0, message: { role: 'assistant', content: ' Once there was a fox.' }, finish_reason: 'stop' }],
    });
    expect(whole.usage.prompt_tokens).toBe(tokenizer.encode(renderChat(messages)).length);
    expect(whole.usage.completion_tokens).toBeGreaterThan(0);
    expect(whole.usage.total_tokens).toBe(whole.usage.prompt_tokens + whole.usage.completion_tokens);
    expect(model.calls[0].sampling.seed).toBe(1);

    const chunks = [];
    for await (const c of await engine.chat.completions.create({ messages, max_tokens: 50, stream: true })) chunks.push(c);
    expect(chunks[0].choices[0].delta).toEqual({ role: 'assistant', content: '' });
    const content = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
    expect(content).toBe(' Once there was a fox.');
    expect(chunks.at(-2)!.choices[0].finish_reason).toBe('stop');
    expect(chunks.at(-1)!.choices).toEqual([]);
    expect(chunks.at(-1)!.usage!.completion_tokens).toBe(whole.usage.completion_tokens);
  });
});
