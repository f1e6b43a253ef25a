import { readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelFormatError, MolmError } from '../../src/errors.ts';
import { f16ToF32, f32ToF16, toFloat32 } from '../../src/checkpoint/dtype.ts';
import {
  blobFileSource,
  expectedTensorShapes,
  openCheckpoint,
  openSafetensors,
  openTorchBin,
  openZip,
  readTorchStateDict,
  urlFileSource,
  type ByteSource,
  type FileSource,
  type TensorSource,
} from '../../src/checkpoint/index.ts';
import { nodeFileSource } from '../../src/checkpoint/node-files.ts';

const FIXTURES = fileURLToPath(new URL('../fixtures/', import.meta.url));
const golden = (model: string) => join(FIXTURES, 'golden', model);
const fixture = (name: string) => join(FIXTURES, 'checkpoints', name);
const bytesOf = (path: string) => new Uint8Array(readFileSync(path));

// ---- in-memory files, to build damaged variants of the good fixtures ----

interface TrackedSource extends ByteSource {
  reads: [number, number][];
}

function memorySource(bytes: Uint8Array): TrackedSource {
  const reads: [number, number][] = [];
  return {
    size: bytes.length,
    reads,
    async read(offset, length) {
      if (offset < 0 || length < 0 || offset + length > bytes.length) throw new RangeError(`read past end: ${offset}+${length}`);
      reads.push([offset, length]);
      return bytes.slice(offset, offset + length);
    },
  };
}

function memoryFiles(files: Record<string, Uint8Array | ByteSource>): FileSource {
  return {
    location: 'memory',
    async open(name) {
      const f = files[name];
      if (f === undefined) return null;
      return f instanceof Uint8Array ? memorySource(f) : f;
    },
  };
}

/** The files of a fixture folder, with some replaced (null removes one). */
function folderWith(dir: string, changes: Record<string, Uint8Array | ByteSource | null> = {}): FileSource {
  const files: Record<string, Uint8Array | ByteSource> = {};
  for (const name of readdirSync(dir)) files[name] = bytesOf(join(dir, name));
  for (const [name, v] of Object.entries(changes)) {
    if (v === null) delete files[name];
    else files[name] = v;
  }
  return memoryFiles(files);
}

const text = (s: string) => new TextEncoder().encode(s);
const json = (v: unknown) => text(JSON.stringify(v));

// ---- safetensors surgery ----

interface StParts {
  header: Record<string, { dtype: string; shape: number[]; data_offsets: number[] }>;
  data: Uint8Array;
}

function splitSafetensors(bytes: Uint8Array): StParts {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  return { header: JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))), data: bytes.slice(8 + n) };
}

function joinSafetensors({ header, data }: StParts): Uint8Array {
  const h = text(JSON.stringify(header));
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

function patchedSafetensors(model: string, patch: (p: StParts) => void): Uint8Array {
  const parts = splitSafetensors(bytesOf(join(golden(model), 'model.safetensors')));
  patch(parts);
  return joinSafetensors(parts);
}

// ---- reading whole checkpoints ----

async function readAll(t: TensorSource): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  for (const name of t.tensors.keys()) out.set(name, await t.read(name));
  return out;
}

async function openGolden(model: string) {
  const ckpt = await openCheckpoint(nodeFileSource(golden(model)));
  const bytes = await readAll(ckpt.tensors);
  await ckpt.tensors.close();
  return { ...ckpt, bytes };
}

/** Index of the first element whose float32 bits differ, or -1. */
function firstDifference(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return 0;
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) return i;
  return -1;
}

async function expectSameWeights(files: FileSource, model: string, convert: (x: Float32Array) => Float32Array = (x) => x) {
  const ref = await openGolden(model);
  const ckpt = await openCheckpoint(files);
  try {
    expect(ckpt.config).toEqual(ref.config);
    expect([...ckpt.tensors.tensors.keys()].sort()).toEqual([...ref.tensors.tensors.keys()].sort());
    for (const [name, refBytes] of ref.bytes) {
      const info = ckpt.tensors.tensors.get(name)!;
      const refInfo = ref.tensors.tensors.get(name)!;
      expect(info.shape, name).toEqual(refInfo.shape);
      const got = toFloat32(await ckpt.tensors.read(name), info.dtype);
      const want = convert(toFloat32(refBytes, refInfo.dtype));
      expect(firstDifference(got, want), name).toBe(-1);
      expect(got.length * (info.dtype === 'F32' ? 4 : 2)).toBe(info.byteLength);
    }
  } finally {
    await ckpt.tensors.close();
  }
  return ckpt;
}

const roundToF16 = (x: Float32Array) => x.map((v) => f16ToF32(f32ToF16(v)));

async function openError(files: FileSource): Promise<Error> {
  try {
    const c = await openCheckpoint(files);
    await c.tensors.close();
  } catch (e) {
    return e as Error;
  }
  throw new Error('openCheckpoint succeeded where it should have failed');
}

async function expectOpenError(files: FileSource, message: RegExp, type: new (...a: never[]) => Error = ModelFormatError) {
  const e = await openError(files);
  expect(e).toBeInstanceOf(type);
  expect(e.message).toMatch(message);
}

// =====================================================================================

describe('the golden safetensors', () => {
  it('reads each tensor exactly as stored, and skips attn.mask / attn.cum_weight', async () => {
    const path = join(golden('tiny-molm'), 'model.safetensors');
    const { header, data } = splitSafetensors(bytesOf(path));
    const ckpt = await openCheckpoint(nodeFileSource(golden('tiny-molm')));
    const names = [...ckpt.tensors.tensors.keys()];
    expect(names.some((n) => n.endsWith('.attn.mask') || n.endsWith('.attn.cum_weight'))).toBe(false);
    expect(names.length).toBe(Object.keys(header).length - 1 - 4); // __metadata__, 2 layers × 2 buffers
    for (const name of names) {
      const [b, e] = header[name].data_offsets;
      expect(Buffer.from(await ckpt.tensors.read(name)).equals(data.subarray(b, e)), name).toBe(true);
    }
    await ckpt.tensors.close();

    // The raw file still shows the buffers.
    const raw = await openSafetensors(memorySource(bytesOf(path)), 'model.safetensors');
    expect(raw.tensors.get('transformer.h.0.attn.mask')).toMatchObject({ dtype: 'I8', shape: [128, 128] });
  });

  it('reads only the header and the tensor asked for', async () => {
    const bytes = bytesOf(join(golden('tiny-molm'), 'model.safetensors'));
    const source = memorySource(bytes);
    const ckpt = await openCheckpoint(folderWith(golden('tiny-molm'), { 'model.safetensors': source }));
    const opened = source.reads.reduce((s, [, n]) => s + n, 0);
    expect(opened).toBeLessThan(8 + 4000);
    source.reads.length = 0;
    await ckpt.tensors.read('lm_head.weight');
    expect(source.reads).toEqual([[bytes.length - 97 * 32 * 4, 97 * 32 * 4]]);
  });

  it('checks the config shapes (k/v projections for the generic model)', async () => {
    const ckpt = await openCheckpoint(nodeFileSource(golden('tiny-generic-bf16')));
    expect(ckpt.tensors.tensors.get('transformer.h.1.attn.k_proj.weight')).toMatchObject({ dtype: 'BF16', shape: [24, 32] });
    expect(ckpt.rawConfig.torch_dtype).toBe('bfloat16');
    const expected = expectedTensorShapes(ckpt.config);
    expect(expected.get('transformer.h.0.attn.v_proj.bias')).toEqual([24]);
    expect([...expected.keys()].sort()).toEqual([...ckpt.tensors.tensors.keys()].sort());
    await ckpt.tensors.close();
  });
});

describe('every checkpoint form reads as the golden weights', () => {
  it('pytorch_model.bin (with the unused buffers)', async () => {
    await expectSameWeights(nodeFileSource(fixture('tiny-molm-bin')), 'tiny-molm');
  });

  it('sharded pytorch_model-0000N-of-00002.bin + index', async () => {
    await expectSameWeights(nodeFileSource(fixture('tiny-molm-bin-sharded')), 'tiny-molm');
  });

  it('pytorch_model.bin with bf16 storages', async () => {
    const ckpt = await expectSameWeights(nodeFileSource(fixture('tiny-generic-bf16-bin')), 'tiny-generic-bf16');
    expect([...ckpt.tensors.tensors.values()].every((t) => t.dtype === 'BF16')).toBe(true);
  });

  it('sharded safetensors + index', async () => {
    await expectSameWeights(nodeFileSource(fixture('tiny-molm-st-sharded')), 'tiny-molm');
  });

  it('F16 safetensors (the golden weights rounded to f16)', async () => {
    const ckpt = await expectSameWeights(nodeFileSource(fixture('tiny-molm-f16-st')), 'tiny-molm', roundToF16);
    expect(ckpt.tensors.tensors.get('lm_head.weight')!.dtype).toBe('F16');
  });

  it('pytorch_model.bin with transposed views, permuted views and shared storages', async () => {
    await expectSameWeights(nodeFileSource(fixture('tiny-molm-bin-views')), 'tiny-molm');
  });

  it('ZIP64 pytorch_model.bin with storages past 4 GiB', async () => {
    const zip = await rewriteAsZip64(bytesOf(join(fixture('tiny-molm-bin'), 'pytorch_model.bin')), 5 * 2 ** 30, {
      'pytorch_model/byteorder': 'little',
    });
    expect(zip.size).toBeGreaterThan(5 * 2 ** 30);
    await expectSameWeights(folderWith(fixture('tiny-molm-bin'), { 'pytorch_model.bin': zip }), 'tiny-molm');
  });

  it('blobs and File objects', async () => {
    const dir = fixture('tiny-molm-bin');
    const blobs = new Map(readdirSync(dir).map((n) => [n, new Blob([bytesOf(join(dir, n))])]));
    await expectSameWeights(blobFileSource(blobs), 'tiny-molm');
    const files = readdirSync(dir).map((n) => new File([bytesOf(join(dir, n))], n));
    await expectSameWeights(blobFileSource(files), 'tiny-molm');
  });

  it('a URL read with HTTP Range requests', async () => {
    const server = fakeServer(fixture('tiny-molm-st-sharded'));
    await expectSameWeights(urlFileSource('https://example.test/model', server.fetch), 'tiny-molm');
    expect(server.log.every((r) => r.method === 'GET' && r.range !== null)).toBe(true);
    expect(server.log.some((r) => r.url.endsWith('/model.safetensors') && r.status === 404)).toBe(true);
  });

  it('prefers model.safetensors when a folder also has pytorch_model.bin', async () => {
    const files = folderWith(golden('tiny-molm'), { 'pytorch_model.bin': text('not a zip') });
    await expectSameWeights(files, 'tiny-molm');
  });
});

describe('torch.save pickles', () => {
  const expected = JSON.parse(readFileSync(join(fixture('pickle-protocols'), 'expected.json'), 'utf8')) as Record<
    string,
    { dtype: string; shape: number[]; values: number[] | null }
  >;
  const dtypes: Record<string, string> = { float32: 'F32', float16: 'F16', bfloat16: 'BF16', int8: 'I8' };

  it.each([2, 4, 5])('protocol %i: dtypes, shapes, views, parameters, 0-d and empty tensors', async (protocol) => {
    const file = await openTorchBin(memorySource(bytesOf(join(fixture('pickle-protocols'), `proto${protocol}.bin`))), 'x.bin');
    for (const [name, want] of Object.entries(expected)) {
      if (want.values === null) {
        expect(file.unreadable.get(name)).toBe(want.dtype);
        await expect(file.read(name)).rejects.toThrow(/stored as torch.int64/);
        continue;
      }
      const info = file.tensors.get(name)!;
      expect(info, name).toMatchObject({ dtype: dtypes[want.dtype], shape: want.shape });
      expect(Array.from(toFloat32(await file.read(name), info.dtype)), name).toEqual(want.values);
    }
  });

  it('reads LONG1, BINFLOAT, BINUNICODE8, DICT, LIST and POP in a hand-assembled pickle', () => {
    const p = new PickleBuilder();
    p.op(0x80, 2).op(0x28); // PROTO 2, MARK (for DICT)
    p.unicode8('w').global('torch._utils', '_rebuild_tensor_v2').op(0x28).op(0x28);
    p.unicode('storage')
      .global('torch', 'HalfStorage')
      .unicode('k')
      .unicode('cpu')
      .long1(2 ** 33)
      .op(0x74)
      .op(0x51);
    p.long1(-1)
      .op(0x30)
      .binint(2 ** 32 - 4); // a pushed-and-popped negative long, then the storage offset
    p.op(0x4b, 2).op(0x4b, 2).op(0x86).op(0x4b, 1).op(0x4b, 2).op(0x86).op(0x88).op(0x4e).op(0x74).op(0x52);
    p.unicode('other').binfloat(1.25).unicode('list').op(0x28).op(0x4e).op(0x88).op(0x6c).op(0x64).op(0x2e);
    const [t, ...rest] = readTorchStateDict(p.bytes(), 'hand.pkl');
    expect(rest).toEqual([]);
    expect(t).toEqual({
      name: 'w',
      dtype: 'F16',
      dtypeName: 'float16',
      elementSize: 2,
      shape: [2, 2],
      stride: [1, 2],
      storageKey: 'k',
      storageOffset: 2 ** 32 - 4,
      storageNumel: 2 ** 33,
    });
  });

  it('refuses an unknown opcode and a truncated pickle', () => {
    expect(() => readTorchStateDict(Uint8Array.of(0x80, 2, 0x7d, 0x49, 0x2e), 'x.pkl')).toThrow(/opcode 0x49 at byte 3/);
    expect(() => readTorchStateDict(Uint8Array.of(0x80, 2, 0x58, 9, 0, 0, 0, 0x61), 'x.pkl')).toThrow(/ends unexpectedly/);
  });

  it('never calls an allow-listed type', () => {
    const p = new PickleBuilder().op(0x80, 2).global('torch', 'FloatStorage').op(0x29).op(0x52).op(0x2e);
    expect(() => readTorchStateDict(p.bytes(), 'x.pkl')).toThrow(/calls something other than a state dict constructor/);
  });

  it.each([
    ['hostile-os-system', 'os system'],
    ['hostile-builtins-eval', 'builtins eval'],
  ])('refuses %s', async (dir, global) => {
    await expectOpenError(
      nodeFileSource(fixture(dir)),
      new RegExp(`^pytorch_model.bin: the pickle names "${global}", which a state dict never contains; refusing to load it`),
    );
  });
});

describe('damaged pytorch_model.bin', () => {
  const good = () => bytesOf(join(fixture('tiny-molm-bin'), 'pytorch_model.bin'));
  const withBin = (bin: Uint8Array | ByteSource) => folderWith(fixture('tiny-molm-bin'), { 'pytorch_model.bin': bin });
  const centralDirectory = (zip: Uint8Array) => {
    const v = new DataView(zip.buffer, zip.byteOffset);
    const eocd = zip.length - 22;
    expect(v.getUint32(eocd, true)).toBe(0x06054b50);
    return { offset: v.getUint32(eocd + 16, true), size: v.getUint32(eocd + 12, true), view: v };
  };

  it('truncated in the middle of the central directory', async () => {
    const zip = good();
    const cd = centralDirectory(zip);
    await expectOpenError(withBin(zip.slice(0, cd.offset + cd.size / 2)), /no zip end-of-central-directory record.*truncated/);
  });

  it('a compressed entry', async () => {
    const zip = good();
    const cd = centralDirectory(zip);
    cd.view.setUint16(cd.offset + 10, 8, true); // the first entry, data.pkl
    await expectOpenError(withBin(zip), /entry "pytorch_model\/data.pkl" is compressed \(zip method 8\).*Re-save it with torch.save/);
  });

  it('an entry offset past the end', async () => {
    const zip = good();
    const cd = centralDirectory(zip);
    cd.view.setUint32(cd.offset + 42, zip.length, true);
    await expectOpenError(withBin(zip), /entry "pytorch_model\/data.pkl" claims a local header at \d+, past the start of the central directory/);
  });

  it('a storage file missing from the archive', async () => {
    const zip = good();
    const cd = centralDirectory(zip);
    const nameAt = cd.offset + 46 + cd.view.getUint16(cd.offset + 28, true) + cd.view.getUint16(cd.offset + 30, true) + cd.view.getUint16(cd.offset + 32, true);
    expect(new TextDecoder().decode(zip.subarray(nameAt + 46, nameAt + 46 + 16))).toBe('pytorch_model/da');
    zip[nameAt + 46 + 'pytorch_model/data/'.length] = 'x'.charCodeAt(0); // data/0 → data/x
    await expectOpenError(withBin(zip), /refers to storage "0", which the archive lacks/);
  });

  it('big-endian storages', async () => {
    const zip = await rewriteAsZip64(good(), 0, { 'pytorch_model/byteorder': 'big' });
    await expectOpenError(withBin(zip), /stores its tensors in big-endian byte order/);
  });

  it('a legacy (pre-zip) torch file and a file that is not a zip', async () => {
    await expectOpenError(withBin(Uint8Array.of(0x80, 2, 0x8a, 0x0a, 0x6c, 0xfc)), /legacy \(pre-1.6\) torch.save format/);
    await expectOpenError(withBin(text('hello world')), /not a zip archive/);
  });
});

describe('damaged safetensors', () => {
  const withSt = (bytes: Uint8Array, model = 'tiny-molm') => folderWith(golden(model), { 'model.safetensors': bytes });
  const REDOWNLOAD = /re-download or re-convert the checkpoint/;
  const good = () => bytesOf(join(golden('tiny-molm'), 'model.safetensors'));

  it('a file shorter than the header length field', async () => {
    await expectOpenError(withSt(good().slice(0, 5)), /^model.safetensors: the file is 5 bytes long, too short/);
    await expectOpenError(withSt(good().slice(0, 5)), REDOWNLOAD);
  });

  it('a header length past the end of the file, or absurd', async () => {
    const past = good();
    new DataView(past.buffer).setBigUint64(0, BigInt(past.length), true);
    await expectOpenError(withSt(past), /header length field says \d+ bytes, past the end of the \d+-byte file/);
    const absurd = good();
    new DataView(absurd.buffer).setBigUint64(0, 2n ** 40n, true);
    await expectOpenError(withSt(absurd), /says 1099511627776 bytes, which no real safetensors header needs/);
    new DataView(absurd.buffer).setBigUint64(0, 2n ** 60n, true);
    await expectOpenError(withSt(absurd), /too large to be a real offset/);
  });

  it('a header that is not JSON', async () => {
    const bytes = good();
    bytes[8] = 'x'.charCodeAt(0);
    await expectOpenError(withSt(bytes), /^model.safetensors: the header is not valid JSON/);
  });

  it('a truncated file (offsets past the end of the data)', async () => {
    const bytes = good();
    await expectOpenError(
      withSt(bytes.slice(0, bytes.length - 100)),
      /tensor "lm_head.weight" has data_offsets \[400256, 412672\] past the end of the data.*truncated/,
    );
  });

  it('overlapping tensors', async () => {
    const bytes = patchedSafetensors('tiny-molm', ({ header }) => {
      header['transformer.ln_f.bias'].data_offsets = [400000 + 64, 400128 + 64];
    });
    await expectOpenError(withSt(bytes), /tensors "transformer.ln_f.weight" \[400000, 400128\] and "transformer.ln_f.bias" \[400064, 400192\] overlap/);
  });

  it('malformed data_offsets', async () => {
    const variants: [unknown, RegExp][] = [
      [[0], /data_offsets \[0\]; they must be two non-negative integers/],
      [[1.5, 129.5], /must be two non-negative integers/],
      [[-128, 0], /must be two non-negative integers/],
      [[400128, 400000], /data_offsets \[400128, 400000\] with begin after end/],
      [[400000, 400256], /"transformer.ln_f.bias" has 256 bytes of data, but F32 \[32\] needs 128/],
    ];
    for (const [offsets, message] of variants) {
      const bytes = patchedSafetensors('tiny-molm', ({ header }) => {
        header['transformer.ln_f.bias'].data_offsets = offsets as number[];
      });
      await expectOpenError(withSt(bytes), message);
    }
  });

  it('a negative or fractional dimension', async () => {
    for (const shape of [[-32], [0.5]]) {
      const bytes = patchedSafetensors('tiny-molm', ({ header }) => {
        header['transformer.ln_f.bias'].shape = shape;
      });
      await expectOpenError(withSt(bytes), /tensor "transformer.ln_f.bias" has shape \[.*\]; a shape must be a list of non-negative integers/);
    }
  });

  it('an unknown dtype', async () => {
    const bytes = patchedSafetensors('tiny-molm', ({ header }) => {
      header['transformer.ln_f.bias'].dtype = 'Q7';
    });
    await expectOpenError(withSt(bytes), /tensor "transformer.ln_f.bias" has dtype "Q7", which is not a safetensors dtype/);
  });

  it('a needed tensor in a dtype the model cannot use', async () => {
    const i64 = patchedSafetensors('tiny-molm', ({ header }) => {
      Object.assign(header['transformer.ln_f.bias'], { dtype: 'I64', shape: [16] });
    });
    await expectOpenError(withSt(i64), /tensor "transformer.ln_f.bias" is stored as I64; molm-web needs float weights/);
    const i8 = patchedSafetensors('tiny-molm', ({ header }) => {
      Object.assign(header['transformer.ln_f.bias'], { dtype: 'I8', shape: [128] });
    });
    await expectOpenError(withSt(i8), /tensor "transformer.ln_f.bias" is stored as I8; molm-web needs float weights/);
  });

  it('an unused buffer in an unreadable dtype is ignored', async () => {
    const bytes = patchedSafetensors('tiny-molm', ({ header }) => {
      Object.assign(header['transformer.h.0.attn.mask'], { dtype: 'I64', shape: [2048] });
      Object.assign(header['transformer.h.1.attn.mask'], { dtype: 'BOOL' });
    });
    const ckpt = await openCheckpoint(withSt(bytes));
    expect(ckpt.tensors.tensors.has('transformer.h.0.attn.mask')).toBe(false);
    await ckpt.tensors.close();
  });
});

describe('checks against config.json', () => {
  const config = (model: string, change: Record<string, unknown>) => {
    const c = JSON.parse(readFileSync(join(golden(model), 'config.json'), 'utf8')) as Record<string, unknown>;
    for (const [k, v] of Object.entries(change)) {
      if (v === undefined) delete c[k];
      else c[k] = v;
    }
    return json(c);
  };

  it('a config whose n_embd does not match the weights', async () => {
    await expectOpenError(
      folderWith(golden('tiny-molm'), { 'config.json': config('tiny-molm', { n_embd: 48, att_hidden: 48 }) }),
      /tensor "transformer.wte.weight" has shape \[97, 32\], but config.json implies \[97, 48\]/,
    );
    await expectOpenError(
      folderWith(fixture('tiny-molm-bin-sharded'), { 'config.json': config('tiny-molm', { ffd_hidden: 40 }) }),
      /"transformer.h.0.mlpf.experts.weight" has shape \[6, 32, 48\], but config.json implies \[6, 32, 40\]/,
    );
  });

  it('a missing config field', async () => {
    await expectOpenError(folderWith(golden('tiny-molm'), { 'config.json': config('tiny-molm', { n_layer: undefined }) }), /field "n_layer" is missing/);
  });

  it('a missing tensor, including the k/v projections a non-MoLM config needs', async () => {
    const bytes = patchedSafetensors('tiny-generic-bf16', ({ header }) => {
      delete header['transformer.h.1.attn.k_proj.weight'];
    });
    await expectOpenError(withModel('tiny-generic-bf16', bytes), /lacks 1 tensor\(s\) the model needs: "transformer.h.1.attn.k_proj.weight" \[24, 32\]/);
    // MoLM weights under a config with n_head 2: the experts still fit, the projections are missing.
    await expectOpenError(
      folderWith(golden('tiny-molm'), { 'config.json': config('tiny-molm', { n_head: 2 }) }),
      /lacks 8 tensor\(s\) the model needs: "transformer.h.0.attn.k_proj.weight" \[32, 32\], .*and 3 more/,
    );
  });

  it('no config.json, no weights', async () => {
    await expectOpenError(folderWith(golden('tiny-molm'), { 'config.json': null }), /memory has no config.json/);
    await expectOpenError(
      folderWith(golden('tiny-molm'), { 'model.safetensors': null }),
      /memory holds no weights: looked for model.safetensors, model.safetensors.index.json, pytorch_model.bin, pytorch_model.bin.index.json/,
    );
  });

  function withModel(model: string, st: Uint8Array) {
    return folderWith(golden(model), { 'model.safetensors': st });
  }
});

describe('damaged shard indexes', () => {
  const dir = fixture('tiny-molm-st-sharded');
  const index = () => JSON.parse(readFileSync(join(dir, 'model.safetensors.index.json'), 'utf8'));

  it('a missing shard', async () => {
    await expectOpenError(
      folderWith(dir, { 'model-00002-of-00002.safetensors': null }),
      /lacks model-00002-of-00002.safetensors, a shard that model.safetensors.index.json lists/,
    );
  });

  it('a shard name that is a path', async () => {
    const idx = index();
    idx.weight_map['lm_head.weight'] = '../secrets/model.safetensors';
    await expectOpenError(
      folderWith(dir, { 'model.safetensors.index.json': json(idx) }),
      /the shard of tensor "lm_head.weight": "..\/secrets\/model.safetensors" is not a file name molm-web will open/,
    );
  });

  it('a tensor placed in the wrong shard, and no weight_map', async () => {
    const idx = index();
    idx.weight_map['lm_head.weight'] = 'model-00001-of-00002.safetensors';
    await expectOpenError(
      folderWith(dir, { 'model.safetensors.index.json': json(idx) }),
      /places tensor "lm_head.weight" in model-00001-of-00002.safetensors, which does not hold it/,
    );
    await expectOpenError(folderWith(dir, { 'model.safetensors.index.json': json({ metadata: {} }) }), /has no "weight_map" object/);
  });
});

describe('file sources', () => {
  it('urlFileSource: falls back to HEAD when Content-Range is hidden, and refuses servers without ranges', async () => {
    const hidden = fakeServer(fixture('tiny-molm-bin'), { hideContentRange: true });
    const ckpt = await openCheckpoint(urlFileSource('https://example.test/m/', hidden.fetch));
    await ckpt.tensors.close();
    expect(hidden.log.some((r) => r.method === 'HEAD')).toBe(true);

    const noRanges = fakeServer(fixture('tiny-molm-bin'), { ignoreRange: true });
    await expectOpenError(urlFileSource('https://example.test/m/', noRanges.fetch), /ignored an HTTP Range request/, MolmError);
  });

  it('nodeFileSource: missing files, paths outside the folder, closed handles', async () => {
    const files = nodeFileSource(fixture('tiny-molm-bin'));
    expect(await files.open('nope.json')).toBeNull();
    await expect(files.open('../tiny-molm-bin-views/config.json')).rejects.toThrow(
      /"..\/tiny-molm-bin-views\/config.json" is not a file name molm-web will open/,
    );
    const f = (await files.open('config.json'))!;
    await expect(f.read(f.size - 1, 2)).rejects.toThrow(/cannot read 2 bytes/);
    await f.close!();
    await expect(f.read(0, 1)).rejects.toThrow();
  });

  describe('nodeFileSource beyond 4 GiB', () => {
    let dir = '';
    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'molm-sparse-'));
    });
    afterAll(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('reads at offsets past 2^32 of a sparse file', async () => {
      const size = 5 * 2 ** 30;
      const at = 2 ** 32 + 12345;
      const h = await open(join(dir, 'big.bin'), 'w');
      await h.truncate(size); // sparse: takes no disk space
      await h.write(Uint8Array.of(1, 2, 3, 4), 0, 4, at);
      await h.close();
      const f = (await nodeFileSource(dir).open('big.bin'))!;
      expect(f.size).toBe(size);
      expect(Array.from(await f.read(at - 1, 6))).toEqual([0, 1, 2, 3, 4, 0]);
      await f.close!();
    });
  });
});

// ---- a fake HTTP server over a fixture folder ----

interface Request {
  method: string;
  url: string;
  range: string | null;
  status: number;
}

function fakeServer(dir: string, o: { hideContentRange?: boolean; ignoreRange?: boolean } = {}) {
  const log: Request[] = [];
  const fetchImpl = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const url = String(input);
    const method = init?.method ?? 'GET';
    const range = new Headers(init?.headers).get('range');
    const name = decodeURIComponent(url.slice(url.lastIndexOf('/') + 1));
    let body: Uint8Array<ArrayBuffer> | null = null;
    try {
      body = bytesOf(join(dir, name));
    } catch {
      body = null;
    }
    const reply = (status: number, payload: Uint8Array<ArrayBuffer> | null, headers: Record<string, string> = {}) => {
      log.push({ method, url, range, status });
      return new Response(payload && method !== 'HEAD' ? payload : null, { status, headers });
    };
    if (!body) return reply(404, null);
    if (method === 'HEAD') return reply(200, null, { 'content-length': String(body.length) });
    const m = range?.match(/^bytes=(\d+)-(\d+)$/);
    if (!m || o.ignoreRange) return reply(200, body);
    const [b, e] = [Number(m[1]), Math.min(Number(m[2]), body.length - 1)];
    const headers: Record<string, string> = o.hideContentRange ? {} : { 'content-range': `bytes ${b}-${e}/${body.length}` };
    return reply(206, body.slice(b, e + 1), headers);
  };
  return { log, fetch: fetchImpl as typeof fetch };
}

// ---- a hand-assembled pickle ----

class PickleBuilder {
  private parts: number[] = [];
  op(...bytes: number[]) {
    this.parts.push(...bytes);
    return this;
  }
  private raw(b: Uint8Array) {
    this.parts.push(...b);
    return this;
  }
  private u32(n: number) {
    return this.op(n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff);
  }
  unicode(s: string) {
    const b = text(s);
    return this.op(0x58).u32(b.length).raw(b);
  }
  unicode8(s: string) {
    const b = text(s);
    return this.op(0x8d).u32(b.length).u32(0).raw(b);
  }
  global(module: string, name: string) {
    return this.op(0x63).raw(text(`${module}\n${name}\n`));
  }
  binint(n: number) {
    // LONG1 for values past the 32-bit BININT, as Python's pickler does.
    return n < 2 ** 31 ? this.op(0x4a).u32(n) : this.long1(n);
  }
  long1(n: number) {
    let v = BigInt(n);
    const bytes: number[] = [];
    do {
      bytes.push(Number(v & 0xffn));
      v >>= 8n;
    } while (!(v === 0n && (bytes[bytes.length - 1] & 0x80) === 0) && !(v === -1n && (bytes[bytes.length - 1] & 0x80) !== 0));
    return this.op(0x8a, bytes.length, ...bytes);
  }
  binfloat(x: number) {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, x, false);
    return this.op(0x47).raw(b);
  }
  bytes() {
    return Uint8Array.from(this.parts);
  }
}

// ---- a ZIP64 writer over a sparse byte source, to put storages past 4 GiB ----

/**
 * Rewrites a stored zip as a ZIP64 archive with every size and offset in its 64-bit fields, and
 * `gap` zero bytes before the first storage. The gap is not allocated: the result is a ByteSource
 * of segments with zeros between them.
 */
async function rewriteAsZip64(zip: Uint8Array, gap: number, extra: Record<string, string> = {}): Promise<ByteSource> {
  const archive = await openZip(memorySource(zip), 'in.zip');
  const files: [string, Uint8Array][] = [];
  for (const entry of archive.entries.values()) {
    const range = await archive.dataRange(entry);
    files.push([entry.name, zip.subarray(range.offset, range.offset + range.length)]);
  }
  files.push(...Object.entries(extra).map(([n, s]) => [n, text(s)] as [string, Uint8Array]));
  const segments: { at: number; bytes: Uint8Array }[] = [];
  const central: Uint8Array[] = [];
  let pos = 0;
  let first = true;
  for (const [entryName, data] of files) {
    if (entryName.includes('/data/') && first) {
      pos += gap;
      first = false;
    }
    const name = text(entryName);
    const local = new Uint8Array(30 + name.length + 20);
    const lv = new DataView(local.buffer);
    lv.setUint32(0, 0x04034b50, true);
    lv.setUint16(4, 45, true);
    lv.setUint32(18, 0xffffffff, true);
    lv.setUint32(22, 0xffffffff, true);
    lv.setUint16(26, name.length, true);
    lv.setUint16(28, 20, true);
    local.set(name, 30);
    lv.setUint16(30 + name.length, 1, true);
    lv.setUint16(32 + name.length, 16, true);
    lv.setBigUint64(34 + name.length, BigInt(data.length), true);
    lv.setBigUint64(42 + name.length, BigInt(data.length), true);
    segments.push({ at: pos, bytes: local }, { at: pos + local.length, bytes: data });

    const cd = new Uint8Array(46 + name.length + 28);
    const cv = new DataView(cd.buffer);
    cv.setUint32(0, 0x02014b50, true);
    cv.setUint16(4, 45, true);
    cv.setUint16(6, 45, true);
    cv.setUint32(20, 0xffffffff, true);
    cv.setUint32(24, 0xffffffff, true);
    cv.setUint16(28, name.length, true);
    cv.setUint16(30, 28, true);
    cv.setUint32(42, 0xffffffff, true);
    cd.set(name, 46);
    cv.setUint16(46 + name.length, 1, true);
    cv.setUint16(48 + name.length, 24, true);
    cv.setBigUint64(50 + name.length, BigInt(data.length), true);
    cv.setBigUint64(58 + name.length, BigInt(data.length), true);
    cv.setBigUint64(66 + name.length, BigInt(pos), true);
    central.push(cd);
    pos += local.length + data.length;
  }
  const cdOffset = pos;
  const cdSize = central.reduce((s, c) => s + c.length, 0);
  for (const c of central) {
    segments.push({ at: pos, bytes: c });
    pos += c.length;
  }
  const end = new Uint8Array(56 + 20 + 22);
  const ev = new DataView(end.buffer);
  ev.setUint32(0, 0x06064b50, true);
  ev.setBigUint64(4, 44n, true);
  ev.setUint16(12, 45, true);
  ev.setUint16(14, 45, true);
  ev.setBigUint64(24, BigInt(central.length), true);
  ev.setBigUint64(32, BigInt(central.length), true);
  ev.setBigUint64(40, BigInt(cdSize), true);
  ev.setBigUint64(48, BigInt(cdOffset), true);
  ev.setUint32(56, 0x07064b50, true);
  ev.setBigUint64(64, BigInt(pos), true);
  ev.setUint32(72, 1, true);
  ev.setUint32(76, 0x06054b50, true);
  ev.setUint16(84, 0xffff, true);
  ev.setUint16(86, 0xffff, true);
  ev.setUint32(88, 0xffffffff, true);
  ev.setUint32(92, 0xffffffff, true);
  segments.push({ at: pos, bytes: end });
  pos += end.length;

  const size = pos;
  return {
    size,
    async read(offset, length) {
      if (offset + length > size) throw new RangeError('read past end');
      const out = new Uint8Array(length);
      for (const s of segments) {
        const from = Math.max(offset, s.at);
        const to = Math.min(offset + length, s.at + s.bytes.length);
        if (from < to) out.set(s.bytes.subarray(from - s.at, to - s.at), from - offset);
      }
      return out;
    },
  };
}
