import type { TensorSource } from '../checkpoint/types.ts';
import type { ModelConfig } from '../config.ts';
import { decodeTensor } from '../quant/decode.ts';
import { sha256Hex } from '../shards/manifest-source.ts';
import { expectedTensorShapes } from '../tensor-names.ts';

// A model's content hash: what an expert pack names as the base it was trained on. It hashes the
// values the engines compute with (every stored form decoded to float32), so the same weights
// hash the same from a safetensors file, a pytorch .bin or an f32 conversion, and a q8 or q4
// conversion (whose values differ) hashes as the different base it is. docs/format.md defines
// it; tools/train/molm_shards.py computes it independently in Python.

/** One line of the hash's text: `NAME DIMxDIM SHA256-OF-F32-VALUES\n`. */
export async function tensorHashLine(name: string, shape: readonly number[], values: Float32Array): Promise<string> {
  const bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  return `${name} ${shape.join('x')} ${await sha256Hex(bytes)}\n`;
}

/** The hash of the lines of every tensor, in code-point order of the names. */
export async function combineHashLines(lines: ReadonlyMap<string, string>): Promise<string> {
  const names = [...lines.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return sha256Hex(new TextEncoder().encode(names.map((n) => lines.get(n)).join('')));
}

/**
 * The weights hash of a model: every tensor the forward pass reads, decoded to float32, hashed
 * one at a time (the heap holds one decoded tensor).
 */
export async function weightsSha256(config: ModelConfig, tensors: TensorSource): Promise<string> {
  const lines = new Map<string, string>();
  for (const [name, shape] of expectedTensorShapes(config)) {
    const info = tensors.tensors.get(name);
    if (!info) throw new Error(`weightsSha256: no tensor "${name}"`);
    lines.set(name, await tensorHashLine(name, shape, decodeTensor(await tensors.read(name), info)));
  }
  return combineHashLines(lines);
}
