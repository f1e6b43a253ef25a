import { rmSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { openCheckpoint } from '../../src/checkpoint/index.ts';
import { nodeFileSource } from '../../src/checkpoint/node-files.ts';
import { nodeGpu } from '../../src/gpu/node-gpu.ts';
import { loadGpuModel } from '../../src/model/load.ts';
import { ReferenceModel, loadReferenceWeights } from '../../src/reference/model.ts';
import { maxAbsDiff } from './harness.ts';
import { GENERIC, MOLM_LIKE, synthRandomModel } from '../shared/random-models.ts';

const dirs: string[] = [];
afterAll(() =>
  dirs.forEach((d) => {
    rmSync(d, { recursive: true, force: true });
  }),
);
const synth = (config: object, dtype: 'F32' | 'BF16') => synthRandomModel(config, dtype, dirs);

describe.each([
  ['generic k/v model, f32', GENERIC, 'F32'],
  ['MoLM-shaped model, bf16', MOLM_LIKE, 'BF16'],
] as const)('random %s against the float64 reference', (_name, config, dtype) => {
  it('prefill in chunks and decode past every attention split agree with the reference', async () => {
    const dir = await synth(config, dtype);
    const { config: cfg, tensors } = await openCheckpoint(nodeFileSource(dir));
    const ref = new ReferenceModel(cfg, await loadReferenceWeights(tensors));
    await tensors.close();
    const V = cfg.vocabSize;
    const ids = Array.from({ length: 90 }, (_, i) => (i * 37 + 11) % V);
    const expected = ref.prefill(ids);
    let scale = 0;
    for (const x of expected) scale = Math.max(scale, Math.abs(x));
    expect(scale, 'logits must be spread for the comparison to mean anything').toBeGreaterThan(1);
    // f32 against f64 through 3 layers with a 90-token context: 1e-5 of the logit scale.
    const tol = 1e-5 * Math.max(scale, 10);

    const model = await loadGpuModel(nodeFileSource(dir), { gpu: await nodeGpu(), maxContext: 96, prefillChunk: 16 });
    try {
      const prefill = await model.prefillLogits(ids);
      expect(maxAbsDiff(prefill, expected)).toBeLessThanOrEqual(tol);

      model.reset();
      const split = 40; // prefill 40 tokens (3 chunks), then decode 50 tokens one at a time
      const got = new Float32Array(ids.length * V);
      got.set(await model.prefillLogits(ids.slice(0, split)));
      for (let t = split; t < ids.length; t++) got.set(await model.decodeLogits(ids[t]), t * V);
      expect(maxAbsDiff(got, expected)).toBeLessThanOrEqual(tol);
    } finally {
      model.destroy();
    }
  });
});
