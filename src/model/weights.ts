import { DeviceLimitError, ModelFormatError } from '../errors.ts';
import { createStorage, writeBytes } from '../gpu/buffers.ts';
import type { GpuContext } from '../gpu/context.ts';
import type { TensorSource } from '../checkpoint/types.ts';
import type { StorageType } from '../storage-types.ts';
import { type ExpertSlots, type WeightPlan, type WeightProgress, toStorage } from '../weight-plan.ts';

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
    if (e?.shape.length !== 3) throw new Error(`${name} is not a stacked expert tensor`);
    const experts = e.shape[0];
    const perExpert = e.bytes / experts;
    if (!Number.isInteger(perExpert) || perExpert % 4 !== 0) {
      throw new DeviceLimitError(
        `${name}: an expert takes ${perExpert} bytes, not a multiple of 4, so experts cannot be streamed one at a time. Run without a GPU memory budget.`,
      );
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
      if (got !== size)
        throw new ModelFormatError(`Tensor "${name}" received ${got} of its ${size} bytes from the shards: the manifest's pieces do not cover it.`);
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
