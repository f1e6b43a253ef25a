import type { ModelConfig } from '../config.ts';
import { f32ToBf16, f32ToF16, toFloat32 } from '../checkpoint/dtype.ts';
import type { DType, TensorSource } from '../checkpoint/types.ts';
import { ModelFormatError } from '../errors.ts';
import { align4, createStorage, writeBytes } from '../gpu/buffers.ts';
import type { GpuContext } from '../gpu/context.ts';
import type { WeightType } from '../gpu/wgsl.ts';
import { expectedTensorShapes } from './tensor-names.ts';

/** How each tensor will sit in GPU memory: decided before the device exists (it sets the limits). */
export interface WeightPlan {
  /** Storage type of every matrix; vectors (LayerNorm, biases) are always f32. */
  matrixType: WeightType;
  entries: { name: string; shape: number[]; storage: WeightType; bytes: number }[];
  maxTensorBytes: number;
  totalBytes: number;
}

const STORAGE_OF: Partial<Record<DType, WeightType>> = { F32: 'f32', BF16: 'bf16', F16: 'f16' };

function storageBytes(elements: number, type: WeightType): number {
  return align4(elements * (type === 'f32' ? 4 : 2));
}

/**
 * Keeps matrices in the checkpoint's own 16-bit type when all of them share it (half the memory
 * and bandwidth, exact), and falls back to f32 when they are mixed or when asked to.
 */
export function planWeights(config: ModelConfig, source: TensorSource, options: { matrixType?: WeightType } = {}): WeightPlan {
  const shapes = expectedTensorShapes(config);
  const matrixDtypes = new Set<DType>();
  for (const [name, shape] of shapes) {
    const info = source.tensors.get(name);
    if (!info) throw new ModelFormatError(`The checkpoint has no tensor "${name}", which the model needs. Is it a complete MoLM checkpoint?`);
    if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i])) {
      throw new ModelFormatError(
        `Tensor "${name}" has shape [${info.shape}], but config.json implies [${shape}]. The weights and config.json do not belong together.`,
      );
    }
    if (!STORAGE_OF[info.dtype]) throw new ModelFormatError(`Tensor "${name}" is ${info.dtype}; weights must be F32, F16 or BF16.`);
    if (shape.length > 1) matrixDtypes.add(info.dtype);
  }
  const matrixType: WeightType =
    options.matrixType ?? (matrixDtypes.size === 1 ? STORAGE_OF[[...matrixDtypes][0]]! : 'f32');
  const entries = [...shapes].map(([name, shape]) => {
    const storage: WeightType = shape.length > 1 ? matrixType : 'f32';
    const elements = shape.reduce((a, b) => a * b, 1);
    return { name, shape, storage, bytes: storageBytes(elements, storage) };
  });
  return {
    matrixType,
    entries,
    maxTensorBytes: Math.max(...entries.map((e) => e.bytes)),
    totalBytes: entries.reduce((a, e) => a + e.bytes, 0),
  };
}

/** Converts a tensor's stored bytes into the bytes of its GPU storage type. */
function toStorage(bytes: Uint8Array, dtype: DType, storage: WeightType): Uint8Array {
  if (STORAGE_OF[dtype] === storage) return bytes;
  if (storage === 'f32') {
    const f = toFloat32(bytes, dtype);
    return new Uint8Array(f.buffer, f.byteOffset, f.byteLength);
  }
  // Narrowing (f32 → 16-bit, or between 16-bit types) is lossy and goes through f32.
  const f = toFloat32(bytes, dtype);
  const out = new Uint16Array(f.length);
  const round = storage === 'bf16' ? f32ToBf16 : f32ToF16;
  for (let i = 0; i < f.length; i++) out[i] = round(f[i]);
  return new Uint8Array(out.buffer);
}

export interface WeightProgress {
  loadedBytes: number;
  totalBytes: number;
  tensor: string;
}

/** The model's weights in GPU buffers, one read-only storage buffer per tensor. */
export class GpuWeights {
  private constructor(
    readonly plan: WeightPlan,
    private readonly buffers: Map<string, GPUBuffer>,
  ) {}

  /** Streams tensors one at a time from the source into GPU buffers. */
  static async upload(
    ctx: GpuContext,
    source: TensorSource,
    plan: WeightPlan,
    onProgress?: (p: WeightProgress) => void,
  ): Promise<GpuWeights> {
    const buffers = new Map<string, GPUBuffer>();
    let loaded = 0;
    try {
      for (const e of plan.entries) {
        const info = source.tensors.get(e.name)!;
        const bytes = toStorage(await source.read(e.name), info.dtype, e.storage);
        const buffer = createStorage(ctx.device, e.bytes, e.name);
        writeBytes(ctx.device, buffer, 0, bytes);
        buffers.set(e.name, buffer);
        loaded += e.bytes;
        onProgress?.({ loadedBytes: loaded, totalBytes: plan.totalBytes, tensor: e.name });
        ctx.assertAlive();
      }
    } catch (err) {
      for (const b of buffers.values()) b.destroy();
      throw err;
    }
    return new GpuWeights(plan, buffers);
  }

  get(name: string): GPUBuffer {
    const b = this.buffers.get(name);
    if (!b) throw new Error(`no GPU buffer for tensor ${name}`);
    return b;
  }

  destroy(): void {
    for (const b of this.buffers.values()) b.destroy();
    this.buffers.clear();
  }
}
