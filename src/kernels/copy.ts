import { BufferUsage } from '../gpu/buffers.ts';
import type { GpuContext } from '../gpu/context.ts';
import { submit, workDone } from '../gpu/queue.ts';
import { bindGroup, type Dispatch } from './dispatch.ts';

/** Workgroups and their size for the bandwidth copy: a few large ones, striding. */
export const COPY_SHAPE = { wg: 256, groups: 64 } as const;

/**
 * dst = src (shaders/copy.wgsl): a plain copy, the yardstick of the roofline ratio. Both buffers
 * hold a multiple of 16 bytes.
 */
export async function copyKernel(gpu: GpuContext, src: GPUBuffer, dst: GPUBuffer, label = 'copy'): Promise<Dispatch> {
  if (src.size % 16 !== 0 || dst.size < src.size) throw new Error(`copy: ${src.size} bytes (a multiple of 16) into ${dst.size}`);
  const pipeline = await gpu.pipelines.get('copy.wgsl', { defines: { WG: COPY_SHAPE.wg, GROUPS: COPY_SHAPE.groups } });
  return {
    label,
    pipeline,
    bindGroup: bindGroup(gpu.device, pipeline, { 0: src, 1: { buffer: dst, size: src.size } }, label),
    grid: () => [COPY_SHAPE.groups, 1, 1],
  };
}

/**
 * Bytes per second the copy kernel moves (read + write) on this adapter: `bytes` copied `repeats`
 * times in one submission after a warm-up, timed by the wall clock around queue completion.
 */
export async function measureCopyBandwidth(gpu: GpuContext, bytes = 64 << 20, repeats = 8): Promise<number> {
  const device = gpu.device;
  const usage = BufferUsage.STORAGE | BufferUsage.COPY_DST;
  const src = device.createBuffer({ label: 'copy.src', size: bytes, usage });
  const dst = device.createBuffer({ label: 'copy.dst', size: bytes, usage });
  try {
    const d = await copyKernel(gpu, src, dst);
    const run = async (n: number) => {
      const enc = device.createCommandEncoder();
      for (let i = 0; i < n; i++) {
        const pass = enc.beginComputePass();
        pass.setPipeline(d.pipeline);
        pass.setBindGroup(0, d.bindGroup);
        pass.dispatchWorkgroups(...d.grid(1));
        pass.end();
      }
      submit(gpu, enc);
      await workDone(gpu);
    };
    await run(1);
    const t0 = performance.now();
    await run(repeats);
    const seconds = (performance.now() - t0) / 1000;
    return (2 * bytes * repeats) / seconds;
  } finally {
    src.destroy();
    dst.destroy();
  }
}
