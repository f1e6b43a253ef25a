import { afterAll, beforeAll } from 'vitest';
import { GpuContext } from '../../src/gpu/context.ts';
import { nodeGpu } from '../../src/gpu/node-gpu.ts';
import { uploadStorage } from '../../src/gpu/buffers.ts';
import { readBuffer } from '../../src/gpu/queue.ts';
import { StepUniform } from '../../src/kernels/step.ts';
export { expectClose, maxAbsDiff, randomF32, rng, weightData } from '../shared/numeric.ts';

let shared: Promise<GpuContext> | undefined;

/** One real WebGPU device (Dawn; SwiftShader on machines without a GPU) for a test file. */
export function gpuContext(): Promise<GpuContext> {
  shared ??= (async () => {
    const ctx = await GpuContext.create({ maxBindingBytes: 256 << 20, maxBufferBytes: 256 << 20 }, { gpu: await nodeGpu() });
    return ctx;
  })();
  return shared;
}

export function upload(ctx: GpuContext, data: ArrayBufferView, label = 'test'): GPUBuffer {
  return uploadStorage(ctx.device, data, label);
}

export function output(ctx: GpuContext, bytes: number, label = 'out'): GPUBuffer {
  return upload(ctx, new Uint8Array(bytes), label);
}

export async function readF32(ctx: GpuContext, buffer: GPUBuffer, count?: number): Promise<Float32Array> {
  return new Float32Array(await readBuffer(ctx, buffer, 0, (count ?? buffer.size / 4) * 4));
}

export async function readU32(ctx: GpuContext, buffer: GPUBuffer, count?: number): Promise<Uint32Array> {
  return new Uint32Array(await readBuffer(ctx, buffer, 0, (count ?? buffer.size / 4) * 4));
}

export function stepUniform(ctx: GpuContext, rows: number, pos = 0): StepUniform {
  const s = new StepUniform(ctx.device);
  s.write(rows, pos);
  return s;
}

/**
 * One shape of the matrix-vector kernels: the profile, and for 'gpu' whether reductions go
 * through subgroups (shuffles) or workgroup-memory trees.
 */
export interface KernelShape {
  profile: 'gpu' | 'cpu';
  subgroups: boolean;
}

/** Every shape a kernel with a subgroup variant has; the subgroup one needs the device feature. */
export const KERNEL_SHAPES: readonly KernelShape[] = [
  { profile: 'gpu', subgroups: true },
  { profile: 'gpu', subgroups: false },
  { profile: 'cpu', subgroups: false },
];

export function kernelShapeName(s: KernelShape): string {
  return s.profile === 'cpu' ? 'cpu kernel profile' : `gpu kernel profile, ${s.subgroups ? 'subgroup' : 'workgroup-memory'} reductions`;
}

/** Sets the shared context to a kernel shape (for a single check; see useKernelProfile for a block). */
export function setKernelShape(ctx: GpuContext, s: KernelShape): void {
  ctx.kernelProfile = s.profile;
  ctx.useSubgroups = s.subgroups;
}

/**
 * The `"SUBGROUPS":…` define a kernel planned on this context must carry (the pipeline's label is
 * its variant), so a test cannot pass on the other variant than the one it means to cover.
 */
export function subgroupsDefine(ctx: GpuContext): string {
  return `"SUBGROUPS":${ctx.subgroupReductions}`;
}

/**
 * Runs the describe block it is called in with the shared context's kernel profile set to
 * `profile` (then restored): both workgroup shapes of a kernel are tested whatever the adapter.
 * `subgroups`, when given, sets `useSubgroups` the same way (otherwise it keeps the device's
 * default).
 */
export function useKernelProfile(profile: 'gpu' | 'cpu', subgroups?: boolean): void {
  let saved: 'gpu' | 'cpu' = 'gpu';
  let savedSubgroups = false;
  beforeAll(async () => {
    const ctx = await gpuContext();
    saved = ctx.kernelProfile;
    savedSubgroups = ctx.useSubgroups;
    ctx.kernelProfile = profile;
    if (subgroups !== undefined) ctx.useSubgroups = subgroups;
  });
  afterAll(async () => {
    const ctx = await gpuContext();
    ctx.kernelProfile = saved;
    ctx.useSubgroups = savedSubgroups;
  });
}
