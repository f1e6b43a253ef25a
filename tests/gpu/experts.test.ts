import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { nodeFileSource } from '../../src/checkpoint/node-files.ts';
import { openModel, openTokenizer } from '../../src/cli/backend.ts';
import { selectExperts } from '../../src/experts/prune.ts';
import { profileExperts, type ExpertUsage } from '../../src/experts/usage.ts';
import { layerTensorNames } from '../../src/tensor-names.ts';
import { decodeTensor } from '../../src/quant/decode.ts';
import { openModelFolder } from '../../src/shards/model-folder.ts';
import { BUILT_IN_MODEL } from '../built-in-model.ts';
import { molm } from '../molm-cli.ts';
import { expectClose } from './harness.ts';

// Expert usage (`molm profile`) and pruning (`molm prune`) on the built-in model: the profile
// on WebGPU against the same profile on the float64 CPU reference; the pruned model's tensors
// against the original's rows; the pruned model on WebGPU against the CPU reference reading
// the pruned shards.

const dir = BUILT_IN_MODEL.dir;
const tmp = mkdtempSync(join(tmpdir(), 'molm-experts-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const TEXT =
  'The Fulton County Grand Jury said Friday an investigation of recent primary elections produced no evidence that any irregularities took place. The jury further said in term-end presentments that the City Executive Committee deserves praise.';

describe('molm profile', () => {
  it('counts each expert’s picks and gate mass as the CPU reference’s routers do', async () => {
    const tokenizer = await openTokenizer(dir);
    const ids = tokenizer.encode(TEXT);
    const profile = async (device: 'gpu' | 'cpu') => {
      const model = await openModel(dir, { device, maxContext: 64, prefillChunk: 16 });
      try {
        return await profileExperts(model, ids, { window: 24 });
      } finally {
        model.close();
      }
    };
    const [gpu, cpu] = [await profile('gpu'), await profile('cpu')];
    expect(gpu.tokens).toBe(ids.length);
    for (const [l, layer] of gpu.layers.entries()) {
      for (const kind of ['attention', 'mlp'] as const) {
        expect(layer[kind].count, `layer ${l} ${kind}`).toEqual(cpu.layers[l][kind].count);
        expectClose(Float32Array.from(layer[kind].mass), Float64Array.from(cpu.layers[l][kind].mass), 1e-3, `layer ${l} ${kind} mass`);
        // Every token picks k experts.
        expect(layer[kind].count.reduce((a, b) => a + b, 0)).toBe(ids.length * (kind === 'attention' ? gpu.kAtt : gpu.kMlp));
      }
    }
  });

  it('selectExperts: --keep takes the top N by gate mass; --mass the fewest holding the share, the same count in every layer', () => {
    const layer = (mass: number[]) => ({
      attention: { count: mass.map((m) => Math.round(m * 10)), mass },
      mlp: { count: mass.map((m) => Math.round(m * 10)), mass },
    });
    const usage: ExpertUsage = {
      format: 'molm-expert-usage',
      version: 1,
      tokens: 10,
      window: 10,
      nAttExperts: 4,
      nMlpExperts: 4,
      kAtt: 1,
      kMlp: 1,
      layers: [layer([0.1, 5, 3, 1.9]), layer([9.5, 0, 0.2, 0.3])],
    };
    expect(selectExperts(usage, { keep: 2 }).attention).toEqual([
      [1, 2],
      [0, 3],
    ]);
    // 90 % of the mass: layer 0 needs experts 1, 2, 3 (5 + 3 + 1.9 of 10); layer 1 needs only 0.
    expect(selectExperts(usage, { mass: 0.9 }).mlp).toEqual([
      [1, 2, 3],
      [0, 2, 3],
    ]);
    expect(() => selectExperts({ ...usage, kAtt: 2 }, { keep: 1 })).toThrow(/below the attention router's k/);
  });
});

describe('molm prune', () => {
  it('keeps the chosen experts’ weights and router rows, and the pruned model runs on WebGPU as the CPU reference says', async () => {
    const textFile = join(tmp, 'task.txt');
    writeFileSync(textFile, TEXT);
    const usageFile = join(tmp, 'usage.json');
    const p = await molm('profile', '--model', dir, '--text', textFile, '--out', usageFile, '--window', '32', '--json');
    expect(p.code, p.stderr).toBe(0);
    const out = join(tmp, 'pruned-4');
    const r = await molm('prune', '--model', dir, '--usage', usageFile, '--keep', '4', '--out', out, '--json');
    expect(r.code, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout);
    expect(summary.dtype).toBe('q8');
    expect(summary.bytes).toBeLessThan(summary.sourceBytes);

    const usage = JSON.parse(readFileSync(usageFile, 'utf8')) as ExpertUsage;
    const kept = selectExperts(usage, { keep: 4 });
    expect(summary.kept).toEqual(kept);
    const original = await openModelFolder(nodeFileSource(dir));
    const pruned = await openModelFolder(nodeFileSource(out));
    try {
      expect([pruned.config.nAttExperts, pruned.config.nMlpExperts]).toEqual([4, 4]);
      expect(pruned.rawConfig.molm_kept_experts).toEqual(kept);
      for (let l = 0; l < original.config.nLayer; l++) {
        const n = layerTensorNames(l);
        for (const [name, experts] of [
          [n.attGate3Weight, kept.attention[l]],
          [n.upExperts, kept.mlp[l]],
          [n.downExperts, kept.mlp[l]],
          [n.queryExperts, kept.attention[l]],
        ] as const) {
          const a = decodeTensor(await original.tensors.read(name), original.tensors.tensors.get(name)!);
          const b = decodeTensor(await pruned.tensors.read(name), pruned.tensors.tensors.get(name)!);
          const per = a.length / original.tensors.tensors.get(name)!.shape[0];
          expect(b.length).toBe(per * experts.length);
          // q8 re-encoded from its own decoded values is the same q8: the rows are bit-identical.
          experts.forEach((e, i) => {
            expect(b.subarray(i * per, (i + 1) * per), `${name} expert ${e}`).toEqual(a.subarray(e * per, (e + 1) * per));
          });
        }
      }
    } finally {
      await original.tensors.close();
      await pruned.tensors.close();
    }

    // The pruned model: WebGPU against the float64 reference, both reading the pruned shards.
    const ids = (await openTokenizer(dir)).encode('The jury said that the city');
    const [gpu, cpu] = [await openModel(out, { device: 'gpu', maxContext: 32 }), await openModel(out, { device: 'cpu', maxContext: 32 })];
    try {
      expectClose(await gpu.prefillLogits(ids), await cpu.prefillLogits(ids), 1e-4, 'pruned logits');
    } finally {
      gpu.close();
      cpu.close();
    }
  });

  it('refuses a usage file made for another model, and a rule below k', async () => {
    const bad = join(tmp, 'bad-usage.json');
    writeFileSync(bad, JSON.stringify({ format: 'molm-expert-usage', version: 1, nAttExperts: 16, nMlpExperts: 16, layers: [] }));
    const r = await molm('prune', '--model', dir, '--usage', bad, '--keep', '4', '--out', join(tmp, 'x'));
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/made for 0 layers × 16 \+ 16 experts, the model has 4 × 8 \+ 8.*molm profile/);
    const ok = join(tmp, 'usage.json');
    const k = await molm('prune', '--model', dir, '--usage', ok, '--keep', '1', '--out', join(tmp, 'y'));
    expect(k.stderr).toMatch(/--keep 1 is below the attention router's k \(2\)/);
  });
});
