import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { nodeFileSource } from '../../src/checkpoint/node-files.ts';
import type { TensorSource } from '../../src/checkpoint/types.ts';
import { synthesize } from '../../src/cli/synth.ts';
import { decodeTensor } from '../../src/quant/decode.ts';
import { ReferenceModel, type ReferenceWeights } from '../../src/reference/model.ts';
import { convertModel } from '../../src/shards/convert.ts';
import { openModelFolder } from '../../src/shards/model-folder.ts';
import type { ConvertDtype } from '../../src/shards/plan.ts';

// Figures for docs/format.md, not checks run by `npm test` (they take minutes and GBs):
//
//   MOLM_QUALITY=1 npx vitest run tests/unit/shards-quality.test.ts -t quality
//       logit error of each storage type against f32, with the float64 CPU reference run on the
//       dequantised weights (so it does not depend on the GPU kernels).
//   MOLM_CONVERT_MEMORY=1 npx vitest run tests/unit/shards-quality.test.ts -t memory
//       the converter's peak memory on synthetic models of MoLM-350M's width.

const FIXTURES = fileURLToPath(new URL('../fixtures/', import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), 'molm-quality-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function referenceWeights(tensors: TensorSource): Promise<ReferenceWeights> {
  const weights: ReferenceWeights = new Map();
  for (const [name, info] of tensors.tensors) weights.set(name, Float64Array.from(decodeTensor(await tensors.read(name), info)));
  return weights;
}

async function referenceLogits(dir: string, ids: number[]): Promise<{ logits: Float64Array; vocab: number; weights: ReferenceWeights }> {
  const folder = await openModelFolder(nodeFileSource(dir));
  try {
    const weights = await referenceWeights(folder.tensors);
    const model = new ReferenceModel(folder.config, weights);
    return { logits: model.prefill(ids), vocab: folder.config.vocabSize, weights };
  } finally {
    await folder.tensors.close();
  }
}

/** RMS of the weight error over all matrices, relative to the RMS of the weights. */
function weightError(got: ReferenceWeights, want: ReferenceWeights): number {
  let err = 0;
  let ref = 0;
  for (const [name, w] of want) {
    const g = got.get(name)!;
    if (/ln_\w+\.|ln_f\.|bias$/.test(name)) continue;
    for (let i = 0; i < w.length; i++) {
      err += (g[i] - w[i]) ** 2;
      ref += w[i] ** 2;
    }
  }
  return Math.sqrt(err / ref);
}

function compare(a: Float64Array, b: Float64Array, vocab: number) {
  let max = 0;
  let sum = 0;
  let sq = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    max = Math.max(max, d);
    sum += d;
    sq += b[i] * b[i];
  }
  let agree = 0;
  const rows = a.length / vocab;
  const argmax = (x: Float64Array, r: number) => {
    let best = 0;
    for (let j = 1; j < vocab; j++) if (x[r * vocab + j] > x[r * vocab + best]) best = j;
    return best;
  };
  for (let r = 0; r < rows; r++) if (argmax(a, r) === argmax(b, r)) agree++;
  return { max, mean: sum / a.length, rms: Math.sqrt(sq / a.length), top1: agree / rows };
}

describe.skipIf(!process.env.MOLM_QUALITY)('quality of each storage type (MOLM_QUALITY=1)', () => {
  it('logit error against f32, CPU reference on dequantised weights', async () => {
    const synthDir = join(tmp, 'synth');
    await synthesize({
      configPath: join(FIXTURES, 'configs/molm-350m-4b.json'),
      layers: 2,
      outDir: synthDir,
      dtype: 'F32',
      seed: 3,
      overrides: { n_embd: 256, att_hidden: 256, ffd_hidden: 512, gating_size: 64, vocab_size: 1000, initializer_range: 0.1 },
    });
    let state = 11;
    const synthIds = Array.from({ length: 48 }, () => (state = (state * 1103515245 + 12345) >>> 0) % 1000);
    const models = [
      {
        name: 'tiny-molm (golden)',
        dir: join(FIXTURES, 'golden/tiny-molm'),
        ids: JSON.parse(readFileSync(join(FIXTURES, 'golden/tiny-molm/expected.json'), 'utf8')).input_ids as number[],
      },
      {
        name: 'tiny-generic-bf16 (golden)',
        dir: join(FIXTURES, 'golden/tiny-generic-bf16'),
        ids: JSON.parse(readFileSync(join(FIXTURES, 'golden/tiny-generic-bf16/expected.json'), 'utf8')).input_ids as number[],
      },
      { name: 'synthetic: 350M config, 2 layers, C=256, F=512, 16/32 experts, vocab 1000, init 0.1', dir: synthDir, ids: synthIds },
    ];
    const rows: string[] = ['| model | storage | weight error (rel. RMS) | logits: max abs | mean abs | top-1 agreement |', '|---|---|---|---|---|---|'];
    for (const m of models) {
      const base = await referenceLogits(m.dir, m.ids);
      await convertModel({ source: nodeFileSource(m.dir), outDir: join(tmp, 'f32'), dtype: 'f32' });
      const conv = await referenceLogits(join(tmp, 'f32'), m.ids);
      const exact = compare(conv.logits, base.logits, base.vocab);
      expect(exact.max).toBe(0); // f32 shards hold the checkpoint's values exactly
      rows.push(`| ${m.name} (logit RMS ${exact.rms.toFixed(3)}, ${m.ids.length} positions) | f32 | 0 | 0 | 0 | 100 % |`);
      for (const dtype of ['bf16', 'f16', 'q8', 'q4'] as ConvertDtype[]) {
        const out = join(tmp, `${dtype}`);
        await convertModel({ source: nodeFileSource(m.dir), outDir: out, dtype });
        const r = await referenceLogits(out, m.ids);
        const c = compare(r.logits, base.logits, base.vocab);
        const w = weightError(r.weights, base.weights);
        rows.push(`| | ${dtype} | ${w.toExponential(2)} | ${c.max.toExponential(2)} | ${c.mean.toExponential(2)} | ${(c.top1 * 100).toFixed(0)} % |`);
      }
    }
    console.log('\n' + rows.join('\n') + '\n');
  }, 1_800_000);
});

describe.skipIf(!process.env.MOLM_CONVERT_MEMORY)('converter memory (MOLM_CONVERT_MEMORY=1)', () => {
  it('peak memory is about one tensor, whatever the number of layers (and prints the table docs/format.md quotes)', async () => {
    const rows: string[] = [
      '| layers | source (bf16) | dtype | output | largest output tensor | peak ArrayBuffers | peak RSS (whole vitest worker) |',
      '|---|---|---|---|---|---|---|',
    ];
    const peaks = new Map<string, number>();
    for (const layers of [2, 4]) {
      const src = join(tmp, `mem-${layers}`);
      await synthesize({ configPath: join(FIXTURES, 'configs/molm-350m-4b.json'), layers, outDir: src, dtype: 'BF16', seed: 1 });
      for (const dtype of ['f32', 'f16', 'q4'] as ConvertDtype[]) {
        const before = process.memoryUsage();
        let peakRss = before.rss;
        let peakBuffers = before.arrayBuffers;
        const sample = () => {
          const m = process.memoryUsage();
          peakRss = Math.max(peakRss, m.rss);
          peakBuffers = Math.max(peakBuffers, m.arrayBuffers);
        };
        const timer = setInterval(sample, 5);
        const manifest = await convertModel({ source: nodeFileSource(src), outDir: join(tmp, `mem-out`), dtype, onProgress: sample });
        clearInterval(timer);
        const srcBytes = statSync(join(src, 'model.safetensors')).size;
        const outBytes = manifest.shards.reduce((a, s) => a + s.bytes, 0);
        const largest = Math.max(...manifest.tensors.map((t) => t.bytes));
        const mb = (n: number) => `${(n / 2 ** 20).toFixed(0)} MiB`;
        rows.push(`| ${layers} | ${mb(srcBytes)} | ${dtype} | ${mb(outBytes)} | ${mb(largest)} | ${mb(peakBuffers)} | ${mb(peakRss)} |`);
        // The converter holds one source tensor (decoded to f32 for q8 / q4), its encoding and one
        // shard being written: the buffers grow by no more than those of the largest tensor...
        const growth = peakBuffers - before.arrayBuffers;
        const largestF32 = 4 * Math.max(...manifest.tensors.map((t) => t.shape.reduce((a, b) => a * b, 1)));
        expect(growth, `${layers} layers ${dtype}`).toBeLessThan(largestF32 + largest + 64 * 2 ** 20);
        // ...and does not grow with the number of layers.
        const fewer = peaks.get(dtype);
        if (fewer !== undefined) expect(growth, `${dtype}: 4 layers against 2`).toBeLessThan(fewer * 1.25 + 32 * 2 ** 20);
        peaks.set(dtype, growth);
      }
      rmSync(src, { recursive: true, force: true });
    }
    console.log('\n' + rows.join('\n') + '\n');
  }, 3_600_000);
});
