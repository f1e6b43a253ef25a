// The wasm engine's worker threads: each instantiates the kernels on the shared memory, moves
// its stack pointer to its own stack, and runs pool_worker (src/wasm/kernels/pool.c) forever.
// Web Workers in a page, worker_threads in Node; the code is inline, so no file has to be served.

import { nodeWorkerThreads } from './node-builtins.ts';

export interface ComputeThread {
  /** Set when the thread died: its message. */
  error?: string;
  /** Ends the thread; resolves once it is gone. */
  terminate(): Promise<void>;
}

// Runs in the thread. `post` and the first message differ between the platforms only.
const THREAD_BODY = `
function run(data, post) {
  const { module, memory, stackTop } = data;
  const instance = new WebAssembly.Instance(module, { env: { memory, now_ms: () => performance.now() } });
  instance.exports.__stack_pointer.value = stackTop;
  post({ ready: true });
  try {
    instance.exports.pool_worker();
  } catch (e) {
    instance.exports.pool_fail(1);
    post({ error: String((e && e.message) || e) });
  }
}`;

const NODE_SOURCE = `${THREAD_BODY}
const { parentPort, workerData } = require('node:worker_threads');
run(workerData, (m) => parentPort.postMessage(m));`;

const WEB_SOURCE = `${THREAD_BODY}
self.onmessage = (ev) => run(ev.data, (m) => self.postMessage(m));`;

/** Node (worker_threads), not a page or a Web Worker. */
export function isNode(): boolean {
  return typeof process !== 'undefined' && !!process.versions?.node && typeof window === 'undefined';
}

/** Starts one thread per stack top; resolves once every thread has its instance. */
export async function startThreads(module: WebAssembly.Module, memory: WebAssembly.Memory, stackTops: number[]): Promise<ComputeThread[]> {
  const threads: ComputeThread[] = [];
  const ready: Promise<void>[] = [];
  if (isNode()) {
    const { Worker } = await nodeWorkerThreads();
    for (const stackTop of stackTops) {
      const w = new Worker(NODE_SOURCE, { eval: true, workerData: { module, memory, stackTop } });
      w.unref();
      const t: ComputeThread = {
        terminate: async () => {
          await w.terminate();
        },
      };
      ready.push(
        new Promise((resolve, reject) => {
          w.on('message', (m: { ready?: boolean; error?: string }) => (m.ready ? resolve() : (t.error = m.error)));
          w.on('error', (e) => {
            t.error = e.message;
            reject(e);
          });
          w.on('exit', (code) => {
            t.error ??= `a compute thread exited (code ${code})`;
            reject(new Error(t.error));
          });
        }),
      );
      threads.push(t);
    }
  } else {
    const url = URL.createObjectURL(new Blob([WEB_SOURCE], { type: 'text/javascript' }));
    try {
      for (const stackTop of stackTops) {
        const w = new Worker(url, { name: 'molm-compute' });
        const t: ComputeThread = {
          terminate: async () => {
            w.terminate();
            t.error ??= 'a compute thread was terminated';
          },
        };
        ready.push(
          new Promise((resolve, reject) => {
            w.onmessage = (ev: MessageEvent<{ ready?: boolean; error?: string }>) => (ev.data.ready ? resolve() : (t.error = ev.data.error));
            w.onerror = (ev) => {
              t.error = ev.message || 'a compute thread failed to start';
              reject(new Error(t.error));
            };
          }),
        );
        w.postMessage({ module, memory, stackTop });
        threads.push(t);
      }
      await Promise.all(ready);
    } finally {
      URL.revokeObjectURL(url);
    }
    return threads;
  }
  try {
    await Promise.all(ready);
  } catch (e) {
    for (const t of threads) void t.terminate();
    throw e;
  }
  return threads;
}
