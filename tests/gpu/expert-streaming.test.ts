import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { nodeFileSource } from '../../src/checkpoint/node-files.ts';
import { nodeGpu } from '../../src/gpu/node-gpu.ts';
import { loadGpuModel } from '../../src/model/load.ts';
import type { GpuModel } from '../../src/model/model.ts';
import { GREEDY } from '../../src/token-model.ts';
import { BUILT_IN_MODEL, builtInTokenizer } from '../built-in-model.ts';
import { molm } from '../molm-cli.ts';
import { expectClose } from './harness.ts';

// Experts streamed under a GPU memory budget, on WebGPU (Dawn on SwiftShader): the same tokens
// as with every expert resident, for each eviction policy.

const dir = BUILT_IN_MODEL.dir;
const prompt = builtInTokenizer().encode('The jury said that the city of Atlanta');

const tmp = mkdtempSync(join(tmpdir(), 'molm-stream-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Bytes of the built-in model's stacked expert tensors, from its manifest. */
function expertBytes(): number {
  const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as { tensors: { name: string; bytes: number }[] };
  return manifest.tensors.filter((t) => t.name.endsWith('experts.weight')).reduce((a, t) => a + t.bytes, 0);
}

async function load(budget?: { bytes: string | number; policy?: 'lru' | 'lfu' }, from = dir): Promise<GpuModel> {
  return loadGpuModel(nodeFileSource(from), { gpu: await nodeGpu(), maxContext: 96, expertBudget: budget });
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
        // 2 of 8 slots per layer: three quarters of the expert weights stay off the GPU, less
        // what streaming adds (its slot tables and staging), which is far below a twentieth.
        expect(fullBytes - model.gpuBytes, 'three quarters of the expert weights are not on the GPU').toBeGreaterThan(0.7 * expertBytes());
        expect(await tokens(model), policy).toEqual(want.greedy);
        expect(await tokens(model, sampled), policy).toEqual(want.sampled);
        // A streamed step waits for its routers: each token reaches the caller before the step
        // that feeds it back, so tokens timed as they arrive cost a step each (a 2-token
        // generation once reported 14× the true decode rate).
        model.reset();
        let arrived = 0;
        for await (const _ of model.generate(prompt, 3, GREEDY)) {
          expect(model.contextIds.length, `${policy}: when token ${arrived + 1} arrives`).toBe(prompt.length + arrived);
          arrived++;
        }
        expect(model.contextIds).toEqual([...prompt, ...want.greedy.slice(0, 2)]);
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

  it('a synthetic model of a real MoLM-350M-4B layer (16 attention and 32 MLP experts, 1024 wide) does too', async () => {
    // One real layer with random bf16 weights; a small vocabulary keeps the embedding and head
    // (not part of the layer) quick on a CPU adapter.
    const synth = join(tmp, 'molm-350m-4b-layer');
    const r = await molm(
      'synth',
      '--config',
      'tests/fixtures/configs/molm-350m-4b.json',
      '--layers',
      '1',
      '--out',
      synth,
      '--set',
      'vocab_size=2048',
      '--seed',
      '3',
    );
    expect(r.code, r.stderr).toBe(0);
    const ids = [5, 900, 17, 1200, 44, 3, 2000, 77];
    const run = async (model: GpuModel) => {
      const out: number[] = [];
      for await (const id of model.generate(ids, 10, { temperature: 1, topK: 0, topP: 1, seed: 9 })) out.push(id);
      return out;
    };
    const full = await load(undefined, synth);
    const want = await run(full);
    full.destroy();
    for (const policy of ['lru', 'lfu'] as const) {
      const model = await load({ bytes: '25%', policy }, synth);
      try {
        expect(model.expertCache).toMatchObject({ attSlots: 4, mlpSlots: 8 });
        expect(await run(model), policy).toEqual(want);
        expect(model.expertCache!.misses).toBeGreaterThan(0);
      } finally {
        model.destroy();
      }
    }
  });

  it('molm generate --gpu-memory-budget reports the hit rate with --json, and refuses a budget below k experts per layer', async () => {
    const args = ['generate', '--model', dir, '--prompt', 'The jury said', '--max-new-tokens', '8', '--temperature', '0', '--json'];
    const plain = JSON.parse((await molm(...args)).stdout);
    const r = await molm(...args, '--gpu-memory-budget', '50%', '--expert-eviction', 'lru');
    expect(r.code, r.stderr).toBe(0);
    const budgeted = JSON.parse(r.stdout);
    expect(budgeted.text).toBe(plain.text);
    expect(plain.expert_cache_hit_rate).toBeUndefined();
    expect(budgeted.expert_cache_hit_rate).toBeGreaterThan(0);
    expect(budgeted.expert_cache_hit_rate).toBeLessThan(1);
    expect(budgeted.usage.expertCache.hits + budgeted.usage.expertCache.misses).toBe(4 * 2 * 2 * (3 + 7));
    const tiny = await molm(...args, '--gpu-memory-budget', '1000');
    expect(tiny.code).not.toBe(0);
    expect(tiny.stderr).toMatch(/cannot hold the 2 attention and 2 MLP experts a token needs in every layer.*Raise the budget/);
  });
});
