import { describe, expect, it } from 'vitest';
import { nodeFileSource } from '../../src/checkpoint/node-files.ts';
import { ModelFormatError } from '../../src/errors.ts';
import { nodeGpu } from '../../src/gpu/node-gpu.ts';
import type { ExpertBudget } from '../../src/model/expert-streamer.ts';
import { loadGpuModel, loadModel } from '../../src/model/load.ts';
import type { GpuModel } from '../../src/model/model.ts';
import { loadPack } from '../../src/packs/load-pack.ts';
import { type LoadedPack, packRanges } from '../../src/packs/pack-shapes.ts';
import type { ReferenceModel } from '../../src/reference/model.ts';
import { greedyGenerate } from '../../src/reference/model.ts';
import { memoryShardStore } from '../../src/store/shard-store.ts';
import { GREEDY, type RoutingRecord } from '../../src/token-model.ts';
import {
  BASE,
  type Expected,
  MERGED_A,
  MERGED_AB,
  servedPackFixtures,
  using,
  firstDifference,
  openPacks,
  referenceWithPacks,
} from '../shared/pack-fixtures.ts';
import { maxAbsDiff } from './harness.ts';

// Expert packs on WebGPU (Dawn; SwiftShader without a GPU): the converted base with converted
// packs merged at load time, from folders (loadGpuModel) and over HTTP through the shard cache
// (loadPack + loadModel), with every expert resident and under an expert budget. f32: the
// PyTorch merged checkpoints' logits within 1e-4 and their greedy tokens; q8: the float64
// reference on the same q8 weights within 1e-4. The routing trace picks the float64
// reference's experts (the fixture's top-k margins are ≥ 2e-3), the packs' experts among them.

const LOGIT_TOL = 1e-4;

const env = servedPackFixtures('molm-gpu-packs-');

async function fromFolder(base: string, packs: LoadedPack[], expertBudget?: ExpertBudget): Promise<GpuModel> {
  return loadGpuModel(nodeFileSource(base), { gpu: await nodeGpu(), maxContext: 64, prefillChunk: 4, packs, expertBudget });
}

/** Chunked prefill (traced), then the same logits token by token, then greedy generation. */
async function run(m: GpuModel, ids: number[], newTokens: number) {
  m.traceRouting(true);
  const prefill = await m.prefillLogits(ids);
  const trace = await m.readRouting(0, ids.length);
  m.traceRouting(false);
  m.reset();
  const V = m.config.vocabSize;
  const decode = new Float32Array(ids.length * V);
  decode.set(await m.prefillLogits(ids.slice(0, 5)));
  for (let t = 5; t < ids.length; t++) decode.set(await m.decodeLogits(ids[t]), t * V);
  m.reset();
  const tokens: number[] = [];
  for await (const id of m.generate(ids, newTokens, GREEDY)) tokens.push(id);
  return { prefill, decode, tokens, trace };
}

/** The reference's expert choices after a prefill of T tokens, in the trace's order [token][layer][slot]. */
function referenceIds(ref: ReferenceModel, T: number, kind: 'attention' | 'mlp'): number[] {
  const c = ref.config;
  const k = kind === 'attention' ? c.kAtt : c.kMlp;
  return Array.from({ length: T * c.nLayer * k }, (_, i) => {
    const [t, l, s] = [Math.floor(i / (c.nLayer * k)), Math.floor(i / k) % c.nLayer, i % k];
    return ref.lastRouting![l][kind].ids[t * k + s];
  });
}

/** The trace against the reference's routing and the packs' expert ranges. */
async function checkTrace(trace: RoutingRecord, base: string, packs: LoadedPack[], ids: number[]): Promise<void> {
  const ref = await referenceWithPacks(base, packs);
  ref.prefill(ids);
  const c = ref.config;
  expect(trace.tokens).toBe(ids.length);
  expect(Array.from(trace.attExperts)).toEqual(referenceIds(ref, ids.length, 'attention'));
  expect(Array.from(trace.mlpExperts)).toEqual(referenceIds(ref, ids.length, 'mlp'));
  expect(Math.max(...trace.attExperts)).toBeLessThan(c.nAttExperts);
  expect(Math.max(...trace.mlpExperts)).toBeLessThan(c.nMlpExperts);
  const baseConfig = (await referenceWithPacks(base)).config;
  for (const r of packRanges(baseConfig, packs)) {
    const inRange = (ids: Uint32Array, [from, to]: [number, number]) => ids.some((id) => id >= from && id < to);
    if (r.att[1] > r.att[0]) expect(inRange(trace.attExperts, r.att), `${r.name}: attention experts [${r.att}) picked`).toBe(true);
    if (r.mlp[1] > r.mlp[0]) expect(inRange(trace.mlpExperts, r.mlp), `${r.name}: MLP experts [${r.mlp}) picked`).toBe(true);
  }
}

function expectMatches(r: Awaited<ReturnType<typeof run>>, want: Float32Array | Float64Array, tokens: number[]): void {
  expect(maxAbsDiff(r.prefill, want), 'prefill logits').toBeLessThanOrEqual(LOGIT_TOL);
  expect(maxAbsDiff(r.decode, want), 'decode logits').toBeLessThanOrEqual(LOGIT_TOL);
  expect(r.tokens).toEqual(tokens);
}

describe('WebGPU with f32 packs on the f32 base, against PyTorch', () => {
  const CASES: [string, ('a' | 'b')[], Expected][] = [
    ['a', ['a'], MERGED_A],
    ['a + b', ['a', 'b'], MERGED_AB],
  ];
  it.each(CASES)('pack %s, every expert resident: logits, greedy tokens, and the routing trace', async (_what, names, e) => {
    const packs = await openPacks(names.map((p) => env.fx[p].f32));
    await using(fromFolder(env.fx.base.f32, packs), async (m) => {
      expect(m.expertCache).toBeNull();
      const r = await run(m, e.input_ids, e.greedy_new_tokens.length);
      expectMatches(r, e.logits, e.greedy_new_tokens);
      await checkTrace(r.trace, env.fx.base.f32, packs, e.input_ids);
    });
  });

  it.each(CASES)('pack %s under an expert budget of half the expert weights: the same logits, tokens and trace, experts streamed', async (_what, names, e) => {
    const packs = await openPacks(names.map((p) => env.fx[p].f32));
    await using(fromFolder(env.fx.base.f32, packs, { bytes: '50%' }), async (m) => {
      const c = m.config;
      const slots = m.expertCache!;
      expect(slots.attSlots).toBeLessThan(c.nAttExperts);
      expect(slots.mlpSlots).toBeLessThan(c.nMlpExperts);
      const r = await run(m, e.input_ids, e.greedy_new_tokens.length);
      expectMatches(r, e.logits, e.greedy_new_tokens);
      await checkTrace(r.trace, env.fx.base.f32, packs, e.input_ids);
      expect(m.expertCache!.misses, 'experts were streamed in').toBeGreaterThan(0);
    });
  });

  it('no packs: the base alone, bit for bit, and its golden logits', async () => {
    const alone = await using((async () => loadGpuModel(nodeFileSource(env.fx.base.f32), { gpu: await nodeGpu(), maxContext: 64, prefillChunk: 4 }))(), (m) =>
      m.prefillLogits(BASE.input_ids),
    );
    const none = await using(fromFolder(env.fx.base.f32, []), (m) => m.prefillLogits(BASE.input_ids));
    expect(firstDifference(none, alone)).toBe(-1);
    expect(maxAbsDiff(alone, BASE.logits)).toBeLessThanOrEqual(LOGIT_TOL);
  });
});

describe('WebGPU with packs on the q8 base, against the float64 reference on the same weights', () => {
  it.each([
    ['q8', 'none'],
    ['q8', '50%'],
    ['f32', 'none'],
  ] as const)('%s packs trained on the q8 base, expert budget %s: logits within 1e-4, greedy tokens, trace', async (packType, budget) => {
    const packs = await openPacks([env.fx.onQ8[packType].a, env.fx.onQ8[packType].b]);
    const ids = MERGED_AB.input_ids;
    const ref = await referenceWithPacks(env.fx.base.q8, packs);
    const want = ref.prefill(ids);
    ref.reset();
    const tokens = greedyGenerate(ref, ids, 6);
    await using(fromFolder(env.fx.base.q8, packs, budget === 'none' ? undefined : { bytes: budget }), async (m) => {
      expect(m.expertCache === null).toBe(budget === 'none');
      const r = await run(m, ids, 6);
      expectMatches(r, want, tokens);
      await checkTrace(r.trace, env.fx.base.q8, packs, ids);
    });
  });
});

describe('WebGPU with packs over HTTP (loadPack, loadModel, a memory shard store)', () => {
  /** Base and packs from the model server into `store`. */
  async function overHttp(base: string, packDirs: string[], store = memoryShardStore(), expertBudget?: ExpertBudget): Promise<GpuModel> {
    const packs: LoadedPack[] = [];
    for (const dir of packDirs) packs.push(await loadPack(served(dir), { store }));
    return loadModel(served(base), { gpu: await nodeGpu(), store, maxContext: 64, prefillChunk: 4, packs, expertBudget });
  }
  const served = (dir: string) => `${env.server.url}/${dir.slice(env.tmp.length + 1)}/manifest.json`;

  it("f32: the folder path's logits bit for bit, from the network then from the cache", async () => {
    const packDirs = [env.fx.a.f32, env.fx.b.f32];
    const want = await using(fromFolder(env.fx.base.f32, await openPacks(packDirs)), (m) => m.prefillLogits(MERGED_AB.input_ids));
    expect(maxAbsDiff(want, MERGED_AB.logits)).toBeLessThanOrEqual(LOGIT_TOL);
    const store = memoryShardStore();
    for (const round of ['network', 'cache'] as const) {
      env.server.reset();
      await using(overHttp(env.fx.base.f32, packDirs, store), async (m) => {
        if (round === 'network') expect(env.server.count()).toBeGreaterThan(packDirs.length);
        else expect(env.server.count(), 'no shard fetched when cached').toBe(0);
        expect(firstDifference(await m.prefillLogits(MERGED_AB.input_ids), want), round).toBe(-1);
      });
    }
  });

  it('under an expert budget of 50%: logits, greedy tokens and the trace (f32 against PyTorch, q8 against the reference)', async () => {
    await using(overHttp(env.fx.base.f32, [env.fx.a.f32, env.fx.b.f32], memoryShardStore(), { bytes: '50%' }), async (m) => {
      expect(m.expertCache).not.toBeNull();
      const r = await run(m, MERGED_AB.input_ids, 6);
      expectMatches(r, MERGED_AB.logits, MERGED_AB.greedy_new_tokens);
      await checkTrace(r.trace, env.fx.base.f32, await openPacks([env.fx.a.f32, env.fx.b.f32]), MERGED_AB.input_ids);
    });
    const q8Dirs = [env.fx.onQ8.q8.a, env.fx.onQ8.q8.b];
    const ref = await referenceWithPacks(env.fx.base.q8, await openPacks(q8Dirs));
    const want = ref.prefill(MERGED_AB.input_ids);
    ref.reset();
    const tokens = greedyGenerate(ref, MERGED_AB.input_ids, 6);
    await using(overHttp(env.fx.base.q8, q8Dirs, memoryShardStore(), { bytes: '50%' }), async (m) => {
      expect(m.expertCache).not.toBeNull();
      expectMatches(await run(m, MERGED_AB.input_ids, 6), want, tokens);
    });
  });

  it('a pack on another base: a ModelFormatError before any weight is uploaded; then the base alone loads', async () => {
    const store = memoryShardStore();
    const e = await overHttp(env.fx.base.q8, [env.fx.a.f32], store).then(
      () => null,
      (err: unknown) => err,
    );
    expect(e).toBeInstanceOf(ModelFormatError);
    expect((e as Error).message).toMatch(/the pack tiny-pack-a extends tiny-molm .*holds other weights.*Use the pack with the model it was trained on/);
    await using((async () => loadModel(served(env.fx.base.q8), { gpu: await nodeGpu(), store, maxContext: 64 }))(), async (m) => {
      expect(m.config.nAttExperts).toBe(4);
      expect(maxAbsDiff(await m.prefillLogits(BASE.input_ids), (await referenceWithPacks(env.fx.base.q8)).prefill(BASE.input_ids))).toBeLessThanOrEqual(
        LOGIT_TOL,
      );
    });
  });
});
