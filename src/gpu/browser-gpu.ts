import { DeviceLimitError } from '../errors.ts';

/** `navigator.gpu` of a page or a worker, or an error that says how to get WebGPU. */
export async function browserGpu(): Promise<GPU> {
  const gpu = typeof navigator !== 'undefined' ? navigator.gpu : undefined;
  if (!gpu) {
    throw new DeviceLimitError(
      'This browser has no WebGPU (navigator.gpu is missing): use a current Chrome or Edge, Safari 26+, or Firefox 141+ on Windows; on Linux, Chrome needs chrome://flags/#enable-unsafe-webgpu.',
    );
  }
  return gpu;
}
