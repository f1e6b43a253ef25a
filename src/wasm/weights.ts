import type { TensorSource } from '../checkpoint/types.ts';
import { DeviceLimitError, ModelFormatError } from '../errors.ts';
import type { StorageType } from '../storage-types.ts';
import { toStorage, type ExpertSlots, type WeightPlan, type WeightProgress } from '../weight-plan.ts';
import type { MemoryLayout, WasmRuntime } from './runtime.ts';

interface Region {
  at: number;
  bytes: number;
  storage: StorageType;
  /** A stacked expert tensor kept in slots: every expert's bytes on the host, `slots` of them in the memory. */
  slotted?: { perExpert: number; slots: number; host: Uint8Array };
}

/**
 * The model's weights in the wasm memory: every tensor of the plan at its own offset, in its
 * storage layout (the same bytes as the shards and the GPU buffers: src/quant/layout.ts).
 * Regions are reserved in the layout first (the memory's size must be known before it exists),
 * then filled tensor by tensor (a checkpoint folder) or piece by piece (shards).
 *
 * A model too big for the memory keeps its stacked expert tensors in slots (`slots`): the
 * memory holds S experts of each, host memory holds them all, and `loadExpert` copies one in
 * when a router picks it. The slots start out holding experts 0 … S − 1.
 */
export class WasmWeights {
  private readonly regions = new Map<string, Region>();
  private runtime: WasmRuntime | null = null;
  private written = new Map<string, number>();

  constructor(
    readonly plan: WeightPlan,
    layout: MemoryLayout,
    slots?: ExpertSlots,
  ) {
    for (const e of plan.entries) {
      const n = slots?.get(e.name);
      if (n === undefined) {
        this.regions.set(e.name, { at: layout.take(e.bytes), bytes: e.bytes, storage: e.storage });
        continue;
      }
      const perExpert = e.bytes / e.shape[0];
      if (!Number.isInteger(perExpert)) throw new DeviceLimitError(`${e.name}: an expert takes ${perExpert} bytes, so experts cannot be kept in slots.`);
      this.regions.set(e.name, {
        at: layout.take(perExpert * n),
        bytes: e.bytes,
        storage: e.storage,
        slotted: { perExpert, slots: n, host: new Uint8Array(0) },
      });
    }
  }

  /** The memory the regions live in, once it exists; host copies of slotted tensors are made here. */
  attach(runtime: WasmRuntime): void {
    this.runtime = runtime;
    for (const r of this.regions.values()) if (r.slotted) r.slotted.host = new Uint8Array(r.bytes);
  }

  private region(name: string): Region {
    const r = this.regions.get(name);
    if (!r) throw new Error(`no planned tensor ${name}`);
    return r;
  }

  /** The tensor's address in the wasm memory (of its first slot, when slotted). */
  at(name: string): number {
    return this.region(name).at;
  }

  storage(name: string): StorageType {
    return this.region(name).storage;
  }

  /** Bytes the weights take in the wasm memory. */
  get memoryBytes(): number {
    let n = 0;
    for (const r of this.regions.values()) n += r.slotted ? r.slotted.perExpert * r.slotted.slots : r.bytes;
    return n;
  }

  /** Copies expert `expert` of a slotted tensor from host memory into slot `slot`; the bytes copied. */
  loadExpert(name: string, expert: number, slot: number): number {
    const r = this.region(name);
    const s = r.slotted!;
    const bytes = s.host.subarray(expert * s.perExpert, (expert + 1) * s.perExpert);
    new Uint8Array(this.runtime!.memory.buffer, r.at + slot * s.perExpert, s.perExpert).set(bytes);
    return s.perExpert;
  }

  /** Writes bytes of a tensor, in its storage layout, at `offset` inside it (as GpuWeights.writePiece). */
  writePiece(name: string, offset: number, bytes: Uint8Array): void {
    const r = this.regions.get(name);
    if (!r) throw new ModelFormatError(`A shard holds a piece of "${name}", which the model does not use.`);
    if (offset < 0 || offset + bytes.byteLength > r.bytes) {
      throw new ModelFormatError(`A piece of "${name}" (${bytes.byteLength} bytes at ${offset}) runs past its ${r.bytes} bytes.`);
    }
    const memory = this.runtime!.memory.buffer;
    if (r.slotted) {
      // Every expert to host memory; the part that falls in the slots into the memory too.
      r.slotted.host.set(bytes, offset);
      const inSlots = Math.min(bytes.byteLength, r.slotted.perExpert * r.slotted.slots - offset);
      if (inSlots > 0) new Uint8Array(memory, r.at + offset, inSlots).set(bytes.subarray(0, inSlots));
    } else {
      new Uint8Array(memory, r.at + offset, bytes.byteLength).set(bytes);
    }
    this.written.set(name, (this.written.get(name) ?? 0) + bytes.byteLength);
  }

  /** Checks that every tensor received all its bytes. */
  finishWrites(): void {
    for (const [name, r] of this.regions) {
      const got = this.written.get(name) ?? 0;
      if (got !== r.bytes) throw new ModelFormatError(`Tensor "${name}" received ${got} of its ${r.bytes} bytes: the manifest's pieces do not cover it.`);
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
