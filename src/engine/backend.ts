// The package's declarations (dist/types) name WebGPU's types (GPU, GPUDevice); this makes a
// user's TypeScript load them from @webgpu/types, a dependency for that reason. Every public
// entry's declarations reach this module.
/// <reference types="@webgpu/types" preserve="true" />
import { isCpuEmulation } from '../gpu/context.ts';

/**
 * Which engine runs the model: 'webgpu' (WGSL kernels), 'wasm' (the WebAssembly CPU engine), or
 * 'auto': WebGPU on a real GPU, the wasm engine where there is no WebGPU adapter or the adapter
 * is a CPU emulation (SwiftShader, a fallback adapter), where the wasm engine is many times
 * faster (docs/performance.md: molm-brown decodes at 16 tokens/s on SwiftShader, 573 in wasm).
 */
export type BackendChoice = 'auto' | 'webgpu' | 'wasm';

export type Backend = { kind: 'webgpu'; gpu: GPU } | { kind: 'wasm'; reason: string };

/** Resolves a choice; `gpu` gets WebGPU (it throws DeviceLimitError where there is none). */
export async function chooseBackend(choice: BackendChoice, gpu: () => Promise<GPU>): Promise<Backend> {
  if (choice === 'wasm') return { kind: 'wasm', reason: 'asked for' };
  if (choice === 'webgpu') return { kind: 'webgpu', gpu: await gpu() };
  let g: GPU;
  try {
    g = await gpu();
  } catch {
    return { kind: 'wasm', reason: 'no WebGPU' };
  }
  let adapter: GPUAdapter | null = null;
  try {
    adapter = await g.requestAdapter({ powerPreference: 'high-performance' });
  } catch {
    // An adapter request that throws counts as none.
  }
  if (!adapter) return { kind: 'wasm', reason: 'no WebGPU adapter' };
  if (isCpuEmulation(adapter.info)) return { kind: 'wasm', reason: 'the WebGPU adapter is a CPU emulation' };
  return { kind: 'webgpu', gpu: g };
}
