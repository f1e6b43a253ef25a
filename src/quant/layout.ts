import { f16ToF32, f32ToF16 } from '../checkpoint/dtype.ts';

/**
 * # The q8 / q4 weight layout
 *
 * molm-web's 8- and 4-bit matrices, as they sit in GPU buffers and in converted shards (the same
 * bytes: shards are copied into buffers as they are). Kernels dequantise inside the shader
 * (`#weights NAME BINDING` in src/gpu/wgsl.ts generates the accessors); this file is the
 * reference implementation, used by the converter, the weight plan and the CPU reference.
 *
 * **Quantised axis.** Every matrix is quantised along its *input* dimension IN = shape[1]:
 * - a 2-D tensor [R, IN] (nn.Linear weights [out, in]: router `w_gate.0` / `w_gate.3`,
 *   `k_proj` / `v_proj`, `lm_head`; and the embedding `wte` [V, C], grouped along C) is ONE
 *   block, whose packed words are row-major [R, IN/P] (word (r, w) holds elements
 *   i = w·P .. w·P + P − 1 of row r) and whose scales are [R, IN/32] (scale (r, g) covers
 *   i = 32g .. 32g + 31 of row r);
 * - a 3-D stacked expert tensor [E, IN, OUT] ("[expert, in, out]") is E blocks, one per expert;
 *   block e's packed words are [IN/P, OUT] (word (w, j) holds elements i = w·P .. w·P + P − 1
 *   of column j, so invocations mapped to neighbouring columns read neighbouring words) and its
 *   scales are [IN/32, OUT] (scale (g, j) covers i = 32g .. 32g + 31 of column j).
 *
 * P is the number of values per u32 word: 4 for q8, 8 for q4.
 *
 * **Groups and scales.** Symmetric quantisation in groups of 32 consecutive values along IN:
 * - the scale s of a group is max|w| / 7 (q4) or max|w| / 127 (q8), computed in float32 and
 *   rounded to f16 (round to nearest, ties to even); a group of zeros has s = 0. Two guards: a
 *   non-zero group whose f16 scale would be subnormal (or zero) gets the smallest normal f16,
 *   2^-14, so no adapter can flush it to zero; a scale beyond f16's range is clamped to 65504;
 * - q = round(w / s), where s is the stored f16 scale (not the float32 one) and the division is
 *   done in float64; ties round half AWAY from zero (±0.5 → ±1); q is clamped to [−8, 7] (q4)
 *   or [−127, 127] (q8). Dividing by the stored scale keeps |w − q·s| ≤ s/2 for every element
 *   (the f16 rounding of s moves max|w| / s by at most 2^-11 relative, never past 7.5 or 127.5);
 * - the dequantised value is q · s, exact in float32 (q has ≤ 8 bits, s 11), on the CPU and in
 *   the shaders alike. Non-finite weights cannot be quantised (quantize throws).
 *
 * **Packing.** Value k (k = 0 .. P − 1) of a u32 word sits in bits [k·bits, (k + 1)·bits), in
 * two's complement (q4 nibbles are sign-extended in the shader). Words are little-endian.
 * Scales are f16 bits packed two per u32 (scale 2m in the low half of word m, scale 2m + 1 in
 * the high half), so the same bytes serve adapters with and without `shader-f16` (the shaders
 * read them with unpack2x16float).
 *
 * **Bytes.** One block is its packed words, then its packed scales (padded with a zero half
 * when the block's scale count is odd); the tensor is its blocks back to back. So one expert's
 * weights and scales are contiguous: expert e of a 3-D tensor occupies bytes
 * [e·blockBytes, (e + 1)·blockBytes), and `quantize` of that expert alone as [1, IN, OUT] gives
 * exactly those bytes. Sizes: 4.5 bits per weight for q4, 8.5 for q8 (plus at most 2 bytes of
 * padding per block).
 *
 * **What can be quantised.** Only 2-D and 3-D tensors with IN % 32 == 0 (`canQuantize`). A
 * matrix whose IN is not a multiple of 32 is stored as f16 under a q dtype (`matrixStorage`);
 * vectors (LayerNorm weights, biases) are always f32. Every matrix of the released MoLM models
 * has IN in {1024, 2048, 256} and so is quantised.
 */

export type QuantType = 'q8' | 'q4';

/** Values per scale, consecutive along IN. */
export const GROUP = 32;

export const QUANT_BITS: Record<QuantType, number> = { q8: 8, q4: 4 };
const QMAX: Record<QuantType, number> = { q8: 127, q4: 7 };
const QMIN: Record<QuantType, number> = { q8: -127, q4: -8 };
/** The smallest normal f16 (2^-14): the least scale of a non-zero group. */
const MIN_SCALE_BITS = 0x0400;
const MAX_SCALE_BITS = 0x7bff;

export function isQuantType(type: string): type is QuantType {
  return type === 'q8' || type === 'q4';
}

/** Whether a tensor of this shape can be stored as q8 / q4: 2-D or 3-D with IN = shape[1] a multiple of 32. */
export function canQuantize(shape: readonly number[]): boolean {
  return (shape.length === 2 || shape.length === 3) && shape.every((d) => Number.isInteger(d) && d >= 1) && shape[1] % GROUP === 0;
}

/**
 * The storage a matrix of this shape gets when `type` is asked for: `type` itself, except that a
 * q type falls back to f16 for matrices `canQuantize` refuses.
 */
export function matrixStorage<T extends string>(type: T, shape: readonly number[]): T | 'f16' {
  return isQuantType(type) && !canQuantize(shape) ? 'f16' : type;
}

/**
 * The layout in numbers. The tensor is `blocks` blocks of `cols` columns of IN values each
 * (2-D: one block whose columns are the R rows; 3-D: E blocks of OUT columns). Element (c, i) of
 * block b is logical index b·blockElements + c·colStride + i·inStride; word (c, w) is at
 * c·wordColStride + w·wordStride within the block, scale (c, g) at c·scaleColStride + g·scaleStride
 * within the block's scales.
 */
export interface QuantGeometry {
  type: QuantType;
  bits: number;
  /** Values per word. */
  per: number;
  blocks: number;
  inDim: number;
  cols: number;
  blockElements: number;
  colStride: number;
  inStride: number;
  wordsPerBlock: number;
  wordColStride: number;
  wordStride: number;
  scalesPerBlock: number;
  scaleColStride: number;
  scaleStride: number;
  /** u32 words of scales per block (scalesPerBlock / 2, rounded up). */
  scaleWordsPerBlock: number;
  /** u32 words of one block: its packed values, then its packed scales. */
  blockWords: number;
}

function checkShape(shape: readonly number[], type: string): void {
  if (!isQuantType(type)) throw new Error(`quantisation type must be q8 or q4, got ${type}`);
  if (!canQuantize(shape)) {
    throw new Error(`a [${shape}] tensor cannot be quantised: it must be 2-D or 3-D with shape[1] (its input dimension) a multiple of ${GROUP}`);
  }
}

export function quantGeometry(shape: readonly number[], type: QuantType): QuantGeometry {
  checkShape(shape, type);
  const bits = QUANT_BITS[type];
  const per = 32 / bits;
  const inDim = shape[1];
  const twoD = shape.length === 2;
  const blocks = twoD ? 1 : shape[0];
  const cols = twoD ? shape[0] : shape[2];
  const groups = inDim / GROUP;
  const scalesPerBlock = groups * cols;
  const scaleWordsPerBlock = Math.ceil(scalesPerBlock / 2);
  const wordsPerBlock = (inDim / per) * cols;
  return {
    type,
    bits,
    per,
    blocks,
    inDim,
    cols,
    blockElements: inDim * cols,
    colStride: twoD ? inDim : 1,
    inStride: twoD ? 1 : cols,
    wordsPerBlock,
    wordColStride: twoD ? inDim / per : 1,
    wordStride: twoD ? 1 : cols,
    scalesPerBlock,
    scaleColStride: twoD ? groups : 1,
    scaleStride: twoD ? 1 : cols,
    scaleWordsPerBlock,
    blockWords: wordsPerBlock + scaleWordsPerBlock,
  };
}

/** Bytes of one block: the whole tensor for 2-D, one expert for 3-D [E, IN, OUT]. */
export function blockBytes(shape: readonly number[], type: QuantType): number {
  return quantGeometry(shape, type).blockWords * 4;
}

/** Bytes of the whole quantised tensor (a multiple of 4). */
export function quantizedBytes(shape: readonly number[], type: QuantType): number {
  const g = quantGeometry(shape, type);
  return g.blocks * g.blockWords * 4;
}

/** f16 bits of the scale of a group whose largest magnitude is maxAbs (see the layout above). */
function scaleBits(maxAbs: number, type: QuantType): number {
  if (maxAbs === 0) return 0;
  const bits = f32ToF16(Math.fround(maxAbs) / QMAX[type]);
  if (bits < MIN_SCALE_BITS) return MIN_SCALE_BITS;
  if (bits > MAX_SCALE_BITS) return MAX_SCALE_BITS;
  return bits;
}

/** Quantises a row-major float tensor of the given (Hugging Face) shape into the layout above. */
export function quantize(values: Float32Array, shape: readonly number[], type: QuantType): Uint8Array {
  const g = quantGeometry(shape, type);
  const n = g.blocks * g.blockElements;
  if (values.length !== n) throw new Error(`quantize: ${values.length} values for a [${shape}] tensor of ${n}`);
  const words = new Uint32Array(g.blocks * g.blockWords);
  const scales = new Uint16Array(words.buffer);
  const { bits, per } = g;
  const mask = (1 << bits) - 1;
  const qmax = QMAX[type];
  const qmin = QMIN[type];
  const groups = g.inDim / GROUP;
  for (let b = 0; b < g.blocks; b++) {
    const wordBase = b * g.blockWords;
    const scaleBase = 2 * (wordBase + g.wordsPerBlock); // in u16 units
    for (let c = 0; c < g.cols; c++) {
      const colBase = b * g.blockElements + c * g.colStride;
      for (let gi = 0; gi < groups; gi++) {
        const first = colBase + gi * GROUP * g.inStride;
        let maxAbs = 0;
        for (let t = 0; t < GROUP; t++) {
          const v = values[first + t * g.inStride];
          if (!Number.isFinite(v)) throw new Error(`quantize: element ${first + t * g.inStride} of a [${shape}] tensor is ${v}`);
          maxAbs = Math.max(maxAbs, Math.abs(v));
        }
        const sBits = scaleBits(maxAbs, type);
        scales[scaleBase + c * g.scaleColStride + gi * g.scaleStride] = sBits;
        if (sBits === 0) continue; // all zeros: the words stay 0
        const s = f16ToF32(sBits);
        for (let w = 0; w < GROUP / per; w++) {
          let word = 0;
          for (let k = 0; k < per; k++) {
            const r = values[first + (w * per + k) * g.inStride] / s;
            const q = Math.min(qmax, Math.max(qmin, Math.sign(r) * Math.floor(Math.abs(r) + 0.5)));
            word |= (q & mask) << (k * bits);
          }
          words[wordBase + c * g.wordColStride + (gi * (GROUP / per) + w) * g.wordStride] = word >>> 0;
        }
      }
    }
  }
  return new Uint8Array(words.buffer);
}

/** The float32 values a quantised tensor holds (q · s), row-major in its (Hugging Face) shape. */
export function dequantize(bytes: Uint8Array, shape: readonly number[], type: QuantType): Float32Array {
  const g = quantGeometry(shape, type);
  const expected = g.blocks * g.blockWords * 4;
  if (bytes.byteLength !== expected) {
    throw new Error(`dequantize: ${bytes.byteLength} bytes for a ${type} [${shape}] tensor, which takes ${expected}`);
  }
  // Copy when unaligned, so that the typed views below are valid.
  const own = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  const words = new Uint32Array(own.buffer, own.byteOffset, expected / 4);
  const scales = new Uint16Array(own.buffer, own.byteOffset, expected / 2);
  const out = new Float32Array(g.blocks * g.blockElements);
  const { bits, per } = g;
  const shift = 32 - bits;
  const groups = g.inDim / GROUP;
  for (let b = 0; b < g.blocks; b++) {
    const wordBase = b * g.blockWords;
    const scaleBase = 2 * (wordBase + g.wordsPerBlock);
    for (let c = 0; c < g.cols; c++) {
      const colBase = b * g.blockElements + c * g.colStride;
      for (let gi = 0; gi < groups; gi++) {
        const s = f16ToF32(scales[scaleBase + c * g.scaleColStride + gi * g.scaleStride]);
        for (let w = 0; w < GROUP / per; w++) {
          const i0 = gi * GROUP + w * per;
          const word = words[wordBase + c * g.wordColStride + (i0 / per) * g.wordStride];
          for (let k = 0; k < per; k++) {
            const q = (word << (shift - k * bits)) >> shift; // sign-extended
            out[colBase + (i0 + k) * g.inStride] = q * s;
          }
        }
      }
    }
  }
  return out;
}
