import { describe, expect, it } from 'vitest';
import type { RoutingTrace } from '../../src/engine/generation.ts';
import { createEngine } from '../../src/node.ts';
import { BUILT_IN_MODEL, builtInReferenceEngine, builtInTokenizer } from '../built-in-model.ts';

// The routing trace on WebGPU (Dawn on SwiftShader) against the float64 CPU reference's own
// router decisions (src/reference/router.ts), on the built-in trained model: the same experts
// in the same slots for every token and layer, gates within GATE_TOL (f32 against f64 through
// four q8 layers; the logits agree to 1e-4).

const GATE_TOL = 1e-4;
const dir = BUILT_IN_MODEL.dir;
const tokenizer = builtInTokenizer();
const referenceEngine = () => builtInReferenceEngine(256);

function expectSameRouting(gpu: RoutingTrace, cpu: RoutingTrace): void {
  expect(gpu.ids).toEqual(cpu.ids);
  expect(gpu.pieces).toEqual(cpu.pieces);
  expect([gpu.tokens, gpu.layers, gpu.kAtt, gpu.kMlp, gpu.promptTokens]).toEqual([cpu.tokens, cpu.layers, cpu.kAtt, cpu.kMlp, cpu.promptTokens]);
  expect(Array.from(gpu.attExperts)).toEqual(Array.from(cpu.attExperts));
  expect(Array.from(gpu.mlpExperts)).toEqual(Array.from(cpu.mlpExperts));
  for (const [a, b] of [
    [gpu.attGates, cpu.attGates],
    [gpu.mlpGates, cpu.mlpGates],
  ] as const) {
    let worst = 0;
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
    expect(worst).toBeLessThan(GATE_TOL);
  }
}

describe('routing trace (built-in model)', () => {
  it('gives the CPU reference’s experts and gates for the prompt and every token read back', async () => {
    const gpu = await createEngine({ model: dir, backend: 'webgpu', maxContext: 256, prefillChunk: 4 });
    const cpu = await referenceEngine();
    try {
      const prompt = 'The jury said that the city';
      const options = { maxNewTokens: 6, temperature: 0, routingTrace: true, stopAtEndOfText: false };
      const [a, b] = [await gpu.complete(prompt, options), await cpu.complete(prompt, options)];
      expect(a.text).toBe(b.text);
      const promptIds = tokenizer.encode(prompt);
      // Prefill in chunks of 4 rows, then decode steps; the last new token is never read.
      expect(a.routing!.promptTokens).toBe(promptIds.length);
      expect(a.routing!.tokens).toBe(promptIds.length + 5);
      expect(a.routing!.ids.slice(0, promptIds.length)).toEqual(promptIds);
      expectSameRouting(a.routing!, b.routing!);
      // Every expert id is in range and every gate a probability, in descending slot order.
      const c = gpu.config;
      expect(Math.max(...a.routing!.attExperts)).toBeLessThan(c.nAttExperts);
      expect(Math.max(...a.routing!.mlpExperts)).toBeLessThan(c.nMlpExperts);
      for (let i = 0; i < a.routing!.attGates.length; i += c.kAtt) {
        expect(a.routing!.attGates[i]).toBeGreaterThanOrEqual(a.routing!.attGates[i + 1]);
      }

      // The next turn reuses the context: only its new tokens are traced.
      const next = prompt + a.text + ' and';
      const [c2, d2] = [await gpu.complete(next, options), await cpu.complete(next, options)];
      expect(c2.usage.cachedPromptTokens).toBeGreaterThan(0);
      expect(c2.routing!.promptTokens).toBe(c2.usage.promptTokens - c2.usage.cachedPromptTokens);
      expectSameRouting(c2.routing!, d2.routing!);
    } finally {
      await gpu.dispose();
      await cpu.dispose();
    }
  });

  it('costs nothing unless asked for, and does not change the tokens', async () => {
    const gpu = await createEngine({ model: dir, backend: 'webgpu', maxContext: 256 });
    try {
      const options = { maxNewTokens: 8, temperature: 0.8, seed: 3 };
      const plain = await gpu.complete('It was a long day', options);
      expect(plain.routing).toBeUndefined();
      await gpu.reset();
      const traced = await gpu.complete('It was a long day', { ...options, routingTrace: true });
      expect(traced.text).toBe(plain.text);
      expect(traced.routing!.tokens).toBeGreaterThan(0);
      // Tracing is per call: the next call without it returns none.
      await gpu.reset();
      expect((await gpu.complete('It was a long day', options)).routing).toBeUndefined();
    } finally {
      await gpu.dispose();
    }
  });

  it('reports progress after every new token', async () => {
    const gpu = await createEngine({ model: dir, backend: 'webgpu', maxContext: 256 });
    try {
      const seen: number[] = [];
      const r = await gpu.complete('Once', { maxNewTokens: 5, temperature: 0, stopAtEndOfText: false, onProgress: (p) => seen.push(p.completionTokens) });
      expect(seen).toEqual([1, 2, 3, 4, 5]);
      expect(r.usage.completionTokens).toBe(5);
    } finally {
      await gpu.dispose();
    }
  });
});
