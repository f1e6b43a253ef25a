import { createStorage } from '../gpu/buffers.ts';
import type { GpuContext } from '../gpu/context.ts';
import { pow2AtLeast, tuningOf } from './tuning.ts';
import { bindGroup, type Binding, type Dispatch } from './dispatch.ts';

export interface StickBreakingShape {
  k: number; // query slots per token row (selected attention experts)
  heads: number; // H: every slot's head h reads K/V head h
  headSize: number; // d
}

export interface StickBreakingBuffers {
  step: Binding; // Step uniform
  q: Binding; // [rows, k, heads * headSize] f32
  keys: Binding; // [maxContext, heads * headSize] f32 cache, rows 0 .. pos + rows - 1 filled
  values: Binding; // same shape; for MoLM the same buffer as keys (bound twice, read-only)
  o: Binding; // [rows, k, heads * headSize] f32
}

const WG = 256;
/** Keys per block of the decode kernel: WG / KB = 8 invocations per key dot product. */
const DECODE_KB = 32;
const MAX_SEGMENTS = 64;
/** Prefill tile: BQ rows × BK keys, 2 logits per invocation. */
const PREFILL_BQ = 16;
const PREFILL_BK = 32;
/** Dims of q and K staged per step of the prefill logits: q [16][64] + K [64][33] = 12.25 KiB. */
const PREFILL_DC = 64;

function checkShape(label: string, shape: StickBreakingShape): void {
  for (const name of ['k', 'heads', 'headSize'] as const) {
    const v = shape[name];
    if (!Number.isInteger(v) || v < 1) throw new Error(`${label}: ${name} must be a positive integer, got ${v}`);
  }
}

/**
 * How many segments decode splits the context into: one per 32 keys of the largest context, at
 * most 64. Fixed at plan time; the kernel cuts the current length into that many equal ranges,
 * so at full context each workgroup walks one 32-key block, and 64 workgroups per head (× heads)
 * keep a GPU's compute units busy while the merge's extra reads (64 × k × H × d floats) stay
 * small next to the cache. Untuned: no GPU was available to measure.
 */
export function decodeSegments(maxContext: number): number {
  if (!Number.isInteger(maxContext) || maxContext < 1) throw new Error(`maxContext must be a positive integer, got ${maxContext}`);
  return Math.min(MAX_SEGMENTS, Math.ceil(maxContext / DECODE_KB));
}

/** Invocations spanning the head dims, and how many dims each takes: the rest of WG splits keys (decode) or rows (prefill). */
function lanes(d: number): { LANES: number; DPT: number } {
  const LANES = Math.min(WG, pow2AtLeast(d));
  return { LANES, DPT: Math.ceil(d / LANES) };
}

export interface StickBreakingDecodeShape extends StickBreakingShape {
  maxContext: number; // rows of the KV cache: fixes the number of context segments
}

/** Bytes of the decode kernel's scratch: O [P, k, H, d] then S [P, k, H], f32. */
export function decodePartialsBytes(shape: StickBreakingDecodeShape): number {
  return decodeSegments(shape.maxContext) * shape.k * shape.heads * (shape.headSize + 1) * 4;
}

/**
 * Stick-breaking attention of one decoded token (step.n_tokens = 1 at position step.pos) over
 * keys 0 .. step.pos: the split kernel (shaders/stickbreaking_decode.wgsl) writes one partial
 * result per context segment into a scratch buffer allocated here, and the merge kernel
 * (shaders/stickbreaking_merge.wgsl) combines them into o. Returns both dispatches, in order.
 * `partials` may pass a scratch buffer of at least decodePartialsBytes(shape) to share between
 * layers (each layer's merge has read it before the next layer's split writes it).
 */
export async function stickBreakingDecode(
  gpu: GpuContext,
  shape: StickBreakingDecodeShape,
  b: StickBreakingBuffers & { partials?: Binding },
  label = 'stickbreaking_decode',
): Promise<Dispatch[]> {
  const { k, heads, headSize, maxContext } = shape;
  checkShape(label, shape);
  // Workgroup memory: partial dots [k][WG] and the block's log sigmoid and -softplus [2][k][KB].
  const wgBytes = k * (WG + 2 * DECODE_KB) * 4;
  if (wgBytes > 16384) throw new Error(`${label}: k = ${k} query slots need ${wgBytes} bytes of workgroup memory, over 16384`);
  const P = decodeSegments(maxContext);
  const n = k * heads * headSize;
  const common = { NSLOT: k, H: heads, D: headSize, P };
  const tuning = tuningOf(gpu);
  const serial = tuning.stickBreakingSerial;
  const SERIAL_WG = tuning.serialWorkgroup;
  const [split, merge] = await Promise.all([
    serial
      ? gpu.pipelines.get('stickbreaking_decode_serial.wgsl', { defines: { ...common, WG: SERIAL_WG, SCALE: { f32: 1 / Math.sqrt(headSize) } } })
      : gpu.pipelines.get('stickbreaking_decode.wgsl', {
          defines: { ...common, WG, KB: DECODE_KB, ...lanes(headSize), SCALE: { f32: 1 / Math.sqrt(headSize) } },
        }),
    gpu.pipelines.get('stickbreaking_merge.wgsl', { defines: { ...common, WG: 64 } }),
  ]);
  // Never read before written: the merge reads only the segments in use.
  const partials = b.partials ?? createStorage(gpu.device, decodePartialsBytes(shape), `${label}.partials`);
  return [
    {
      label: `${label}.split`,
      pipeline: split,
      bindGroup: bindGroup(gpu.device, split, { 0: b.step, 1: b.q, 2: b.keys, 3: b.values, 4: partials }, `${label}.split`),
      grid: (rows) => (rows === 0 ? [0, 1, 1] : serial ? [Math.ceil((P * k * heads) / SERIAL_WG), 1, 1] : [P, heads, 1]),
    },
    {
      label: `${label}.merge`,
      pipeline: merge,
      bindGroup: bindGroup(gpu.device, merge, { 0: b.step, 1: partials, 2: b.o }, `${label}.merge`),
      grid: (rows) => (rows === 0 ? [0, 1, 1] : [Math.ceil(n / 64), 1, 1]),
    },
  ];
}

/**
 * Stick-breaking attention of a prefill chunk (shaders/stickbreaking_prefill.wgsl): rows
 * 0 .. step.n_tokens − 1 at positions step.pos + r, over keys already appended to the cache
 * (earlier chunks' included). Workgroups take tiles of 16 rows of one (slot, head).
 */
export async function stickBreakingPrefill(
  gpu: GpuContext,
  shape: StickBreakingShape,
  b: StickBreakingBuffers,
  label = 'stickbreaking_prefill',
): Promise<Dispatch> {
  const { k, heads, headSize } = shape;
  checkShape(label, shape);
  const tuning = tuningOf(gpu);
  if (tuning.stickBreakingSerial) {
    const SERIAL_WG = tuning.serialWorkgroup;
    const serial = await gpu.pipelines.get('stickbreaking_prefill_serial.wgsl', {
      defines: { NSLOT: k, H: heads, D: headSize, WG: SERIAL_WG, SCALE: { f32: 1 / Math.sqrt(headSize) } },
    });
    return {
      label,
      pipeline: serial,
      bindGroup: bindGroup(gpu.device, serial, { 0: b.step, 1: b.q, 2: b.keys, 3: b.values, 4: b.o }, label),
      grid: (rows) => (rows === 0 ? [0, 1, 1] : [Math.ceil((rows * k * heads) / SERIAL_WG), 1, 1]),
    };
  }
  // Row groups: the invocations not needed to span the head dims split the tile's rows.
  const RG = Math.min(PREFILL_BQ, WG / lanes(headSize).LANES);
  const DC = Math.min(PREFILL_DC, headSize);
  const TILE = Math.max(PREFILL_BQ * DC + DC * (PREFILL_BK + 1), 2 * PREFILL_BQ * PREFILL_BK);
  const pipeline = await gpu.pipelines.get('stickbreaking_prefill.wgsl', {
    defines: {
      NSLOT: k,
      H: heads,
      D: headSize,
      BQ: PREFILL_BQ,
      BK: PREFILL_BK,
      WG,
      DC,
      RG,
      LANES: WG / RG,
      DPT: Math.ceil(headSize / (WG / RG)),
      TILE,
      SCALE: { f32: 1 / Math.sqrt(headSize) },
    },
  });
  return {
    label,
    pipeline,
    bindGroup: bindGroup(gpu.device, pipeline, { 0: b.step, 1: b.q, 2: b.keys, 3: b.values, 4: b.o }, label),
    grid: (rows) => (rows === 0 ? [0, 1, 1] : [Math.ceil(rows / PREFILL_BQ), k, heads]),
  };
}
