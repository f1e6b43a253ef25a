import { cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nodeFileSource } from '../../src/checkpoint/node-files.ts';
import { openSafetensors } from '../../src/checkpoint/safetensors.ts';
import { safetensorsHeader } from '../../src/checkpoint/safetensors-write.ts';
import { ModelFormatError } from '../../src/errors.ts';
import { MANIFEST_FILE, type Manifest, type PackManifest } from '../../src/manifest.ts';
import { convertPack } from '../../src/packs/convert-pack.ts';
import { runMerge } from '../../src/packs/merge-command.ts';
import { packRanges } from '../../src/packs/pack-shapes.ts';
import { greedyGenerate } from '../../src/reference/model.ts';
import { openModelFolder } from '../../src/shards/model-folder.ts';
import { layerTensorNames } from '../../src/tensor-names.ts';
import { maxAbsDiff } from '../shared/numeric.ts';
import {
  BASE,
  BASE_SRC,
  type ConvertedPacks,
  FIXTURES,
  MERGED_A,
  MERGED_AB,
  PACK_SRC,
  PYTHON_BASE_HASH,
  convertPackFixtures,
  firstDifference,
  openPack,
  referenceWithPacks,
} from '../shared/pack-fixtures.ts';

// Expert packs (src/packs/) on the float64 CPU reference and at the file level: the real
// converters write the base and the packs, the runtime merges them, and the result is held to
// the merged checkpoints and logits PyTorch computed independently (tools/fixtures/make_pack.py):
// logits within 1e-4, the same greedy tokens, `molm merge`'s tensors bit for bit. Every bad
// input is a ModelFormatError whose message says what to do.

const LOGIT_TOL = 1e-4;

const tmp = mkdtempSync(join(tmpdir(), 'molm-packs-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

let fx: ConvertedPacks;
beforeAll(async () => {
  fx = await convertPackFixtures(tmp);
});

const pack = openPack;
const reference = referenceWithPacks;

/** The error a promise rejects with (fails the test when it resolves). */
async function failure(p: Promise<unknown>): Promise<Error> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  expect(e, 'expected the call to fail').toBeInstanceOf(Error);
  return e as Error;
}

/** A copy of a folder whose JSON file `name` is edited. */
function editedCopy<T>(src: string, to: string, name: string, edit: (json: T) => void): string {
  const out = join(tmp, to);
  cpSync(src, out, { recursive: true });
  const json = JSON.parse(readFileSync(join(out, name), 'utf8')) as T;
  edit(json);
  writeFileSync(join(out, name), JSON.stringify(json));
  return out;
}

/** A pack source folder: pack.json and a model.safetensors of seeded random F32 tensors of these shapes. */
function writePackSource(to: string, info: object, tensors: Map<string, { shape: number[] }>): string {
  const out = join(tmp, to);
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'pack.json'), JSON.stringify(info));
  const entries = [...tensors].map(([name, t]) => ({ name, dtype: 'F32' as const, shape: t.shape }));
  const { header, fileBytes } = safetensorsHeader(entries);
  const file = new Uint8Array(fileBytes);
  file.set(header);
  let at = header.length;
  let seed = 1;
  for (const [, t] of tensors) {
    const n = t.shape.reduce((x, y) => x * y, 1);
    const v = Float32Array.from({ length: n }, () => ((seed = (seed * 48271) % 2147483647) / 2147483647 - 0.5) * 0.2);
    file.set(new Uint8Array(v.buffer, v.byteOffset, v.byteLength), at);
    at += v.byteLength;
  }
  writeFileSync(join(out, 'model.safetensors'), file);
  return out;
}

const packInfoA = () => JSON.parse(readFileSync(join(PACK_SRC.a, 'pack.json'), 'utf8')) as Record<string, unknown> & { adds: Record<string, number> };

describe('converted base and packs', () => {
  it("the f32 base's weights hash is the one the packs name (computed in Python); the q8 base's differs", () => {
    expect(fx.manifests.f32.weightsSha256).toBe(PYTHON_BASE_HASH);
    expect(fx.manifests.q8.weightsSha256).toMatch(/^[0-9a-f]{64}$/);
    expect(fx.manifests.q8.weightsSha256).not.toBe(PYTHON_BASE_HASH);
    for (const p of ['a', 'b']) {
      const info = JSON.parse(readFileSync(join(FIXTURES, `packs/tiny-pack-${p}/pack.json`), 'utf8'));
      expect(info.base.weightsSha256).toBe(PYTHON_BASE_HASH);
    }
  });

  it('a converted pack keeps its description and holds exactly its source tensors', async () => {
    for (const dtype of ['f32', 'q8'] as const) {
      const m = fx.packManifests[`a-${dtype}`];
      expect(m).toMatchObject({ format: 'molm-web-pack', version: 1, name: 'tiny-pack-a', dtype, adds: { attExperts: 2, mlpExperts: 3, routerUnits: 8 } });
      expect(m.base.weightsSha256).toBe(PYTHON_BASE_HASH);
      expect(m.shards.length, 'the pack spans several shards').toBeGreaterThan(1);
      const loaded = await pack(fx.a[dtype]);
      expect(loaded.tensors.size).toBe(2 * 10); // 2 layers × (gate.0 w, b, gate.3, 2 experts) × (attention, MLP)
      expect(loaded.info.name).toBe('tiny-pack-a');
    }
    const b = await pack(fx.b.f32);
    // Pack b adds one attention expert and no router unit: no MLP tensors and no gate.0 rows.
    expect([...b.tensors.keys()].sort()).toEqual(
      [0, 1]
        .flatMap((l) => {
          const n = layerTensorNames(l);
          return [n.attGate3Weight, n.queryExperts, n.outputExperts];
        })
        .sort(),
    );
  });
});

describe('float64 reference with packs against the PyTorch merged checkpoints', () => {
  it.each([
    ['a', ['a'], MERGED_A],
    ['a + b', ['a', 'b'], MERGED_AB],
  ] as const)('pack %s on the converted f32 base: logits within 1e-4, the greedy tokens', async (_what, names, e) => {
    const packs = await Promise.all(names.map((p) => pack(fx[p].f32)));
    const ref = await reference(fx.base.f32, packs);
    const c = ref.config;
    expect([c.nAttExperts, c.nMlpExperts, c.gatingSize]).toEqual([4 + 2 + (names.length > 1 ? 1 : 0), 6 + 3, 16 + 8]);
    const got = ref.prefill(e.input_ids);
    expect(maxAbsDiff(got, e.logits), 'logits vs PyTorch').toBeLessThanOrEqual(LOGIT_TOL);
    ref.reset();
    expect(greedyGenerate(ref, e.input_ids, e.greedy_new_tokens.length)).toEqual(e.greedy_new_tokens);
  });

  it("packs on the unconverted base (a Hugging Face folder: the hash is computed) give the converted base's logits, bit for bit", async () => {
    const packs = [await pack(fx.a.f32), await pack(fx.b.f32)];
    const fromCheckpoint = (await reference(BASE_SRC, packs)).prefill(MERGED_AB.input_ids);
    const fromConverted = (await reference(fx.base.f32, packs)).prefill(MERGED_AB.input_ids);
    expect(maxAbsDiff(fromCheckpoint, MERGED_AB.logits)).toBeLessThanOrEqual(LOGIT_TOL);
    expect(firstDifference(fromCheckpoint, fromConverted)).toBe(-1);
  });

  it("the packs' experts sit after the base's (packRanges), tokens are routed to them, and the logits move", async () => {
    const packs = [await pack(fx.a.f32), await pack(fx.b.f32)];
    const ref = await reference(fx.base.f32, packs);
    ref.prefill(MERGED_AB.input_ids);
    const ranges = packRanges((await reference(fx.base.f32)).config, packs);
    expect(ranges.map((r) => [r.name, r.att, r.mlp])).toEqual([
      ['tiny-pack-a', [4, 6], [6, 9]],
      ['tiny-pack-b', [6, 7], [9, 9]],
    ]);
    const att = ref.lastRouting!.flatMap((l) => Array.from(l.attention.ids));
    const mlp = ref.lastRouting!.flatMap((l) => Array.from(l.mlp.ids));
    expect(
      att.some((id) => id >= 4),
      'some token routed to an added attention expert',
    ).toBe(true);
    expect(
      mlp.some((id) => id >= 6),
      'some token routed to an added MLP expert',
    ).toBe(true);
    expect(maxAbsDiff(MERGED_AB.logits, BASE.logits), 'the packs change the logits').toBeGreaterThan(1e-2);
  });

  it("no packs: the base's logits, bit for bit, as when the base is loaded alone", async () => {
    const alone = (await reference(fx.base.f32)).prefill(BASE.input_ids);
    const none = (await reference(fx.base.f32, [])).prefill(BASE.input_ids);
    expect(firstDifference(none, alone)).toBe(-1);
    expect(maxAbsDiff(alone, BASE.logits)).toBeLessThanOrEqual(LOGIT_TOL);
  });

  it('pack order b, a: the added experts in another order, the same logits (within 1e-6)', async () => {
    const a = await pack(fx.a.f32);
    const b = await pack(fx.b.f32);
    const ref = await reference(fx.base.f32, [b, a]);
    expect(packRanges((await reference(fx.base.f32)).config, [b, a]).map((r) => [r.att, r.mlp])).toEqual([
      [
        [4, 5],
        [6, 6],
      ],
      [
        [5, 7],
        [6, 9],
      ],
    ]);
    const ba = ref.prefill(MERGED_AB.input_ids);
    const ab = (await reference(fx.base.f32, [a, b])).prefill(MERGED_AB.input_ids);
    expect(maxAbsDiff(ba, ab)).toBeLessThanOrEqual(1e-6);
    expect(maxAbsDiff(ba, MERGED_AB.logits)).toBeLessThanOrEqual(LOGIT_TOL);
    // Another expert order: b's expert is 4 and a's are 5, 6 (with a, b: a's 4, 5 and b's 6).
    const { tensors } = await openModelFolder(nodeFileSource(fx.base.f32), { packs: [b, a] });
    const { tensors: t2 } = await openModelFolder(nodeFileSource(fx.base.f32), { packs: [a, b] });
    const name = layerTensorNames(0).queryExperts;
    const [x, y] = [await tensors.read(name), await t2.read(name)];
    await tensors.close();
    await t2.close();
    const expert = 32 * 32 * 4;
    expect(Buffer.from(x.subarray(4 * expert, 5 * expert)).equals(Buffer.from(y.subarray(6 * expert, 7 * expert)))).toBe(true);
    expect(Buffer.from(x.subarray(5 * expert, 7 * expert)).equals(Buffer.from(y.subarray(4 * expert, 6 * expert)))).toBe(true);
  });
});

describe('molm merge (runMerge)', () => {
  it.each([
    ['a', ['a'], 'merged-a', MERGED_A],
    ['a + b', ['a', 'b'], 'merged-ab', MERGED_AB],
  ] as const)("pack %s: the fixture's merged tensors bit for bit, its config, and the same logits", async (_what, names, fixture, e) => {
    const out = join(tmp, `merged-${names.join('')}`);
    const summary = await runMerge({ modelDir: fx.base.f32, packDirs: names.map((p) => fx[p].f32), outDir: out });
    const fixtureDir = join(FIXTURES, 'packs', fixture);
    const wantConfig = JSON.parse(readFileSync(join(fixtureDir, 'config.json'), 'utf8'));
    expect(summary).toMatchObject({ nAttExperts: wantConfig.n_att_experts, nMlpExperts: wantConfig.n_mlp_experts, gatingSize: wantConfig.gating_size });
    expect(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'))).toEqual(wantConfig);

    const got = await openSafetensors((await nodeFileSource(out).open('model.safetensors'))!, 'merged');
    const want = await openSafetensors((await nodeFileSource(fixtureDir).open('model.safetensors'))!, 'fixture');
    try {
      expect([...got.tensors.keys()].sort()).toEqual([...want.tensors.keys()].sort());
      for (const [name, info] of want.tensors) {
        expect(got.tensors.get(name), name).toEqual(info);
        expect(Buffer.from(await got.read(name)).equals(Buffer.from(await want.read(name))), `${name}: the same bytes`).toBe(true);
      }
    } finally {
      await got.close();
      await want.close();
    }

    const ref = await reference(out);
    const logits = ref.prefill(e.input_ids);
    expect(maxAbsDiff(logits, e.logits)).toBeLessThanOrEqual(LOGIT_TOL);
    ref.reset();
    expect(greedyGenerate(ref, e.input_ids, e.greedy_new_tokens.length)).toEqual(e.greedy_new_tokens);
    // The same weights as the packs merged at load time: the same float64 logits.
    const packs = await Promise.all(names.map((p) => pack(fx[p].f32)));
    expect(firstDifference(logits, (await reference(fx.base.f32, packs)).prefill(e.input_ids))).toBe(-1);
  });

  it('merging q8 packs into the q8 base they were trained on writes what the runtime merges at load time', async () => {
    const base = fx.base.q8;
    const packs = [fx.onQ8.q8.a, fx.onQ8.q8.b];
    const out = join(tmp, 'merged-q8');
    await runMerge({ modelDir: base, packDirs: packs, outDir: out });
    const loaded = await Promise.all(packs.map(pack));
    const ids = MERGED_AB.input_ids;
    expect(firstDifference((await reference(out)).prefill(ids), (await reference(base, loaded)).prefill(ids))).toBe(-1);
  });
});

describe('bad packs and bases', () => {
  const expectFormatError = (e: Error, message: RegExp) => {
    expect(e).toBeInstanceOf(ModelFormatError);
    expect(e.message).toMatch(message);
  };

  it('a pack on another base (the q8 conversion of its base): the hash differs, use the pack with its own base', async () => {
    const e = await failure(reference(fx.base.q8, [await pack(fx.a.q8)]));
    expectFormatError(
      e,
      /the pack tiny-pack-a extends tiny-molm \(weights d2e854787476…\), but .* holds other weights .*Use the pack with the model it was trained on/,
    );
  });

  it('a pack whose pack.json adds disagree with its tensors: names the tensor, the shapes, and that the pack does not fit', async () => {
    const src = editedCopy<{ adds: { mlpExperts: number } }>(PACK_SRC.a, 'adds-mismatch-src', 'pack.json', (j) => {
      j.adds.mlpExperts = 2;
    });
    const out = join(tmp, 'adds-mismatch');
    await convertPack({ source: nodeFileSource(src), outDir: out, dtype: 'f32' });
    const e = await failure(reference(fx.base.f32, [await pack(out)]));
    expectFormatError(
      e,
      /"transformer\.h\.0\.mlpf\.gate\.w_gate\.3\.weight" is \[3, 24\], but this base and the pack's "adds" imply \[2, 24\]; the pack does not fit this base/,
    );
  });

  it('a pack with fewer router units than its tensors have', async () => {
    const src = editedCopy<{ adds: { routerUnits: number } }>(PACK_SRC.a, 'units-mismatch-src', 'pack.json', (j) => {
      j.adds.routerUnits = 0;
    });
    const out = join(tmp, 'units-mismatch');
    await convertPack({ source: nodeFileSource(src), outDir: out, dtype: 'f32' });
    const e = await failure(reference(fx.base.f32, [await pack(out)]));
    expectFormatError(e, /"transformer\.h\.0\.attn\.q_proj\.gate\.w_gate\.3\.weight" is \[2, 24\], but this base and the pack's "adds" imply \[2, 16\]/);
  });

  it('a tensor of the wrong shape (same bytes, in the manifest)', async () => {
    const out = editedCopy<PackManifest>(fx.a.f32, 'wrong-shape', MANIFEST_FILE, (m) => {
      m.tensors.find((t) => t.name === layerTensorNames(1).queryExperts)!.shape = [2, 64, 16];
    });
    const e = await failure(reference(fx.base.f32, [await pack(out)]));
    expectFormatError(
      e,
      /"transformer\.h\.1\.attn\.q_proj\.experts\.weight" is \[2, 64, 16\], but this base and the pack's "adds" imply \[2, 32, 32\]; the pack does not fit this base/,
    );
  });

  it('a tensor of the wrong shape (in the source safetensors), and a missing tensor', async () => {
    const a = await pack(fx.a.f32);
    const info = packInfoA();
    const shapes = new Map([...a.tensors].map(([n, t]) => [n, { shape: [...t.info.shape] }]));
    const wrong = new Map(shapes);
    wrong.set(layerTensorNames(0).downExperts, { shape: [3, 40, 32] });
    const src = writePackSource('wrong-shape-st-src', info, wrong);
    await convertPack({ source: nodeFileSource(src), outDir: join(tmp, 'wrong-shape-st'), dtype: 'f32' });
    const e = await failure(reference(fx.base.f32, [await pack(join(tmp, 'wrong-shape-st'))]));
    expectFormatError(e, /"transformer\.h\.0\.mlpf\.output_experts\.weight" is \[3, 40, 32\], but this base and the pack's "adds" imply \[3, 48, 32\]/);

    const missing = new Map(shapes);
    missing.delete(layerTensorNames(1).mlpGate0Bias);
    const src2 = writePackSource('missing-tensor-src', info, missing);
    await convertPack({ source: nodeFileSource(src2), outDir: join(tmp, 'missing-tensor'), dtype: 'f32' });
    const e2 = await failure(reference(fx.base.f32, [await pack(join(tmp, 'missing-tensor'))]));
    expectFormatError(
      e2,
      /the pack lacks "transformer\.h\.1\.mlpf\.gate\.w_gate\.0\.bias" \[8\], which its "adds" imply for this base; convert the pack again/,
    );
  });

  it('the same pack twice', async () => {
    const a = await pack(fx.a.f32);
    const e = await failure(reference(fx.base.f32, [a, await pack(fx.a.q8)]));
    expectFormatError(e, /The pack tiny-pack-a is given twice/);
  });

  it('packs that together pass the limits (4 + 255 attention experts > 256): the config bound is named', async () => {
    const info = { ...packInfoA(), name: 'wide', adds: { attExperts: 255, mlpExperts: 0, routerUnits: 0 } };
    const tensors = new Map<string, { shape: number[] }>();
    for (const l of [0, 1]) {
      const n = layerTensorNames(l);
      tensors.set(n.attGate3Weight, { shape: [255, 16] });
      tensors.set(n.queryExperts, { shape: [255, 32, 32] });
      tensors.set(n.outputExperts, { shape: [255, 32, 32] });
    }
    const src = writePackSource('wide-src', info, tensors);
    const out = join(tmp, 'wide');
    await convertPack({ source: nodeFileSource(src), outDir: out, dtype: 'q8' });
    const wide = await pack(out);
    // Alone, the pack fits its base's tensors; the sum passes the bound.
    const e = await failure(reference(fx.base.f32, [wide]));
    expectFormatError(e, /The packs \(wide\) together make a model molm-web does not accept: .*"n_att_experts" is 259, past the 256 molm-web accepts/);
    const e2 = await failure(reference(fx.base.f32, [await pack(fx.b.f32), wide]));
    expectFormatError(e2, /The packs \(tiny-pack-b, wide\) together make a model molm-web does not accept: .*"n_att_experts" is 260/);
  });

  it('a corrupt pack shard: its sha256 does not match; download the pack again', async () => {
    const out = join(tmp, 'corrupt');
    cpSync(fx.a.f32, out, { recursive: true });
    const shard = readdirSync(out).filter((f) => f.endsWith('.bin'))[1];
    const bytes = readFileSync(join(out, shard));
    bytes[bytes.length >> 1] ^= 0x40;
    writeFileSync(join(out, shard), bytes);
    const e = await failure(pack(out));
    expectFormatError(e, new RegExp(`${shard.replace('.', '\\.')} is damaged: its sha256 is [0-9a-f]{64}, but manifest\\.json says [0-9a-f]{64}; re-download`));
  });

  it("a model's folder given as a pack: not a pack", async () => {
    const e = await failure(pack(fx.base.f32));
    expectFormatError(
      e,
      /"format" is "molm-web-shards", not "molm-web-pack": this is not a molm-web expert pack.*re-run `molm convert` on the pack's source folder/,
    );
  });

  it("a pack's source folder (not converted) given as a pack: convert it", async () => {
    const e = await failure(pack(PACK_SRC.a));
    expectFormatError(e, /has no manifest\.json: give a converted expert pack's folder \(`molm convert` on the pack's source folder\)/);
  });

  it('a pack manifest with a path for a shard name', async () => {
    const out = editedCopy<PackManifest>(fx.a.f32, 'path-shard', MANIFEST_FILE, (m) => {
      m.shards[0].file = '../base-f32/shard-00000.bin';
    });
    const e = await failure(pack(out));
    expectFormatError(e, /shard 0: "file" is "\.\.\/base-f32\/shard-00000\.bin"; a file next to the manifest is named by one path segment/);
  });

  it('a base converted before packs existed (no weightsSha256): convert the base again', async () => {
    const out = editedCopy<Manifest>(fx.base.f32, 'base-no-hash', MANIFEST_FILE, (m) => {
      delete m.weightsSha256;
    });
    // Alone it still loads.
    expect(maxAbsDiff((await reference(out)).prefill(BASE.input_ids), BASE.logits)).toBeLessThanOrEqual(LOGIT_TOL);
    const e = await failure(reference(out, [await pack(fx.a.f32)]));
    expectFormatError(
      e,
      /does not record its weights hash, so the pack tiny-pack-a cannot be checked against it; convert the base again with this molm-web \(`molm convert`\)/,
    );
  });

  it('after a failed pack, the base alone loads and gives its golden logits', async () => {
    await failure(reference(fx.base.q8, [await pack(fx.a.f32)]));
    await failure(reference(fx.base.f32, [await pack(fx.a.f32), await pack(fx.a.f32)]));
    const ref = await reference(fx.base.f32);
    expect(maxAbsDiff(ref.prefill(BASE.input_ids), BASE.logits)).toBeLessThanOrEqual(LOGIT_TOL);
    ref.reset();
    expect(greedyGenerate(ref, BASE.input_ids, BASE.greedy_new_tokens.length)).toEqual(BASE.greedy_new_tokens);
  });
});
