import { ModelFormatError } from '../errors.ts';
import { LIMITS, describeValue } from '../limits.ts';
import { REDOWNLOAD, elementCount, formatShape } from './bytes.ts';
import type { TensorFile } from './tensor-file.ts';
import { type PickledTensor, readTorchStateDict } from './torch-pickle.ts';
import type { ByteSource, TensorInfo } from './types.ts';
import { type ZipArchive, type ZipEntry, openZip } from './zip.ts';

// pytorch_model.bin as torch.save (>= 1.6) writes it: a zip holding `<prefix>/data.pkl` (the
// state dict, with tensors referring to storages by key) and `<prefix>/data/<key>` (each
// storage's raw little-endian bytes). The prefix is the archive name torch chose, e.g.
// "archive" or the file's stem, so it is found rather than assumed.

interface BinTensor {
  record: PickledTensor;
  storage: ZipEntry;
  contiguous: boolean;
}

export async function openTorchBin(source: ByteSource, fileName: string): Promise<TensorFile> {
  const fail = (what: string) => new ModelFormatError(`${fileName}: ${what}; ${REDOWNLOAD}.`);
  await checkMagic(source, fileName);
  const zip = await openZip(source, fileName);
  const pickleEntry = findDataPickle(zip, fileName);
  const prefix = pickleEntry.name.slice(0, -'data.pkl'.length);
  if (pickleEntry.size > LIMITS.torchPickleBytes) {
    throw new ModelFormatError(
      `${fileName}: ${describeValue(pickleEntry.name)} is ${pickleEntry.size} bytes, more than the ${LIMITS.torchPickleBytes} ` +
        'molm-web reads (a state dict needs about 150 bytes per tensor); refusing to load it. Re-download the checkpoint, ' +
        'or convert it to safetensors with a trusted tool.',
    );
  }
  await checkByteOrder(source, zip, prefix, fileName);
  const pickleRange = await zip.dataRange(pickleEntry);
  const records = readTorchStateDict(await source.read(pickleRange.offset, pickleRange.length), fileName);

  const tensors = new Map<string, TensorInfo>();
  const unreadable = new Map<string, string>();
  const located = new Map<string, BinTensor>();
  for (const record of records) {
    const storage = zip.entries.get(`${prefix}data/${record.storageKey}`);
    if (!storage) {
      throw fail(`tensor ${describeValue(record.name)} refers to storage ${describeValue(record.storageKey)}, which the archive lacks`);
    }
    // The storage's size is trusted below without reading it: a compressed entry's size is
    // only a claim (a few bytes may claim a gigabyte), a stored one's lies inside the file.
    zip.checkStored(storage);
    checkExtent(record, storage, fail);
    checkLayout(record, fileName);
    located.set(record.name, { record, storage, contiguous: isContiguous(record.shape, record.stride) });
    if (record.dtype === null) {
      unreadable.set(record.name, record.dtypeName);
    } else {
      const byteLength = elementCount(record.shape) * record.elementSize;
      tensors.set(record.name, { name: record.name, dtype: record.dtype, shape: record.shape, byteLength });
    }
  }

  return {
    fileName,
    tensors,
    unreadable,
    async read(name: string): Promise<Uint8Array> {
      const t = located.get(name);
      if (!t) throw new ModelFormatError(`${fileName} has no tensor ${describeValue(name)}.`);
      if (t.record.dtype === null) {
        throw new ModelFormatError(
          `${fileName}: tensor ${describeValue(name)} is stored as torch.${t.record.dtypeName}; molm-web reads float32, float16, bfloat16 and int8 only.`,
        );
      }
      return readTensor(source, zip, t);
    },
    async close(): Promise<void> {
      await source.close?.();
    },
  };
}

/** Tells the legacy (pre-1.6, non-zip) torch format and other files apart from a zip. */
async function checkMagic(source: ByteSource, fileName: string): Promise<void> {
  const head = source.size >= 4 ? await source.read(0, 4) : new Uint8Array(0);
  if (head[0] === 0x50 && head[1] === 0x4b) return; // "PK"
  if (head[0] === 0x80) {
    throw new ModelFormatError(
      `${fileName} is in the legacy (pre-1.6) torch.save format, which molm-web does not read. Re-save it with a ` +
        'current torch, or convert the checkpoint to safetensors.',
    );
  }
  throw new ModelFormatError(`${fileName} is not a zip archive, so it is not a torch.save checkpoint; ${REDOWNLOAD}.`);
}

function findDataPickle(zip: ZipArchive, fileName: string): ZipEntry {
  const candidates = [...zip.entries.values()].filter((e) => /^[^/]+\/data\.pkl$/.test(e.name));
  if (candidates.length === 1) return candidates[0];
  throw new ModelFormatError(
    candidates.length === 0
      ? `${fileName}: the archive has no <name>/data.pkl, so it is not a torch.save checkpoint; ${REDOWNLOAD}.`
      : `${fileName}: the archive has ${candidates.length} data.pkl files (${candidates
          .slice(0, 3)
          .map((c) => describeValue(c.name))
          .join(', ')}` + `${candidates.length > 3 ? ', …' : ''}); a torch.save checkpoint has one. ${REDOWNLOAD[0].toUpperCase()}${REDOWNLOAD.slice(1)}.`,
  );
}

/**
 * torch >= 2.1 records the storages' byte order in `<prefix>/byteorder`; older archives are
 * always little-endian. Big-endian storages would read as garbage, so they are refused.
 */
async function checkByteOrder(source: ByteSource, zip: ZipArchive, prefix: string, fileName: string): Promise<void> {
  const entry = zip.entries.get(`${prefix}byteorder`);
  if (!entry || entry.size > 16) return;
  const range = await zip.dataRange(entry);
  const order = new TextDecoder().decode(await source.read(range.offset, range.length)).trim();
  if (order !== 'little') {
    throw new ModelFormatError(
      `${fileName} stores its tensors in ${order === 'big' ? 'big' : describeValue(order)}-endian byte order; molm-web reads little-endian checkpoints only. ` +
        'Re-save it on a little-endian machine, or convert the checkpoint to safetensors.',
    );
  }
}

/**
 * Every element the tensor addresses must lie inside its storage, and the storage inside its
 * entry (which zip.ts has checked lies inside the file): the extent is
 * offset + sum((size - 1) * stride) + 1 elements.
 */
function checkExtent(t: PickledTensor, storage: ZipEntry, fail: (what: string) => ModelFormatError): void {
  const name = describeValue(t.name);
  const storageBytes = t.storageNumel * t.elementSize;
  if (storage.size < storageBytes) {
    throw fail(
      `storage ${describeValue(t.storageKey)} of tensor ${name} holds ${storage.size} bytes, less than the ${storageBytes} its ${t.storageNumel} elements need`,
    );
  }
  const count = elementCount(t.shape);
  if (Number.isNaN(count)) throw fail(`tensor ${name} has an impossibly large shape ${formatShape(t.shape)}`);
  if (count === 0) return;
  const end = t.storageOffset + span(t.shape, t.stride);
  if (end > t.storageNumel) {
    throw fail(
      `tensor ${name} (shape ${formatShape(t.shape)}, stride ${formatShape(t.stride)}, offset ${t.storageOffset}) reaches element ${end} ` +
        `of a storage with ${t.storageNumel}`,
    );
  }
}

/**
 * A view whose elements are each a different element of its storage (contiguous, transposed,
 * permuted, sliced) is read; one that repeats elements (stride 0 from expand(), or overlapping
 * strides) is refused, because reading it would make up to 2^53 elements out of a few bytes.
 * A view that repeats nothing has no more elements than its extent, which checkExtent has
 * bounded by the storage, so what read() allocates never exceeds what the file holds.
 */
function checkLayout(t: PickledTensor, fileName: string): void {
  if (elementCount(t.shape) === 0 || !repeatsElements(t.shape, t.stride)) return;
  const broadcast = t.stride.some((s, i) => s === 0 && t.shape[i] > 1);
  throw new ModelFormatError(
    `${fileName}: tensor ${describeValue(t.name)} is a non-contiguous view (shape ${formatShape(t.shape)}, ` +
      `stride ${formatShape(t.stride)}) that ` +
      (broadcast
        ? 'repeats one element along a dimension (stride 0: a broadcast, e.g. from expand()); '
        : 'addresses some elements of its storage more than once; ') +
      'molm-web reads contiguous tensors and transposed or sliced views of them only. Re-save the checkpoint with ' +
      'contiguous tensors (torch.save({k: v.contiguous() for k, v in sd.items()}, path)), or convert it to safetensors.',
  );
}

/**
 * Whether two indices of the view may address one element. Taking the dimensions from the
 * smallest stride up, each stride must step past everything the smaller ones reach: true of
 * every permutation and slice of a contiguous tensor. (A few exotic layouts that repeat nothing,
 * such as shape [3, 2] with stride [2, 3], fail this test too; slicing, transposing and
 * permuting never make them.)
 */
function repeatsElements(shape: readonly number[], stride: readonly number[]): boolean {
  const dims = shape.map((size, i) => ({ size, stride: stride[i] })).filter((d) => d.size > 1);
  dims.sort((a, b) => a.stride - b.stride);
  let reach = 1; // elements from the first to one past the last that the smaller dimensions address
  for (const d of dims) {
    if (d.stride < reach) return true;
    reach += (d.size - 1) * d.stride;
  }
  return false;
}

/** Elements between the first and one past the last element a (non-empty) view addresses. */
function span(shape: readonly number[], stride: readonly number[]): number {
  let last = 0;
  for (let i = 0; i < shape.length; i++) last += (shape[i] - 1) * stride[i];
  return last + 1;
}

/** Row-major contiguous, ignoring the strides of size-1 dimensions (torch leaves them arbitrary). */
function isContiguous(shape: readonly number[], stride: readonly number[]): boolean {
  let expected = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    if (shape[i] !== 1 && stride[i] !== expected) return false;
    expected *= shape[i];
  }
  return true;
}

async function readTensor(source: ByteSource, zip: ZipArchive, t: BinTensor): Promise<Uint8Array> {
  const { record } = t;
  const size = record.elementSize;
  const count = elementCount(record.shape);
  if (count === 0) return new Uint8Array(0);
  const base = (await zip.dataRange(t.storage)).offset + record.storageOffset * size;
  if (t.contiguous) return source.read(base, count * size);
  // A view (a transpose saved as-is, a slice of a shared storage): read the bytes it spans once,
  // then gather its elements into row-major order.
  const spanned = await source.read(base, span(record.shape, record.stride) * size);
  return gather(spanned, record.shape, record.stride, size);
}

function gather(src: Uint8Array, shape: readonly number[], stride: readonly number[], size: number): Uint8Array {
  const count = elementCount(shape);
  // Copy whole elements through a typed view (a transposed 100 MB matrix has tens of millions).
  // Elements wider than 4 bytes are never readable dtypes, so they go byte by byte.
  const lanes = size === 4 || size === 2 ? 1 : size;
  const Typed = size === 4 ? Uint32Array : size === 2 ? Uint16Array : Uint8Array;
  const aligned = src.byteOffset % size === 0 ? src : src.slice();
  const from = new Typed(aligned.buffer as ArrayBuffer, aligned.byteOffset, aligned.byteLength / Typed.BYTES_PER_ELEMENT);
  const out = new Typed(count * lanes);
  const rank = shape.length;
  const index = new Array<number>(rank).fill(0);
  let at = 0; // element offset of `index` in src
  for (let n = 0; n < count; n++) {
    for (let l = 0; l < lanes; l++) out[n * lanes + l] = from[at * lanes + l];
    // Advance the multi-index like an odometer, last dimension fastest.
    for (let d = rank - 1; d >= 0; d--) {
      if (++index[d] < shape[d]) {
        at += stride[d];
        break;
      }
      at -= (shape[d] - 1) * stride[d];
      index[d] = 0;
    }
  }
  return new Uint8Array(out.buffer);
}
