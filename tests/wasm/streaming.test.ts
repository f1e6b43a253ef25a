import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { nodeFileSource } from '../../src/checkpoint/node-files.ts';
import { GREEDY } from '../../src/token-model.ts';
import { loadWasmModel } from '../../src/wasm/load.ts';
import { BUILT_IN_MODEL } from '../built-in-model.ts';
import { expectClose } from '../shared/numeric.ts';

// Experts outside the wasm memory: a budget (or a memory limit the model does not fit) keeps S
// slots of each stacked expert tensor in the memory and every expert in host memory, copying a
// picked expert in (ExpertResidency, as the GPU budget path). The model must compute exactly
// what it computes fully resident: the golden logits within 1e-4 and the same greedy tokens.

const GOLDEN = join(__dirname, '..', 'fixtures', 'golden', 'molm-brown');
const expected = JSON.parse(readFileSync(join(GOLDEN, 'expected.json'), 'utf8')) as { input_ids: number[]; greedy_new_tokens: number[] };
const raw = readFileSync(join(GOLDEN, 'expected_logits.f32'));
const logits = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);

describe('wasm engine with experts streamed from host memory (built-in model)', () => {
  for (const policy of ['lfu', 'lru'] as const) {
    it(`a quarter of the experts in the memory (${policy}): golden logits and greedy tokens`, async () => {
      const m = await loadWasmModel(nodeFileSource(BUILT_IN_MODEL.dir), { maxContext: 64, threads: 2, expertBudget: { bytes: '25%', policy } });
      try {
        const cache = m.expertCache!;
        expect([cache.attSlots, cache.mlpSlots]).toEqual([2, 2]); // 8 experts of each kind, top-2
        expectClose(await m.prefillLogits(expected.input_ids), logits, 1e-4, 'prefill logits');
        m.reset();
        const tokens: number[] = [];
        for await (const id of m.generate(expected.input_ids, expected.greedy_new_tokens.length, GREEDY)) tokens.push(id);
        expect(tokens).toEqual(expected.greedy_new_tokens);
        const after = m.expertCache!;
        expect(after.misses).toBeGreaterThan(0);
        expect(after.hits + after.misses).toBeGreaterThan(0);
        expect(after.loadedBytes).toBeGreaterThan(0);
      } finally {
        m.destroy();
      }
    });
  }

  it('a memory limit the model does not fit streams its experts by itself, with as many slots as fit', async () => {
    // Prefill steps of one row, as streaming takes, so that only the experts make a difference.
    const full = await loadWasmModel(nodeFileSource(BUILT_IN_MODEL.dir), { maxContext: 64, threads: 1, prefillChunk: 1 });
    const bytes = full.memoryBytes;
    full.destroy();
    // 1.5 MiB less than the model needs (its experts take 3.2 MiB): some experts of each layer must stay out.
    const limit = bytes - 1.5 * 2 ** 20;
    const m = await loadWasmModel(nodeFileSource(BUILT_IN_MODEL.dir), { maxContext: 64, threads: 1, prefillChunk: 1, memoryLimit: limit });
    try {
      expect(m.memoryBytes).toBeLessThanOrEqual(limit);
      const cache = m.expertCache!;
      expect(cache.attSlots + cache.mlpSlots).toBeLessThan(16);
      expect(cache.attSlots).toBeGreaterThanOrEqual(2);
      expectClose(await m.prefillLogits(expected.input_ids), logits, 1e-4, 'prefill logits');
    } finally {
      m.destroy();
    }
  });
});
