import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ModelFormatError } from '../../src/errors.ts';
import { LIMITS } from '../../src/limits.ts';
import { openCheckpoint, openTorchBin, readTorchStateDict, type ByteSource, type FileSource } from '../../src/checkpoint/index.ts';

// Hostile pytorch_model.bin files, built here byte by byte: pickles that exhaust the stack, the
// memory or the time of a naive reader, tensors that make gigabytes out of a few bytes, and zips
// whose directory lies. Each must end in a ModelFormatError that says what is wrong.

const text = (s: string) => new TextEncoder().encode(s);

// ---- a pickle assembler ----

class Pickle {
  private parts: Uint8Array[] = [];
  op(...bytes: number[]) {
    this.parts.push(Uint8Array.from(bytes));
    return this;
  }
  raw(bytes: Uint8Array) {
    this.parts.push(bytes);
    return this;
  }
  /** `pattern` written `times` times, in one allocation (for the pickles of megabytes). */
  repeat(pattern: number[] | ((i: number, out: DataView, at: number) => void), times: number, width = 0) {
    const w = typeof pattern === 'function' ? width : pattern.length;
    const out = new Uint8Array(w * times);
    const view = new DataView(out.buffer);
    for (let i = 0; i < times; i++) {
      if (typeof pattern === 'function') pattern(i, view, i * w);
      else out.set(pattern, i * w);
    }
    return this.raw(out);
  }
  u32(n: number) {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, n, true);
    return this.raw(b);
  }
  str(s: string) {
    const b = text(s);
    return this.op(0x58).u32(b.length).raw(b); // BINUNICODE
  }
  int(n: number) {
    if (n < 2 ** 31) return this.op(0x4a).u32(n); // BININT
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigInt64(0, BigInt(n), true);
    return this.op(0x8b).u32(8).raw(b); // LONG4 of 8 bytes, as a 64-bit count would be
  }
  global(module: string, name: string) {
    return this.op(0x63).raw(text(`${module}\n${name}\n`));
  }
  ints(values: readonly number[]) {
    this.op(0x28); // MARK
    for (const v of values) this.int(v);
    return this.op(0x74); // TUPLE
  }
  /** PROTO 2, then an empty OrderedDict and a MARK for its items. */
  dictStart() {
    return this.op(0x80, 2).global('collections', 'OrderedDict').op(0x29, 0x52, 0x28);
  }
  /** SETITEMS, STOP. */
  dictEnd() {
    return this.op(0x75, 0x2e);
  }
  bytes(): Uint8Array {
    const out = new Uint8Array(this.parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of this.parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }
}

interface TensorSpec {
  name?: string;
  key?: string;
  /** Elements of the storage. */
  numel: number;
  offset?: number;
  shape: number[];
  stride: number[];
}

/** One `name: _rebuild_tensor_v2(storage, offset, shape, stride, False, OrderedDict())` item. */
function tensorItem(p: Pickle, t: TensorSpec): Pickle {
  p.str(t.name ?? 'w')
    .global('torch._utils', '_rebuild_tensor_v2')
    .op(0x28);
  p.op(0x28)
    .str('storage')
    .global('torch', 'FloatStorage')
    .str(t.key ?? '0')
    .str('cpu')
    .int(t.numel)
    .op(0x74, 0x51); // BINPERSID
  p.int(t.offset ?? 0)
    .ints(t.shape)
    .ints(t.stride)
    .op(0x89)
    .global('collections', 'OrderedDict')
    .op(0x29, 0x52);
  return p.op(0x74, 0x52); // TUPLE, REDUCE
}

function stateDict(tensors: TensorSpec[]): Uint8Array {
  const p = new Pickle().dictStart();
  for (const t of tensors) tensorItem(p, t);
  return p.dictEnd().bytes();
}

const W: TensorSpec = { numel: 4, shape: [2, 2], stride: [2, 1] };

// ---- a zip writer (stored entries; CRCs are left 0, the reader does not check them) ----

interface Zip {
  bytes: Uint8Array;
  view: DataView;
  /** Offset of each entry's central directory record. */
  central: number[];
  /** Offset of the end of central directory record. */
  eocd: number;
}

function storedZip(files: [string, Uint8Array][]): Zip {
  const names = files.map(([n]) => text(n));
  const localSize = files.reduce((n, [, d], i) => n + 30 + names[i].length + d.length, 0);
  const centralSize = names.reduce((n, name) => n + 46 + name.length, 0);
  const bytes = new Uint8Array(localSize + centralSize + 22);
  const view = new DataView(bytes.buffer);
  const locals: number[] = [];
  let at = 0;
  files.forEach(([, data], i) => {
    locals.push(at);
    view.setUint32(at, 0x04034b50, true);
    view.setUint16(at + 4, 20, true);
    view.setUint32(at + 18, data.length, true);
    view.setUint32(at + 22, data.length, true);
    view.setUint16(at + 26, names[i].length, true);
    bytes.set(names[i], at + 30);
    bytes.set(data, at + 30 + names[i].length);
    at += 30 + names[i].length + data.length;
  });
  const central: number[] = [];
  files.forEach(([, data], i) => {
    central.push(at);
    view.setUint32(at, 0x02014b50, true);
    view.setUint16(at + 4, 20, true);
    view.setUint16(at + 6, 20, true);
    view.setUint32(at + 20, data.length, true);
    view.setUint32(at + 24, data.length, true);
    view.setUint16(at + 28, names[i].length, true);
    view.setUint32(at + 42, locals[i], true);
    bytes.set(names[i], at + 46);
    at += 46 + names[i].length;
  });
  view.setUint32(at, 0x06054b50, true);
  view.setUint16(at + 8, files.length, true);
  view.setUint16(at + 10, files.length, true);
  view.setUint32(at + 12, centralSize, true);
  view.setUint32(at + 16, localSize, true);
  return { bytes, view, central, eocd: at };
}

/** A torch.save archive: `archive/data.pkl`, `archive/byteorder`, and one entry per storage. */
function torchZip(pickle: Uint8Array, storages: Record<string, Uint8Array> = { 0: f32(4) }): Zip {
  return storedZip([
    ['archive/data.pkl', pickle],
    ['archive/byteorder', text('little')],
    ...Object.entries(storages).map(([k, d]) => [`archive/data/${k}`, d] as [string, Uint8Array]),
  ]);
}

/** `n` float32 values 0, 1, 2, … */
const f32 = (n: number) => new Uint8Array(Float32Array.from({ length: n }, (_, i) => i).buffer);

/** Rewrites the zip as ZIP64: a ZIP64 end record and locator before a saturated end record. */
function asZip64(zip: Zip): Zip {
  const { bytes, view, eocd } = zip;
  const out = new Uint8Array(eocd + 56 + 20 + 22);
  out.set(bytes.subarray(0, eocd));
  const v = new DataView(out.buffer);
  const count = view.getUint16(eocd + 10, true);
  v.setUint32(eocd, 0x06064b50, true);
  v.setBigUint64(eocd + 4, 44n, true);
  v.setBigUint64(eocd + 24, BigInt(count), true);
  v.setBigUint64(eocd + 32, BigInt(count), true);
  v.setBigUint64(eocd + 40, BigInt(view.getUint32(eocd + 12, true)), true);
  v.setBigUint64(eocd + 48, BigInt(view.getUint32(eocd + 16, true)), true);
  v.setUint32(eocd + 56, 0x07064b50, true);
  v.setBigUint64(eocd + 64, BigInt(eocd), true);
  v.setUint32(eocd + 72, 1, true);
  const end = eocd + 76;
  v.setUint32(end, 0x06054b50, true);
  v.setUint16(end + 8, 0xffff, true);
  v.setUint16(end + 10, 0xffff, true);
  v.setUint32(end + 12, 0xffffffff, true);
  v.setUint32(end + 16, 0xffffffff, true);
  return { bytes: out, view: v, central: zip.central, eocd };
}

// ---- opening ----

interface Tracked extends ByteSource {
  /** Bytes read in all. */
  bytesRead: number;
}

function memorySource(bytes: Uint8Array): Tracked {
  const source: Tracked = {
    size: bytes.length,
    bytesRead: 0,
    async read(offset, length) {
      if (offset < 0 || length < 0 || offset + length > bytes.length) throw new RangeError(`read past end: ${offset}+${length}`);
      source.bytesRead += length;
      return bytes.slice(offset, offset + length);
    },
  };
  return source;
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a rejection');
}

function thrown(f: () => unknown): Error {
  try {
    f();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected an error');
}

function expectFormatError(e: Error, message: RegExp) {
  expect(e).toBeInstanceOf(ModelFormatError);
  expect(e.message).toMatch(message);
  // Whatever the file holds, the message stays a sentence, not a dump of it.
  expect(e.message.length).toBeLessThan(600);
}

const openBin = (zip: Zip | Uint8Array, source = memorySource(zip instanceof Uint8Array ? zip : zip.bytes)) => openTorchBin(source, 'pytorch_model.bin');
const openError = async (zip: Zip | Uint8Array) => rejection(openBin(zip));
const pickleError = (pickle: Uint8Array) => thrown(() => readTorchStateDict(pickle, 'data.pkl'));

async function readFloats(zip: Zip, name = 'w'): Promise<number[]> {
  const file = await openBin(zip);
  return Array.from(new Float32Array((await file.read(name)).slice().buffer));
}

// =====================================================================================

describe('pickle limits', () => {
  const EXCESS = /far more than torch\.save writes for a state dict; refusing to load it\. Re-download the checkpoint, or convert it to safetensors/;

  it('an APPENDS of 150 000 items loads (the batch is not spread into arguments)', () => {
    const p = new Pickle().dictStart();
    tensorItem(p, W);
    p.str('big').op(0x5d, 0x28).repeat([0x4e], 150_000).op(0x65); // EMPTY_LIST, MARK, NONE × 150 000, APPENDS
    const tensors = readTorchStateDict(p.dictEnd().bytes(), 'data.pkl');
    expect(tensors.map((t) => t.name)).toEqual(['w']);
  });

  it('refuses a list of more items than LIMITS.pickleItems', () => {
    const half = (LIMITS.pickleItems >> 1) + 1;
    const p = new Pickle().dictStart().str('big').op(0x5d);
    p.op(0x28).repeat([0x4e], half).op(0x65).op(0x28).repeat([0x4e], half).op(0x65);
    expectFormatError(
      pickleError(p.dictEnd().bytes()),
      new RegExp(`^data.pkl: a list holds more than ${LIMITS.pickleItems} items at byte \\d+, ${EXCESS.source}`),
    );
  });

  it('refuses more values on the stack at once than LIMITS.pickleItems', () => {
    const p = new Pickle()
      .op(0x80, 2, 0x28)
      .repeat([0x4e], LIMITS.pickleItems + 1)
      .op(0x6c, 0x2e);
    expectFormatError(pickleError(p.bytes()), new RegExp(`the pickle stack holds more than ${LIMITS.pickleItems} values at byte \\d+, ${EXCESS.source}`));
  });

  it('refuses a pickle that pushes more values than LIMITS.pickleValues', () => {
    const p = new Pickle()
      .op(0x80, 2)
      .repeat([0x4e, 0x30], LIMITS.pickleValues + 1)
      .op(0x4e, 0x2e); // (NONE, POP) × n
    expectFormatError(pickleError(p.bytes()), new RegExp(`the pickle pushes more than ${LIMITS.pickleValues} values, ${EXCESS.source}`));
  });

  it('refuses a memo of more entries than LIMITS.pickleMemo', () => {
    const p = new Pickle().op(0x80, 2, 0x4e);
    p.repeat(
      (i, out, at) => {
        out.setUint8(at, 0x72); // LONG_BINPUT i
        out.setUint32(at + 1, i, true);
      },
      LIMITS.pickleMemo + 1,
      5,
    );
    expectFormatError(
      pickleError(p.op(0x2e).bytes()),
      new RegExp(`the pickle memo holds more than ${LIMITS.pickleMemo} entries at byte \\d+, ${EXCESS.source}`),
    );
  });

  it('refuses a LONG4 of 300 KB and a LONG1 past LIMITS.pickleLongBytes before decoding them', () => {
    const long4 = new Pickle().op(0x80, 2, 0x8b).u32(300_000).raw(new Uint8Array(300_000).fill(0x7f)).op(0x2e).bytes();
    expectFormatError(
      pickleError(long4),
      new RegExp(`^data.pkl: the pickle holds a 300000-byte integer at byte 2 .*at most ${LIMITS.pickleLongBytes}\\), ${EXCESS.source}`),
    );
    const n = LIMITS.pickleLongBytes + 1;
    const long1 = new Pickle().op(0x80, 2, 0x8a, n).raw(new Uint8Array(n)).op(0x2e).bytes();
    expectFormatError(pickleError(long1), new RegExp(`a ${n}-byte integer at byte 2`));
  });

  it('still reads an 8-byte LONG4 (a storage of more than 2^31 elements)', () => {
    const [t] = readTorchStateDict(stateDict([{ ...W, numel: 2 ** 40 }]), 'data.pkl');
    expect(t.storageNumel).toBe(2 ** 40);
  });

  it('refuses lists and tuples nested deeper than LIMITS.pickleDepth, without overflowing the stack', () => {
    const lists = new Pickle().op(0x80, 2).repeat([0x5d], 100_000).repeat([0x61], 99_999).op(0x2e); // EMPTY_LIST × n, APPEND × n-1
    const deep = new RegExp(`the pickle nests lists, tuples or dicts more than ${LIMITS.pickleDepth} deep at byte \\d+, ${EXCESS.source}`);
    expectFormatError(pickleError(lists.bytes()), deep);
    const tuples = new Pickle().op(0x80, 2, 0x4e).repeat([0x85], 100_000).op(0x2e); // NONE, TUPLE1 × n
    expectFormatError(pickleError(tuples.bytes()), deep);
  });

  it('accepts a state dict nested exactly LIMITS.pickleDepth deep, and no deeper', () => {
    const nested = (tuples: number) => new Pickle().dictStart().str('x').op(0x4e).repeat([0x85], tuples).dictEnd().bytes(); // the dict itself is one more level
    expect(readTorchStateDict(nested(LIMITS.pickleDepth - 1), 'data.pkl')).toEqual([]);
    expectFormatError(pickleError(nested(LIMITS.pickleDepth)), /nests lists, tuples or dicts more than 64 deep/);
  });

  it.each([
    ['builtins', 'getattr'],
    ['__builtin__', 'eval'],
    ['torch', 'load'],
    ['torch._utils', '_rebuild_device_tensor_from_numpy'],
    ['numpy.core.multiarray', '_reconstruct'],
    ['collections', 'defaultdict'],
  ])('refuses the global %s.%s, by GLOBAL and by STACK_GLOBAL', (module, name) => {
    const message = new RegExp(`^data.pkl: the pickle names "${module} ${name}", which a state dict never contains; refusing to load it`);
    const byGlobal = new Pickle().op(0x80, 2).global(module, name).op(0x29, 0x52, 0x2e).bytes();
    expectFormatError(pickleError(byGlobal), message);
    const byStack = new Pickle().op(0x80, 4).str(module).str(name).op(0x93, 0x29, 0x52, 0x2e).bytes();
    expectFormatError(pickleError(byStack), message);
  });

  it('refuses an overlong GLOBAL name, and keeps a long STACK_GLOBAL name out of the message', () => {
    const long = 'x'.repeat(100_000);
    const byGlobal = new Pickle().op(0x80, 2).global(long, 'y').op(0x2e).bytes();
    expectFormatError(pickleError(byGlobal), /^data.pkl: a GLOBAL name at byte 3 is longer than 256 bytes; the state dict pickle is damaged/);
    const byStack = new Pickle().op(0x80, 4).str(long).str('y').op(0x93, 0x2e).bytes();
    expectFormatError(pickleError(byStack), /^data.pkl: the pickle names "xxxx.*…/);
  });

  it('refuses a tensor name longer than LIMITS.tensorNameLength', () => {
    const name = 'n'.repeat(LIMITS.tensorNameLength + 1);
    expectFormatError(pickleError(stateDict([{ ...W, name }])), new RegExp(`a tensor name is ${name.length} characters long \\("nnn.*…`));
  });

  it('refuses a data.pkl larger than LIMITS.torchPickleBytes before reading it', async () => {
    const source = memorySource(torchZip(new Uint8Array(LIMITS.torchPickleBytes + 1)).bytes);
    expectFormatError(
      await rejection(openBin(new Uint8Array(), source)),
      new RegExp(`"archive/data.pkl" is ${LIMITS.torchPickleBytes + 1} bytes, more than the ${LIMITS.torchPickleBytes} molm-web reads`),
    );
    expect(source.bytesRead).toBeLessThan(100_000);
  });
});

describe('tensor layouts', () => {
  const NON_CONTIGUOUS =
    /Re-save the checkpoint with contiguous tensors \(torch\.save\(\{k: v\.contiguous\(\) for k, v in sd\.items\(\)\}, path\)\), or convert it to safetensors\.$/;

  it('reads a contiguous tensor at an offset inside its storage', async () => {
    const zip = torchZip(stateDict([{ numel: 6, offset: 2, shape: [2, 2], stride: [2, 1] }]), { 0: f32(6) });
    expect(await readFloats(zip)).toEqual([2, 3, 4, 5]);
  });

  it('reads transposed and sliced views in row-major order', async () => {
    const t = torchZip(stateDict([{ numel: 6, shape: [3, 2], stride: [1, 3] }]), { 0: f32(6) });
    expect(await readFloats(t)).toEqual([0, 3, 1, 4, 2, 5]);
    const s = torchZip(stateDict([{ numel: 6, offset: 1, shape: [2, 2], stride: [3, 1] }]), { 0: f32(6) });
    expect(await readFloats(s)).toEqual([1, 2, 4, 5]);
  });

  it('reads a zero-element tensor as no bytes', async () => {
    const zip = torchZip(stateDict([{ numel: 0, shape: [0, 2 ** 40], stride: [1, 1] }]), { 0: new Uint8Array(0) });
    const file = await openBin(zip);
    expect(file.tensors.get('w')!.byteLength).toBe(0);
    expect((await file.read('w')).length).toBe(0);
  });

  it('refuses a stride-0 view of 2^35 elements over one stored float, at open and without reading it', async () => {
    const zip = torchZip(stateDict([{ numel: 1, shape: [2 ** 20, 2 ** 15], stride: [0, 0] }]), { 0: f32(1) });
    const source = memorySource(zip.bytes);
    const e = await rejection(openBin(zip, source));
    expectFormatError(
      e,
      /^pytorch_model.bin: tensor "w" is a non-contiguous view \(shape \[1048576, 32768\], stride \[0, 0\]\) that repeats one element along a dimension \(stride 0: a broadcast, e\.g\. from expand\(\)\); molm-web reads contiguous tensors and transposed or sliced views of them only\./,
    );
    expect(e.message).toMatch(NON_CONTIGUOUS);
    expect(source.bytesRead).toBeLessThan(100_000);
  });

  it('refuses stride 0 at 2^40 elements, and on one dimension of an ordinary tensor', async () => {
    const huge = torchZip(stateDict([{ numel: 1, shape: [2 ** 40], stride: [0] }]), { 0: f32(1) });
    expectFormatError(await openError(huge), /tensor "w" is a non-contiguous view \(shape \[1099511627776\], stride \[0\]\) that repeats one element/);
    const rows = torchZip(stateDict([{ numel: 3, shape: [4, 3], stride: [0, 1] }]), { 0: f32(3) });
    expectFormatError(await openError(rows), /tensor "w" is a non-contiguous view \(shape \[4, 3\], stride \[0, 1\]\) that repeats one element/);
  });

  it('refuses a permuted view whose elements overlap', async () => {
    const zip = torchZip(stateDict([{ numel: 16, shape: [4, 4], stride: [1, 1] }]), { 0: f32(16) });
    const e = await openError(zip);
    expectFormatError(e, /tensor "w" is a non-contiguous view \(shape \[4, 4\], stride \[1, 1\]\) that addresses some elements of its storage more than once;/);
    expect(e.message).toMatch(NON_CONTIGUOUS);
  });

  it('refuses a tensor that reaches past its storage', async () => {
    const long = torchZip(stateDict([{ numel: 4, shape: [10], stride: [1] }]), { 0: f32(4) });
    expectFormatError(await openError(long), /tensor "w" \(shape \[10\], stride \[1\], offset 0\) reaches element 10 of a storage with 4; re-download/);
    const shifted = torchZip(stateDict([{ numel: 6, offset: 3, shape: [4], stride: [1] }]), { 0: f32(6) });
    expectFormatError(await openError(shifted), /\(shape \[4\], stride \[1\], offset 3\) reaches element 7 of a storage with 6/);
  });

  it('refuses a storage whose entry is smaller than its elements', async () => {
    const zip = torchZip(stateDict([{ numel: 100, shape: [4], stride: [1] }]), { 0: f32(4) });
    expectFormatError(await openError(zip), /storage "0" of tensor "w" holds 16 bytes, less than the 400 its 100 elements need/);
  });

  it('refuses a compressed storage at open, before trusting the size it claims', async () => {
    const zip = torchZip(stateDict([{ numel: 2 ** 28, shape: [2 ** 28], stride: [1] }]), { 0: f32(4) });
    const storage = zip.central[2];
    zip.view.setUint16(storage + 10, 8, true); // deflate
    zip.view.setUint32(storage + 24, 2 ** 30, true); // "1 GiB once inflated"
    expectFormatError(await openError(zip), /entry "archive\/data\/0" is compressed \(zip method 8\)/);
  });

  it('refuses a stride-0 tensor in a checkpoint folder when it is opened', async () => {
    const config = readFileSync(fileURLToPath(new URL('../fixtures/checkpoints/tiny-molm-bin/config.json', import.meta.url)));
    const bin = torchZip(stateDict([{ name: 'lm_head.weight', numel: 1, shape: [2 ** 20, 2 ** 15], stride: [0, 0] }]), { 0: f32(1) });
    const files: FileSource = {
      location: 'memory',
      async open(name) {
        if (name === 'config.json') return memorySource(new Uint8Array(config));
        return name === 'pytorch_model.bin' ? memorySource(bin.bytes) : null;
      },
    };
    expectFormatError(await rejection(openCheckpoint(files)), /tensor "lm_head.weight" is a non-contiguous view/);
  });
});

describe('zip limits', () => {
  const good = () => torchZip(stateDict([W]));

  it('opens the archive these tests build', async () => {
    expect(await readFloats(good())).toEqual([0, 1, 2, 3]);
    expect(await readFloats(asZip64(good()))).toEqual([0, 1, 2, 3]);
  });

  it('refuses more entries than LIMITS.zipEntries', async () => {
    const zip = asZip64(good());
    zip.view.setBigUint64(zip.eocd + 32, BigInt(LIMITS.zipEntries + 1), true);
    expectFormatError(
      await openError(zip),
      new RegExp(
        `the zip claims ${LIMITS.zipEntries + 1} entries \\(molm-web opens at most ${LIMITS.zipEntries}\\), far more than a torch.save checkpoint has`,
      ),
    );
  });

  it('refuses a central directory larger than LIMITS.zipCentralDirectoryBytes', async () => {
    const zip = good();
    zip.view.setUint32(zip.eocd + 12, LIMITS.zipCentralDirectoryBytes + 1, true);
    expectFormatError(await openError(zip), new RegExp(`the zip central directory claims ${LIMITS.zipCentralDirectoryBytes + 1} bytes`));
  });

  it('refuses an entry count the central directory cannot hold', async () => {
    const zip = good();
    zip.view.setUint16(zip.eocd + 10, 1000, true);
    expectFormatError(await openError(zip), /the zip central directory of \d+ bytes cannot hold the 1000 entries it claims/);
  });

  it('refuses an entry name longer than LIMITS.zipNameLength', async () => {
    const zip = torchZip(stateDict([W]), { 0: f32(4), ['k'.repeat(LIMITS.zipNameLength)]: f32(1) });
    expectFormatError(await openError(zip), new RegExp(`zip entry 4 has a name of ${LIMITS.zipNameLength + 'archive/data/'.length} bytes`));
  });

  it('refuses two entries of one name', async () => {
    const zip = storedZip([
      ['archive/data.pkl', stateDict([W])],
      ['archive/data/0', f32(4)],
      ['archive/data/0', f32(4)],
    ]);
    expectFormatError(await openError(zip), /the zip has two entries named "archive\/data\/0"/);
  });

  it('refuses an entry that runs past the start of the central directory', async () => {
    const zip = good();
    zip.view.setUint32(zip.central[2] + 20, 2 ** 31, true);
    zip.view.setUint32(zip.central[2] + 24, 2 ** 31, true);
    expectFormatError(await openError(zip), /entry "archive\/data\/0" claims 2147483648 bytes at \d+, which run past the start of the central directory/);
  });

  it('refuses entries that share bytes', async () => {
    const zip = good();
    zip.view.setUint32(zip.central[2] + 42, zip.view.getUint32(zip.central[1] + 42, true), true);
    expectFormatError(await openError(zip), /zip entries "archive\/(byteorder|data\/0)" \[\d+, \d+\) and "archive\/(byteorder|data\/0)" \[\d+, \d+\) overlap/);
  });
});
