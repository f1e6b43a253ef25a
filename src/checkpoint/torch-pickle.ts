import { ModelFormatError } from '../errors.ts';
import { LIMITS, describeValue } from '../limits.ts';
import { dataView } from './bytes.ts';
import type { DType } from './types.ts';

// A restricted interpreter for the pickle torch.save writes for a state dict. A pickle is a
// program: GLOBAL imports any Python callable and REDUCE calls it, which is how a malicious
// checkpoint runs code. Here nothing is ever called. GLOBAL resolves only a short allow-list of
// names that a state dict uses, and REDUCE evaluates only the few of those that build the
// state dict itself (OrderedDict, tensor rebuilders) into plain records. Everything else is
// refused with an error that names the offending global.

/** One tensor of the state dict, as torch.save describes it. */
export interface PickledTensor {
  name: string;
  /** The stored dtype, or null when molm-web cannot read it (see `dtypeName`). */
  dtype: DType | null;
  /** torch's name for the dtype, for error messages, e.g. "float32" or "int64". */
  dtypeName: string;
  /** Bytes per element. */
  elementSize: number;
  shape: number[];
  /** In elements, as torch reports them. */
  stride: number[];
  /** The storage's file is `<archive>/data/<storageKey>`. */
  storageKey: string;
  /** In elements from the start of the storage. */
  storageOffset: number;
  /** Size of the whole storage in elements (tensors can be views of part of it). */
  storageNumel: number;
}

interface ScalarType {
  dtype: DType | null;
  name: string;
  size: number;
}

const SCALAR_TYPES: Record<string, ScalarType> = {
  float32: { dtype: 'F32', name: 'float32', size: 4 },
  float16: { dtype: 'F16', name: 'float16', size: 2 },
  bfloat16: { dtype: 'BF16', name: 'bfloat16', size: 2 },
  int8: { dtype: 'I8', name: 'int8', size: 1 },
  float64: { dtype: null, name: 'float64', size: 8 },
  int64: { dtype: null, name: 'int64', size: 8 },
  int32: { dtype: null, name: 'int32', size: 4 },
  int16: { dtype: null, name: 'int16', size: 2 },
  uint8: { dtype: null, name: 'uint8', size: 1 },
  bool: { dtype: null, name: 'bool', size: 1 },
};

/** The legacy typed-storage classes that name a storage's element type in the persistent id. */
const STORAGE_TYPES: Record<string, ScalarType> = {
  FloatStorage: SCALAR_TYPES.float32,
  HalfStorage: SCALAR_TYPES.float16,
  BFloat16Storage: SCALAR_TYPES.bfloat16,
  CharStorage: SCALAR_TYPES.int8,
  DoubleStorage: SCALAR_TYPES.float64,
  LongStorage: SCALAR_TYPES.int64,
  IntStorage: SCALAR_TYPES.int32,
  ShortStorage: SCALAR_TYPES.int16,
  ByteStorage: SCALAR_TYPES.uint8,
  BoolStorage: SCALAR_TYPES.bool,
};

/** torch.<dtype> globals (torch 2 passes them to _rebuild_tensor_v3), with their aliases. */
const DTYPE_GLOBALS: Record<string, ScalarType> = {
  ...SCALAR_TYPES,
  float: SCALAR_TYPES.float32,
  half: SCALAR_TYPES.float16,
  double: SCALAR_TYPES.float64,
  long: SCALAR_TYPES.int64,
  int: SCALAR_TYPES.int32,
  short: SCALAR_TYPES.int16,
};

/** Untyped storages count bytes; the tensor's dtype then comes from _rebuild_tensor_v3. */
const UNTYPED: ScalarType = { dtype: null, name: 'untyped', size: 1 };

// ---- Python values the interpreter can hold ----

/**
 * A tuple, list or dict, with how deep it nests as built: nothing here walks values recursively,
 * but bounding the depth as it grows keeps any later walk (or message) safe without one. (A
 * container filled after it was put in another, which torch.save never writes, leaves the
 * outer one's depth short; cycles only grow depth, so they end at the bound.)
 */
abstract class Container {
  depth = 1;
}
class PyTuple extends Container {
  constructor(readonly items: PyValue[]) {
    super();
  }
}
class PyList extends Container {
  constructor(readonly items: PyValue[]) {
    super();
  }
}
class PyDict extends Container {
  // Made on the first item: an empty Map costs some 200 bytes, and EMPTY_DICT is one byte.
  private map: Map<PyValue, PyValue> | null = null;
  get size(): number {
    return this.map?.size ?? 0;
  }
  set(key: PyValue, value: PyValue): void {
    (this.map ??= new Map()).set(key, value);
  }
  entries(): Iterable<[PyValue, PyValue]> {
    return this.map ?? [];
  }
}
/** An allow-listed global: never called, only recognised by REDUCE. */
class PyGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
  ) {}
  get qualified(): string {
    return `${this.module}.${this.name}`;
  }
}
class StorageType {
  constructor(readonly scalar: ScalarType) {}
}
class DTypeValue {
  constructor(readonly scalar: ScalarType) {}
}
class StorageRef {
  constructor(
    readonly key: string,
    readonly scalar: ScalarType,
    readonly numel: number,
  ) {}
}
class TensorRef {
  constructor(
    readonly storage: StorageRef,
    readonly offset: number,
    readonly shape: number[],
    readonly stride: number[],
    readonly scalar: ScalarType,
  ) {}
}
const MARK = Symbol('mark');

type PyValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | PyTuple
  | PyList
  | PyDict
  | PyGlobal
  | StorageType
  | DTypeValue
  | StorageRef
  | TensorRef;
type StackItem = PyValue | typeof MARK;

const CALLABLES = new Set([
  'collections.OrderedDict',
  'torch._utils._rebuild_tensor',
  'torch._utils._rebuild_tensor_v2',
  'torch._utils._rebuild_tensor_v3',
  'torch._utils._rebuild_parameter',
  'torch._utils._rebuild_parameter_with_state',
]);

/** Resolves a GLOBAL against the allow-list; anything else means the file is not a plain state dict. */
function resolveGlobal(module: string, name: string, fileName: string): PyValue {
  // Storage classes and dtypes are only ever arguments (see call()); torch 2 may name them
  // through torch.storage as well as torch. No builtins are needed by a state dict.
  if (module === 'torch' || module === 'torch.storage') {
    if (Object.hasOwn(STORAGE_TYPES, name)) return new StorageType(STORAGE_TYPES[name]);
    if (name === 'UntypedStorage') return new StorageType(UNTYPED);
    if (module === 'torch' && Object.hasOwn(DTYPE_GLOBALS, name)) return new DTypeValue(DTYPE_GLOBALS[name]);
  }
  if (CALLABLES.has(`${module}.${name}`)) return new PyGlobal(module, name);
  throw new ModelFormatError(
    `${fileName}: the pickle names ${describeValue(`${module} ${name}`)}, which a state dict never contains; refusing to load it ` +
      '(convert the checkpoint to safetensors with a trusted tool).',
  );
}

// ---- The interpreter ----

class Reader {
  pos = 0;
  private readonly view: DataView;
  constructor(
    readonly bytes: Uint8Array,
    private readonly fail: (what: string) => ModelFormatError,
  ) {
    this.view = dataView(bytes);
  }
  private need(n: number): number {
    if (!Number.isSafeInteger(n) || n < 0 || this.pos + n > this.bytes.length) {
      throw this.fail(`the pickle ends unexpectedly at byte ${this.pos}`);
    }
    const at = this.pos;
    this.pos += n;
    return at;
  }
  u8(): number {
    return this.bytes[this.need(1)];
  }
  u16(): number {
    return this.view.getUint16(this.need(2), true);
  }
  u32(): number {
    return this.view.getUint32(this.need(4), true);
  }
  i32(): number {
    return this.view.getInt32(this.need(4), true);
  }
  u64(): number {
    const lo = this.u32();
    const hi = this.u32();
    return hi * 2 ** 32 + lo;
  }
  f64be(): number {
    return this.view.getFloat64(this.need(8), false);
  }
  take(n: number): Uint8Array {
    const at = this.need(n);
    return this.bytes.subarray(at, at + n);
  }
  /** A newline-terminated name of GLOBAL, at most `max` bytes long. */
  line(max: number): string {
    const end = this.bytes.subarray(this.pos, this.pos + max + 1).indexOf(0x0a);
    if (end < 0) {
      throw this.fail(
        this.pos + max + 1 > this.bytes.length
          ? `the pickle ends unexpectedly at byte ${this.pos}`
          : `a GLOBAL name at byte ${this.pos} is longer than ${max} bytes`,
      );
    }
    const text = latin1(this.bytes.subarray(this.pos, this.pos + end));
    this.pos += end + 1;
    return text;
  }
}

/** Module and attribute names of a GLOBAL ("torch._utils", "_rebuild_tensor_v2") are short. */
const MAX_GLOBAL_NAME = 256;

function latin1(bytes: Uint8Array): string {
  // In chunks: one character at a time is slow on a long BINSTRING, and one apply() of the
  // whole array overflows the stack.
  let s = '';
  for (let i = 0; i < bytes.length; i += 8192) {
    s += String.fromCharCode(...bytes.subarray(i, i + 8192));
  }
  return s;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Signed little-endian two's complement integer (LONG1 / LONG4), at most LIMITS.pickleLongBytes long. */
function decodeLong(bytes: Uint8Array): number | bigint {
  let v = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[i]);
  if (bytes.length > 0 && bytes[bytes.length - 1] & 0x80) v -= 1n << BigInt(8 * bytes.length);
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

/** Runs the restricted interpreter and returns the pickled object. */
function unpickle(bytes: Uint8Array, fileName: string): PyValue {
  const fail = (what: string) => new ModelFormatError(`${fileName}: ${what}; the state dict pickle is damaged. Re-download or re-convert the checkpoint.`);
  const excess = (what: string) =>
    new ModelFormatError(
      `${fileName}: ${what}, far more than torch.save writes for a state dict; refusing to load it. ` +
        'Re-download the checkpoint, or convert it to safetensors with a trusted tool.',
    );
  const r = new Reader(bytes, fail);
  const stack: StackItem[] = [];
  const memo = new Map<number, PyValue>();
  const marks: number[] = [];
  let at = 0; // where the current opcode starts
  let pushed = 0;

  const push = (v: StackItem) => {
    if (++pushed > LIMITS.pickleValues) throw excess(`the pickle pushes more than ${LIMITS.pickleValues} values`);
    if (stack.length >= LIMITS.pickleItems) {
      throw excess(`the pickle stack holds more than ${LIMITS.pickleItems} values at byte ${at}`);
    }
    stack.push(v);
  };
  const remember = (i: number, v: PyValue) => {
    if (memo.size >= LIMITS.pickleMemo && !memo.has(i)) {
      throw excess(`the pickle memo holds more than ${LIMITS.pickleMemo} entries at byte ${at}`);
    }
    memo.set(i, v);
  };
  /** Records that `c` now holds `item`, deepening `c` if need be. */
  const holds = (c: Container, item: PyValue) => {
    if (item instanceof Container && item.depth >= c.depth) {
      c.depth = item.depth + 1;
      if (c.depth > LIMITS.pickleDepth) {
        throw excess(`the pickle nests lists, tuples or dicts more than ${LIMITS.pickleDepth} deep at byte ${at}`);
      }
    }
  };
  const built = <C extends PyTuple | PyList>(c: C): C => {
    for (const item of c.items) holds(c, item);
    return c;
  };
  const long = (n: number) => {
    if (n > LIMITS.pickleLongBytes) {
      throw excess(
        `the pickle holds a ${n}-byte integer at byte ${at} (sizes, strides and offsets fit in 8 bytes; ` + `molm-web reads at most ${LIMITS.pickleLongBytes})`,
      );
    }
    return decodeLong(r.take(n));
  };

  const pop = (): PyValue => {
    const v = stack.pop();
    if (v === undefined || v === MARK) throw fail(`stack underflow at byte ${r.pos - 1}`);
    return v;
  };
  const top = (): PyValue => {
    const v = stack[stack.length - 1];
    if (v === undefined || v === MARK) throw fail(`stack underflow at byte ${r.pos - 1}`);
    return v;
  };
  const popToMark = (): PyValue[] => {
    const at = marks.pop();
    if (at === undefined) throw fail(`a MARK is missing before byte ${r.pos - 1}`);
    return stack.splice(at).slice(1) as PyValue[];
  };
  const get = (i: number): PyValue => {
    if (!memo.has(i)) throw fail(`memo entry ${i} is read before it is written`);
    return memo.get(i)!;
  };
  const setItems = (dict: PyValue, items: PyValue[]) => {
    if (!(dict instanceof PyDict) || items.length % 2) throw fail('SETITEMS on something that is not a dict');
    for (let i = 0; i < items.length; i += 2) {
      holds(dict, items[i]);
      holds(dict, items[i + 1]);
      dict.set(items[i], items[i + 1]);
    }
    if (dict.size > LIMITS.pickleItems) throw excess(`a dict holds more than ${LIMITS.pickleItems} items at byte ${at}`);
  };
  const appendItems = (list: PyValue, items: PyValue[]) => {
    if (!(list instanceof PyList)) throw fail('APPENDS on something that is not a list');
    if (list.items.length + items.length > LIMITS.pickleItems) {
      throw excess(`a list holds more than ${LIMITS.pickleItems} items at byte ${at}`);
    }
    // One at a time: push(...items) passes every item as an argument, and overflows the stack
    // for a batch of some 100 000.
    for (const item of items) {
      holds(list, item);
      list.items.push(item);
    }
  };

  for (;;) {
    at = r.pos;
    const op = r.u8();
    switch (op) {
      case 0x80:
        r.u8();
        break; // PROTO
      case 0x95:
        r.u64();
        break; // FRAME: framing is only a hint for buffered readers
      case 0x2e:
        return pop(); // STOP
      case 0x28:
        marks.push(stack.length);
        push(MARK);
        break; // MARK
      case 0x30:
        pop();
        break; // POP
      case 0x31:
        popToMark();
        break; // POP_MARK
      case 0x32:
        push(top());
        break; // DUP
      case 0x4e:
        push(null);
        break; // NONE
      case 0x88:
        push(true);
        break; // NEWTRUE
      case 0x89:
        push(false);
        break; // NEWFALSE
      case 0x4a:
        push(r.i32());
        break; // BININT
      case 0x4b:
        push(r.u8());
        break; // BININT1
      case 0x4d:
        push(r.u16());
        break; // BININT2
      case 0x8a:
        push(long(r.u8()));
        break; // LONG1
      case 0x8b:
        push(long(r.i32()));
        break; // LONG4
      case 0x47:
        push(r.f64be());
        break; // BINFLOAT
      case 0x58:
        push(decodeUtf8(r.take(r.u32()), fail));
        break; // BINUNICODE
      case 0x8c:
        push(decodeUtf8(r.take(r.u8()), fail));
        break; // SHORT_BINUNICODE
      case 0x8d:
        push(decodeUtf8(r.take(r.u64()), fail));
        break; // BINUNICODE8
      case 0x54:
        push(latin1(r.take(r.i32())));
        break; // BINSTRING (Python 2 str)
      case 0x55:
        push(latin1(r.take(r.u8())));
        break; // SHORT_BINSTRING
      case 0x43:
        push(r.take(r.u8()).slice());
        break; // SHORT_BINBYTES
      case 0x42:
        push(r.take(r.u32()).slice());
        break; // BINBYTES
      case 0x8e:
        push(r.take(r.u64()).slice());
        break; // BINBYTES8
      case 0x7d:
        push(new PyDict());
        break; // EMPTY_DICT
      case 0x5d:
        push(new PyList([]));
        break; // EMPTY_LIST
      case 0x29:
        push(new PyTuple([]));
        break; // EMPTY_TUPLE
      case 0x74:
        push(built(new PyTuple(popToMark())));
        break; // TUPLE
      case 0x85:
        push(built(new PyTuple([pop()])));
        break; // TUPLE1
      case 0x86: {
        const b = pop();
        const a = pop();
        push(built(new PyTuple([a, b])));
        break;
      } // TUPLE2
      case 0x87: {
        const c = pop();
        const b = pop();
        const a = pop();
        push(built(new PyTuple([a, b, c])));
        break;
      } // TUPLE3
      case 0x6c:
        push(built(new PyList(popToMark())));
        break; // LIST
      case 0x64: {
        const d = new PyDict();
        setItems(d, popToMark());
        push(d);
        break;
      } // DICT
      case 0x71:
        remember(r.u8(), top());
        break; // BINPUT
      case 0x72:
        remember(r.u32(), top());
        break; // LONG_BINPUT
      case 0x94:
        remember(memo.size, top());
        break; // MEMOIZE
      case 0x68:
        push(get(r.u8()));
        break; // BINGET
      case 0x6a:
        push(get(r.u32()));
        break; // LONG_BINGET
      case 0x63: {
        const module = r.line(MAX_GLOBAL_NAME);
        const name = r.line(MAX_GLOBAL_NAME);
        push(resolveGlobal(module, name, fileName));
        break;
      } // GLOBAL
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') throw fail('STACK_GLOBAL without two strings');
        push(resolveGlobal(module, name, fileName));
        break;
      }
      case 0x51:
        push(persistentLoad(pop(), fail));
        break; // BINPERSID
      case 0x52: {
        const args = pop();
        const callable = pop();
        push(call(callable, args, fileName, fail));
        break;
      } // REDUCE
      case 0x81: {
        const args = pop();
        const cls = pop();
        push(call(cls, args, fileName, fail));
        break;
      } // NEWOBJ
      case 0x62: {
        // BUILD
        const state = pop();
        const target = top();
        // An nn.Module state dict carries `_metadata` (per-module versions) as instance state;
        // it does not affect the tensors, so it is checked for shape and dropped.
        if (!(target instanceof PyDict) || !(state === null || state instanceof PyDict || state instanceof PyTuple)) {
          throw fail(`BUILD at byte ${at} on an object a state dict does not contain`);
        }
        break;
      }
      case 0x73: {
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      } // SETITEM
      case 0x75: {
        const items = popToMark();
        setItems(top(), items);
        break;
      } // SETITEMS
      case 0x61: {
        const v = pop();
        appendItems(top(), [v]);
        break;
      } // APPEND
      case 0x65: {
        const items = popToMark();
        appendItems(top(), items);
        break;
      } // APPENDS
      default:
        throw new ModelFormatError(
          `${fileName}: the pickle uses opcode 0x${op.toString(16).padStart(2, '0')} at byte ${at}, which torch.save does not ` +
            'write for a state dict; refusing to load it (convert the checkpoint to safetensors with a trusted tool).',
        );
    }
  }
}

function decodeUtf8(bytes: Uint8Array, fail: (what: string) => ModelFormatError): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw fail('a string is not valid UTF-8');
  }
}

/** torch.save's persistent id for a storage: ('storage', StorageType, key, location, numel). */
function persistentLoad(pid: PyValue, fail: (what: string) => ModelFormatError): StorageRef {
  if (!(pid instanceof PyTuple) || pid.items.length !== 5 || pid.items[0] !== 'storage') {
    throw fail('a persistent id is not a torch storage reference');
  }
  const [, type, key, , numel] = pid.items;
  if (!(type instanceof StorageType) || typeof key !== 'string' || !isCount(numel)) {
    throw fail('a torch storage reference is malformed');
  }
  return new StorageRef(key, type.scalar, numel);
}

function isCount(v: PyValue): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function intTuple(v: PyValue): number[] | null {
  if (!(v instanceof PyTuple)) return null;
  return v.items.every(isCount) ? (v.items as number[]) : null;
}

/** Evaluates an allow-listed callable on its arguments, without running any Python. */
function call(callable: PyValue, args: PyValue, fileName: string, fail: (what: string) => ModelFormatError): PyValue {
  if (!(callable instanceof PyGlobal)) {
    throw new ModelFormatError(
      `${fileName}: the pickle calls something other than a state dict constructor; refusing to load it ` +
        '(convert the checkpoint to safetensors with a trusted tool).',
    );
  }
  if (!(args instanceof PyTuple)) throw fail(`${callable.qualified} is called without an argument tuple`);
  const a = args.items;
  switch (callable.qualified) {
    case 'collections.OrderedDict':
      if (a.length !== 0) throw fail('OrderedDict is built with arguments');
      return new PyDict();
    case 'torch._utils._rebuild_tensor':
    case 'torch._utils._rebuild_tensor_v2':
    case 'torch._utils._rebuild_tensor_v3': {
      const [storage, offset, size, stride] = a;
      let scalar = storage instanceof StorageRef ? storage.scalar : UNTYPED;
      if (callable.name === '_rebuild_tensor_v3') {
        const dtype = a[6];
        if (!(dtype instanceof DTypeValue)) throw fail('_rebuild_tensor_v3 without a dtype');
        scalar = dtype.scalar;
      }
      const shape = intTuple(size ?? null);
      const strides = intTuple(stride ?? null);
      if (!(storage instanceof StorageRef) || !isCount(offset ?? null) || !shape || !strides || shape.length !== strides.length) {
        throw fail(`${callable.name} has malformed arguments`);
      }
      if (scalar === UNTYPED) throw fail('a tensor is rebuilt from an untyped storage without a dtype');
      return new TensorRef(storage, offset as number, shape, strides, scalar);
    }
    case 'torch._utils._rebuild_parameter':
    case 'torch._utils._rebuild_parameter_with_state':
      if (!(a[0] instanceof TensorRef)) throw fail(`${callable.name} is not given a tensor`);
      return a[0];
    default:
      throw fail(`${callable.qualified} cannot be called`);
  }
}

/**
 * Reads the pickle of a torch.save'd state dict into tensor records. Entries that are not
 * tensors (there are none in Hugging Face checkpoints) are ignored.
 */
export function readTorchStateDict(pickle: Uint8Array, fileName: string): PickledTensor[] {
  const root = unpickle(pickle, fileName);
  if (!(root instanceof PyDict)) {
    throw new ModelFormatError(`${fileName}: the pickle does not hold a state dict (a dict of tensors); is it a model checkpoint?`);
  }
  const tensors: PickledTensor[] = [];
  for (const [key, value] of root.entries()) {
    if (typeof key !== 'string' || !(value instanceof TensorRef)) continue;
    if (key.length > LIMITS.tensorNameLength) {
      throw new ModelFormatError(
        `${fileName}: a tensor name is ${key.length} characters long (${describeValue(key)}), more than the ` +
          `${LIMITS.tensorNameLength} molm-web accepts; a model's tensor names are under 100. Re-download or re-convert the checkpoint.`,
      );
    }
    const { storage, scalar } = value;
    // A typed storage counts elements of its own type; an untyped one counts bytes.
    const storageBytes = storage.numel * storage.scalar.size;
    tensors.push({
      name: key,
      dtype: scalar.dtype,
      dtypeName: scalar.name,
      elementSize: scalar.size,
      shape: value.shape,
      stride: value.stride,
      storageKey: storage.key,
      storageOffset: value.offset,
      storageNumel: Math.floor(storageBytes / scalar.size),
    });
  }
  return tensors;
}
