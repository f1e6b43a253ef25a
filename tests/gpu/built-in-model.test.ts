import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { nodeFileSource } from '../../src/checkpoint/node-files.ts';
import { MolmTokenizer } from '../../src/engine/tokenizer.ts';
import { nodeGpu } from '../../src/gpu/node-gpu.ts';
import { loadGpuModel } from '../../src/model/load.ts';
import { GREEDY } from '../../src/token-model.ts';
import { BUILT_IN_MODEL } from '../built-in-model.ts';
import { expectClose } from './harness.ts';

// The shipped model against its second reference: train.py's PyTorch ModuleFormer, in float64,
// on the same q8 shards (read and dequantised by tools/train/molm_shards.py, an independent
// implementation of the format). tests/fixtures/golden/molm-brown is written by
// tools/train/pytorch_logits.py.
const GOLDEN = join(__dirname, '..', 'fixtures', 'golden', 'molm-brown');
const expected = JSON.parse(readFileSync(join(GOLDEN, 'expected.json'), 'utf8')) as { input_ids: number[]; greedy_new_tokens: number[] };
const raw = readFileSync(join(GOLDEN, 'expected_logits.f32'));
const logits = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);

// float32 against float64 over 4 layers of width 128: the same contract as the other goldens.
const LOGIT_TOL = 1e-4;

describe('the built-in model (public/models) against PyTorch', () => {
  it('the prompt’s logits at every position and the greedy continuation match', async () => {
    const model = await loadGpuModel(nodeFileSource(BUILT_IN_MODEL.dir), { gpu: await nodeGpu(), maxContext: 128 });
    try {
      expectClose(await model.prefillLogits(expected.input_ids), logits, LOGIT_TOL, 'prefill logits');
      model.reset();
      const tokens: number[] = [];
      for await (const id of model.generate(expected.input_ids, expected.greedy_new_tokens.length, GREEDY)) tokens.push(id);
      expect(tokens).toEqual(expected.greedy_new_tokens);
    } finally {
      model.destroy();
    }
  });

  it('ships what a fresh clone needs: manifest, shards, tokenizer, at most 20 MB in all', () => {
    const manifest = JSON.parse(readFileSync(join(BUILT_IN_MODEL.dir, 'manifest.json'), 'utf8'));
    const files = readdirSync(BUILT_IN_MODEL.dir);
    expect(files.sort()).toEqual(['manifest.json', ...manifest.shards.map((s: { file: string }) => s.file), 'tokenizer.json'].sort());
    const bytes = files.reduce((a, f) => a + statSync(join(BUILT_IN_MODEL.dir, f)).size, 0);
    expect(bytes).toBeLessThanOrEqual(20e6);
    expect(['q8', 'q4']).toContain(manifest.dtype);
    const tokenizer = MolmTokenizer.fromJson(readFileSync(join(BUILT_IN_MODEL.dir, 'tokenizer.json'), 'utf8'));
    expect(tokenizer.encode('Hello world')).toEqual([15496, 995]);
  });
});
