import { ModelFormatError } from '../errors.ts';

// Helpers shared by the binary parsers (safetensors, zip, pickle). Offsets in checkpoints are
// 64-bit; JavaScript numbers hold integers exactly up to 2^53 (8 PiB), far past any real file,
// so values above that are treated as corrupt rather than carried as bigint.

/** Reads a little-endian u64 as a number; throws when it is not exactly representable. */
export function readU64(view: DataView, pos: number, what: () => string): number {
  const lo = view.getUint32(pos, true);
  const hi = view.getUint32(pos + 4, true);
  const value = hi * 2 ** 32 + lo;
  if (!Number.isSafeInteger(value)) {
    throw new ModelFormatError(`${what()}: 64-bit value ${BigInt(hi) * 2n ** 32n + BigInt(lo)} is too large to be a real offset or size; ${REDOWNLOAD}.`);
  }
  return value;
}

export function dataView(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Number of elements of a shape, or NaN when it overflows the exactly representable range. */
export function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return Number.isSafeInteger(n) ? n : NaN;
}

export function formatShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/** What a user can do about a damaged file; appended to format errors. */
export const REDOWNLOAD = 're-download or re-convert the checkpoint';
