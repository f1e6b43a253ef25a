import { describe, expect, it } from 'vitest';
import { describeEngine } from '../../src/engine/describe-engine.ts';

// What the demo and the widget say about the engine, from engine.backend and engine.device
// (WasmModel.description: "WebAssembly SIMD, N thread(s)" and, on one thread, why in parentheses).

describe('describeEngine', () => {
  it('wasm with threads', () => {
    expect(describeEngine({ backend: 'wasm', device: 'WebAssembly SIMD, 2 threads' })).toEqual({
      backend: 'wasm',
      label: 'WebAssembly SIMD, 2 threads',
      short: 'WebAssembly, 2 threads',
      threads: 2,
      threadsOff: undefined,
      sentence: 'Running on the CPU: WebAssembly SIMD, 2 threads.',
    });
  });

  it('wasm on one thread keeps the whole reason, parentheses inside it included', () => {
    const d = describeEngine({
      backend: 'wasm',
      device: 'WebAssembly SIMD, 1 thread (the page is not cross-origin isolated (it needs COOP and COEP headers))',
    });
    expect(d.threads).toBe(1);
    expect(d.threadsOff).toBe('the page is not cross-origin isolated (it needs COOP and COEP headers)');
    expect(d.label).toBe('WebAssembly SIMD, 1 thread');
    expect(d.short).toBe('WebAssembly, 1 thread');
    expect(d.sentence).toBe(
      'Running on the CPU: WebAssembly SIMD, 1 thread. One thread because the page is not cross-origin isolated (it needs COOP and COEP headers).',
    );
  });

  it('one thread asked for says no reason', () => {
    expect(describeEngine({ backend: 'wasm', device: 'WebAssembly SIMD, 1 thread' }).sentence).toBe('Running on the CPU: WebAssembly SIMD, 1 thread.');
  });

  it('WebGPU names the adapter; an unknown wasm description is shown as it is', () => {
    expect(describeEngine({ backend: 'webgpu', device: 'google / swiftshader' })).toMatchObject({
      label: 'WebGPU (google / swiftshader)',
      short: 'WebGPU',
      sentence: 'Running on WebGPU: google / swiftshader.',
    });
    expect(describeEngine({ backend: 'wasm', device: 'something else' })).toMatchObject({ label: 'something else', short: 'WebAssembly' });
  });
});
