import { DeviceLimitError, UsageError } from '../errors.ts';
import type { KernelExports } from './abi.ts';
import { kernelsGzipBase64, sharedFlagOffset } from './build/kernels-wasm.ts';
import { nodeOs } from './node-builtins.ts';
import { isNode, startThreads, type ComputeThread } from './threads.ts';

// The wasm engine's machine: the kernels module, one memory holding weights, caches and
// activations (laid out once, at load), and the threads that share it.

/** Bytes below the layout's first region: the module's data and the calling thread's stack. */
const STATIC_BYTES = 1 << 20;
/** Each compute thread's stack (kernels keep small frames: a router's probabilities at most). */
const THREAD_STACK_BYTES = 256 << 10;
const PAGE = 65536;
/** wasm32 addresses stop at 4 GiB. */
export const WASM_MEMORY_LIMIT = 2 ** 32;

function decodeBase64(text: string): Uint8Array<ArrayBuffer> {
  if (typeof atob === 'function') {
    const bin = atob(text);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  const B = (globalThis as unknown as { Buffer: { from(s: string, enc: string): Uint8Array } }).Buffer;
  return new Uint8Array(B.from(text, 'base64'));
}

/** Regions of the memory, handed out in order, 16-byte aligned. */
export class MemoryLayout {
  private top = STATIC_BYTES;
  take(bytes: number, align = 16): number {
    const at = Math.ceil(this.top / align) * align;
    this.top = at + Math.max(0, bytes);
    return at;
  }
  get bytes(): number {
    return this.top;
  }
}

/** What the environment offers the wasm engine. */
export interface WasmSupport {
  simd: boolean;
  /** SharedArrayBuffer and workers: several threads on one memory. */
  threads: boolean;
  /** Why threads are off, for the UI ("not cross-origin isolated"). */
  threadsOff?: string;
  /** Logical cores. */
  cores: number;
}

let modules: { mt?: Promise<WebAssembly.Module>; st?: Promise<WebAssembly.Module> } = {};

let unpacked: Promise<Uint8Array<ArrayBuffer>> | undefined;

/** The kernels for threads (shared memory), or for one thread: the same code on a plain memory. */
async function kernelBytes(variant: 'mt' | 'st'): Promise<Uint8Array<ArrayBuffer>> {
  unpacked ??= new Response(new Blob([decodeBase64(kernelsGzipBase64)]).stream().pipeThrough(new DecompressionStream('gzip')))
    .arrayBuffer()
    .then((b) => new Uint8Array(b));
  const bytes = (await unpacked).slice();
  if (variant === 'st') bytes[sharedFlagOffset] = 0x01;
  return bytes;
}

async function coreCount(): Promise<number> {
  if (typeof navigator !== 'undefined' && navigator.hardwareConcurrency) return navigator.hardwareConcurrency;
  if (isNode()) {
    const os = await nodeOs();
    return os.availableParallelism?.() ?? os.cpus().length;
  }
  return 1;
}

export async function wasmSupport(): Promise<WasmSupport> {
  const cores = await coreCount();
  if (typeof WebAssembly === 'undefined') return { simd: false, threads: false, threadsOff: 'no WebAssembly', cores };
  if (typeof DecompressionStream === 'undefined') return { simd: false, threads: false, threadsOff: 'no DecompressionStream', cores };
  const simd = WebAssembly.validate(await kernelBytes('st'));
  let threadsOff: string | undefined;
  if (typeof SharedArrayBuffer === 'undefined') {
    threadsOff =
      typeof crossOriginIsolated !== 'undefined' && !crossOriginIsolated
        ? 'the page is not cross-origin isolated (it needs COOP and COEP headers)'
        : 'SharedArrayBuffer is not available';
  } else if (!isNode() && typeof Worker === 'undefined') {
    threadsOff = 'workers are not available here';
  } else if (!WebAssembly.validate(await kernelBytes('mt'))) {
    threadsOff = "this browser's WebAssembly has no threads";
  }
  return { simd, threads: !threadsOff, threadsOff, cores };
}

function compile(variant: 'mt' | 'st'): Promise<WebAssembly.Module> {
  modules[variant] ??= kernelBytes(variant).then((b) => WebAssembly.compile(b));
  return modules[variant]!;
}

export interface RuntimeOptions {
  /** Compute threads, the calling one included (default: the machine's cores, at most 16). */
  threads?: number;
  /** The most bytes of memory to ask for (default and most: 4 GiB). */
  memoryLimit?: number;
}

export class WasmRuntime {
  private constructor(
    readonly memory: WebAssembly.Memory,
    readonly kernels: KernelExports,
    readonly threads: number,
    readonly threadsOff: string | undefined,
    private readonly workers: ComputeThread[],
  ) {}

  /**
   * A memory of `layout.bytes` (plus the threads' stacks), the kernels instantiated on it, and
   * the worker threads started. Throws DeviceLimitError when the memory cannot be had.
   */
  /** The threads a runtime made with these options gets, and the memory it adds to a layout for them (stacks, page rounding). */
  static async threadsFor(options: RuntimeOptions = {}): Promise<{ threads: number; extraBytes: number }> {
    const support = await wasmSupport();
    const wanted = options.threads ?? Math.min(16, support.cores);
    const threads = support.threads && Number.isInteger(wanted) && wanted > 1 ? wanted : 1;
    return { threads, extraBytes: (threads - 1) * THREAD_STACK_BYTES + 16 * (threads - 1) + PAGE };
  }

  static async create(layout: MemoryLayout, what: string, options: RuntimeOptions = {}): Promise<WasmRuntime> {
    const support = await wasmSupport();
    if (!support.simd) {
      throw new DeviceLimitError(
        support.threadsOff === 'no DecompressionStream'
          ? 'This browser has no DecompressionStream, which the CPU engine needs to unpack its kernels: update the browser, or use one with WebGPU.'
          : "This browser's WebAssembly has no SIMD (128-bit vectors), which the CPU engine needs: update the browser (every current Chrome, Edge, Firefox and Safari has it), or use a browser with WebGPU.",
      );
    }
    const wanted = options.threads ?? Math.min(16, support.cores);
    if (!Number.isInteger(wanted) || wanted < 1) throw new UsageError(`threads must be a positive integer, got ${options.threads}`);
    const threads = support.threads ? wanted : 1;
    const stacks = Array.from({ length: threads - 1 }, () => layout.take(THREAD_STACK_BYTES) + THREAD_STACK_BYTES);
    const total = layout.bytes;
    const mib = (b: number) => (b / 2 ** 20).toFixed(0);
    const limit = Math.min(options.memoryLimit ?? WASM_MEMORY_LIMIT, WASM_MEMORY_LIMIT);
    if (total > limit) {
      throw new DeviceLimitError(
        `${what} needs ${mib(total)} MiB of WebAssembly memory, past the ${mib(limit)} MiB limit: use a smaller or more compressed model (q4), a shorter maxContext, or WebGPU.`,
      );
    }
    const pages = Math.ceil(total / PAGE);
    const shared = threads > 1;
    let memory: WebAssembly.Memory;
    try {
      memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared });
    } catch (e) {
      throw new DeviceLimitError(
        `${what} needs ${mib(total)} MiB of WebAssembly memory, and this ${isNode() ? 'process' : 'browser'} would not give it (${(e as Error).message}). Close other tabs or programs, or use a smaller or more compressed model (q4).`,
        { cause: e },
      );
    }
    const module = await compile(shared ? 'mt' : 'st');
    const imports = { env: { memory, now_ms: () => performance.now() } };
    const instance = await WebAssembly.instantiate(module, imports);
    const kernels = instance.exports as unknown as KernelExports;
    const heapBase = kernels.__heap_base.value as number;
    if (heapBase > STATIC_BYTES) throw new Error(`wasm kernels: their static data (${heapBase} bytes) outgrew the ${STATIC_BYTES} reserved`);
    const workers = shared ? await startThreads(module, memory, stacks) : [];
    kernels.pool_set_threads(threads);
    return new WasmRuntime(memory, kernels, threads, support.threadsOff, workers);
  }

  /** Throws when a compute thread died (set in the shared memory by the thread itself or the watchdog). */
  get failed(): string | null {
    const code = this.kernels.pool_failed();
    if (code === 0) return this.workers.find((w) => w.error)?.error ?? null;
    return this.workers.find((w) => w.error)?.error ?? (code === 2 ? 'a compute thread stopped making progress' : 'a compute thread failed');
  }

  /**
   * Ends worker thread `i` as a crash would (fault injection for tests); resolves once the thread
   * is gone. The engine reports it at its next step.
   */
  async killThread(i: number): Promise<void> {
    await this.workers[i].terminate();
  }

  destroy(): void {
    for (const w of this.workers) void w.terminate();
    this.workers.length = 0;
  }
}

/** For tests: forget the compiled modules. */
export function resetWasmModules(): void {
  modules = {};
}
