import { type Random, concat, int, mutateBytes, pick } from './mutate.ts';

// pytorch_model.bin for the fuzz campaign: a writer of stored zips (what torch.save writes), a
// pickle writer for torch state dicts with any shape, stride and storage, hostile pickles
// (globals that run code, huge containers, huge integers, deep nesting, bad memo indices) and an
// opcode-aware mutator that edits the integers of a real data.pkl.

const enc = new TextEncoder();

const CRC_TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** A zip of stored entries, as torch.save writes one (no ZIP64: fuzz inputs are small). */
export function writeZip(entries: { name: string; data: Uint8Array }[]): Uint8Array {
  const locals: Uint8Array[] = [];
  const centrals: Uint8Array[] = [];
  let offset = 0;
  for (const { name, data } of entries) {
    const n = enc.encode(name);
    const crc = crc32(data);
    const local = new Uint8Array(30 + n.length);
    const lv = new DataView(local.buffer);
    lv.setUint32(0, 0x04034b50, true);
    lv.setUint16(4, 20, true);
    lv.setUint32(14, crc, true);
    lv.setUint32(18, data.length, true);
    lv.setUint32(22, data.length, true);
    lv.setUint16(26, n.length, true);
    local.set(n, 30);
    const central = new Uint8Array(46 + n.length);
    const cv = new DataView(central.buffer);
    cv.setUint32(0, 0x02014b50, true);
    cv.setUint16(4, 20, true);
    cv.setUint16(6, 20, true);
    cv.setUint32(16, crc, true);
    cv.setUint32(20, data.length, true);
    cv.setUint32(24, data.length, true);
    cv.setUint16(28, n.length, true);
    cv.setUint32(42, offset, true);
    central.set(n, 46);
    locals.push(local, data);
    centrals.push(central);
    offset += local.length + data.length;
  }
  const directory = concat(...centrals);
  const end = new Uint8Array(22);
  const ev = new DataView(end.buffer);
  ev.setUint32(0, 0x06054b50, true);
  ev.setUint16(8, entries.length, true);
  ev.setUint16(10, entries.length, true);
  ev.setUint32(12, directory.length, true);
  ev.setUint32(16, offset, true);
  return concat(...locals, directory, end);
}

/** A pickle built opcode by opcode. */
class Pickle {
  private parts: Uint8Array[] = [Uint8Array.of(0x80, 2)];
  op(...bytes: number[]): this {
    this.parts.push(Uint8Array.from(bytes));
    return this;
  }
  raw(bytes: Uint8Array): this {
    this.parts.push(bytes);
    return this;
  }
  str(s: string): this {
    const b = enc.encode(s);
    const head = new Uint8Array(5);
    head[0] = 0x58; // BINUNICODE
    new DataView(head.buffer).setUint32(1, b.length, true);
    return this.raw(concat(head, b));
  }
  int(v: number): this {
    if (v >= 0 && v < 2 ** 31) {
      const b = new Uint8Array(5);
      b[0] = 0x4a; // BININT
      new DataView(b.buffer).setInt32(1, v, true);
      return this.raw(b);
    }
    // LONG1 of 8 bytes, little-endian two's complement
    const b = new Uint8Array(10);
    b[0] = 0x8a;
    b[1] = 8;
    new DataView(b.buffer).setBigInt64(2, BigInt(v), true);
    return this.raw(b);
  }
  global(module: string, name: string): this {
    return this.raw(enc.encode(`c${module}\n${name}\n`));
  }
  tuple(items: number[]): this {
    this.op(0x28); // MARK
    for (const v of items) this.int(v);
    return this.op(0x74); // TUPLE
  }
  bytes(): Uint8Array {
    return concat(...this.parts, Uint8Array.of(0x2e)); // STOP
  }
}

export interface PickledTensorSpec {
  name: string;
  shape: number[];
  stride: number[];
  offset: number;
  /** The storage's element count as the pickle declares it. */
  numel: number;
  key: string;
}

/** A torch state dict of FloatStorage tensors with the given geometry. */
export function stateDictPickle(tensors: PickledTensorSpec[]): Uint8Array {
  const p = new Pickle().global('collections', 'OrderedDict').op(0x29, 0x52); // OrderedDict()
  p.op(0x28); // MARK for SETITEMS
  for (const t of tensors) {
    p.str(t.name);
    p.global('torch._utils', '_rebuild_tensor_v2');
    p.op(0x28); // MARK: args
    p.op(0x28).str('storage').global('torch', 'FloatStorage').str(t.key).str('cpu').int(t.numel).op(0x74, 0x51); // persid tuple, BINPERSID
    p.int(t.offset).tuple(t.shape).tuple(t.stride).op(0x89); // requires_grad False
    p.global('collections', 'OrderedDict').op(0x29, 0x52); // backward hooks
    p.op(0x74, 0x52); // TUPLE, REDUCE
  }
  p.op(0x75); // SETITEMS
  return p.bytes();
}

/** A pytorch_model.bin of the given tensors with storages of the given byte sizes. */
export function torchBin(tensors: PickledTensorSpec[], storageBytes: Record<string, number>): Uint8Array {
  return writeZip([
    { name: 'archive/data.pkl', data: stateDictPickle(tensors) },
    { name: 'archive/byteorder', data: enc.encode('little') },
    ...Object.entries(storageBytes).map(([key, n]) => ({ name: `archive/data/${key}`, data: new Uint8Array(n) })),
    { name: 'archive/version', data: enc.encode('3\n') },
  ]);
}

/** Pickles built to hurt a reader: each one is a whole data.pkl. */
export function hostilePickle(r: Random): Uint8Array {
  switch (int(r, 10)) {
    case 0: // a global that would run a command
      return new Pickle()
        .global(pick(r, ['os', 'posix', 'subprocess', 'builtins', '__builtin__']), pick(r, ['system', 'eval', 'exec', 'getattr', 'Popen']))
        .str('echo pwned')
        .op(0x85, 0x52)
        .bytes();
    case 1: {
      // STACK_GLOBAL of builtins.eval
      return new Pickle().str('builtins').str('eval').op(0x93).str('1+1').op(0x85, 0x52).bytes();
    }
    case 2: {
      // one APPENDS with very many items
      const n = 50_000 + int(r, 200_000);
      return new Pickle()
        .op(0x5d, 0x28)
        .raw(new Uint8Array(n * 2).map((_, i) => (i % 2 === 0 ? 0x4b : 0)))
        .op(0x65)
        .bytes();
    }
    case 3: {
      // a LONG4 of hundreds of KB
      const n = 1000 + int(r, 400_000);
      const head = new Uint8Array(5);
      head[0] = 0x8b;
      new DataView(head.buffer).setInt32(1, n, true);
      return new Pickle().raw(concat(head, new Uint8Array(n).fill(0x7f))).bytes();
    }
    case 4: {
      // lists nested very deep
      const n = 1000 + int(r, 200_000);
      return new Pickle()
        .raw(new Uint8Array(n).fill(0x5d))
        .raw(new Uint8Array(n - 1).fill(0x61))
        .bytes();
    }
    case 5: {
      // very many MARKs
      const n = 1000 + int(r, 200_000);
      return new Pickle().raw(new Uint8Array(n).fill(0x28)).op(0x4e).bytes();
    }
    case 6: // memo indices out of range
      return new Pickle().op(0x4e, 0x72, 0xff, 0xff, 0xff, 0xff, 0x6a, 0xfe, 0xff, 0xff, 0xff).bytes();
    case 7: // a tuple nested in itself through the memo
      return new Pickle().op(0x5d, 0x94, 0x68, 0, 0x61, 0x68, 0, 0x61).bytes();
    case 8: // an empty pickle, or one that ends early
      return pick(r, [new Uint8Array(0), Uint8Array.of(0x80), Uint8Array.of(0x80, 2, 0x28)]);
    default: // huge declared lengths of strings and bytes
      return new Pickle().op(pick(r, [0x58, 0x42, 0x54]), 0xff, 0xff, 0xff, 0x7f).bytes();
  }
}

/** Bytes of the argument that follows each opcode, for walking a pickle (-1: ends the walk). */
function argBytes(p: Uint8Array, at: number): number {
  const view = new DataView(p.buffer, p.byteOffset, p.length);
  const op = p[at];
  const u32 = () => (at + 5 <= p.length ? view.getUint32(at + 1, true) : Infinity);
  switch (op) {
    case 0x80:
    case 0x4b:
    case 0x71:
    case 0x68:
      return 1;
    case 0x4d:
      return 2;
    case 0x4a:
    case 0x72:
    case 0x6a:
      return 4;
    case 0x95:
    case 0x47:
      return 8;
    case 0x8a:
    case 0x8c:
    case 0x55:
    case 0x43:
      return at + 1 < p.length ? 1 + p[at + 1] : -1;
    case 0x8b:
    case 0x58:
    case 0x54:
    case 0x42:
      return 4 + u32();
    case 0x63: {
      let nl = 0;
      let i = at + 1;
      for (; i < p.length && nl < 2; i++) if (p[i] === 0x0a) nl++;
      return nl === 2 ? i - at - 1 : -1;
    }
    default:
      return 0;
  }
}

/**
 * A real data.pkl with some of its integers changed to edge values: shapes, strides, storage
 * offsets and element counts, where the reader's arithmetic lives.
 */
export function mutatePickleInts(r: Random, p: Uint8Array): Uint8Array {
  const ints: number[] = [];
  for (let at = 0; at < p.length; ) {
    const n = argBytes(p, at);
    if (n < 0 || !Number.isFinite(n)) break;
    if (p[at] === 0x4a || p[at] === 0x4b || p[at] === 0x4d) ints.push(at);
    at += 1 + n;
  }
  if (ints.length === 0) return mutateBytes(r, p);
  const parts: Uint8Array[] = [];
  let from = 0;
  const chosen = new Set(Array.from({ length: 1 + int(r, 4) }, () => pick(r, ints)));
  for (const at of [...chosen].sort((a, b) => a - b)) {
    parts.push(p.subarray(from, at));
    const v = pick(r, [0, 1, 2, 3, 255, 65535, 2 ** 20, 2 ** 28, 2 ** 31 - 1, -1, -(2 ** 31)]);
    const b = new Uint8Array(5);
    b[0] = 0x4a;
    new DataView(b.buffer).setInt32(1, v, true);
    parts.push(b);
    from = at + 1 + argBytes(p, at);
  }
  parts.push(p.subarray(from));
  return concat(...parts);
}
