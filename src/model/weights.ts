import type { ModelConfig } from '../config.ts';
import { f32ToBf16, f32ToF16 } from '../checkpoint/dtype.ts';
import type { DType, TensorInfo, TensorSource } from '../checkpoint/types.ts';
import { DeviceLimitError, ModelFormatError } from '../errors.ts';
import { align4, createStorage, writeBytes } from '../gpu/buffers.ts';
import type { GpuContext } from '../gpu/context.ts';
import { type StorageType, storageBytes, storageOfDtype } from '../storage-types.ts';
import { decodeTensor } from '../quant/decode.ts';
import { canQuantize, isQuantType, matrixStorage, quantize, quantizedBytes } from '../quant/layout.ts';
import { expectedTensorShapes } from './tensor-names.ts';

/** How each tensor will sit in GPU memory: decided before the device exists (it sets the limits). */
export interface WeightPlan {
  /**
   * The storage type asked for (or chosen) for matrices. Individual matrices may differ: under
   * q8 / q4, those whose input dimension is not a multiple of 32 are f16 (see `entries`).
   * Vectors (LayerNorm, biases) are always f32.
   */
  matrixType: StorageType;
  entries: { name: string; shape: number[]; storage: StorageType; bytes: number }[];
  maxTensorBytes: number;
  totalBytes: number;
}

/**
 * Storage of every tensor. Without `matrixType`: quantised matrices (Q8 / Q4, from converted
 * shards) stay as they are, and the other matrices keep the checkpoint's own float type when all
 * of them share it (half the memory and bandwidth, exact), f32 when they are mixed. With
 * `matrixType`: every matrix gets that type; a q8 / q4 matrix that is already stored in it is
 * uploaded as is, other matrices are quantised at upload, and a matrix that cannot be quantised
 * (input dimension not a multiple of 32) is stored as f16.
 */
export function planWeights(config: ModelConfig, source: TensorSource, options: { matrixType?: StorageType } = {}): WeightPlan {
  const shapes = expectedTensorShapes(config);
  const floatDtypes = new Set<DType>();
  const quantDtypes = new Set<DType>();
  for (const [name, shape] of shapes) {
    const info = source.tensors.get(name);
    if (!info) throw new ModelFormatError(`The checkpoint has no tensor "${name}", which the model needs. Is it a complete MoLM checkpoint?`);
    if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i])) {
      throw new ModelFormatError(
        `Tensor "${name}" has shape [${info.shape}], but config.json implies [${shape}]. The weights and config.json do not belong together.`,
      );
    }
    const stored = storageOfDtype(info.dtype);
    if (!stored) throw new ModelFormatError(`Tensor "${name}" is ${info.dtype}; weights must be F32, F16, BF16, Q8 or Q4.`);
    if (isQuantType(stored)) {
      if (shape.length < 2 || !canQuantize(shape)) {
        throw new ModelFormatError(`Tensor "${name}" [${shape}] is stored as ${info.dtype}, which only matrices whose shape[1] is a multiple of 32 can be.`);
      }
      const bytes = quantizedBytes(shape, stored);
      if (info.byteLength !== bytes) {
        throw new ModelFormatError(`Tensor "${name}" is ${info.dtype} [${shape}], which takes ${bytes} bytes, but the file holds ${info.byteLength}.`);
      }
      quantDtypes.add(info.dtype);
    } else if (shape.length > 1) {
      floatDtypes.add(info.dtype);
    }
  }
  const floatType: StorageType = floatDtypes.size === 1 ? storageOfDtype([...floatDtypes][0])! : 'f32';
  const matrixType: StorageType = options.matrixType ?? (quantDtypes.size === 1 ? storageOfDtype([...quantDtypes][0])! : floatType);
  const entries = [...shapes].map(([name, shape]) => {
    const stored = storageOfDtype(source.tensors.get(name)!.dtype)!;
    let storage: StorageType;
    if (shape.length === 1) storage = 'f32';
    else if (options.matrixType) storage = matrixStorage(options.matrixType, shape);
    else storage = isQuantType(stored) ? stored : floatType;
    return { name, shape, storage, bytes: storageBytes(shape, storage) };
  });
  return {
    matrixType,
    entries,
    maxTensorBytes: Math.max(...entries.map((e) => e.bytes)),
    totalBytes: entries.reduce((a, e) => a + e.bytes, 0),
  };
}

/** A tensor as a converted model stores it (manifest.json): already in its GPU storage layout. */
export interface StoredTensor {
  name: string;
  shape: readonly number[];
  storage: StorageType;
  /** Bytes of its GPU buffer (4-byte aligned), as the shards hold them. */
  bytes: number;
}

/**
 * The plan of a converted model (src/shards): every tensor keeps the storage type and byte count
 * the converter wrote, since shards are copied into GPU buffers as they are. Checks that every
 * tensor the config implies is there with its shape, that vectors are f32 and that matrices are
 * stored as `matrixType` (or f16 where a q8 / q4 model could not quantise them).
 */
export function planStoredWeights(config: ModelConfig, stored: Iterable<StoredTensor>, matrixType: StorageType): WeightPlan {
  const byName = new Map([...stored].map((t) => [t.name, t]));
  const entries: WeightPlan['entries'] = [];
  for (const [name, shape] of expectedTensorShapes(config)) {
    const t = byName.get(name);
    if (!t) throw new ModelFormatError(`The converted model has no tensor "${name}", which the model needs. Convert the model again.`);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new ModelFormatError(`Tensor "${name}" has shape [${t.shape}], but the config implies [${shape}]. Convert the model again.`);
    }
    const want: StorageType = shape.length > 1 ? matrixStorage(matrixType, shape) : 'f32';
    if (t.storage !== want) {
      throw new ModelFormatError(`Tensor "${name}" is stored as ${t.storage}, but this engine reads it as ${want}. Convert the model again.`);
    }
    if (!Number.isSafeInteger(t.bytes) || t.bytes <= 0 || t.bytes % 4 !== 0) {
      throw new ModelFormatError(`Tensor "${name}" has ${t.bytes} bytes; a stored tensor takes a positive multiple of 4.`);
    }
    entries.push({ name, shape: [...shape], storage: t.storage, bytes: t.bytes });
  }
  return {
    matrixType,
    entries,
    maxTensorBytes: Math.max(...entries.map((e) => e.bytes)),
    totalBytes: entries.reduce((a, e) => a + e.bytes, 0),
  };
}

/** Converts a tensor's stored bytes into the bytes of its storage type (the same for every backend). */
export function toStorage(bytes: Uint8Array, info: TensorInfo, storage: StorageType): Uint8Array {
  if (storageOfDtype(info.dtype) === storage) return bytes;
  const f = decodeTensor(bytes, info);
  if (isQuantType(storage)) return quantize(f, info.shape, storage);
  if (storage === 'f32') return new Uint8Array(f.buffer, f.byteOffset, f.byteLength);
  // Narrowing (f32 → 16-bit, or between 16-bit types) is lossy and goes through f32.
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

/**
 * Stacked expert tensors ([E, …]) to keep only partly on the GPU: tensor name → the number of
 * expert slots its buffer gets. All E experts stay in host memory, to be copied into slots on
 * demand (loadExpert); the slots start out holding experts 0 … slots − 1.
 */
export type ExpertSlots = ReadonlyMap<string, number>;

/** A slotted tensor: its bytes per expert, its slot count, and every expert's bytes on the host. */
interface SlottedTensor {
  perExpert: number;
  slots: number;
  host: Uint8Array;
}

function slottedTensors(plan: WeightPlan, slots: ExpertSlots | undefined): Map<string, SlottedTensor> {
  const out = new Map<string, SlottedTensor>();
  for (const [name, n] of slots ?? []) {
    const e = plan.entries.find((x) => x.name === name);
    if (!e || e.shape.length !== 3) throw new Error(`${name} is not a stacked expert tensor`);
    const experts = e.shape[0];
    const perExpert = e.bytes / experts;
    if (!Number.isInteger(perExpert) || perExpert % 4 !== 0) {
      throw new DeviceLimitError(`${name}: an expert takes ${perExpert} bytes, not a multiple of 4, so experts cannot be streamed one at a time. Run without a GPU memory budget.`);
    }
    if (!Number.isInteger(n) || n < 1 || n > experts) throw new Error(`${name}: ${n} slots for ${experts} experts`);
    out.set(name, { perExpert, slots: n, host: new Uint8Array(e.bytes) });
  }
  return out;
}

/** The model's weights in GPU buffers, one read-only storage buffer per tensor. */
export class GpuWeights {
  private constructor(
    readonly plan: WeightPlan,
    private readonly buffers: Map<string, GPUBuffer>,
    private readonly slotted: Map<string, SlottedTensor> = new Map(),
  ) {}

  /** Bytes of a tensor's GPU buffer: the whole tensor, or its expert slots. */
  private static bufferBytes(e: WeightPlan['entries'][number], slotted: Map<string, SlottedTensor>): number {
    const s = slotted.get(e.name);
    return s ? s.perExpert * s.slots : e.bytes;
  }

  /** GPU memory the weights take (less than the plan's total when experts are slotted). */
  get gpuBytes(): number {
    return this.plan.entries.reduce((a, e) => a + GpuWeights.bufferBytes(e, this.slotted), 0);
  }

  /** Copies expert `expert` of a slotted tensor from host memory into GPU slot `slot`; the bytes copied. */
  loadExpert(device: GPUDevice, name: string, expert: number, slot: number): number {
    const s = this.slotted.get(name);
    if (!s) throw new Error(`${name} is not slotted`);
    device.queue.writeBuffer(this.get(name), slot * s.perExpert, s.host.buffer, s.host.byteOffset + expert * s.perExpert, s.perExpert);
    return s.perExpert;
  }

  /** Streams tensors one at a time from the source into GPU buffers. */
  static async upload(
    ctx: GpuContext,
    source: TensorSource,
    plan: WeightPlan,
    onProgress?: (p: WeightProgress) => void,
    slots?: ExpertSlots,
  ): Promise<GpuWeights> {
    const buffers = new Map<string, GPUBuffer>();
    const slotted = slottedTensors(plan, slots);
    let loaded = 0;
    try {
      for (const e of plan.entries) {
        const info = source.tensors.get(e.name)!;
        let bytes = toStorage(await source.read(e.name), info, e.storage);
        const buffer = createStorage(ctx.device, GpuWeights.bufferBytes(e, slotted), e.name);
        const s = slotted.get(e.name);
        if (s) {
          s.host.set(bytes.subarray(0, s.host.byteLength));
          bytes = s.host.subarray(0, s.perExpert * s.slots);
        }
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
    return new GpuWeights(plan, buffers, slotted);
  }

  /** The storage type of a tensor's buffer (matrices under q8 / q4 may be f16: see planWeights). */
  storage(name: string): StorageType {
    const e = this.plan.entries.find((x) => x.name === name);
    if (!e) throw new Error(`no planned tensor ${name}`);
    return e.storage;
  }

  /** The device and the bytes written per tensor, while the weights are written piece by piece. */
  private writing: { device: GPUDevice; written: Map<string, number>; sizes: Map<string, number> } | null = null;

  /**
   * Allocates every tensor's buffer, empty, for a model whose bytes arrive in pieces (shards):
   * fill them with `writePiece`, then call `finishWrites`. Fails with DeviceLimitError when the
   * GPU cannot hold the weights, before any byte is read.
   */
  static async create(ctx: GpuContext, plan: WeightPlan, slots?: ExpertSlots): Promise<GpuWeights> {
    const buffers = new Map<string, GPUBuffer>();
    const slotted = slottedTensors(plan, slots);
    const device = ctx.device;
    device.pushErrorScope('out-of-memory');
    for (const e of plan.entries) buffers.set(e.name, createStorage(device, GpuWeights.bufferBytes(e, slotted), e.name));
    const oom = await device.popErrorScope();
    if (oom) {
      for (const b of buffers.values()) b.destroy();
      throw new DeviceLimitError(
        `The GPU has no room for the model's ${(plan.totalBytes / 2 ** 20).toFixed(0)} MiB of weights (${oom.message}). Close other GPU-heavy tabs or use a smaller or more compressed model (q4).`,
      );
    }
    ctx.assertAlive();
    const weights = new GpuWeights(plan, buffers, slotted);
    weights.writing = {
      device,
      written: new Map(plan.entries.map((e) => [e.name, 0])),
      sizes: new Map(plan.entries.map((e) => [e.name, e.bytes])),
    };
    return weights;
  }

  /**
   * Writes bytes of a tensor, in its storage layout, at `offset` inside the tensor (both 4-byte
   * aligned, as the shard format guarantees). The bytes are copied by the queue: the caller may
   * drop them as soon as this returns.
   */
  writePiece(name: string, offset: number, bytes: Uint8Array): void {
    const w = this.writing;
    if (!w) throw new Error('GpuWeights.writePiece: these weights were not made by GpuWeights.create, or are finished');
    const size = w.sizes.get(name);
    if (size === undefined) throw new ModelFormatError(`A shard holds a piece of "${name}", which the model does not use.`);
    if (offset % 4 !== 0 || bytes.byteLength % 4 !== 0 || offset < 0 || offset + bytes.byteLength > size) {
      throw new ModelFormatError(`A piece of "${name}" (${bytes.byteLength} bytes at ${offset}) is unaligned or runs past its ${size} bytes.`);
    }
    const s = this.slotted.get(name);
    if (s) {
      // Every expert goes to host memory; the part that falls in the GPU slots goes there too.
      s.host.set(bytes, offset);
      const onGpu = Math.min(bytes.byteLength, s.perExpert * s.slots - offset);
      if (onGpu > 0) w.device.queue.writeBuffer(this.get(name), offset, bytes.buffer, bytes.byteOffset, onGpu);
    } else {
      w.device.queue.writeBuffer(this.get(name), offset, bytes.buffer, bytes.byteOffset, bytes.byteLength);
    }
    w.written.set(name, w.written.get(name)! + bytes.byteLength);
  }

  /** Checks that every tensor received all its bytes; the weights are then ready for a model. */
  finishWrites(): void {
    const w = this.writing;
    if (!w) return;
    for (const [name, size] of w.sizes) {
      const got = w.written.get(name)!;
      if (got !== size) throw new ModelFormatError(`Tensor "${name}" received ${got} of its ${size} bytes from the shards: the manifest's pieces do not cover it.`);
    }
    this.writing = null;
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
