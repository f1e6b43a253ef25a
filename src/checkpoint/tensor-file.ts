import type { TensorSource } from './types.ts';

/**
 * One weights file opened as tensors (a safetensors file, or a pytorch_model.bin).
 * Tensors the file holds in a dtype molm-web cannot read are listed apart, so that an extra
 * int64 or bool buffer does not stop a load, while a needed tensor in such a dtype gets an
 * error naming it.
 */
export interface TensorFile extends TensorSource {
  /** The file's name, for error messages. */
  readonly fileName: string;
  /** Tensors present but not readable: name → the dtype as the file spells it. */
  readonly unreadable: ReadonlyMap<string, string>;
}
