import type { TensorSource } from '../checkpoint/types.ts';
import { ModelFormatError } from '../errors.ts';
import type { WeightType } from '../gpu/wgsl.ts';
import { toStorage, type WeightPlan, type WeightProgress } from '../model/weights.ts';
import type { MemoryLayout, WasmRuntime } from './runtime.ts';

/**
 * The model's weights in the wasm memory: every tensor of the plan at its own offset, in its
 * storage layout (the same bytes as the shards and the GPU buffers: src/quant/layout.ts).
 * Regions are reserved in the layout first (the memory's size must be known before it exists),
 * then filled tensor by tensor (a checkpoint folder) or piece by piece (shards).
 */
export class WasmWeights {
  private readonly offsets = new Map<string, { at: number; bytes: number; storage: WeightType }>();
  private runtime: WasmRuntime | null = null;
  private written = new Map<string, number>();

  constructor(readonly plan: WeightPlan, layout: MemoryLayout) {
    for (const e of plan.entries) this.offsets.set(e.name, { at: layout.take(e.bytes), bytes: e.bytes, storage: e.storage });
  }

  /** The memory the regions live in, once it exists. */
  attach(runtime: WasmRuntime): void {
    this.runtime = runtime;
  }

  /** The tensor's address in the wasm memory. */
  at(name: string): number {
    const o = this.offsets.get(name);
    if (!o) throw new Error(`no planned tensor ${name}`);
    return o.at;
  }

  storage(name: string): WeightType {
    const o = this.offsets.get(name);
    if (!o) throw new Error(`no planned tensor ${name}`);
    return o.storage;
  }

  /** Writes bytes of a tensor, in its storage layout, at `offset` inside it (as GpuWeights.writePiece). */
  writePiece(name: string, offset: number, bytes: Uint8Array): void {
    const o = this.offsets.get(name);
    if (!o) throw new ModelFormatError(`A shard holds a piece of "${name}", which the model does not use.`);
    if (offset < 0 || offset + bytes.byteLength > o.bytes) {
      throw new ModelFormatError(`A piece of "${name}" (${bytes.byteLength} bytes at ${offset}) runs past its ${o.bytes} bytes.`);
    }
    new Uint8Array(this.runtime!.memory.buffer, o.at + offset, bytes.byteLength).set(bytes);
    this.written.set(name, (this.written.get(name) ?? 0) + bytes.byteLength);
  }

  /** Checks that every tensor received all its bytes. */
  finishWrites(): void {
    for (const [name, o] of this.offsets) {
      const got = this.written.get(name) ?? 0;
      if (got !== o.bytes) throw new ModelFormatError(`Tensor "${name}" received ${got} of its ${o.bytes} bytes: the manifest's pieces do not cover it.`);
    }
    this.written = new Map();
  }

  /** Reads every tensor of a checkpoint (converting it to its planned storage) into place. */
  async upload(source: TensorSource, onProgress?: (p: WeightProgress) => void): Promise<void> {
    let loaded = 0;
    for (const e of this.plan.entries) {
      const info = source.tensors.get(e.name)!;
      this.writePiece(e.name, 0, toStorage(await source.read(e.name), info, e.storage));
      loaded += e.bytes;
      onProgress?.({ loadedBytes: loaded, totalBytes: this.plan.totalBytes, tensor: e.name });
    }
    this.finishWrites();
  }
}
