import { describe, expect, it } from 'vitest';
import { nodeFileSource } from '../../src/checkpoint/node-files.ts';
import { nodeGpu } from '../../src/gpu/node-gpu.ts';
import { loadGpuModel } from '../../src/model/load.ts';
import { GREEDY, type GpuModel } from '../../src/model/model.ts';
import { BUILT_IN_MODEL, builtInTokenizer } from '../built-in-model.ts';
import { expectClose } from './harness.ts';

// Experts streamed under a GPU memory budget, on WebGPU (Dawn on SwiftShader): the same tokens
// as with every expert resident, for each eviction policy.

const dir = BUILT_IN_MODEL.dir;
const prompt = builtInTokenizer().encode('The jury said that the city of Atlanta');

async function load(budget?: { bytes: string | number; policy?: 'lru' | 'lfu' }): Promise<GpuModel> {
  return loadGpuModel(nodeFileSource(dir), { gpu: await nodeGpu(), maxContext: 96, expertBudget: budget });
}

async function tokens(model: GpuModel, sampling = GREEDY, n = 24): Promise<number[]> {
  model.reset();
  const out: number[] = [];
  for await (const id of model.generate(prompt, n, sampling)) out.push(id);
  return out;
}

describe('experts under a GPU memory budget (built-in model)', () => {
  it('a quarter of the expert weights gives the tokens of the fully resident model, LRU and LFU', async () => {
    const full = await load();
    const sampled = { temperature: 0.9, topK: 40, topP: 0.95, seed: 5, repetitionPenalty: 1.1 };
    const want = { greedy: await tokens(full), sampled: await tokens(full, sampled) };
    const logits = await (full.reset(), full.prefillLogits(prompt));
    const fullBytes = full.gpuBytes;
    full.destroy();
    for (const policy of ['lru', 'lfu'] as const) {
      const model = await load({ bytes: '25%', policy });
      try {
        expect(model.expertCache).toMatchObject({ attSlots: 2, mlpSlots: 2, hits: 0, misses: 0 });
        expect(fullBytes - model.gpuBytes, 'three quarters of the expert weights are not on the GPU').toBeGreaterThan(0);
        expect(await tokens(model), policy).toEqual(want.greedy);
        expect(await tokens(model, sampled), policy).toEqual(want.sampled);
        model.reset();
        expectClose(await model.prefillLogits(prompt), logits, 1e-4, `${policy} logits`);
        const stats = model.expertCache!;
        expect(stats.misses).toBeGreaterThan(0);
        expect(stats.hits + stats.misses).toBeGreaterThan(0);
        expect(stats.loadedBytes).toBeGreaterThan(0);
      } finally {
        model.destroy();
      }
    }
  });
});
