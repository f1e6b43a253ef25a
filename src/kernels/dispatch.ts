import type { GpuContext } from '../gpu/context.ts';
import { submit } from '../gpu/queue.ts';

/**
 * A kernel invocation planned at load time: pipeline and bind group are made once; only the
 * workgroup counts depend on how many token rows a step carries (prefill chunk or one token).
 */
export interface Dispatch {
  readonly label: string;
  readonly pipeline: GPUComputePipeline;
  readonly bindGroup: GPUBindGroup;
  /** Workgroup counts for a step of `rows` token rows. */
  grid(rows: number): readonly [number, number, number];
}

export type Binding = GPUBuffer | GPUBufferBinding;

/** A bind group for group 0 of `pipeline`, binding i taking `resources[i]` (holes skipped). */
export function bindGroup(device: GPUDevice, pipeline: GPUComputePipeline, resources: Record<number, Binding>, label: string): GPUBindGroup {
  const entries: GPUBindGroupEntry[] = Object.entries(resources).map(([binding, r]) => ({
    binding: Number(binding),
    resource: 'buffer' in r ? r : { buffer: r },
  }));
  return device.createBindGroup({ label, layout: pipeline.getBindGroupLayout(0), entries });
}

/** The most workgroups along one dimension of a dispatch. */
export const MAX_GROUPS = 65535;

/**
 * Workgroup counts for x column tiles by `units` workgroups along y, folded into z beyond
 * MAX_GROUPS (the kernel's unit is wid.z · num_workgroups.y + wid.y, and it skips units past the
 * end). Nothing to do gives [0, 1, 1], which encodeDispatches skips.
 */
export function foldedGrid(label: string, x: number, units: number): readonly [number, number, number] {
  if (units === 0 || x === 0) return [0, 1, 1];
  const z = Math.ceil(units / MAX_GROUPS);
  if (z > MAX_GROUPS) throw new Error(`${label}: ${units} workgroups exceed one dispatch`);
  return [x, Math.ceil(units / z), z];
}

/** Records dispatches into one compute pass. */
export function encodeDispatches(pass: GPUComputePassEncoder, dispatches: readonly Dispatch[], rows: number): void {
  for (const d of dispatches) {
    const [x, y, z] = d.grid(rows);
    if (x === 0 || y === 0 || z === 0) continue;
    pass.setPipeline(d.pipeline);
    pass.setBindGroup(0, d.bindGroup);
    pass.dispatchWorkgroups(x, y, z);
  }
}

/** Submits dispatches in one pass (tests and one-off work; the scheduler builds its own passes). */
export function runDispatches(ctx: GpuContext, dispatches: readonly Dispatch[], rows: number): void {
  const enc = ctx.device.createCommandEncoder();
  const pass = enc.beginComputePass();
  encodeDispatches(pass, dispatches, rows);
  pass.end();
  submit(ctx, enc);
}
