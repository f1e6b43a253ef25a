import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { nodeFileSource } from '../../src/checkpoint/node-files.ts';
import { nodeGpu } from '../../src/gpu/node-gpu.ts';
import { loadGpuModel } from '../../src/model/load.ts';
import { GREEDY } from '../../src/token-model.ts';
import { expectClose } from './harness.ts';

const GOLDEN = join(__dirname, '..', 'fixtures', 'golden');

interface Expected {
  input_ids: number[];
  logits_shape: [number, number];
  greedy_new_tokens: number[];
}

function golden(name: string) {
  const dir = join(GOLDEN, name);
  const expected = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as Expected;
  const raw = readFileSync(join(dir, 'expected_logits.f32'));
  const logits = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
  return { dir, expected, logits };
}

// The contract: a correct float32 runtime lands within ~1e-4 of the reference's float64 logits.
const LOGIT_TOL = 1e-4;

describe.each(['tiny-molm', 'tiny-generic-bf16'])('whole model on WebGPU: %s', (name) => {
  const { dir, expected, logits } = golden(name);
  const [T, V] = expected.logits_shape;

  it('one prefill gives the reference logits at every position', async () => {
    const model = await loadGpuModel(nodeFileSource(dir), { gpu: await nodeGpu(), maxContext: 64 });
    try {
      expectClose(await model.prefillLogits(expected.input_ids), logits, LOGIT_TOL, 'prefill logits');
    } finally {
      model.destroy();
    }
  });

  it('prefill of one token, then single-token decodes, give the same logits', async () => {
    const model = await loadGpuModel(nodeFileSource(dir), { gpu: await nodeGpu(), maxContext: 64 });
    try {
      const rows = [await model.prefillLogits(expected.input_ids.slice(0, 1))];
      for (const id of expected.input_ids.slice(1)) rows.push(await model.decodeLogits(id));
      const all = new Float32Array(T * V);
      rows.forEach((r, i) => {
        all.set(r, i * V);
      });
      expectClose(all, logits, LOGIT_TOL, 'decode logits');
    } finally {
      model.destroy();
    }
  });

  it('chunked prefill (3 tokens a step) gives the same logits', async () => {
    const model = await loadGpuModel(nodeFileSource(dir), { gpu: await nodeGpu(), maxContext: 64, prefillChunk: 3 });
    try {
      expectClose(await model.prefillLogits(expected.input_ids), logits, LOGIT_TOL, 'chunked prefill logits');
    } finally {
      model.destroy();
    }
  });

  it('greedy generation with the KV cache reproduces the reference tokens', async () => {
    const model = await loadGpuModel(nodeFileSource(dir), { gpu: await nodeGpu(), maxContext: 64 });
    try {
      const n = expected.greedy_new_tokens.length;
      const tokens: number[] = [];
      for await (const id of model.generate(expected.input_ids, n, GREEDY)) tokens.push(id);
      expect(tokens).toEqual(expected.greedy_new_tokens);
      // A second generation after reset gives the same tokens (no state leaks between runs).
      model.reset();
      const again: number[] = [];
      for await (const id of model.generate(expected.input_ids, n, GREEDY)) again.push(id);
      expect(again).toEqual(expected.greedy_new_tokens);
    } finally {
      model.destroy();
    }
  });
});
