import { describe, expect, it } from 'vitest';
import { createEngine } from '../../src/node.ts';
import { BUILT_IN_MODEL, builtInReferenceEngine } from '../built-in-model.ts';

// The text engine on real WebGPU (Dawn on SwiftShader) with the built-in trained model, checked
// against the same engine over the float64 CPU reference (an independent implementation of the
// forward pass and the sampler) and against itself.

const dir = BUILT_IN_MODEL.dir;
const referenceEngine = () => builtInReferenceEngine(512);

describe('createEngine on WebGPU (built-in model)', () => {
  it('gives the CPU reference’s text: greedy with a repetition penalty, and seeded sampling', async () => {
    const gpu = await createEngine({ model: dir, backend: 'webgpu', maxContext: 512 });
    const cpu = await referenceEngine();
    try {
      for (const options of [
        { maxNewTokens: 20, temperature: 0, repetitionPenalty: 1.3 },
        { maxNewTokens: 20, temperature: 0, repetitionPenalty: 1 },
        { maxNewTokens: 20, temperature: 0.8, topK: 50, topP: 0.9, repetitionPenalty: 1.1, seed: 99 },
      ]) {
        const prompt = 'In the city of';
        const [a, b] = [await gpu.complete(prompt, { ...options, stopAtEndOfText: false }), await cpu.complete(prompt, { ...options, stopAtEndOfText: false })];
        expect(a.text, JSON.stringify(options)).toBe(b.text);
        expect(a.usage.completionTokens).toBe(20);
      }
    } finally {
      await gpu.dispose();
      await cpu.dispose();
    }
  });

  it('the same seed gives the same text: on a new engine, and again on the same one', async () => {
    const options = { maxNewTokens: 24, temperature: 0.9, seed: 7 };
    const a = await createEngine({ model: dir, backend: 'webgpu', maxContext: 256 });
    const b = await createEngine({ model: dir, backend: 'webgpu', maxContext: 256 });
    try {
      const first = await a.complete('He walked into the room and', options);
      expect(first.usage.completionTokens).toBeGreaterThan(0);
      expect((await b.complete('He walked into the room and', options)).text).toBe(first.text);
      const again = await a.complete('He walked into the room and', options);
      expect(again.usage.cachedPromptTokens, 'the second call reused the context').toBeGreaterThan(0);
      expect(again.text).toBe(first.text);
      const other = await a.complete('He walked into the room and', { ...options, seed: 8 });
      expect(other.text).not.toBe(first.text);
    } finally {
      await a.dispose();
      await b.dispose();
    }
  });

  it('a chat continued from the kept context gives what a fresh engine gives', async () => {
    const kept = await createEngine({ model: dir, backend: 'webgpu', maxContext: 256 });
    const fresh = await createEngine({ model: dir, backend: 'webgpu', maxContext: 256 });
    try {
      const options = { max_tokens: 12, temperature: 0 };
      const messages = [{ role: 'user' as const, content: 'Where is the church?' }];
      const first = await kept.chat.completions.create({ messages, ...options });
      const next = [...messages, first.choices[0].message, { role: 'user' as const, content: 'And the school?' }];
      const second = await kept.chat.completions.create({ messages: next, ...options });
      expect(second.usage.extra.cached_prompt_tokens).toBeGreaterThan(first.usage.prompt_tokens / 2);
      const want = await fresh.chat.completions.create({ messages: next, ...options });
      expect(second.choices[0].message.content).toBe(want.choices[0].message.content);
    } finally {
      await kept.dispose();
      await fresh.dispose();
    }
  });
});
