import { ModelFormatError } from '../errors.ts';
import { LIMITS, describeValue, parseJsonObject } from '../limits.ts';
import { REDOWNLOAD, dataView, elementCount, formatShape, readU64 } from './bytes.ts';
import type { TensorFile } from './tensor-file.ts';
import { DTYPE_BYTES, type ByteSource, type DType, type TensorInfo } from './types.ts';

// Safetensors layout: u64 little-endian header length N, N bytes of JSON
// { name: { dtype, shape, data_offsets: [begin, end] }, "__metadata__": {...} },
// then the data; offsets are relative to the first byte after the header.

/** Element sizes of every dtype the safetensors format defines, so any file can be validated. */
const SAFETENSORS_DTYPE_BYTES: Record<string, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  F8_E4M3: 1,
  F8_E5M2: 1,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
};

function isReadableDType(dtype: string): dtype is DType {
  return Object.hasOwn(DTYPE_BYTES, dtype);
}

interface Located {
  info: TensorInfo | null;
  dtype: string;
  begin: number;
  end: number;
}

/** Opens a safetensors file: reads and validates its header; tensor data is read on demand. */
export async function openSafetensors(source: ByteSource, fileName: string): Promise<TensorFile> {
  const fail = (what: string) => new ModelFormatError(`${fileName}: ${what}; ${REDOWNLOAD}.`);
  if (source.size < 8) {
    throw fail(`the file is ${source.size} bytes long, too short for a safetensors file (which starts with an 8-byte header length)`);
  }
  const headerLength = readU64(dataView(await source.read(0, 8)), 0, () => `${fileName}: header length`);
  if (headerLength > LIMITS.safetensorsHeaderBytes) {
    throw fail(`the header length field says ${headerLength} bytes, which no real safetensors header needs (the file is damaged or not a safetensors file)`);
  }
  if (8 + headerLength > source.size) {
    throw fail(
      `the header length field says ${headerLength} bytes, past the end of the ${source.size}-byte file (the file is truncated or not a safetensors file)`,
    );
  }
  const header = parseJsonObject(await source.read(8, headerLength), {
    what: `${fileName}: the header`,
    maxBytes: LIMITS.safetensorsHeaderBytes,
    fix: REDOWNLOAD,
  });
  const dataStart = 8 + headerLength;
  const located = locateTensors(header, source.size - dataStart, fail);

  const tensors = new Map<string, TensorInfo>();
  const unreadable = new Map<string, string>();
  for (const [name, t] of located) {
    if (t.info) tensors.set(name, t.info);
    else unreadable.set(name, t.dtype);
  }
  return {
    fileName,
    tensors,
    unreadable,
    async read(name: string): Promise<Uint8Array> {
      const t = located.get(name);
      if (!t) throw new ModelFormatError(`${fileName} has no tensor "${name}".`);
      if (!t.info) {
        throw new ModelFormatError(`${fileName}: tensor "${name}" is stored as ${t.dtype}; molm-web reads F32, F16, BF16 and I8 only.`);
      }
      return source.read(dataStart + t.begin, t.end - t.begin);
    },
    async close(): Promise<void> {
      await source.close?.();
    },
  };
}

/** Validates every header entry against the data size and each other. */
function locateTensors(header: Record<string, unknown>, dataBytes: number, fail: (what: string) => ModelFormatError): Map<string, Located> {
  const located = new Map<string, Located>();
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    if (name.length > LIMITS.tensorNameLength) {
      throw fail(`a tensor name is ${name.length} characters long, more than the ${LIMITS.tensorNameLength} a name may have`);
    }
    const bad = (what: string) => fail(`tensor "${name}" ${what}`);
    if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) throw bad('has a header entry that is not an object');
    const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;

    if (typeof dtype !== 'string' || !Object.hasOwn(SAFETENSORS_DTYPE_BYTES, dtype)) {
      throw bad(`has dtype ${describeValue(dtype)}, which is not a safetensors dtype molm-web knows (it reads F32, F16, BF16 and I8)`);
    }
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw bad(`has shape ${describeValue(shape)}; a shape must be a list of non-negative integers`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
      throw bad(`has data_offsets ${describeValue(offsets)}; they must be two non-negative integers [begin, end]`);
    }
    const [begin, end] = offsets as [number, number];
    if (begin > end) throw bad(`has data_offsets [${begin}, ${end}] with begin after end`);
    if (end > dataBytes) {
      throw bad(`has data_offsets [${begin}, ${end}] past the end of the data (${dataBytes} bytes after the header): the file is truncated`);
    }
    const dims = shape as number[];
    const expected = elementCount(dims) * SAFETENSORS_DTYPE_BYTES[dtype];
    if (end - begin !== expected) {
      throw bad(`has ${end - begin} bytes of data, but ${dtype} ${formatShape(dims)} needs ${expected}`);
    }
    const info = isReadableDType(dtype) ? { name, dtype, shape: dims, byteLength: expected } : null;
    located.set(name, { info, dtype, begin, end });
  }
  checkNoOverlap(located, fail);
  return located;
}

function checkNoOverlap(located: Map<string, Located>, fail: (what: string) => ModelFormatError): void {
  const byBegin = [...located].filter(([, t]) => t.end > t.begin).sort((a, b) => a[1].begin - b[1].begin);
  for (let i = 1; i < byBegin.length; i++) {
    const [prevName, prev] = byBegin[i - 1];
    const [name, t] = byBegin[i];
    if (t.begin < prev.end) {
      throw fail(`tensors "${prevName}" [${prev.begin}, ${prev.end}] and "${name}" [${t.begin}, ${t.end}] overlap; ` + 'each tensor must have its own bytes');
    }
  }
}
