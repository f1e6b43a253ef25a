import type { EngineBackend } from './api.ts';

// What the front ends (the demo, the widget) say about the engine that runs the model: which
// backend, its threads, and why there is only one. Read from engine.backend and engine.device,
// which cross the worker boundary ("WebAssembly SIMD, 2 threads", or the WebGPU adapter).

export interface EngineSummary {
  backend: EngineBackend;
  /** For a status line: "WebAssembly SIMD, 2 threads", "WebGPU (adapter)". */
  label: string;
  /** Shorter still: "WebAssembly, 2 threads", "WebGPU". */
  short: string;
  /** A sentence for people: what runs the model, and for one wasm thread, why. */
  sentence: string;
  /** wasm: compute threads. */
  threads?: number;
  /** wasm on one thread: why threads are off ("the page is not cross-origin isolated (…)"). */
  threadsOff?: string;
}

const WASM = /^WebAssembly SIMD, (\d+) threads?(?: \((.*)\))?$/s;

export function describeEngine(engine: { backend: EngineBackend; device: string }): EngineSummary {
  const { backend, device } = engine;
  if (backend === 'wasm') {
    const m = WASM.exec(device);
    if (!m) return { backend, label: device, short: 'WebAssembly', sentence: `Running on the CPU: ${device}.` };
    const threads = Number(m[1]);
    const label = `WebAssembly SIMD, ${threads} thread${threads === 1 ? '' : 's'}`;
    const short = `WebAssembly, ${threads} thread${threads === 1 ? '' : 's'}`;
    const threadsOff = m[2] || undefined;
    const why = threadsOff ? ` One thread because ${threadsOff}.` : '';
    return { backend, label, short, threads, threadsOff, sentence: `Running on the CPU: ${label}.${why}` };
  }
  if (backend === 'webgpu') return { backend, label: `WebGPU (${device})`, short: 'WebGPU', sentence: `Running on WebGPU: ${device}.` };
  return { backend, label: device, short: device, sentence: `Running on ${device}.` };
}
