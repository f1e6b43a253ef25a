import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { nodeFileSource } from '../../src/checkpoint/node-files.ts';
import type { Manifest, PackManifest } from '../../src/manifest.ts';
import { convertPack } from '../../src/packs/convert-pack.ts';
import { openPackFolder } from '../../src/packs/load-pack.ts';
import type { LoadedPack } from '../../src/packs/pack-shapes.ts';
import { ReferenceModel, loadReferenceWeights } from '../../src/reference/model.ts';
import { convertModel } from '../../src/shards/convert.ts';
import { openModelFolder } from '../../src/shards/model-folder.ts';
import { type ModelServer, startModelServer } from '../browser/model-server.ts';

// The expert-pack fixtures (tools/fixtures/make_pack.py) as the pack tests of every engine use
// them: tiny-molm and its two random packs converted with the real converters, the merged
// checkpoints' PyTorch logits, and the float64 reference on a folder with packs merged in.

export const FIXTURES = join(__dirname, '..', 'fixtures');
export const BASE_SRC = join(FIXTURES, 'golden/tiny-molm');
export const PACK_SRC = { a: join(FIXTURES, 'packs/tiny-pack-a'), b: join(FIXTURES, 'packs/tiny-pack-b') } as const;
/** The base hash the packs name, computed in Python (tools/train/molm_shards.py weights_sha256). */
export const PYTHON_BASE_HASH = 'd2e8547874764e67554d505f2583698a4311749304fbf865b66285f060bdd059';
/** Small shards, so that the base and the packs span several shard files. */
export const SHARD_BYTES = 16 << 10;

export interface Expected {
  input_ids: number[];
  greedy_new_tokens: number[];
  /** float64 PyTorch logits stored as float32, [T, vocab]. */
  logits: Float32Array;
}

export function readF32(path: string): Float32Array {
  const raw = readFileSync(path);
  return new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
}

function expected(dir: string): Expected {
  const e = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as Omit<Expected, 'logits'>;
  return { ...e, logits: readF32(join(dir, 'expected_logits.f32')) };
}

/** tiny-molm with pack a, with packs a then b, and alone. */
export const MERGED_A = expected(join(FIXTURES, 'packs/merged-a'));
export const MERGED_AB = expected(join(FIXTURES, 'packs/merged-ab'));
export const BASE = expected(BASE_SRC);

export type PackName = keyof typeof PACK_SRC;

export interface ConvertedPacks {
  /** The converted base, f32 and q8. */
  base: { f32: string; q8: string };
  manifests: { f32: Manifest; q8: Manifest };
  /** The packs converted to f32 and to q8 (they name the f32 base). */
  a: { f32: string; q8: string };
  b: { f32: string; q8: string };
  packManifests: Record<`${PackName}-${'f32' | 'q8'}`, PackManifest>;
  /**
   * The packs as if trained on the q8 conversion of tiny-molm (another base): their pack.json
   * names that base's hash; converted to q8 and to f32.
   */
  onQ8: { q8: Record<PackName, string>; f32: Record<PackName, string> };
}

/** Converts the base and the packs into `tmp` with the real converters. */
export async function convertPackFixtures(tmp: string): Promise<ConvertedPacks> {
  const base = { f32: join(tmp, 'base-f32'), q8: join(tmp, 'base-q8') };
  const manifests = {
    f32: await convertModel({ source: nodeFileSource(BASE_SRC), outDir: base.f32, dtype: 'f32', shardBytes: SHARD_BYTES }),
    q8: await convertModel({ source: nodeFileSource(BASE_SRC), outDir: base.q8, dtype: 'q8', shardBytes: SHARD_BYTES }),
  };
  const out = {
    a: { f32: join(tmp, 'pack-a-f32'), q8: join(tmp, 'pack-a-q8') },
    b: { f32: join(tmp, 'pack-b-f32'), q8: join(tmp, 'pack-b-q8') },
  };
  const packManifests = {} as ConvertedPacks['packManifests'];
  const onQ8 = { q8: {} as Record<PackName, string>, f32: {} as Record<PackName, string> };
  for (const p of ['a', 'b'] as const) {
    for (const dtype of ['f32', 'q8'] as const) {
      packManifests[`${p}-${dtype}`] = await convertPack({ source: nodeFileSource(PACK_SRC[p]), outDir: out[p][dtype], dtype, shardBytes: SHARD_BYTES });
    }
    const src = join(tmp, `pack-${p}-on-q8-src`);
    cpSync(PACK_SRC[p], src, { recursive: true });
    const info = JSON.parse(readFileSync(join(src, 'pack.json'), 'utf8'));
    info.base.weightsSha256 = manifests.q8.weightsSha256;
    writeFileSync(join(src, 'pack.json'), JSON.stringify(info));
    for (const dtype of ['f32', 'q8'] as const) {
      onQ8[dtype][p] = join(tmp, `pack-${p}-on-q8-${dtype}`);
      await convertPack({ source: nodeFileSource(src), outDir: onQ8[dtype][p], dtype, shardBytes: SHARD_BYTES });
    }
  }
  return { base, manifests, ...out, packManifests, onQ8 };
}

export function openPack(dir: string): Promise<LoadedPack> {
  return openPackFolder(nodeFileSource(dir));
}

export function openPacks(dirs: readonly string[]): Promise<LoadedPack[]> {
  return Promise.all(dirs.map(openPack));
}

/** The float64 reference on a model folder with packs merged in. */
export async function referenceWithPacks(dir: string, packs: readonly LoadedPack[] = []): Promise<ReferenceModel> {
  const { config, tensors } = await openModelFolder(nodeFileSource(dir), { packs });
  try {
    return new ReferenceModel(config, await loadReferenceWeights(tensors));
  } finally {
    await tensors.close();
  }
}

/** The index of the first value whose bits differ (NaN-safe); -1 when all are identical. */
export function firstDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return i;
  return -1;
}

/**
 * For a test file: the fixtures converted into a temporary folder, served over HTTP, both gone
 * after the file's tests. The fields are set once its beforeAll has run.
 */
export function servedPackFixtures(prefix: string): { tmp: string; fx: ConvertedPacks; server: ModelServer } {
  const env = { tmp: mkdtempSync(join(tmpdir(), prefix)) } as { tmp: string; fx: ConvertedPacks; server: ModelServer };
  beforeAll(async () => {
    env.fx = await convertPackFixtures(env.tmp);
    env.server = await startModelServer(env.tmp);
  });
  afterAll(async () => {
    await env.server?.close();
    rmSync(env.tmp, { recursive: true, force: true });
  });
  return env;
}

/** Runs `f` on a loaded model, then destroys it. */
export async function using<M extends { destroy(): void }, T>(model: Promise<M>, f: (m: M) => Promise<T>): Promise<T> {
  const m = await model;
  try {
    return await f(m);
  } finally {
    m.destroy();
  }
}
