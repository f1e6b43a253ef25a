import { createHash } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { f16ToF32, f32ToBf16, f32ToF16, toFloat32 } from '../../src/checkpoint/dtype.ts';
import { openCheckpoint } from '../../src/checkpoint/index.ts';
import { nodeFileSource } from '../../src/checkpoint/node-files.ts';
import type { ByteSource, FileSource, TensorSource } from '../../src/checkpoint/types.ts';
import { ModelFormatError } from '../../src/errors.ts';
import { GROUP, dequantize, quantize } from '../../src/quant/layout.ts';
import { convertModel } from '../../src/shards/convert.ts';
import { encodeTensor, tensorEncoder } from '../../src/shards/encode.ts';
import { MANIFEST_FILE, type Manifest } from '../../src/manifest.ts';
import { openManifest, validateManifest } from '../../src/shards/manifest-source.ts';
import { openModelFolder } from '../../src/shards/model-folder.ts';
import { type ConvertDtype, planShards, shardFileName } from '../../src/shards/plan.ts';
import { storageBytes } from '../../src/storage-types.ts';
import { molm } from '../molm-cli.ts';

const FIXTURES = fileURLToPath(new URL('../fixtures/', import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), 'molm-shards-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

// Every fixture folder that is a whole model (the hostile and pickle ones are not).
const MODELS = [
  'golden/tiny-molm',
  'golden/tiny-generic-bf16',
  'checkpoints/tiny-molm-bin',
  'checkpoints/tiny-molm-bin-sharded',
  'checkpoints/tiny-molm-bin-views',
  'checkpoints/tiny-molm-f16-st',
  'checkpoints/tiny-molm-st-sharded',
  'checkpoints/tiny-generic-bf16-bin',
];
const DTYPES: ConvertDtype[] = ['f32', 'f16', 'bf16', 'q8', 'q4'];
const SMALL_SHARD = Math.floor(0.01 * 1024 * 1024); // what --shard-mib 0.01 asks for

let converted = 0;
async function convert(model: string, dtype: ConvertDtype, shardBytes?: number): Promise<{ dir: string; manifest: Manifest }> {
  const dir = join(tmp, `c${converted++}-${dtype}`);
  const manifest = await convertModel({ source: nodeFileSource(join(FIXTURES, model)), outDir: dir, dtype, shardBytes });
  return { dir, manifest };
}

async function readFloats(t: TensorSource): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const [name, info] of t.tensors) out.set(name, toFloat32(await t.read(name), info.dtype));
  return out;
}

/** The source model's tensors as float32 (what the converter starts from). */
async function sourceFloats(model: string): Promise<Map<string, Float32Array>> {
  const ckpt = await openCheckpoint(nodeFileSource(join(FIXTURES, model)));
  try {
    return await readFloats(ckpt.tensors);
  } finally {
    await ckpt.tensors.close();
  }
}

function sameBits(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return 0;
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) return i;
  return -1;
}

const round = (f: (x: number) => number, back: (b: number) => number) => (x: Float32Array) => Float32Array.from(x, (v) => back(f(v)));
const bf16ToF32 = (b: number) => new Float32Array(new Uint32Array([b << 16]).buffer)[0];
const ROUNDERS: Record<'f32' | 'f16' | 'bf16', (x: Float32Array) => Float32Array> = {
  f32: (x) => x,
  f16: round(f32ToF16, f16ToF32),
  bf16: round(f32ToBf16, bf16ToF32),
};

/**
 * The largest |got − values| / (scale / 2) over all elements (≤ 1 is within the bound), with the
 * scale of each group of 32 along the input dimension (shape[1]) computed as the layout documents.
 */
function groupBounds(values: Float32Array, got: Float32Array, shape: number[], qmax: number): { worst: number; at: number } {
  const [blocks, inDim, cols] = shape.length === 2 ? [1, shape[1], shape[0]] : [shape[0], shape[1], shape[2]];
  const colStride = shape.length === 2 ? inDim : 1;
  const inStride = shape.length === 2 ? 1 : cols;
  let worst = 0;
  let at = -1;
  for (let b = 0; b < blocks; b++) {
    for (let c = 0; c < cols; c++) {
      for (let g = 0; g < inDim / GROUP; g++) {
        const idx = (t: number) => b * inDim * cols + c * colStride + (g * GROUP + t) * inStride;
        let maxAbs = 0;
        for (let t = 0; t < GROUP; t++) maxAbs = Math.max(maxAbs, Math.abs(values[idx(t)]));
        // The group's scale as the layout documents it: max|w| / qmax rounded to f16, at least 2^-14.
        const scale = maxAbs === 0 ? 0 : Math.max(f16ToF32(f32ToF16(Math.fround(maxAbs) / qmax)), 2 ** -14);
        for (let t = 0; t < GROUP; t++) {
          const err = Math.abs(got[idx(t)] - values[idx(t)]);
          const r = scale === 0 ? (err === 0 ? 0 : Infinity) : err / (scale / 2);
          if (r > worst) [worst, at] = [r, idx(t)];
        }
      }
    }
  }
  return { worst, at };
}

describe('shard plan', () => {
  const experts = (e: number, i: number, o: number) => ({ name: `x${e}`, shape: [e, i, o], storage: 'f32' as const });

  it('fills shards in order, 4-byte aligned, never past the limit', () => {
    const plan = planShards(
      [
        { name: 'a', shape: [13], storage: 'f32' },
        { name: 'b', shape: [7, 9], storage: 'f16' },
        { name: 'c', shape: [1000], storage: 'f32' },
      ],
      100,
    );
    expect(plan.shardBytes.every((b) => b <= 100 && b % 4 === 0)).toBe(true);
    expect(plan.totalBytes).toBe(52 + 128 + 4000);
    let expectOffset = 0;
    let shard = 0;
    for (const t of plan.tensors) {
      expect(t.pieces.reduce((a, p) => a + p.bytes, 0)).toBe(t.bytes);
      for (const p of t.pieces) {
        if (p.offset === 0 && expectOffset !== 0) [shard, expectOffset] = [shard + 1, 0];
        expect([p.shard, p.offset]).toEqual([shard, expectOffset]);
        expect((p.offset % 4) + (p.bytes % 4)).toBe(0);
        expectOffset += p.bytes;
        if (expectOffset === 100) [shard, expectOffset] = [shard + 1, 0];
      }
    }
    expect(plan.tensors[1].bytes).toBe(128); // 63 f16 values, padded to 4 bytes
  });

  it('cuts stacked expert tensors only between experts when one fits', () => {
    // One expert = 8·4·4 = 128 bytes; a 300-byte shard takes two, so each shard holds whole experts.
    const plan = planShards([{ name: 'v', shape: [3], storage: 'f32' }, experts(5, 8, 4)], 300);
    const t = plan.tensors[1];
    expect(t.expertBytes).toBe(128);
    let within = 0;
    for (const p of t.pieces) {
      expect(within % 128).toBe(0);
      expect(p.bytes % 128).toBe(0);
      within += p.bytes;
    }
    expect(t.pieces.map((p) => [p.shard, p.offset, p.bytes])).toEqual([
      [0, 12, 256],
      [1, 0, 256],
      [2, 0, 128],
    ]);
    expect(plan.shardBytes).toEqual([268, 256, 128]);
  });

  it('cuts an expert anywhere when it is larger than a shard', () => {
    const plan = planShards([experts(2, 8, 8)], 100); // 256-byte experts
    expect(plan.tensors[0].pieces.map((p) => p.bytes)).toEqual([100, 100, 100, 100, 100, 12]);
  });

  it('records expertBytes for q8 / q4 blocks (words and scales of one expert)', () => {
    const plan = planShards([{ name: 'q', shape: [4, 64, 8], storage: 'q4' }], 1000);
    const t = plan.tensors[0];
    // q4: 64·8 values at 4 bits = 256 bytes of words, 2·8 f16 scales = 32 bytes.
    expect(t.expertBytes).toBe(288);
    expect(t.bytes).toBe(4 * 288);
    expect(t.pieces.every((p) => p.bytes % 288 === 0)).toBe(true);
  });

  it('quantises large matrices a slice at a time to the same bytes as quantize() of the whole', () => {
    let state = 7;
    const rand = () => ((state = (state * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1;
    for (const shape of [
      [999, 96],
      [1001, 64],
      [3, 64, 96],
    ]) {
      const values = Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rand() * 0.1);
      const bytes = new Uint8Array(values.buffer);
      for (const type of ['q8', 'q4'] as const) {
        const got = encodeTensor(bytes, 'F32', shape, type);
        expect(Buffer.from(got).equals(Buffer.from(quantize(values, shape, type))), `${type} [${shape}]`).toBe(true);
      }
    }
  });

  it('encodes any 4-byte aligned range of a tensor as the same bytes as the whole', () => {
    let state = 5;
    const rand = () => ((state = (state * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1;
    for (const shape of [[3, 64, 24], [37, 64], [5, 7, 9], [131]]) {
      const values = Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rand());
      for (const [dtype, bytes] of [
        ['F32', new Uint8Array(values.buffer)],
        ['BF16', new Uint8Array(Uint16Array.from(values, f32ToBf16).buffer)],
      ] as const) {
        for (const storage of ['f32', 'f16', 'bf16', 'q8', 'q4'] as const) {
          if ((storage === 'q8' || storage === 'q4') && (shape.length < 2 || shape[1] % 32 !== 0)) continue;
          const enc = tensorEncoder(bytes, dtype, shape, storage);
          expect(enc.bytes).toBe(storageBytes(shape, storage));
          const whole = enc.range(0, enc.bytes);
          for (const step of [4, 52, 1000]) {
            const parts: number[] = [];
            for (let at = 0; at < enc.bytes; at += step) parts.push(...enc.range(at, Math.min(at + step, enc.bytes)));
            expect(Buffer.from(parts).equals(Buffer.from(whole)), `${dtype} → ${storage} [${shape}] in ${step}-byte ranges`).toBe(true);
          }
        }
      }
    }
  });

  it('refuses a shard size under 4 bytes', () => {
    expect(() => planShards([experts(1, 1, 1)], 3)).toThrow(/at least 4 bytes/);
  });
});

describe('molm convert round trips', () => {
  const sources = new Map<string, Map<string, Float32Array>>();
  beforeAll(async () => {
    for (const m of MODELS) sources.set(m, await sourceFloats(m));
  });

  for (const model of MODELS) {
    it.each(['f32', 'f16', 'bf16'] as const)(`${model} → %s: exact to the storage type's rounding`, async (dtype) => {
      const { dir, manifest } = await convert(model, dtype);
      const src = sources.get(model)!;
      const folder = await openModelFolder(nodeFileSource(dir));
      try {
        expect(folder.manifest).not.toBeNull();
        const hf = await openCheckpoint(nodeFileSource(join(FIXTURES, model)));
        expect(folder.config).toEqual(hf.config);
        expect(folder.rawConfig).toEqual(hf.rawConfig);
        await hf.tensors.close();
        expect(manifest.dtype).toBe(dtype);
        expect(manifest.tokenizer).toBeNull();
        for (const [name, info] of folder.tensors.tensors) {
          const want = info.shape.length > 1 ? ROUNDERS[dtype](src.get(name)!) : src.get(name)!;
          expect(info.dtype, name).toBe(info.shape.length > 1 ? dtype.toUpperCase() : 'F32');
          const got = toFloat32(await folder.tensors.read(name), info.dtype);
          expect(sameBits(got, want), name).toBe(-1);
        }
        expect([...folder.tensors.tensors.keys()]).toEqual(manifest.tensors.map((t) => t.name));
      } finally {
        await folder.tensors.close();
      }
    });

    it.each(['q8', 'q4'] as const)(`${model} → %s: within half a scale of the source, bytes as quantize() writes them`, async (dtype) => {
      const { dir } = await convert(model, dtype);
      const src = sources.get(model)!;
      const folder = await openModelFolder(nodeFileSource(dir));
      let quantised = 0;
      try {
        for (const [name, info] of folder.tensors.tensors) {
          const bytes = await folder.tensors.read(name);
          const values = src.get(name)!;
          if (info.shape.length === 1) {
            expect(info.dtype).toBe('F32');
            expect(sameBits(toFloat32(bytes, 'F32'), values), name).toBe(-1);
          } else if (info.shape[1] % GROUP !== 0) {
            expect(info.dtype, name).toBe('F16');
            expect(sameBits(toFloat32(bytes, 'F16'), ROUNDERS.f16(values)), name).toBe(-1);
          } else {
            quantised++;
            expect(info.dtype, name).toBe(dtype.toUpperCase());
            expect(Buffer.from(bytes).equals(Buffer.from(quantize(values, info.shape, dtype))), name).toBe(true);
            const { worst, at } = groupBounds(values, dequantize(bytes, info.shape, dtype), info.shape, dtype === 'q8' ? 127 : 7);
            expect(worst, `${name}[${at}]`).toBeLessThanOrEqual(1);
          }
        }
        expect(quantised).toBeGreaterThan(4);
      } finally {
        await folder.tensors.close();
      }
    });
  }

  it.each(DTYPES)('small shards (--shard-mib 0.01, %s): the limit holds and experts never straddle', async (dtype) => {
    const { dir, manifest } = await convert('golden/tiny-generic-bf16', dtype, SMALL_SHARD);
    expect(manifest.shards.length).toBeGreaterThan(3);
    const cap = Math.floor(SMALL_SHARD / 4) * 4;
    for (const [i, s] of manifest.shards.entries()) {
      expect(s.file).toBe(shardFileName(i));
      expect(s.bytes).toBeLessThanOrEqual(cap);
      const bytes = readFileSync(join(dir, s.file));
      expect(bytes.length).toBe(s.bytes);
      expect(createHash('sha256').update(bytes).digest('hex')).toBe(s.sha256);
    }
    let experts = 0;
    for (const t of manifest.tensors) {
      expect(t.bytes).toBe(storageBytes(t.shape, t.storage));
      if (t.expertBytes === undefined || t.expertBytes > cap) continue;
      experts++;
      for (const p of t.pieces) expect(p.bytes % t.expertBytes, t.name).toBe(0);
      expect(new Set(t.pieces.map((p) => p.shard)).size).toBe(t.pieces.length);
    }
    expect(experts).toBe(8);
    expect(readdirSync(dir).sort()).toEqual([MANIFEST_FILE, ...manifest.shards.map((s) => s.file)].sort());
    // And the small-shard folder reads back as the same model as a one-shard conversion.
    const one = await convert('golden/tiny-generic-bf16', dtype);
    const [a, b] = [await openModelFolder(nodeFileSource(dir)), await openModelFolder(nodeFileSource(one.dir))];
    for (const name of a.tensors.tensors.keys()) {
      expect(Buffer.from(await a.tensors.read(name)).equals(Buffer.from(await b.tensors.read(name))), name).toBe(true);
    }
    await a.tensors.close();
    await b.tensors.close();
  });

  it('re-converting into the same folder leaves only the new shards and manifest', async () => {
    const out = join(tmp, 'reconvert');
    const source = nodeFileSource(join(FIXTURES, 'golden/tiny-molm'));
    const many = await convertModel({ source, outDir: out, dtype: 'f32', shardBytes: SMALL_SHARD });
    expect(many.shards.length).toBeGreaterThan(5);
    const one = await convertModel({ source, outDir: out, dtype: 'q8' });
    expect(one.shards.length).toBe(1);
    expect(readdirSync(out).sort()).toEqual([MANIFEST_FILE, 'shard-00000.bin']);
    const folder = await openModelFolder(nodeFileSource(out));
    expect(folder.manifest?.dtype).toBe('q8');
    await folder.tensors.close();
  });

  it('copies tokenizer.json when the Hugging Face folder has one', async () => {
    const hf = join(tmp, 'with-tokenizer');
    cpSync(join(FIXTURES, 'golden/tiny-molm'), hf, { recursive: true });
    writeFileSync(join(hf, 'tokenizer.json'), '{"model": {"type": "BPE"}}');
    const out = join(tmp, 'with-tokenizer-out');
    const manifest = await convertModel({ source: nodeFileSource(hf), outDir: out, dtype: 'f16' });
    const text = '{"model": {"type": "BPE"}}';
    expect(manifest.tokenizer).toEqual({ file: 'tokenizer.json', bytes: text.length, sha256: createHash('sha256').update(text).digest('hex') });
    expect(readFileSync(join(out, 'tokenizer.json'), 'utf8')).toBe('{"model": {"type": "BPE"}}');
  });

  it('runs the CPU reference on a converted folder (--device cpu) with the golden greedy tokens', async () => {
    const { dir } = await convert('golden/tiny-molm', 'f32', SMALL_SHARD);
    const e = JSON.parse(readFileSync(join(FIXTURES, 'golden/tiny-molm/expected.json'), 'utf8'));
    const r = await molm('generate', '--model', dir, '--ids', e.input_ids.join(','), '--max-new-tokens', '8', '--greedy', '--json', '--device', 'cpu');
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ new_tokens: e.greedy_new_tokens });
  });
});

describe('molm convert (CLI)', () => {
  it('converts, reports progress on stderr and a summary on stdout', async () => {
    const out = join(tmp, 'cli-q4');
    const r = await molm('convert', '--model', join(FIXTURES, 'golden/tiny-molm'), '--out', out, '--dtype', 'q4', '--shard-mib', '0.01');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/tensors, \d+ shard\(s\), [\d.]+ MiB \(q4\) written to/);
    const lines = r.stderr.trim().split('\n');
    expect(lines.length).toBeGreaterThan(1);
    expect(lines.at(-1)).toMatch(/convert: .* \/ .* MiB +100\.0%/);
    const manifest = JSON.parse(readFileSync(join(out, MANIFEST_FILE), 'utf8')) as Manifest;
    expect(manifest.dtype).toBe('q4');
    expect(manifest.format).toBe('molm-web-shards');
  });

  it('gives usage errors', async () => {
    const model = join(FIXTURES, 'golden/tiny-molm');
    const badDtype = await molm('convert', '--model', model, '--out', join(tmp, 'x'), '--dtype', 'int3');
    expect(badDtype.code).toBe(2);
    expect(badDtype.stderr).toMatch(/--dtype must be one of f32, f16, bf16, q8, q4/);
    const noDtype = await molm('convert', '--model', model, '--out', join(tmp, 'x'));
    expect(noDtype.code).toBe(2);
    const same = await molm('convert', '--model', model, '--out', model, '--dtype', 'f16');
    expect(same.code).toBe(2);
    expect(same.stderr).toMatch(/different folder/);
    const badSize = await molm('convert', '--model', model, '--out', join(tmp, 'x'), '--dtype', 'f16', '--shard-mib', '-1');
    expect(badSize.code).toBe(2);
    const notModel = await molm('convert', '--model', join(tmp, 'nothing-here'), '--out', join(tmp, 'x'), '--dtype', 'f16');
    expect(notModel.code).toBe(1);
    expect(notModel.stderr).toMatch(/config\.json/);
  });
});

// ---- manifest validation ----

function memorySource(bytes: Uint8Array): ByteSource {
  return {
    size: bytes.length,
    async read(offset, length) {
      if (offset < 0 || length < 0 || offset + length > bytes.length) throw new RangeError(`read past end: ${offset}+${length}`);
      return bytes.slice(offset, offset + length);
    },
  };
}

/** A converted folder in memory, with files replaced (null removes one). */
function folderWith(dir: string, changes: Record<string, Uint8Array | null> = {}): FileSource {
  const files: Record<string, Uint8Array> = {};
  for (const name of readdirSync(dir)) files[name] = new Uint8Array(readFileSync(join(dir, name)));
  for (const [name, v] of Object.entries(changes)) {
    if (v === null) delete files[name];
    else files[name] = v;
  }
  return { location: 'memory', open: async (name) => (files[name] === undefined ? null : memorySource(files[name])) };
}

describe('manifest validation', () => {
  let dir: string;
  let good: Manifest;
  beforeAll(async () => {
    ({ dir, manifest: good } = await convert('golden/tiny-generic-bf16', 'q8', SMALL_SHARD));
  });
  const edited = (edit: (m: Manifest) => void) => {
    const m = structuredClone(good);
    edit(m);
    return folderWith(dir, { [MANIFEST_FILE]: new TextEncoder().encode(JSON.stringify(m)) });
  };
  const tensor = (m: Manifest, suffix: string) => m.tensors.find((t) => t.name.endsWith(suffix))!;

  const CASES: [string, (m: Manifest) => void, RegExp][] = [
    ['bad format', (m) => ((m as { format: string }).format = 'safetensors'), /not a molm-web model manifest.*molm convert/],
    ['older version', (m) => (m.version = 1), /"version" is 1; this molm-web reads version 2; re-run `molm convert`/],
    ['newer version', (m) => (m.version = 3), /update molm-web/],
    [
      'missing tensor',
      (m) => m.tensors.splice(m.tensors.indexOf(tensor(m, 'lm_head.weight')), 1),
      /lacks 1 tensor\(s\) the model needs: "lm_head\.weight" \[97, 32\]; re-run `molm convert`/,
    ],
    [
      'wrong shape of the same size',
      (m) => (tensor(m, 'h.0.mlpf.experts.weight').shape = [7, 64, 20]),
      /"transformer\.h\.0\.mlpf\.experts\.weight" has shape \[7, 64, 20\], but the config implies \[7, 32, 40\]/,
    ],
    [
      'wrong shape',
      (m) => (tensor(m, 'h.0.mlpf.experts.weight').shape = [7, 32, 32]),
      /"transformer\.h\.0\.mlpf\.experts\.weight": \d+ bytes, but q8 \[7, 32, 32\] takes \d+/,
    ],
    [
      'wrong shape, same bytes',
      (m) => (tensor(m, 'ln_f.weight').shape = [16, 2]),
      /"transformer\.ln_f\.weight" has shape \[16, 2\], but the config implies \[32\]/,
    ],
    [
      'storage that does not match the byte count',
      (m) => (tensor(m, 'lm_head.weight').storage = 'q4'),
      /"lm_head\.weight": \d+ bytes, but q4 \[97, 32\] takes \d+/,
    ],
    ['unknown storage type', (m) => ((tensor(m, 'lm_head.weight') as { storage: string }).storage = 'q2'), /storage "q2" is not one of/],
    ['storage a shape cannot have', (m) => (tensor(m, 'ln_f.bias').storage = 'q8'), /cannot be stored as q8/],
    [
      'piece past the shard end',
      (m) => {
        const t = tensor(m, 'ln_f.bias');
        t.pieces = [{ ...t.pieces[0], offset: m.shards[t.pieces[0].shard].bytes - 64 }];
      },
      /runs past the end of shard-\d+\.bin/,
    ],
    [
      'overlapping pieces',
      (m) => {
        const a = tensor(m, 'ln_f.weight');
        const b = tensor(m, 'ln_f.bias');
        b.pieces = [{ ...a.pieces[0] }];
      },
      /"transformer\.ln_f\.weight" and "transformer\.ln_f\.bias" overlap in shard-\d+\.bin/,
    ],
    ['pieces that do not add up', (m) => tensor(m, 'h.1.mlpf.experts.weight').pieces.pop(), /pieces hold \d+ bytes, but the tensor takes/],
    ['a piece in a shard not listed', (m) => m.shards.pop(), /lists \d+ shard\(s\)|lacks/],
    ['bad expertBytes', (m) => (tensor(m, 'h.0.mlpf.experts.weight').expertBytes = 12), /"expertBytes" is 12/],
    [
      'shard name with a path',
      (m) => (m.shards[0].file = '../secret.bin'),
      /shard 0: "file" is "\.\.\/secret\.bin"; a file next to the manifest is named by one path segment/,
    ],
    ['bad sha256', (m) => (m.shards[0].sha256 = 'abc'), /"sha256" must be 64 lower-case hex digits/],
    ['bad config', (m) => delete m.config.n_embd, /"config": config\.json: field "n_embd" is missing/],
  ];

  it.each(CASES)('%s', async (_what, edit, message) => {
    const err = await openManifest(edited(edit)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelFormatError);
    expect((err as Error).message).toMatch(message);
  });

  it('reports a manifest that is not JSON', async () => {
    await expect(openManifest(folderWith(dir, { [MANIFEST_FILE]: new TextEncoder().encode('{"format": ') }))).rejects.toThrow(/not valid JSON.*re-download/);
  });

  it('reports a missing shard file and a shard of the wrong size', async () => {
    await expect(openManifest(folderWith(dir, { 'shard-00002.bin': null }))).rejects.toThrow(
      /lacks shard-00002\.bin, a shard that manifest\.json lists; re-download the model/,
    );
    await expect(openManifest(folderWith(dir, { 'shard-00001.bin': new Uint8Array(8) }))).rejects.toThrow(
      /shard-00001\.bin is 8 bytes, but manifest\.json says \d+: it is incomplete/,
    );
  });

  it("checks each shard's sha256 the first time it is read", async () => {
    const damaged = new Uint8Array(readFileSync(join(dir, 'shard-00001.bin')));
    damaged[100] ^= 1;
    const files = folderWith(dir, { 'shard-00001.bin': damaged });
    const { tensors } = await openManifest(files); // the manifest itself is fine
    const inShard = (i: number) => good.tensors.find((t) => t.pieces.some((p) => p.shard === i))!.name;
    await expect(tensors.read(inShard(0))).resolves.toBeInstanceOf(Uint8Array);
    const err = await tensors.read(inShard(1)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelFormatError);
    expect((err as Error).message).toMatch(/shard-00001\.bin is damaged: its sha256 is [0-9a-f]{64}, but manifest\.json says [0-9a-f]{64}; re-download/);
    await tensors.close();
    // verify: false skips the check (a cache that verified the shards when it stored them).
    const unchecked = await openManifest(files, { verify: false });
    await expect(unchecked.tensors.read(inShard(1))).resolves.toBeInstanceOf(Uint8Array);
    await unchecked.tensors.close();
  });

  it('accepts the manifest the converter wrote, and validates without reading files', () => {
    const { manifest, config } = validateManifest(JSON.parse(JSON.stringify(good)));
    expect(manifest).toEqual(good);
    expect(config.nEmbd).toBe(32);
  });

  it('openModelFolder falls back to the Hugging Face reader without a manifest', async () => {
    const folder = await openModelFolder(nodeFileSource(join(FIXTURES, 'golden/tiny-molm')));
    expect(folder.manifest).toBeNull();
    await folder.tensors.close();
  });
});
