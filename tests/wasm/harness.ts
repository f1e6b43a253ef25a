import { MemoryLayout, WasmRuntime } from '../../src/wasm/runtime.ts';
import type { KernelExports } from '../../src/wasm/abi.ts';

// The wasm kernels on a real WebAssembly memory: one runtime per thread count (1: the single
// thread build path; 2: the shared-memory build with a worker thread), a bump allocator over it.

/** Bytes each test runtime holds: enough for an f32 lm_head (206 MB) with its inputs. */
const ARENA = 320 << 20;

const runtimes = new Map<number, Promise<{ rt: WasmRuntime; base: number }>>();

export interface KernelMemory {
  k: KernelExports;
  rt: WasmRuntime;
  /** Copies values into fresh memory; their address. */
  put(data: ArrayBufferView): number;
  /** Fresh memory filled with NaN (so an output the kernel skips shows up), or zeros for ints. */
  out(floats: number): number;
  alloc(bytes: number): number;
  f32(ptr: number, n: number): Float32Array;
  i32(ptr: number, n: number): Int32Array;
}

/** The runtime for `threads` with an empty arena (everything a previous test put is forgotten). */
export async function kernelMemory(threads: number): Promise<KernelMemory> {
  let p = runtimes.get(threads);
  if (!p) {
    p = (async () => {
      const layout = new MemoryLayout();
      const base = layout.take(ARENA);
      return { rt: await WasmRuntime.create(layout, 'the kernel tests', { threads }), base };
    })();
    runtimes.set(threads, p);
  }
  const { rt, base } = await p;
  if (rt.threads !== threads) throw new Error(`asked for ${threads} threads, got ${rt.threads}`);
  let top = base;
  const alloc = (bytes: number) => {
    const at = Math.ceil(top / 16) * 16;
    top = at + bytes;
    if (top > base + ARENA) throw new Error('kernel test arena exhausted');
    return at;
  };
  const buf = () => rt.memory.buffer;
  return {
    k: rt.kernels,
    rt,
    alloc,
    put(data) {
      const at = alloc(data.byteLength);
      new Uint8Array(buf(), at, data.byteLength).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      return at;
    },
    out(floats) {
      const at = alloc(floats * 4);
      new Float32Array(buf(), at, floats).fill(NaN);
      return at;
    },
    f32: (ptr, n) => new Float32Array(buf(), ptr, n).slice(),
    i32: (ptr, n) => new Int32Array(buf(), ptr, n).slice(),
  };
}

/** Thread counts every kernel test runs with. */
export const THREADS = [1, 2] as const;
