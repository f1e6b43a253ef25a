import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { nodeFileSource } from '../../src/checkpoint/node-files.ts';
import { DeviceLostError } from '../../src/errors.ts';
import { createReadback, uploadStorage } from '../../src/gpu/buffers.ts';
import { GpuContext } from '../../src/gpu/context.ts';
import { nodeGpu } from '../../src/gpu/node-gpu.ts';
import { mapRead, readBuffer, submit, workDone } from '../../src/gpu/queue.ts';
import { loadGpuModel } from '../../src/model/load.ts';
import type { GpuModel } from '../../src/model/model.ts';
import { GREEDY } from '../../src/token-model.ts';

// A device destroyed for real (what a driver reset looks like to WebGPU), on a device of each
// test's own: every path that submits or reads back through src/gpu/queue.ts ends in a
// DeviceLostError that says to create a new engine, never in a bare AbortError or a hang.

const TINY = join(__dirname, '..', 'fixtures', 'golden', 'tiny-molm');
const PROMPT = [21, 92, 1, 11, 4, 17, 93, 23, 34, 78, 37, 66];
const LOST = /^The GPU device was lost \(destroyed: .*\)\. Create a new engine to continue; cached weights are kept\.$/;

async function freshContext(): Promise<GpuContext> {
  return GpuContext.create({ maxBindingBytes: 1 << 20, maxBufferBytes: 1 << 20 }, { gpu: await nodeGpu() });
}

/** The error `p` rejects with (fails the test if it resolves). */
async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a rejection');
}

/**
 * The `n`-th command encoder created from now on first destroys the device, as
 * tests/browser/faults.test.ts does: the work recorded into it is then submitted to a device
 * already lost, before the context has heard of it, so the loss surfaces at the readback.
 */
function loseDeviceAt(ctx: GpuContext, n: number): void {
  const device = ctx.device;
  const create = device.createCommandEncoder;
  let count = 0;
  device.createCommandEncoder = function (this: GPUDevice, descriptor?: GPUCommandEncoderDescriptor) {
    if (++count === n) device.destroy();
    return create.call(this, descriptor);
  };
}

async function generate(model: GpuModel, n: number): Promise<number[]> {
  const out: number[] = [];
  for await (const id of model.generate(PROMPT, n, GREEDY)) out.push(id);
  return out;
}

describe('a lost GPU device', () => {
  it('a readback through src/gpu ends in DeviceLostError, and so do a submission and a wait after it', async () => {
    const ctx = await freshContext();
    const data = uploadStorage(ctx.device, Float32Array.of(1, 2, 3, 4), 'data');
    expect(new Float32Array(await readBuffer(ctx, data))).toEqual(Float32Array.of(1, 2, 3, 4));
    // Not waiting for device.lost: the read is under way when the context learns of the loss.
    ctx.device.destroy();
    const e = await rejection(readBuffer(ctx, data));
    expect(e).toBeInstanceOf(DeviceLostError);
    expect(e.message).toMatch(LOST);
    expect(ctx.isLost).toBe(true);
    expect(() => submit(ctx, ctx.device.createCommandEncoder())).toThrow(DeviceLostError);
    await expect(workDone(ctx)).rejects.toThrow(LOST);
  });

  it('a map that fails while the device lives is a DeviceLostError too (the engine cannot go on without its results)', async () => {
    const ctx = await freshContext();
    try {
      const staging = createReadback(ctx.device, 16, 'staging');
      staging.destroy();
      const e = await rejection(mapRead(ctx, staging, 16));
      expect(e).toBeInstanceOf(DeviceLostError);
      expect(e.message).toMatch(/^Reading results from the GPU failed \(.+\)\. Create a new engine to continue; cached weights are kept\.$/);
      expect(ctx.isLost).toBe(false);
    } finally {
      ctx.destroy();
    }
  });

  it('a generation that loses its device mid-way ends in DeviceLostError, and every later call says so again', async () => {
    const model = await loadGpuModel(nodeFileSource(TINY), { gpu: await nodeGpu(), maxContext: 64 });
    try {
      model.traceRouting(true);
      // The prefill is encoder 1, decode steps follow: the loss comes while decoding.
      loseDeviceAt(model.ctx, 4);
      const e = await rejection(generate(model, 8));
      expect(e).toBeInstanceOf(DeviceLostError);
      expect(e.message).toMatch(LOST);
      model.reset();
      await expect(generate(model, 2)).rejects.toThrow(LOST);
      await expect(model.readRouting(0, 4)).rejects.toThrow(DeviceLostError);
      model.reset();
      await expect(model.prefillLogits(PROMPT)).rejects.toThrow(LOST);
      await expect(model.kernelTimes('decode', 1)).rejects.toThrow(DeviceLostError);
    } finally {
      model.destroy();
    }
  });

  it('under an expert budget (a readback after every router), a generation that loses its device ends in DeviceLostError', async () => {
    const model = await loadGpuModel(nodeFileSource(TINY), { gpu: await nodeGpu(), maxContext: 64, expertBudget: { bytes: '50%' } });
    try {
      expect(model.expertCache, 'the experts are streamed').not.toBeNull();
      // Each token's step is cut after every router, one encoder per piece: this is mid-prompt.
      loseDeviceAt(model.ctx, 6);
      const e = await rejection(generate(model, 8));
      expect(e).toBeInstanceOf(DeviceLostError);
      expect(e.message).toMatch(LOST);
    } finally {
      model.destroy();
    }
  });
});
