import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openCheckpoint } from '../../src/checkpoint/index.ts';
import { nodeFileSource } from '../../src/checkpoint/node-files.ts';
import { GREEDY } from '../../src/token-model.ts';
import { ReferenceModel, greedyGenerate, loadReferenceWeights } from '../../src/reference/model.ts';
import { convertModel } from '../../src/shards/convert.ts';
import type { LoadProgress } from '../../src/shards/load-model.ts';
import { memoryShardStore } from '../../src/store/shard-store.ts';
import { loadWasmModel, loadWasmModelFromUrl } from '../../src/wasm/load.ts';
import type { WasmModel } from '../../src/wasm/model.ts';
import { startModelServer } from '../browser/model-server.ts';
import { BUILT_IN_MODEL } from '../built-in-model.ts';
import { molm } from '../molm-cli.ts';
import { expectClose, maxAbsDiff } from '../shared/numeric.ts';
import { quantizedReference } from '../shared/quant-reference.ts';
import { GENERIC, MOLM_LIKE, synthRandomModel } from '../shared/random-models.ts';
import { THREADS } from './harness.ts';

// The whole model in the wasm engine against the goldens (reference logits within 1e-4, the
// same greedy tokens), the float64 reference on shapes no golden has and on quantised weights,
// through one prefill, chunked prefill and decode, with one thread and with two.

const FIXTURES = join(__dirname, '..', 'fixtures');
const tmp = mkdtempSync(join(tmpdir(), 'molm-wasm-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function golden(name: string) {
  const dir = name === 'molm-brown' ? BUILT_IN_MODEL.dir : join(FIXTURES, 'golden', name);
  const gdir = join(FIXTURES, 'golden', name);
  const expected = JSON.parse(readFileSync(join(gdir, 'expected.json'), 'utf8')) as { input_ids: number[]; greedy_new_tokens: number[] };
  const raw = readFileSync(join(gdir, 'expected_logits.f32'));
  const logits = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
  return { dir, expected, logits, T: expected.input_ids.length, V: logits.length / expected.input_ids.length };
}

const LOGIT_TOL = 1e-4;

async function using<T>(model: Promise<WasmModel>, f: (m: WasmModel) => Promise<T>): Promise<T> {
  const m = await model;
  try {
    return await f(m);
  } finally {
    m.destroy();
  }
}

describe.each(['tiny-molm', 'tiny-generic-bf16', 'molm-brown'])('wasm engine on the golden %s', (name) => {
  const { dir, expected, logits, T, V } = golden(name);
  for (const threads of THREADS) {
    it(`${threads} thread(s): one prefill, chunked prefill, decode and greedy generation match the reference`, () =>
      using(loadWasmModel(nodeFileSource(dir), { maxContext: 64, prefillChunk: 3, threads }), async (m) => {
        expect(m.threads).toBe(threads);
        expectClose(await m.prefillLogits(expected.input_ids), logits, LOGIT_TOL, 'chunked prefill logits');
        m.reset();
        const all = new Float32Array(T * V);
        all.set(await m.prefillLogits(expected.input_ids.slice(0, 1)));
        for (let t = 1; t < T; t++) all.set(await m.decodeLogits(expected.input_ids[t]), t * V);
        expectClose(all, logits, LOGIT_TOL, 'decode logits');
        m.reset();
        const tokens: number[] = [];
        for await (const id of m.generate(expected.input_ids, expected.greedy_new_tokens.length, GREEDY)) tokens.push(id);
        expect(tokens).toEqual(expected.greedy_new_tokens);
      }));
  }
  it('one prefill of the whole prompt (a chunk of 128 rows)', () =>
    using(loadWasmModel(nodeFileSource(dir), { maxContext: 64 }), async (m) => {
      expectClose(await m.prefillLogits(expected.input_ids), logits, LOGIT_TOL, 'prefill logits');
    }));
  // Each token reaches the caller before the step that feeds it back runs, so tokens timed as
  // they arrive cost a step each, and a 2-token generation reports a true decode rate.
  it('each token arrives before the step that feeds it back; the context holds what was fed', () =>
    using(loadWasmModel(nodeFileSource(dir), { maxContext: 64 }), async (m) => {
      const prompt = expected.input_ids;
      const seen: number[] = [];
      for await (const id of m.generate(prompt, 3, GREEDY)) {
        expect(m.contextIds.length, `when token ${seen.length + 1} arrives`).toBe(prompt.length + seen.length);
        seen.push(id);
      }
      expect(seen).toEqual(expected.greedy_new_tokens.slice(0, 3));
      expect(m.contextIds).toEqual([...prompt, ...seen.slice(0, 2)]);
    }));
});

const randomDirs: string[] = [];
afterAll(() =>
  randomDirs.forEach((d) => {
    rmSync(d, { recursive: true, force: true });
  }),
);
const synth = (config: object, dtype: 'F32' | 'BF16' | 'F16') => synthRandomModel(config, dtype, randomDirs);

describe.each([
  ['generic k/v model, f32', GENERIC, 'F32'],
  ['MoLM-shaped model, bf16', MOLM_LIKE, 'BF16'],
  ['MoLM-shaped model, f16', MOLM_LIKE, 'F16'],
] as const)('wasm engine on a random %s against the float64 reference', (_name, config, dtype) => {
  it('prefill in chunks and decode past several attention segments agree with the reference', async () => {
    const dir = await synth(config, dtype);
    const { config: cfg, tensors } = await openCheckpoint(nodeFileSource(dir));
    const ref = new ReferenceModel(cfg, await loadReferenceWeights(tensors));
    await tensors.close();
    const V = cfg.vocabSize;
    const ids = Array.from({ length: 150 }, (_, i) => (i * 37 + 11) % V);
    const expected = ref.prefill(ids);
    let scale = 0;
    for (const x of expected) scale = Math.max(scale, Math.abs(x));
    expect(scale, 'logits must be spread for the comparison to mean anything').toBeGreaterThan(1);
    // f32 against f64 through 3 layers with a 150-token context: 1e-5 of the logit scale.
    const tol = 1e-5 * Math.max(scale, 10);
    for (const threads of THREADS) {
      await using(loadWasmModel(nodeFileSource(dir), { maxContext: 160, prefillChunk: 16, threads }), async (m) => {
        expect(maxAbsDiff(await m.prefillLogits(ids), expected), `prefill, ${threads} thread(s)`).toBeLessThanOrEqual(tol);
        m.reset();
        const split = 40; // 3 chunks, then 110 decodes: keys cross segments of 64 at 64 and 128
        const got = new Float32Array(ids.length * V);
        got.set(await m.prefillLogits(ids.slice(0, split)));
        for (let t = split; t < ids.length; t++) got.set(await m.decodeLogits(ids[t]), t * V);
        expect(maxAbsDiff(got, expected), `decode, ${threads} thread(s)`).toBeLessThanOrEqual(tol);
      });
    }
  });
});

describe.each(['q8', 'q4'] as const)('wasm engine on tiny-molm with %s matrices', (type) => {
  const DIR = join(FIXTURES, 'golden', 'tiny-molm');
  const ids = golden('tiny-molm').expected.input_ids;
  it('prefill, decode and greedy tokens match the float64 reference on the same quantised weights', async () => {
    const ref = await quantizedReference(DIR, type);
    const want = ref.prefill(ids);
    let scale = 0;
    for (const x of want) scale = Math.max(scale, Math.abs(x));
    const tol = 1e-5 * Math.max(scale, 10);
    await using(loadWasmModel(nodeFileSource(DIR), { maxContext: 64, matrixType: type }), async (m) => {
      expect(new Set(m.weights.plan.entries.map((e) => e.storage))).toEqual(new Set(['f16', 'f32', type]));
      expect(maxAbsDiff(await m.prefillLogits(ids), want)).toBeLessThanOrEqual(tol);
      m.reset();
      const V = want.length / ids.length;
      const all = new Float32Array(want.length);
      all.set(await m.prefillLogits(ids.slice(0, 5)));
      for (let t = 5; t < ids.length; t++) all.set(await m.decodeLogits(ids[t]), t * V);
      expect(maxAbsDiff(all, want)).toBeLessThanOrEqual(tol);
      ref.reset();
      const refTokens = greedyGenerate(ref, ids, 8);
      m.reset();
      const tokens: number[] = [];
      for await (const id of m.generate(ids, 8, GREEDY)) tokens.push(id);
      expect(tokens).toEqual(refTokens);
    });
  });
});

describe('wasm engine from shards over HTTP (the same loader and cache as the GPU path)', () => {
  it('loads a converted q8 model over HTTP, then from the store with no shard request; logits match the same model read from its folder', async () => {
    const src = join(FIXTURES, 'golden', 'tiny-molm');
    await convertModel({ source: nodeFileSource(src), outDir: join(tmp, 'm'), dtype: 'q8', shardBytes: 16 << 10 });
    const ids = golden('tiny-molm').expected.input_ids;
    const fromFolder = await using(loadWasmModel(nodeFileSource(join(tmp, 'm')), { maxContext: 64 }), (m) => m.prefillLogits(ids));
    const server = await startModelServer(tmp);
    const store = memoryShardStore();
    try {
      for (const round of ['network', 'cache'] as const) {
        server.reset();
        const events: LoadProgress[] = [];
        await using(loadWasmModelFromUrl(`${server.url}/m/manifest.json`, { store, maxContext: 64, onProgress: (e) => events.push(e) }), async (m) => {
          expect(events.at(-1)?.type).toBe('ready');
          if (round === 'network') expect(server.count()).toBeGreaterThan(1);
          else expect(server.count()).toBe(0);
          expect(events.some((e) => e.type === 'upload')).toBe(true);
          expect(Array.from(await m.prefillLogits(ids))).toEqual(Array.from(fromFolder));
        });
      }
    } finally {
      await server.close();
    }
  });
});

// Every checkpoint form holds the same tiny-molm weights (tools/fixtures/make_checkpoints.py).
const FORMS = [
  ['safetensors', 'golden/tiny-molm', 'tiny-molm'],
  ['pytorch_model.bin', 'checkpoints/tiny-molm-bin', 'tiny-molm'],
  ['sharded pytorch_model.bin', 'checkpoints/tiny-molm-bin-sharded', 'tiny-molm'],
  ['sharded safetensors', 'checkpoints/tiny-molm-st-sharded', 'tiny-molm'],
  ['f16 safetensors', 'checkpoints/tiny-molm-f16-st', null],
  ['bf16 pytorch_model.bin, k/v projections', 'checkpoints/tiny-generic-bf16-bin', 'tiny-generic-bf16'],
] as const;

describe('molm CLI --device wasm', () => {
  it.each(FORMS)('logits and generate on %s match the reference', async (form, dir, goldenName) => {
    const model = join(FIXTURES, dir);
    const e = golden(goldenName ?? 'tiny-molm').expected;
    const out = join(tmp, `${form.replace(/\W/g, '_')}.f32`);
    const r = await molm('logits', '--model', model, '--ids', e.input_ids.join(','), '--out', out, '--device', 'wasm');
    expect(r.code, r.stderr).toBe(0);
    const raw = readFileSync(out);
    const got = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
    if (goldenName) {
      expectClose(got, golden(goldenName).logits, LOGIT_TOL, 'logits file');
    } else {
      // No golden for the f16 copy: the float64 reference on the same (f16) weights.
      const { config, tensors } = await openCheckpoint(nodeFileSource(model));
      const ref = new ReferenceModel(config, await loadReferenceWeights(tensors));
      await tensors.close();
      expectClose(got, ref.prefill(e.input_ids), LOGIT_TOL, 'logits file');
    }
    const g = await molm('generate', '--model', model, '--ids', e.input_ids.join(','), '--max-new-tokens', '8', '--greedy', '--json', '--device', 'wasm');
    expect(g.code, g.stderr).toBe(0);
    if (goldenName) expect(JSON.parse(g.stdout)).toEqual({ new_tokens: e.greedy_new_tokens });
  });

  it('bench --device wasm reports the benchmark fields with threads and SIMD', async () => {
    const r = await molm(
      'bench',
      '--model',
      BUILT_IN_MODEL.dir,
      '--device',
      'wasm',
      '--threads',
      '2',
      '--prompt-tokens',
      '8',
      '--new-tokens',
      '4',
      '--kernels',
      '--json',
    );
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j).toMatchObject({ prompt_tokens: 8, new_tokens: 4, threads: 2, simd: true, backend: 'wasm', kernel_timing: 'wall' });
    for (const k of [
      'prefill_tokens_per_s',
      'decode_tokens_per_s',
      'ttft_ms',
      'memory_bytes',
      'decode_bytes_per_token',
      'copy_bandwidth_bytes_per_s',
      'roofline_ratio',
    ]) {
      expect(j[k], k).toBeGreaterThan(0);
    }
    // Kernel calls per decoded token of a 4-layer MoLM: embedding; per layer 2 LayerNorms, 2 routers,
    // 4 expert projections, attention, 2 combines; the final LayerNorm and lm_head.
    expect(j.dispatches_per_token).toBe(1 + 4 * 11 + 2);
    // molm-brown: C = A = 128, F = 256.
    expect(Object.keys(j.decode_kernel_ms)).toEqual(
      expect.arrayContaining(['expert 128x256', 'expert 256x128', 'stickbreaking', 'router', 'linear 128x50295']),
    );
  });
});
