import { UsageError } from '../errors.ts';

/**
 * Token embedding: row ids[t] of wte [vocab, width] for every t. MoLM adds no scaling and no
 * position embedding (stick-breaking attention is order-aware by itself). Returns [ids.length, width].
 */
export function embedding(ids: ArrayLike<number>, wte: ArrayLike<number>, width: number): Float64Array {
  const vocab = Math.floor(wte.length / width);
  const out = new Float64Array(ids.length * width);
  for (let t = 0; t < ids.length; t++) {
    const id = ids[t];
    if (!Number.isInteger(id) || id < 0 || id >= vocab) {
      throw new UsageError(`Token id ${id} at position ${t} is outside the vocabulary (0..${vocab - 1}).`);
    }
    for (let i = 0; i < width; i++) out[t * width + i] = wte[id * width + i];
  }
  return out;
}
