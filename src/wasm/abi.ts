import type { StorageType } from '../storage-types.ts';

// The wasm kernels' exports (src/wasm/kernels/*.c), as JavaScript sees them: pointers are byte
// offsets into the module's memory, sizes are element counts.

type Ptr = number;

export interface KernelExports {
  readonly __heap_base: WebAssembly.Global;
  readonly __stack_pointer: WebAssembly.Global;
  pool_set_threads(n: number): void;
  pool_failed(): number;
  pool_fail(code: number): void;
  pool_worker?(): void;
  embedding(out: Ptr, table: Ptr, storage: number, vocab: number, width: number, ids: Ptr, rows: number): void;
  layer_norm(out: Ptr, x: Ptr, rows: number, width: number, weight: Ptr, bias: Ptr, eps: number): void;
  linear(y: Ptr, x: Ptr, rows: number, inDim: number, outDim: number, w: Ptr, storage: number, bias: Ptr, scratch: Ptr): void;
  router(
    ids: Ptr,
    gates: Ptr,
    x: Ptr,
    rows: number,
    width: number,
    w0: Ptr,
    st0: number,
    b0: Ptr,
    w3: Ptr,
    st3: number,
    gating: number,
    experts: number,
    k: number,
    hidden: Ptr,
    logits: Ptr,
    scratch: Ptr,
  ): void;
  expert_project(
    y: Ptr,
    x: Ptr,
    rows: number,
    k: number,
    xPerSlot: number,
    inDim: number,
    outDim: number,
    w: Ptr,
    storage: number,
    experts: number,
    ids: Ptr,
    act: number,
    tasks: Ptr,
    counts: Ptr,
    partial: Ptr,
  ): void;
  expert_partial_floats(k: number, maxIn: number, maxOut: number): number;
  expert_combine(h: Ptr, y: Ptr, gates: Ptr, rows: number, k: number, width: number): void;
  expert_task_bytes(): number;
  stickbreaking(o: Ptr, q: Ptr, keys: Ptr, values: Ptr, rows: number, k: number, heads: number, d: number, pos0: number, width: number, partial: Ptr): void;
  stickbreaking_partial_floats(maxContext: number, k: number, heads: number, d: number): number;
  apply_penalty(logits: Ptr, ids: Ptr, n: number, penalty: number): void;
  argmax(logits: Ptr, vocab: number): number;
  stream_read(p: Ptr, bytes: number, sums: Ptr): number;
  sample(logits: Ptr, vocab: number, temperature: number, topK: number, topP: number, u: number, p: Ptr, sel: Ptr): number;
}

/** The kernels' storage codes (src/wasm/kernels/common.h). */
export const STORAGE_CODE: Record<StorageType, number> = { f32: 0, bf16: 1, f16: 2, q8: 3, q4: 4 };

/** The expert kernels' activation codes. */
export const ACT_NONE = 0;
export const ACT_GELU_TANH = 1;
