import { describe, expect, it } from 'vitest';
import { nodeFileSource } from '../../src/checkpoint/node-files.ts';
import { ModelFormatError } from '../../src/errors.ts';
import { loadPack } from '../../src/packs/load-pack.ts';
import type { LoadedPack } from '../../src/packs/pack-shapes.ts';
import { greedyGenerate } from '../../src/reference/model.ts';
import { memoryShardStore } from '../../src/store/shard-store.ts';
import { layerTensorNames } from '../../src/tensor-names.ts';
import { GREEDY } from '../../src/token-model.ts';
import { loadWasmModel, loadWasmModelFromUrl } from '../../src/wasm/load.ts';
import type { WasmModel } from '../../src/wasm/model.ts';
import { maxAbsDiff } from '../shared/numeric.ts';
import { BASE, MERGED_A, MERGED_AB, servedPackFixtures, using, firstDifference, openPacks, referenceWithPacks } from '../shared/pack-fixtures.ts';
import { THREADS } from './harness.ts';

// Expert packs in the wasm engine: the converted base with converted packs merged at load time,
// from folders (loadWasmModel) and over HTTP through the shard cache (loadPack +
// loadWasmModelFromUrl). f32: the PyTorch merged checkpoints' logits within 1e-4 and their
// greedy tokens. q8: the float64 reference on the same q8 base and q8 packs within 1e-4 (the
// PyTorch logits are of f32 weights). Over HTTP: the folder path's logits, bit for bit.

const LOGIT_TOL = 1e-4;

const env = servedPackFixtures('molm-wasm-packs-');

/** Prefill in chunks, then the same logits token by token, then greedy generation. */
async function run(m: WasmModel, ids: number[], newTokens: number): Promise<{ prefill: Float32Array; decode: Float32Array; tokens: number[] }> {
  const prefill = await m.prefillLogits(ids);
  m.reset();
  const V = m.config.vocabSize;
  const decode = new Float32Array(ids.length * V);
  decode.set(await m.prefillLogits(ids.slice(0, 5)));
  for (let t = 5; t < ids.length; t++) decode.set(await m.decodeLogits(ids[t]), t * V);
  m.reset();
  const tokens: number[] = [];
  for await (const id of m.generate(ids, newTokens, GREEDY)) tokens.push(id);
  return { prefill, decode, tokens };
}

/** The path under the model server of a folder in env.tmp. */
const served = (dir: string) => `${env.server.url}/${dir.slice(env.tmp.length + 1)}/manifest.json`;

describe('wasm engine with f32 packs on the f32 base, against PyTorch', () => {
  it.each([
    ['a', ['a'], MERGED_A],
    ['a + b', ['a', 'b'], MERGED_AB],
  ] as const)('pack %s: prefill, decode and greedy tokens (1 and 2 threads)', async (_what, names, e) => {
    const packs = await openPacks(names.map((p) => env.fx[p].f32));
    for (const threads of THREADS) {
      await using(loadWasmModel(nodeFileSource(env.fx.base.f32), { maxContext: 64, prefillChunk: 4, threads, packs }), async (m) => {
        expect(m.config.nAttExperts).toBe(names.length === 2 ? 7 : 6);
        const r = await run(m, e.input_ids, e.greedy_new_tokens.length);
        expect(maxAbsDiff(r.prefill, e.logits), `prefill, ${threads} thread(s)`).toBeLessThanOrEqual(LOGIT_TOL);
        expect(maxAbsDiff(r.decode, e.logits), `decode, ${threads} thread(s)`).toBeLessThanOrEqual(LOGIT_TOL);
        expect(r.tokens).toEqual(e.greedy_new_tokens);
      });
    }
  });

  it('the routing trace reaches the added experts, every id below the merged count', async () => {
    const packs = await openPacks([env.fx.a.f32, env.fx.b.f32]);
    const ref = await referenceWithPacks(env.fx.base.f32, packs);
    ref.prefill(MERGED_AB.input_ids);
    await using(loadWasmModel(nodeFileSource(env.fx.base.f32), { maxContext: 64, packs }), async (m) => {
      m.traceRouting(true);
      await m.prefillLogits(MERGED_AB.input_ids);
      const trace = await m.readRouting(0, MERGED_AB.input_ids.length);
      const c = m.config;
      expect(Math.max(...trace.attExperts)).toBeLessThan(c.nAttExperts);
      expect(Math.max(...trace.mlpExperts)).toBeLessThan(c.nMlpExperts);
      expect(trace.attExperts.some((id) => id >= 4)).toBe(true);
      expect(trace.mlpExperts.some((id) => id >= 6)).toBe(true);
      // The reference's choices, [token][layer][slot] (its lastRouting is [layer][token][slot]).
      const T = MERGED_AB.input_ids.length;
      const want = (kind: 'attention' | 'mlp', k: number) =>
        Array.from({ length: T * c.nLayer * k }, (_, i) => {
          const [t, l, s] = [Math.floor(i / (c.nLayer * k)), Math.floor(i / k) % c.nLayer, i % k];
          return ref.lastRouting![l][kind].ids[t * k + s];
        });
      expect(Array.from(trace.attExperts)).toEqual(want('attention', c.kAtt));
      expect(Array.from(trace.mlpExperts)).toEqual(want('mlp', c.kMlp));
    });
  });
});

describe('wasm engine with packs on the q8 base, against the float64 reference on the same weights', () => {
  it.each(['q8', 'f32'] as const)('%s packs (trained on the q8 base): logits within 1e-4 and the greedy tokens', async (packType) => {
    const packs = await openPacks([env.fx.onQ8[packType].a, env.fx.onQ8[packType].b]);
    const ref = await referenceWithPacks(env.fx.base.q8, packs);
    const ids = MERGED_AB.input_ids;
    const want = ref.prefill(ids);
    ref.reset();
    const wantTokens = greedyGenerate(ref, ids, 6);
    // The q8 weights move the logits away from PyTorch's f32 ones: the comparison must be to the reference on q8.
    expect(maxAbsDiff(want, MERGED_AB.logits)).toBeGreaterThan(LOGIT_TOL);
    await using(loadWasmModel(nodeFileSource(env.fx.base.q8), { maxContext: 64, prefillChunk: 4, packs }), async (m) => {
      expect(new Set(m.weights.plan.entries.map((e) => e.storage))).toContain('q8');
      const r = await run(m, ids, 6);
      expect(maxAbsDiff(r.prefill, want), 'prefill').toBeLessThanOrEqual(LOGIT_TOL);
      expect(maxAbsDiff(r.decode, want), 'decode').toBeLessThanOrEqual(LOGIT_TOL);
      expect(r.tokens).toEqual(wantTokens);
    });
  });
});

describe('wasm engine with packs over HTTP (loadPack, loadWasmModelFromUrl, a memory shard store)', () => {
  async function fromFolder(base: string, packDirs: string[]): Promise<Float32Array> {
    const packs = await openPacks(packDirs);
    return using(loadWasmModel(nodeFileSource(base), { maxContext: 64, packs }), (m) => m.prefillLogits(MERGED_AB.input_ids));
  }

  /** The base and packs over HTTP into a fresh memory store: from the network, then again from the cache. */
  async function overHttp(base: string, packDirs: string[], f: (m: WasmModel, round: 'network' | 'cache') => Promise<void>): Promise<void> {
    const store = memoryShardStore();
    for (const round of ['network', 'cache'] as const) {
      env.server.reset();
      const packs: LoadedPack[] = [];
      for (const dir of packDirs) packs.push(await loadPack(served(dir), { store }));
      await using(loadWasmModelFromUrl(served(base), { store, maxContext: 64, packs }), async (m) => {
        if (round === 'network') expect(env.server.count()).toBeGreaterThan(packDirs.length);
        else expect(env.server.count(), 'no shard fetched when cached').toBe(0);
        await f(m, round);
      });
    }
  }

  it('f32 base, f32 packs: the folder path’s logits bit for bit (PyTorch’s within 1e-4), from the network then from the cache', async () => {
    const packDirs = [env.fx.a.f32, env.fx.b.f32];
    const want = await fromFolder(env.fx.base.f32, packDirs);
    expect(maxAbsDiff(want, MERGED_AB.logits)).toBeLessThanOrEqual(LOGIT_TOL);
    await overHttp(env.fx.base.f32, packDirs, async (m, round) => {
      expect(firstDifference(await m.prefillLogits(MERGED_AB.input_ids), want), `${round}: first logit that differs`).toBe(-1);
    });
  });

  // On the q8 base the two paths hold the same values but plan them differently (see the next
  // test), so their logits differ in the last bits: each is held to the float64 reference.
  it.each(['q8', 'f32'] as const)(
    'q8 base, %s packs: the float64 reference on the same weights within 1e-4; network and cache loads bit for bit',
    async (packType) => {
      const packDirs = [env.fx.onQ8[packType].a, env.fx.onQ8[packType].b];
      const want = (await referenceWithPacks(env.fx.base.q8, await openPacks(packDirs))).prefill(MERGED_AB.input_ids);
      let first: Float32Array | undefined;
      await overHttp(env.fx.base.q8, packDirs, async (m, round) => {
        // The merge keeps the base's storage: its f16 matrices stay f16, its q8 routers become f32.
        const storage = new Map(m.weights.plan.entries.map((e) => [e.name, e.storage]));
        expect(storage.get(layerTensorNames(0).downExperts)).toBe('f16');
        expect(storage.get(layerTensorNames(0).attGate0Weight)).toBe('f32');
        expect(storage.get(layerTensorNames(0).queryExperts)).toBe('q8');
        const got = await m.prefillLogits(MERGED_AB.input_ids);
        expect(maxAbsDiff(got, want), round).toBeLessThanOrEqual(LOGIT_TOL);
        if (first) expect(firstDifference(got, first), 'cache vs network').toBe(-1);
        first = got;
      });
    },
  );

  // The merged f32 routers sit next to the base's f16 matrices (the ones q8 could not quantise):
  // the folder path must keep each as stored, as the URL path's plan does, not make every float
  // matrix f32 (more memory, other kernels, logits not bit for bit the URL path's).
  it('q8 base with packs: the folder path plans the same storage as the URL path', async () => {
    const packDirs = [env.fx.onQ8.q8.a, env.fx.onQ8.q8.b];
    const folder = await using(
      loadWasmModel(nodeFileSource(env.fx.base.q8), { maxContext: 64, packs: await openPacks(packDirs) }),
      async (m) => m.weights.plan,
    );
    await overHttp(env.fx.base.q8, packDirs, async (m) => {
      expect(folder.entries.map((e) => [e.name, e.storage])).toEqual(m.weights.plan.entries.map((e) => [e.name, e.storage]));
    });
  });

  it('a pack on another base over HTTP: a ModelFormatError, and then the base alone loads', async () => {
    const store = memoryShardStore();
    const a = await loadPack(served(env.fx.a.f32), { store });
    const e = await loadWasmModelFromUrl(served(env.fx.base.q8), { store, maxContext: 64, packs: [a] }).then(
      () => null,
      (err: unknown) => err,
    );
    expect(e).toBeInstanceOf(ModelFormatError);
    expect((e as Error).message).toMatch(/the pack tiny-pack-a extends tiny-molm .*holds other weights.*Use the pack with the model it was trained on/);
    await using(loadWasmModelFromUrl(served(env.fx.base.f32), { store, maxContext: 64 }), async (m) => {
      expect(maxAbsDiff(await m.prefillLogits(BASE.input_ids), BASE.logits)).toBeLessThanOrEqual(LOGIT_TOL);
    });
  });

  it('a pack shard corrupt on the server: a ModelFormatError naming the damage', async () => {
    env.server.reset();
    const shard = env.fx.packManifests['a-f32'].shards[1].file;
    env.server.switches.corrupt.add(`/${env.fx.a.f32.slice(env.tmp.length + 1)}/${shard}`);
    const e = await loadPack(served(env.fx.a.f32), { store: memoryShardStore(), retries: 0 }).then(
      () => null,
      (err: unknown) => err,
    );
    env.server.reset();
    expect(e).toBeInstanceOf(ModelFormatError);
    expect((e as Error).message).toMatch(new RegExp(`${shard.replace('.', '\\.')}.*sha256`));
  });
});
