import { afterAll, beforeAll, expect } from 'vitest';
import { GpuContext } from '../../src/gpu/context.ts';
import { nodeGpu } from '../../src/gpu/node-gpu.ts';
import { readBuffer, uploadStorage } from '../../src/gpu/buffers.ts';
import { StepUniform } from '../../src/kernels/step.ts';
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from '../../src/checkpoint/dtype.ts';
import type { WeightType } from '../../src/gpu/wgsl.ts';
import { dequantize, isQuantType, quantize } from '../../src/quant/layout.ts';

let shared: Promise<GpuContext> | undefined;

/** One real WebGPU device (Dawn; SwiftShader on machines without a GPU) for a test file. */
export function gpuContext(): Promise<GpuContext> {
  shared ??= (async () => {
    const ctx = await GpuContext.create({ maxBindingBytes: 256 << 20, maxBufferBytes: 256 << 20 }, { gpu: await nodeGpu() });
    return ctx;
  })();
  return shared;
}

/** A deterministic generator so a failing case can be rerun; a new seed per test call site. */
export function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
}

/** Uniform values in [-scale, scale), rounded to float32 (what the GPU will see). */
export function randomF32(n: number, rand: () => number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (rand() * 2 - 1) * scale;
  return a;
}

export function upload(ctx: GpuContext, data: ArrayBufferView, label = 'test'): GPUBuffer {
  return uploadStorage(ctx.device, data, label);
}

export function output(ctx: GpuContext, bytes: number, label = 'out'): GPUBuffer {
  return upload(ctx, new Uint8Array(bytes), label);
}

export async function readF32(ctx: GpuContext, buffer: GPUBuffer, count?: number): Promise<Float32Array> {
  return new Float32Array(await readBuffer(ctx.device, buffer, 0, (count ?? buffer.size / 4) * 4));
}

export async function readU32(ctx: GpuContext, buffer: GPUBuffer, count?: number): Promise<Uint32Array> {
  return new Uint32Array(await readBuffer(ctx.device, buffer, 0, (count ?? buffer.size / 4) * 4));
}

export function stepUniform(ctx: GpuContext, rows: number, pos = 0): StepUniform {
  const s = new StepUniform(ctx.device);
  s.write(rows, pos);
  return s;
}

/** Largest |a - b| over the arrays (lengths must match). */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

/** Asserts max |actual - expected| <= tol, reporting the error found. */
export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what = 'values'): void {
  const err = maxAbsDiff(actual, expected);
  expect(err, `${what}: max abs error ${err} exceeds ${tol}`).toBeLessThanOrEqual(tol);
}

/**
 * A weight tensor as the GPU stores it for `type` (16-bit values packed two per u32, element 0
 * in the low half; q8 / q4 in the layout of src/quant/layout.ts, which needs the tensor's
 * shape), and the float32 values it really holds after rounding or quantisation: references
 * must run on `rounded`, so that only the kernel's arithmetic is under test.
 */
export function weightData(values: Float32Array, type: WeightType, shape?: readonly number[]): { data: ArrayBufferView; rounded: Float32Array } {
  if (type === 'f32') return { data: values, rounded: values };
  if (isQuantType(type)) {
    if (!shape) throw new Error(`weightData: ${type} needs the tensor's shape`);
    const data = quantize(values, shape, type);
    return { data, rounded: dequantize(data, shape, type) };
  }
  const bits = new Uint16Array(values.length);
  const rounded = new Float32Array(values.length);
  const [encode, decode] = type === 'bf16' ? [f32ToBf16, bf16ToF32] : [f32ToF16, f16ToF32];
  for (let i = 0; i < values.length; i++) {
    bits[i] = encode(values[i]);
    rounded[i] = decode(bits[i]);
  }
  return { data: bits, rounded };
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
