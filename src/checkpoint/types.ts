/** Element types a checkpoint tensor can have on disk: one value per element. */
export type ElementDType = 'F32' | 'F16' | 'BF16' | 'I8';

/**
 * Storage types a tensor can have on disk: the element types, and molm-web's 8- and 4-bit
 * quantised matrices of converted shards (layout in src/quant/layout.ts; decode with
 * `decodeTensor`, which needs the shape).
 */
export type DType = ElementDType | 'Q8' | 'Q4';

export const DTYPE_BYTES: Record<ElementDType, number> = { F32: 4, F16: 2, BF16: 2, I8: 1 };

/** Random access to the bytes of one file: a local file, a Blob, or a URL with Range requests. */
export interface ByteSource {
  /** Total size in bytes. */
  readonly size: number;
  /** Reads exactly `length` bytes at `offset`; rejects when the range is past the end. */
  read(offset: number, length: number): Promise<Uint8Array>;
  close?(): Promise<void>;
}

/** A folder of files (a Hugging Face checkpoint folder, a converted model). */
export interface FileSource {
  /** Opens a file by its name inside the folder; resolves to null when it does not exist. */
  open(name: string): Promise<ByteSource | null>;
  /** A human-readable location for error messages. */
  readonly location: string;
}

export interface TensorInfo {
  name: string;
  dtype: DType;
  shape: number[];
  /** Bytes of the tensor in its stored dtype, contiguous, row-major. */
  byteLength: number;
}

/**
 * The tensors of a checkpoint, read one at a time so that a model larger than memory can
 * stream through. Unused buffers (attn.mask, attn.cum_weight) are already left out.
 */
export interface TensorSource {
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  /** The tensor's bytes: contiguous, row-major, little-endian, in `info.dtype`. */
  read(name: string): Promise<Uint8Array>;
  close(): Promise<void>;
}
